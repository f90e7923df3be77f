package setup

// Service is one kind of service setup knows how to recognise and read.
type Service struct {
	Name string
	// Packages, Units and Journal are the evidence that the service is
	// on the host: any one of them is enough.
	Packages []string
	Units    []string
	// Journal are the SYSLOG_IDENTIFIER values the service logs under.
	Journal []string
	// Logs are the host's log file globs of the service, read with
	// FileType as the type label when the journal does not carry it.
	Logs     []string
	FileType string
	// Collection is the shipped collection that parses the service, and
	// Hub the hub collection to install when nothing is shipped.
	Collection string
	Hub        string
}

// Catalog returns every service setup recognises, in output order (a
// fresh slice: callers may not change what the next caller sees).
//
// Left out on purpose: the kernel firewall log (moat/portscan). It bans on
// packets the firewall logged, an admin's own port checks included, and
// it needs logging rules moat does not write; enabling it stays a
// deliberate act (packaging/debian/examples/acquis.d/kernel-firewall.yaml).
func Catalog() []Service {
	return []Service{
		{
			Name: "sshd", Packages: []string{"openssh-server"}, Units: []string{"ssh.service", "sshd.service"},
			Journal: []string{"sshd", "sshd-session"}, Logs: []string{"/var/log/auth.log"}, FileType: "syslog",
			Collection: "moat/sshd", Hub: "crowdsecurity/sshd",
		},
		{
			Name: "nginx", Packages: []string{"nginx", "nginx-core", "nginx-light", "nginx-full", "nginx-extras"}, Units: []string{"nginx.service"},
			Logs: []string{"/var/log/nginx/*access*.log"}, FileType: "nginx",
			Collection: "moat/nginx", Hub: "crowdsecurity/nginx",
		},
		{
			Name: "apache2", Packages: []string{"apache2"}, Units: []string{"apache2.service"},
			Logs: []string{"/var/log/apache2/*access*.log"}, FileType: "apache2",
			Collection: "moat/apache2", Hub: "crowdsecurity/apache2",
		},
		{
			Name: "postfix", Packages: []string{"postfix"}, Units: []string{"postfix.service", "postfix@.service"},
			Journal: []string{"postfix/smtpd", "postfix/submission/smtpd", "postfix/smtps/smtpd"}, Logs: []string{"/var/log/mail.log"}, FileType: "syslog",
			Collection: "moat/postfix", Hub: "crowdsecurity/postfix",
		},
		{
			Name: "dovecot", Packages: []string{"dovecot-core"}, Units: []string{"dovecot.service"},
			Journal: []string{"dovecot"}, Logs: []string{"/var/log/mail.log"}, FileType: "syslog",
			Collection: "moat/dovecot", Hub: "crowdsecurity/dovecot",
		},
		{
			Name: "exim4", Packages: []string{"exim4-daemon-light", "exim4-daemon-heavy"}, Units: []string{"exim4.service"},
			Logs: []string{"/var/log/exim4/mainlog"}, FileType: "exim4",
			Collection: "moat/exim4", Hub: "crowdsecurity/exim",
		},
		{
			Name: "mysql", Packages: []string{"mariadb-server", "mysql-server", "default-mysql-server"}, Units: []string{"mariadb.service", "mysql.service"},
			Journal: []string{"mariadbd", "mysqld"}, Logs: []string{"/var/log/mysql/error.log"}, FileType: "mysql",
			Collection: "moat/mysql", Hub: "crowdsecurity/mysql",
		},
		{
			Name: "proftpd", Packages: []string{"proftpd-core", "proftpd-basic"}, Units: []string{"proftpd.service"},
			Journal:    []string{"proftpd"},
			Collection: "moat/proftpd", Hub: "crowdsecurity/proftpd",
		},
		{
			Name: "vsftpd", Packages: []string{"vsftpd"}, Units: []string{"vsftpd.service"},
			Journal: []string{"vsftpd"}, Logs: []string{"/var/log/vsftpd.log"}, FileType: "vsftpd",
			Collection: "moat/vsftpd", Hub: "crowdsecurity/vsftpd",
		},
		{
			// Nothing shipped: the hub's collection parses it.
			Name: "haproxy", Packages: []string{"haproxy"}, Units: []string{"haproxy.service"},
			Journal: []string{"haproxy"}, Logs: []string{"/var/log/haproxy.log"}, FileType: "syslog",
			Hub: "crowdsecurity/haproxy",
		},
	}
}
