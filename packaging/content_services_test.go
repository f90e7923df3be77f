package packaging_test

import (
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/internal/model"
)

// after returns the text following the last (or first) occurrence of
// marker, up to the first byte in stop.
func after(line, marker, stop string, last bool) string {
	i := strings.Index(line, marker)
	if last {
		i = strings.LastIndex(line, marker)
	}
	if i < 0 {
		return ""
	}
	s := line[i+len(marker):]
	if j := strings.IndexAny(s, stop); j >= 0 {
		s = s[:j]
	}
	return s
}

// serviceSource finds a sample line's client address without the
// parsers, from where each program writes it, so the test does not check
// the patterns against themselves.
var serviceSource = map[string]func(line string) string{
	"postfix": func(l string) string { return after(after(l, "]: warning: ", "", false), "[", "]", false) },
	"dovecot": func(l string) string {
		if strings.Contains(l, "-login: ") {
			return after(l, " rip=", ",", true)
		}
		s := l[:strings.LastIndex(l, ",<")]
		return s[strings.LastIndex(s, ",")+1:]
	},
	"exim4": func(l string) string {
		s := after(l, " authenticator failed for ", "", false)
		if i := strings.Index(s, ") ["); i >= 0 {
			s = s[i+1:]
		}
		return after(s, "[", "]", false)
	},
	"vsftpd": func(l string) string {
		return strings.TrimPrefix(after(l, `FAIL LOGIN: Client "`, `"`, true), "::ffff:")
	},
	"proftpd":   func(l string) string { return after(after(l, "]: ", "", false), "[", "]", false) },
	"mysql":     func(l string) string { return after(l, "'@'", "'", true) },
	"wordpress": func(l string) string { return strings.Fields(l)[0] },
	"nextcloud": func(l string) string { return after(l, `"remoteAddr":"`, `"`, false) },
}

// TestShippedServiceContent runs the mail, FTP, database and web login
// samples through the shipped content as TestShippedContent does the
// others: every line parses into an event of the service's log type with
// the client address, attack samples (user names, hosts and agents
// carrying other addresses among them) overflow the service's brute-force
// scenario for exactly their three sources, and benign samples (a few
// failures, successful logins) overflow nothing.
func TestShippedServiceContent(t *testing.T) {
	cases := []struct {
		service, logType, scenario, prefix string
	}{
		{"postfix", "postfix_failed-auth", "moat/postfix-bf", "198.18.80."},
		{"dovecot", "dovecot_failed-auth", "moat/dovecot-bf", "198.18.81."},
		{"exim4", "exim_failed-auth", "moat/exim-bf", "198.18.82."},
		{"vsftpd", "ftp_failed-auth", "moat/vsftpd-bf", "198.18.83."},
		{"proftpd", "ftp_failed-auth", "moat/proftpd-bf", "198.18.84."},
		{"mysql", "mysql_failed-auth", "moat/mysql-bf", "198.18.85."},
		{"wordpress", "http_access-log", "moat/http-wordpress-bf", "198.18.86."},
		{"nextcloud", "nextcloud_failed-auth", "moat/nextcloud-bf", "198.18.87."},
	}
	for _, tc := range cases {
		for _, kind := range []string{"attack", "benign"} {
			file := tc.service + "-" + kind + ".log"
			t.Run(file, func(t *testing.T) {
				e := newEngine(t)
				var alerts []model.Alert
				lines := readLines(t, filepath.Join("testdata/content", file))
				for i, raw := range lines {
					evt, ovs := e.ProcessTrace(detect.Line{
						Raw: raw, Src: file, Module: "file", Process: true,
						Labels: map[string]string{"type": sampleTypes[tc.service]},
						ReadAt: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
					}, nil)
					if evt == nil || !evt.Process {
						t.Fatalf("line %d not parsed: %s", i+1, raw)
					}
					want := serviceSource[tc.service](raw)
					if _, err := netip.ParseAddr(want); err != nil {
						t.Fatalf("line %d: the test finds no address (%q) in %s", i+1, want, raw)
					}
					if got := evt.Meta["source_ip"]; got != want {
						t.Errorf("line %d: source_ip %q, want %q", i+1, got, want)
					}
					if got := evt.Meta["log_type"]; got != tc.logType {
						t.Errorf("line %d: log_type %q, want %q", i+1, got, tc.logType)
					}
					if evt.Time.Year() != 2026 || evt.Time.Month() != time.March {
						t.Errorf("line %d: event time %v, want the line's (March 2026)", i+1, evt.Time)
					}
					for _, o := range ovs {
						alerts = append(alerts, o.Alerts...)
					}
				}
				alerts = append(alerts, e.Flush()...)
				var want []string
				if kind == "attack" {
					n := strings.TrimSuffix(tc.prefix, ".")
					v6 := "2001:db8:" + n[strings.LastIndex(n, ".")+1:] + "::3"
					want = sorted([]string{tc.scenario + " " + tc.prefix + "1", tc.scenario + " " + tc.prefix + "2", tc.scenario + " " + v6})
				}
				if got := alertKeys(alerts); !slices.Equal(got, want) {
					t.Errorf("overflows:\n got %q\nwant %q", got, want)
				}
				for _, a := range alerts {
					if !a.Remediation || a.Scope != model.ScopeIP || !a.Source.IsValid() {
						t.Errorf("%s on %s: remediation %v scope %q source %v; want a ban on an address", a.Scenario, a.Value, a.Remediation, a.Scope, a.Source)
					}
				}
			})
		}
	}
}
