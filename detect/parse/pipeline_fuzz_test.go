package parse

import (
	"bufio"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/moatsec/moat/detect"
)

// syslogSeeds are the syslog lines detect/grok fuzzes its syslog fast
// path with: every shape the fast path tells apart.
func syslogSeeds(tb testing.TB) []string {
	tb.Helper()
	f, err := os.Open(filepath.Join("..", "grok", "testdata", "syslog-seeds.txt"))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		s, err := strconv.Unquote(sc.Text())
		if err != nil {
			tb.Fatalf("syslog seed %q: %v", sc.Text(), err)
		}
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// hubPipeline loads syslog, sshd, nginx and http parsers from the shared
// hub snapshot.
func hubPipeline(t testing.TB) *Pipeline {
	root := sharedHub(t)
	var files []File
	for _, f := range []string{
		"s00-raw/crowdsecurity/syslog-logs.yaml",
		"s01-parse/crowdsecurity/sshd-logs.yaml",
		"s01-parse/crowdsecurity/nginx-logs.yaml",
		"s02-enrich/crowdsecurity/dateparse-enrich.yaml",
		"s02-enrich/crowdsecurity/http-logs.yaml",
	} {
		files = append(files, File{Path: filepath.Join(root, "hub/parsers", f), Stage: strings.Split(f, "/")[0]})
	}
	p, err := Load(files, Options{PatternDir: filepath.Join(root, "patterns"), DataDir: filepath.Join(root, "data"), Year: 2026, LogTime: true})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// No line, however malformed, panics the pipeline; a line parsed as sshd
// carries a source IP that is a valid address written in the line, and an
// unparsed line leaves Process false.
func FuzzPipeline(f *testing.F) {
	for _, s := range syslogSeeds(f) {
		f.Add(s, "syslog")
	}
	f.Add(`198.18.241.36 - - [01/Mar/2026:00:00:00 +0000] "GET /blog/post-21 HTTP/1.1" 200 32774 "-" "curl/8"`, "nginx")
	f.Add(`2001:db8::1 - - [01/Mar/2026:00:00:00 +0000] "GET /../../etc/passwd HTTP/1.1" 404 1 "-" "-"`, "nginx")
	f.Add("Mar  1 00:00:00 web1 sshd[1]: Failed password for invalid user admin from 2001:db8::7 port 22 ssh2", "syslog")
	p := hubPipeline(f)
	f.Fuzz(func(t *testing.T, line, typ string) {
		evt := detect.NewEvent(detect.Line{Raw: line, Labels: map[string]string{"type": typ}})
		ok := p.Parse(evt)
		if ok != evt.Process {
			t.Fatalf("Parse returned %v, Process %v", ok, evt.Process)
		}
		if !ok || evt.Meta["service"] != "ssh" || evt.Meta["source_ip"] == "" {
			return
		}
		ip := evt.Meta["source_ip"]
		if _, err := netip.ParseAddr(ip); err != nil {
			t.Fatalf("%q: source_ip %q is not an address: %v", line, ip, err)
		}
		if !strings.Contains(line, ip) {
			t.Fatalf("%q: source_ip %q is not in the line", line, ip)
		}
	})
}
