package allowlist

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func TestExpiry(t *testing.T) {
	c := &clock{t: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	var expired []string
	runtime := []Entry{{Value: "198.18.2.0/24", Comment: "vendor", Expires: c.now().Add(time.Hour), Source: SourceRuntime}}
	m := New(Config{
		Static: []Entry{
			{Value: "198.18.1.1", Comment: "office", Source: SourceConfig},
			{Value: "198.18.1.2", Comment: "contractor", Expires: c.now().Add(24 * time.Hour), Source: SourceConfig},
		},
		Runtime: func() []Entry { return runtime },
		Expired: func(_ context.Context, e Entry) { expired = append(expired, e.Value) },
		Now:     c.now,
	})
	ctx := context.Background()
	next := m.Step(ctx)
	if want := c.now().Add(2 * time.Second); !next.Equal(want) {
		t.Errorf("next step at %s, want the file check at %s", next, want)
	}
	for _, c := range []struct {
		p    string
		want bool
	}{{"198.18.1.1/32", true}, {"198.18.1.2/32", true}, {"198.18.2.9/32", true}, {"198.18.0.0/16", true}, {"198.18.3.1/32", false}} {
		if got := m.Protect(pfx(c.p)) != nil; got != c.want {
			t.Errorf("before expiry: %s protected %v, want %v", c.p, got, c.want)
		}
	}

	// An hour on, the runtime entry is gone from Check at once and handed
	// to Expired at the next step.
	c.add(time.Hour)
	if m.Protect(pfx("198.18.2.9/32")) != nil {
		t.Error("an expired runtime entry still protects")
	}
	m.Step(ctx)
	if d := cmp.Diff([]string{"198.18.2.0/24"}, expired); d != "" {
		t.Errorf("expired (-want +got):\n%s", d)
	}
	c.add(23 * time.Hour)
	if m.Protect(pfx("198.18.1.2/32")) != nil || m.Protect(pfx("198.18.1.1/32")) == nil {
		t.Error("after a day: the contractor's entry still protects, or the office's no longer does")
	}
	if got, want := m.Prefixes(), []netip.Prefix{pfx("198.18.1.1/32")}; !cmp.Equal(got, want, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })) {
		t.Errorf("Prefixes %v, want %v", got, want)
	}
}

func TestProtectedError(t *testing.T) {
	m := New(Config{Static: []Entry{
		{Value: "192.0.2.0/24", Comment: "office", Source: SourceConfig, File: "/etc/moat/moat.yaml", Line: 12},
	}})
	m.Step(context.Background())
	err := m.Protect(pfx("192.0.2.7/32"))
	if !errors.Is(err, ErrProtected) {
		t.Fatalf("Protect = %v, want ErrProtected", err)
	}
	if got, want := err.Error(), "192.0.2.7/32 is allowlisted by 192.0.2.0/24, /etc/moat/moat.yaml:12"; got != want {
		t.Errorf("error %q, want %q", got, want)
	}
}

func TestParseFileComments(t *testing.T) {
	data := "# office and home\n\n198.18.0.1   # the office router\n2001:db8::/48\nhome.example.org#admin\n300.1.2.3\ntwo values\n"
	es, errs := ParseFile("/etc/moat/allow.d/a.txt", []byte(data), false)
	want := []Entry{
		{Value: "198.18.0.1", Comment: "the office router", Source: SourceFile, File: "/etc/moat/allow.d/a.txt", Line: 3},
		{Value: "2001:db8::/48", Source: SourceFile, File: "/etc/moat/allow.d/a.txt", Line: 4},
		{Value: "home.example.org", Comment: "admin", Source: SourceFile, File: "/etc/moat/allow.d/a.txt", Line: 5},
	}
	if d := cmp.Diff(want, es); d != "" {
		t.Errorf("entries (-want +got):\n%s", d)
	}
	var msgs []string
	for _, e := range errs {
		msgs = append(msgs, e.Error())
	}
	wantErrs := []string{
		`/etc/moat/allow.d/a.txt:6: "300.1.2.3": want an IP address, CIDR range, hostname, country:CC or as:N`,
		`/etc/moat/allow.d/a.txt:7: want one address, range, hostname, country:CC or as:N a line (then # comment)`,
	}
	if d := cmp.Diff(wantErrs, msgs); d != "" {
		t.Errorf("errors (-want +got):\n%s", d)
	}
	if _, errs := ParseFile("f", []byte("0.0.0.0/0\n"), false); len(errs) != 1 {
		t.Errorf("a /0 in an include file: %v, want refused", errs)
	}
}

// Include files are reread when they change, appear or go away, and the
// caller hears of the newly protected ranges.
func TestIncludeReload(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.txt"), filepath.Join(dir, "b.txt")
	write := func(name, s string) {
		t.Helper()
		if err := os.WriteFile(name, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		// A rewrite within the file system's time granularity must still
		// be seen: the size changes in every step below, but make the
		// time differ too.
		mt := time.Now().Add(time.Duration(len(s)) * time.Second)
		if err := os.Chtimes(name, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	write(a, "198.18.0.1 # first\n")
	var reports []error
	m := New(Config{Files: []string{filepath.Join(dir, "*.txt")}, Report: func(err error) { reports = append(reports, err) }})
	ctx := context.Background()
	step := func() []netip.Prefix { m.Step(ctx); return m.Prefixes() }
	eq := cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })

	if got := step(); !cmp.Equal(got, []netip.Prefix{pfx("198.18.0.1/32")}, eq) {
		t.Errorf("first read: %v", got)
	}
	write(a, "198.18.0.2 # moved\n# 198.18.0.1\n")
	write(b, "198.18.9.0/24\nnot an address!\n")
	if got := step(); !cmp.Equal(got, []netip.Prefix{pfx("198.18.0.2/32"), pfx("198.18.9.0/24")}, eq) {
		t.Errorf("after the rewrite and a new file: %v", got)
	}
	if len(reports) != 1 || m.Stats().FileErrors != 1 {
		t.Errorf("reports %v, stats %+v: want the bad line of b.txt once", reports, m.Stats())
	}
	ms := m.Check(pfx("198.18.0.2/32"))
	if len(ms) != 1 || ms[0].Comment != "moved" || ms[0].Where() != a+":1" {
		t.Errorf("check: %+v", ms)
	}
	if err := os.Remove(b); err != nil {
		t.Fatal(err)
	}
	if got := step(); !cmp.Equal(got, []netip.Prefix{pfx("198.18.0.2/32")}, eq) {
		t.Errorf("after removing b.txt: %v", got)
	}
	if len(reports) != 1 {
		t.Errorf("an unchanged file was reread: %v", reports)
	}
}

func TestRunReportsAdded(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "allow.txt")
	if err := os.WriteFile(f, []byte("198.18.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	changes := make(chan []netip.Prefix, 16)
	m := New(Config{
		Static:  []Entry{{Value: "198.18.5.0/24", Source: SourceConfig}},
		Files:   []string{f},
		Every:   50 * time.Millisecond,
		Changed: func(_ context.Context, added, _ []netip.Prefix) { changes <- added },
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	if got := <-changes; len(got) != 2 {
		t.Errorf("first change %v, want every protected range", got)
	}
	if err := os.WriteFile(f, []byte("198.18.0.1\n198.18.0.3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-changes:
		if len(got) != 1 || got[0] != pfx("198.18.0.3/32") {
			t.Errorf("second change %v, want only the new address", got)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the new line was never seen")
	}
}

// BenchmarkProtect is the cost the allowlist adds to each ban: a check
// against 1,000 entries.
func BenchmarkProtect(b *testing.B) {
	var static []Entry
	for i := range 1000 {
		static = append(static, Entry{Value: netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}).String(), Source: SourceConfig})
	}
	m := New(Config{Static: static})
	m.Step(context.Background())
	p := pfx("198.19.0.1/32")
	b.ResetTimer()
	for b.Loop() {
		if m.Protect(p) != nil {
			b.Fatal("protected")
		}
	}
}
