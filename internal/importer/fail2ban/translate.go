package fail2ban

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/moatsec/moat/internal/config"
	"github.com/moatsec/moat/internal/importer"
)

// service is what moat runs for a fail2ban filter.
type service struct {
	// items are hub items to enable: a collection, or the files of one
	// when the collection names scenarios that share a file (hub.items
	// selects files).
	items []string
	// bf is the scenario maxretry and findtime tune; all the glob
	// bantime sets.
	bf, all string
	// acqType is the acquisition's type label; journal its journalctl
	// filter when the jail reads the journal.
	acqType string
	journal []string
	// partial says what the moat side does differently, when it does.
	partial string
}

var (
	sshd = service{items: []string{"moat/syslog-logs", "moat/sshd-logs", "moat/dateparse-enrich", "moat/ssh-bf"}, bf: "moat/ssh-bf", all: "moat/ssh-*", acqType: "syslog",
		journal: []string{"SYSLOG_IDENTIFIER=sshd", "SYSLOG_IDENTIFIER=sshd-session"}}
	postfix = service{items: []string{"moat/postfix"}, bf: "moat/postfix-bf", all: "moat/postfix-*", acqType: "syslog",
		journal: []string{"SYSLOG_IDENTIFIER=postfix/smtpd", "SYSLOG_IDENTIFIER=postfix/submission/smtpd", "SYSLOG_IDENTIFIER=postfix/smtps/smtpd"}}
	dovecot = service{items: []string{"moat/dovecot"}, bf: "moat/dovecot-bf", all: "moat/dovecot-*", acqType: "syslog",
		journal: []string{"SYSLOG_IDENTIFIER=dovecot"}}
	exim   = service{items: []string{"moat/exim4"}, bf: "moat/exim-bf", all: "moat/exim-*", acqType: "exim4"}
	vsftpd = service{items: []string{"moat/vsftpd"}, bf: "moat/vsftpd-bf", all: "moat/vsftpd-*", acqType: "vsftpd",
		journal: []string{"SYSLOG_IDENTIFIER=vsftpd"}}
	proftpd = service{items: []string{"moat/proftpd"}, bf: "moat/proftpd-bf", all: "moat/proftpd-*", acqType: "syslog",
		journal: []string{"SYSLOG_IDENTIFIER=proftpd"}}
	mysql = service{items: []string{"moat/mysql"}, bf: "moat/mysql-bf", all: "moat/mysql-*", acqType: "mysql",
		journal: []string{"SYSLOG_IDENTIFIER=mariadbd", "SYSLOG_IDENTIFIER=mysqld"}}
	nginx = service{items: []string{"moat/nginx"}, all: "moat/http-*", acqType: "nginx",
		partial: "moat's HTTP scenarios (probing, sensitive files, bad user agents, path traversal) stand in for this filter; maxretry and findtime are not carried over"}
	apache = service{items: []string{"moat/apache2"}, all: "moat/http-*", acqType: "apache2",
		partial: "moat's HTTP scenarios (probing, sensitive files, bad user agents, path traversal) stand in for this filter; maxretry and findtime are not carried over"}
)

// services maps fail2ban filter names (filter.d/NAME.conf) to moat.
var services = map[string]service{
	"sshd":              sshd,
	"postfix":           postfix,
	"postfix-sasl":      postfix,
	"dovecot":           dovecot,
	"exim":              exim,
	"vsftpd":            vsftpd,
	"proftpd":           proftpd,
	"mysqld-auth":       mysql,
	"nginx-http-auth":   nginx,
	"nginx-botsearch":   nginx,
	"nginx-bad-request": nginx,
	"apache-auth":       apache,
	"apache-badbots":    apache,
	"apache-noscript":   apache,
	"apache-overflows":  apache,
	"apache-nohome":     apache,
	"apache-botsearch":  apache,
	"apache-shellshock": apache,
	"wordpress":         {items: []string{"moat/wordpress"}, bf: "moat/http-wordpress-bf", all: "moat/http-wordpress-bf", acqType: "nginx"},
	"wordpress-hard":    {items: []string{"moat/wordpress"}, bf: "moat/http-wordpress-bf", all: "moat/http-wordpress-bf", acqType: "nginx"},
	"wordpress-soft":    {items: []string{"moat/wordpress"}, bf: "moat/http-wordpress-bf", all: "moat/http-wordpress-bf", acqType: "nginx"},
	"nextcloud":         {items: []string{"moat/nextcloud"}, bf: "moat/nextcloud-bf", all: "moat/nextcloud-bf", acqType: "nextcloud"},
}

// Options tune Translate.
type Options struct {
	// OutDir is where the acquisition and profiles files will be
	// written, for the fragment to name; "" leaves them out.
	OutDir string
	// DB is fail2ban's database; "" skips the bans, and a missing file
	// is noted, not an error.
	DB  string
	Now time.Time
}

// Translate turns the enabled jails of c (and the active bans of
// opts.DB) into moat configuration.
func Translate(ctx context.Context, c *Config, opts Options) (*importer.Result, error) {
	r := &importer.Result{}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	type acq struct {
		typ     string
		paths   []string
		journal []string
		jails   []string
	}
	acqs := map[string]*acq{}
	var acqOrder []string
	tuned := map[string]string{} // scenario -> jail that tuned it
	var items []string
	allow := map[string]bool{}
	var allowOrder []string
	var escalate []Jail
	for _, j := range c.Enabled() {
		where := fmt.Sprintf("%s:%d: [%s]", j.File, j.Line, j.Name)
		svc, ok := services[j.Filter]
		if !ok {
			if j.Name == "recidive" || j.Filter == "recidive" {
				r.Notef(where, "recidive has no jail of its own in moat: the profiles' escalation (each earlier ban of an address lengthens the next) does its work; see bantime.increment")
			} else {
				r.Notef(where, "filter %s has no moat equivalent: the jail is not carried over", j.Filter)
			}
			continue
		}
		if svc.partial != "" {
			r.Notef(where, "filter %s: %s", j.Filter, svc.partial)
		}
		for _, it := range svc.items {
			if !slices.Contains(items, it) {
				items = append(items, it)
			}
		}
		for _, ip := range j.IgnoreIP {
			if !allow[ip] {
				allow[ip] = true
				allowOrder = append(allowOrder, ip)
			}
		}
		// Acquisition: the journal for backend systemd, else the log
		// files, one acquisition file per type and source.
		key, a := "", (*acq)(nil)
		switch {
		case j.Backend == "systemd" && len(svc.journal) > 0:
			key = "journal-" + svc.acqType + "-" + strings.Join(svc.journal, ",")
			if acqs[key] == nil {
				acqs[key] = &acq{typ: svc.acqType, journal: svc.journal}
				acqOrder = append(acqOrder, key)
			}
		case j.Backend == "systemd":
			r.Notef(where, "backend systemd: moat has no journal filter for %s; give its log file as logpath", j.Filter)
		case len(j.LogPaths) > 0:
			key = "file-" + svc.acqType
			if acqs[key] == nil {
				acqs[key] = &acq{typ: svc.acqType}
				acqOrder = append(acqOrder, key)
			}
			for _, p := range j.LogPaths {
				if !slices.Contains(acqs[key].paths, p) {
					acqs[key].paths = append(acqs[key].paths, p)
				}
			}
		default:
			r.Notef(where, "no logpath: nothing to read")
		}
		if a = acqs[key]; a != nil {
			a.jails = append(a.jails, j.Name)
		}

		if svc.bf != "" && j.MaxRetry > 0 && j.FindTime > 0 {
			if other, dup := tuned[svc.bf]; dup {
				r.Notef(where, "maxretry and findtime also tune %s, already set from jail %s: the first jail's values are kept", svc.bf, other)
			} else {
				tuned[svc.bf] = j.Name
				capacity := j.MaxRetry - 1
				r.Fragment.Scenarios = append(r.Fragment.Scenarios, config.ScenarioOverride{
					Name: svc.bf, Capacity: &capacity, LeakSpeed: duration(j.FindTime),
				})
			}
		}
		switch {
		case j.Increment.Enabled:
			escalate = append(escalate, j)
		case j.BanTime < 0:
			r.Notef(where, "bantime -1 (forever): moat's scenario durations are finite, set to 10 years")
			r.Fragment.Scenarios = append(r.Fragment.Scenarios, config.ScenarioOverride{Name: svc.all, Duration: "87600h"})
		case j.BanTime > 0:
			r.Fragment.Scenarios = append(r.Fragment.Scenarios, config.ScenarioOverride{Name: svc.all, Duration: duration(j.BanTime)})
		}
	}
	sort.Strings(items)
	if len(items) > 0 {
		r.Fragment.Hub = &importer.Hub{Items: items}
	} else {
		r.Notef(c.Dir, "no enabled jail has a moat equivalent: hub.items is left to its default (all shipped content)")
	}
	r.Fragment.Allowlist = allowlist(r, allowOrder)

	if len(acqs) > 0 {
		if opts.OutDir == "" {
			r.Notef("", "acquisition: %d file(s) left out; run with --out DIR to write them", len(acqs))
		} else {
			for _, k := range acqOrder {
				a := acqs[k]
				body := map[string]any{"labels": map[string]string{"type": a.typ}}
				name := "fail2ban-" + a.typ
				if a.journal != nil {
					body["source"] = "journalctl"
					body["journalctl_filter"] = a.journal
					name += "-journal"
				} else {
					body["source"] = "file"
					body["filenames"] = a.paths
				}
				b, err := yaml.Marshal(body)
				if err != nil {
					return nil, err
				}
				head := "# From fail2ban jail(s) " + strings.Join(a.jails, ", ") + ".\n"
				r.Files = append(r.Files, importer.File{Name: filepath.Join("acquis.d", name+".yaml"), Data: append([]byte(head), b...)})
			}
			r.Fragment.Acquisition = &importer.Acquisition{Dir: filepath.Join(opts.OutDir, "acquis.d")}
		}
	}
	if err := escalation(r, escalate, opts.OutDir); err != nil {
		return nil, err
	}
	if opts.DB != "" {
		if err := decisions(ctx, r, opts.DB, opts.Now); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// duration writes a fail2ban time as moat reads it.
func duration(d time.Duration) string {
	s := int64(math.Ceil(d.Seconds()))
	if s < 1 {
		s = 1
	}
	return importer.FormatDuration(s)
}

// allowlist turns ignoreip entries into allowlist entries: ranges in
// their canonical form; loopback is left out (moat never bans it) and
// hostnames are kept (moat resolves them).
func allowlist(r *importer.Result, in []string) []importer.AllowEntry {
	var out []importer.AllowEntry
	for _, e := range in {
		v, ok, why := importer.AllowValue(e)
		if why != "" {
			r.Notef("ignoreip", "%s: left out", why)
		}
		if ok && !slices.Contains(out, importer.AllowEntry{Value: v}) {
			out = append(out, importer.AllowEntry{Value: v})
		}
	}
	return out
}

// escalation writes profiles.yaml for jails with bantime.increment: a
// profile per jail, with fail2ban's formula as duration_expr, before a
// copy of moat's default profiles for everything else.
func escalation(r *importer.Result, jails []Jail, outDir string) error {
	if len(jails) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString("# Alert -> decision policy imported from fail2ban's bantime.increment:\n")
	b.WriteString("# each earlier decision on the address multiplies the ban time.\n")
	for _, j := range jails {
		where := fmt.Sprintf("%s:%d: [%s]", j.File, j.Line, j.Name)
		svc := services[j.Filter]
		base := j.BanTime
		if base <= 0 {
			r.Notef(where, "bantime.increment with bantime %v: no escalation", base)
			continue
		}
		if j.Increment.Formula != "" {
			r.Notef(where, "bantime.formula %q: moat escalates with fail2ban's default formula instead", j.Increment.Formula)
		}
		secs := int64(math.Ceil(base.Seconds()))
		count := "GetDecisionsCount(Alert.GetValue())"
		var expr string
		if m := j.Increment.Multipliers; len(m) > 0 {
			parts := make([]string, len(m))
			for i, x := range m {
				parts[i] = fmt.Sprint(x)
			}
			expr = fmt.Sprintf("%d * [%s][min(%s, %d)]", secs, strings.Join(parts, ", "), count, len(m)-1)
		} else {
			expr = fmt.Sprintf("int(%d * %g * 2 ** min(%s, 20))", secs, j.Increment.Factor, count)
		}
		if j.Increment.MaxTime > 0 {
			expr = fmt.Sprintf("min(%s, %d)", expr, int64(j.Increment.MaxTime.Seconds()))
		}
		filter := fmt.Sprintf("Alert.Remediation == true && Alert.GetScope() == \"Ip\" && Alert.GetScenario() matches %q",
			"^"+strings.ReplaceAll(regexpQuote(svc.all), `\*`, ".*")+"$")
		fmt.Fprintf(&b, "---\nname: fail2ban_%s\nfilters:\n  - %s\ndecisions:\n  - type: ban\n    duration: %s\nduration_expr: \"Sprintf('%%ds', %s)\"\non_success: break\n",
			sanitize(j.Name), yamlQuote(filter), duration(base), expr)
	}
	b.WriteString("---\nname: default_ip_remediation\nfilters:\n  - Alert.Remediation == true && Alert.GetScope() == \"Ip\"\ndecisions:\n  - type: ban\n    duration: 4h\nduration_expr: \"Sprintf('%dh', 4 * int(2 ** min(GetDecisionsCount(Alert.GetValue()), 5)))\"\non_success: break\n")
	b.WriteString("---\nname: default_range_remediation\nfilters:\n  - Alert.Remediation == true && Alert.GetScope() == \"Range\"\ndecisions:\n  - type: ban\n    duration: 4h\non_success: break\n")
	if outDir == "" {
		r.Notef("", "bantime.increment: the escalation profiles are left out; run with --out DIR to write them")
		return nil
	}
	r.Files = append(r.Files, importer.File{Name: "profiles.yaml", Data: []byte(b.String())})
	r.Fragment.Profiles = filepath.Join(outDir, "profiles.yaml")
	return nil
}

func regexpQuote(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`\.+*?()|[]{}^$`, c) {
			b.WriteRune('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

func yamlQuote(s string) string {
	b, _ := yaml.Marshal(s)
	return strings.TrimSuffix(string(b), "\n")
}

// decisions reads fail2ban's active bans into decisions; a database that
// does not exist is noted (fail2ban never ran), any other failure is an
// error.
func decisions(ctx context.Context, r *importer.Result, db string, now time.Time) error {
	if _, err := os.Stat(db); errors.Is(err, os.ErrNotExist) {
		r.Notef(db, "no fail2ban database: no active bans carried over")
		return nil
	}
	bans, skipped, err := ReadBans(ctx, db, now)
	if err != nil {
		return err
	}
	for _, s := range skipped {
		r.Notef(db, "%s: left out", s)
	}
	for _, b := range bans {
		d := importer.Decision{
			Value:    b.IP.String(),
			Reason:   "fail2ban jail " + b.Jail,
			Scenario: "fail2ban/" + b.Jail,
			Duration: "forever",
		}
		if !b.Forever() {
			d.Duration = fmt.Sprintf("%ds", int64(math.Ceil(b.Until.Sub(now).Seconds())))
		}
		r.Decisions = append(r.Decisions, d)
	}
	return nil
}
