package packaging_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/detect/engine"
	"github.com/moatsec/moat/detect/hub"
	"github.com/moatsec/moat/detect/inject"
	"github.com/moatsec/moat/internal/model"
	"github.com/moatsec/moat/internal/testutil"

	"go.yaml.in/yaml/v3"
)

// newEngine loads every shipped parser, scenario and pattern, as the daemon
// does with the default `hub.items: []`.
func newEngine(t testing.TB) *engine.Engine {
	t.Helper()
	e, err := engine.New(engine.Config{
		HubDir:     "hub",
		PatternDir: "patterns",
		DataDir:    t.TempDir(),
		Replay:     true,
		Year:       2026,
	})
	if err != nil {
		t.Fatalf("load shipped content: %v", err)
	}
	return e
}

// sourceOf finds a line's client address without the parsers, so the test
// does not check the grok patterns against themselves: the first field of
// an access log line (after Apache's optional "vhost:port"), SRC= of a
// kernel firewall line, or the address sshd writes: the last on its line
// but for a failed negotiation, where the client's offer follows it.
func sourceOf(t *testing.T, line string) string {
	t.Helper()
	if i := strings.Index(line, " SRC="); i >= 0 {
		return strings.Fields(line[i+len(" SRC="):])[0]
	}
	if strings.Contains(line, " sshd[") || strings.Contains(line, " sshd-session[") {
		const negotiate = "Unable to negotiate with "
		if i := strings.Index(line, negotiate); i >= 0 {
			return strings.Fields(line[i+len(negotiate):])[0]
		}
		f := strings.Fields(line)
		for i := len(f) - 1; i >= 0; i-- {
			s := strings.TrimSuffix(strings.TrimPrefix(f[i], "rhost="), ":")
			if _, err := netip.ParseAddr(s); err == nil {
				return s
			}
		}
	}
	f := strings.Fields(line)
	for _, s := range f[:2] {
		if _, err := netip.ParseAddr(s); err == nil {
			return s
		}
	}
	t.Fatalf("no client address in %q", line)
	return ""
}

func readLines(t testing.TB, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := sc.Text(); l != "" {
			out = append(out, l)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestShippedContent runs the sample logs in testdata/content through the
// shipped hub content: every line must parse into an event of the right
// log type with the right source address, attack samples must overflow
// exactly the expected scenarios for exactly the expected sources, and
// benign samples must overflow nothing.
func TestShippedContent(t *testing.T) {
	cases := []struct {
		file    string
		typ     string // acquisition type label
		logType string // evt.Meta.log_type every line must get
		want    []string
	}{
		{"nginx-attack.log", "nginx", "http_access-log", []string{
			"moat/http-probing 198.18.10.1",
			"moat/http-sensitive-files 198.18.10.2",
			"moat/http-bad-user-agent 198.18.10.3",
			"moat/http-path-traversal 2001:db8:10::4",
		}},
		{"nginx-benign.log", "nginx", "http_access-log", nil},
		{"apache2-attack.log", "apache2", "http_access-log", []string{
			"moat/http-probing 198.18.30.1",
			"moat/http-bad-user-agent 198.18.30.2",
		}},
		{"apache2-benign.log", "apache2", "http_access-log", nil},
		{"kernel-attack.log", "syslog", "firewall-log", []string{
			"moat/portscan 198.18.50.1",
			"moat/portscan 2001:db8:50::1",
		}},
		{"kernel-benign.log", "syslog", "firewall-log", nil},
		// User names carry address-shaped text (" from 198.51.100.99 port
		// 1", IPv6 too): the clients that sent them are banned, the
		// addresses they named never are.
		{"sshd-attack.log", "syslog", "ssh_failed-auth", []string{
			"moat/ssh-bf 198.18.70.1",
			"moat/ssh-bf 198.18.70.2",
			"moat/ssh-bf 2001:db8:70::3",
		}},
		{"sshd-benign.log", "syslog", "ssh_failed-auth", nil},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			e := newEngine(t)
			var alerts []model.Alert
			for i, raw := range readLines(t, filepath.Join("testdata/content", tc.file)) {
				l := detect.Line{
					Raw: raw, Src: tc.file, Module: "file", Process: true,
					Labels: map[string]string{"type": tc.typ},
					ReadAt: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
				}
				evt, ovs := e.ProcessTrace(l, nil)
				if evt == nil || !evt.Process {
					t.Fatalf("line %d not parsed: %s", i+1, raw)
				}
				if got, want := evt.Meta["source_ip"], sourceOf(t, raw); got != want {
					t.Errorf("line %d: source_ip %q, want %q", i+1, got, want)
				}
				if got := evt.Meta["log_type"]; got != tc.logType {
					t.Errorf("line %d: log_type %q, want %q", i+1, got, tc.logType)
				}
				for _, o := range ovs {
					alerts = append(alerts, o.Alerts...)
				}
			}
			alerts = append(alerts, e.Flush()...)
			got := alertKeys(alerts)
			if !slices.Equal(got, sorted(tc.want)) {
				t.Errorf("overflows:\n got %q\nwant %q", got, sorted(tc.want))
			}
			for _, a := range alerts {
				if !a.Remediation || a.Scope != model.ScopeIP || !a.Source.IsValid() {
					t.Errorf("%s on %s: remediation %v scope %q source %v; want a ban on an address", a.Scenario, a.Value, a.Remediation, a.Scope, a.Source)
				}
			}
		})
	}
}

func alertKeys(alerts []model.Alert) []string {
	var out []string
	for _, a := range alerts {
		k := a.Scenario + " " + a.Value
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return sorted(out)
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestShippedContentCorpus replays a generated nginx access log (scanners,
// attack tool user agents, browsers, a crawler) and compares the sources
// the shipped HTTP scenarios flag with the generator's ground truth: every
// source to ban is caught and no benign one is.
func TestShippedContentCorpus(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIP (-short): generates and replays a 5k-line nginx corpus")
	}
	gen := testutil.Shared(t, "corpus/gen-corpus")
	dir := t.TempDir()
	if b, err := exec.Command(gen, "--nginx-lines", "5k", "--ssh-lines", "0", "--seed", "1", dir).CombinedOutput(); err != nil {
		t.Fatalf("gen-corpus: %v\n%s", err, b)
	}
	var meta struct {
		Start float64 `json:"start_epoch"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		t.Fatal(err)
	}
	readAt := time.Unix(int64(meta.Start), 0)

	want := map[string]bool{} // source -> expected ban
	for i, row := range readLines(t, filepath.Join(dir, "truth.tsv")) {
		f := strings.Split(row, "\t")
		if i == 0 || len(f) < 4 || f[0] != "access.log" {
			continue
		}
		want[f[1]] = f[3] == "yes"
	}

	e := newEngine(t)
	banned := map[string]string{}
	lines := readLines(t, filepath.Join(dir, "access.log"))
	for _, raw := range lines {
		alerts := e.Process(detect.Line{
			Raw: raw, Src: "access.log", Module: "file", Process: true,
			Labels: map[string]string{"type": "nginx"}, ReadAt: readAt,
		})
		for _, a := range alerts {
			banned[a.Value] = a.Scenario
		}
	}
	for _, a := range e.Flush() {
		banned[a.Value] = a.Scenario
	}
	st := e.Stats()
	if st.Parsed != uint64(len(lines)) {
		t.Errorf("parsed %d of %d lines", st.Parsed, len(lines))
	}

	var caught, toBan, falseBans int
	for ip, ban := range want {
		if ban {
			toBan++
			if _, ok := banned[ip]; ok {
				caught++
			} else {
				t.Errorf("%s not banned", ip)
			}
		} else if s, ok := banned[ip]; ok {
			falseBans++
			t.Errorf("benign %s banned by %s", ip, s)
		}
	}
	for ip := range banned {
		if _, ok := want[ip]; !ok {
			t.Errorf("%s banned but not in the ground truth", ip)
		}
	}
	if toBan == 0 {
		t.Fatal("ground truth names no source to ban")
	}
	t.Logf("%d lines: %d/%d sources to ban caught, %d benign sources banned", len(lines), caught, toBan, falseBans)
}

// sampleTypes gives the acquisition type of testdata/content/NAME-*.log.
var sampleTypes = map[string]string{"nginx": "nginx", "apache2": "apache2", "kernel": "syslog", "sshd": "syslog", "postfix": "syslog", "dovecot": "syslog", "exim4": "exim4", "vsftpd": "vsftpd", "proftpd": "syslog", "mysql": "mysql", "wordpress": "nginx", "nextcloud": "nextcloud"}

// TestShippedParsersResistInjection puts address-shaped text into every
// attacker-controlled field of every sample line (user names, paths, user
// agents, referers, vhosts) and fails on any shipped parser that then
// extracts the injected address instead of the client's. Every shipped
// s01 parser must have been attacked, so a parser without samples fails
// too.
func TestShippedParsersResistInjection(t *testing.T) {
	h, err := hub.Open("hub")
	if err != nil {
		t.Fatal(err)
	}
	sel, err := h.Select(nil)
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("testdata/content/*.log")
	if err != nil {
		t.Fatal(err)
	}
	var targets []inject.Target
	for _, f := range files {
		prefix, _, _ := strings.Cut(filepath.Base(f), "-")
		typ, ok := sampleTypes[prefix]
		if !ok {
			t.Fatalf("%s: no acquisition type for samples named %s-*", f, prefix)
		}
		lines, err := inject.ReadLines(f)
		if err != nil {
			t.Fatal(err)
		}
		targets = append(targets, inject.Target{
			Name: f, Parsers: sel.Parsers, Labels: map[string]string{"type": typ}, Lines: lines,
			// Interface names: the kernel writes them, no packet
			// chooses them (and they hold no space).
			ProgramFields: []string{"fw_in", "fw_out"},
		})
	}
	rep, err := inject.Scan(context.Background(), targets, inject.Options{PatternDir: "patterns", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range rep.Skipped {
		t.Errorf("not scanned: %s", s)
	}
	for _, f := range rep.Findings {
		t.Errorf("injectable: %s", f)
	}
	for _, p := range h.Items(hub.Parsers) {
		if p.Stage != "s01-parse" {
			continue
		}
		name := parserName(t, p.Path)
		if rep.Attacked[name] == 0 {
			t.Errorf("%s was not attacked: add sample lines it parses to testdata/content", name)
		}
	}
	t.Logf("%d sample lines, %d formats, %d attacks in %v; attacks per parser %v", rep.Lines, rep.Formats, rep.Attacks, rep.Elapsed.Round(time.Millisecond), rep.Attacked)
}

func parserName(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Name string `yaml:"name"`
	}
	if err := yaml.Unmarshal(b, &p); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return p.Name
}
