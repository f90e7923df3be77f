package feed

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/enforce/profile"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
	"github.com/moatsec/moat/packaging"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
		skipped  int
		err      error
	}{
		{
			name: "spamhaus drop style",
			in:   "; Spamhaus DROP List\n198.51.100.0/24 ; SBL1\n203.0.113.7\n\n# comment\n2001:db8::/32\n",
			want: []string{"198.51.100.0/24", "203.0.113.7/32", "2001:db8::/32"},
		},
		{
			name: "duplicates and canonical forms",
			in:   "198.51.100.9/24\n198.51.100.0/24\n::ffff:203.0.113.7\n203.0.113.7\n",
			want: []string{"198.51.100.0/24", "203.0.113.7/32"},
		},
		{name: "bad lines skipped", in: "203.0.113.7\nnot-an-address\nfe80::1%eth0\n", want: []string{"203.0.113.7/32"}, skipped: 2},
		{name: "empty", in: "# nothing listed today\n"},
		{name: "an error page", in: "<html>\n<body>Service Unavailable</body>\n</html>\n", skipped: 3, err: ErrGarbage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, skipped, err := Parse(strings.NewReader(tc.in), 1<<20)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			var s []string
			for _, p := range got {
				s = append(s, p.String())
			}
			if !slices.Equal(s, tc.want) || skipped != tc.skipped {
				t.Fatalf("Parse = %v, %d skipped; want %v, %d", s, skipped, tc.want, tc.skipped)
			}
		})
	}
}

func TestParseTooLarge(t *testing.T) {
	in := strings.Repeat("203.0.113.7\n", 100)
	if _, _, err := Parse(strings.NewReader(in), int64(len(in))); err != nil {
		t.Fatalf("a list of exactly max bytes: %v", err)
	}
	if _, _, err := Parse(strings.NewReader(in+"203.0.113.8\n"), int64(len(in))); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("a list over max bytes: err = %v, want ErrTooLarge", err)
	}
}

type fakeEnforcer struct {
	mu   sync.Mutex
	held map[int64]model.Decision
}

func (f *fakeEnforcer) Apply(_ context.Context, add, remove []model.Decision) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range add {
		f.held[d.ID] = d
	}
	for _, d := range remove {
		delete(f.held, d.ID)
	}
	return nil
}

// kernel returns the values the enforcer holds.
func (f *fakeEnforcer) kernel() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, d := range f.held {
		out = append(out, model.ValueString(d.Value))
	}
	slices.Sort(out)
	return out
}

// allowed is the allowlist of the test service.
var allowed = netip.MustParsePrefix("198.18.250.0/24")

func newService(t testing.TB) (*decision.Service, *fakeEnforcer) {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), store.FileName), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ps, err := profile.Parse("profiles.yaml", packaging.DefaultProfiles)
	if err != nil {
		t.Fatal(err)
	}
	enf := &fakeEnforcer{held: map[int64]model.Decision{}}
	svc, err := decision.New(st, ps, enf, allowed)
	if err != nil {
		t.Fatal(err)
	}
	return svc, enf
}

// active returns the feed's active decisions by value.
func active(t *testing.T, svc *decision.Service, name string) map[string]model.Decision {
	t.Helper()
	recs, err := svc.List(context.Background(), store.Filter{Origin: "list"})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]model.Decision{}
	for _, r := range recs {
		if r.Scenario == name {
			out[model.ValueString(r.Value)] = r.Decision
		}
	}
	return out
}

func keys(m map[string]model.Decision) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// listServer serves a list that the test changes, and can be made to fail.
type listServer struct {
	mu   sync.Mutex
	body string
	code int
}

func (l *listServer) set(code int, body string) {
	l.mu.Lock()
	l.code, l.body = code, body
	l.mu.Unlock()
}

func (l *listServer) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w.WriteHeader(l.code)
	fmt.Fprint(w, l.body)
}

// A URL feed: entries become decisions of origin list named after the
// feed, an allowlisted one is skipped, a dropped one is deleted, a failed
// pull changes nothing and is counted.
func TestURLFeed(t *testing.T) {
	svc, enf := newService(t)
	ls := &listServer{code: http.StatusOK, body: "203.0.113.1\n203.0.113.2\n198.18.250.9\n198.51.100.0/24 ; a range\n"}
	srv := httptest.NewServer(ls)
	t.Cleanup(srv.Close)
	now := time.Now()
	f, err := New(Config{Name: "partner", URL: srv.URL + "/list.txt", Interval: time.Hour, Duration: 24 * time.Hour, MaxEntries: 100, MaxBytes: 1 << 20, Now: func() time.Time { return now }}, svc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	res, err := f.Pull(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"198.51.100.0/24", "203.0.113.1", "203.0.113.2"}
	got := active(t, svc, "partner")
	if !slices.Equal(keys(got), want) || res.Added != 3 {
		t.Fatalf("after the first pull: %v (added %d), want %v", keys(got), res.Added, want)
	}
	for v, d := range got {
		if d.Origin != model.OriginList || d.Type != "ban" || !d.Until.Equal(now.Add(24*time.Hour)) {
			t.Errorf("%s: %+v, want a 24h ban of origin list", v, d)
		}
	}
	if k := enf.kernel(); !slices.Equal(k, want) {
		t.Errorf("kernel holds %v, want %v", k, want)
	}
	if st := f.Stats(); st.Allowlisted != 1 || st.Listed != 4 || st.Held != 3 || st.LastError != "" {
		t.Errorf("stats %+v, want 4 listed, 1 allowlisted, 3 held", st)
	}

	// 203.0.113.2 leaves the list: its decision goes, store and kernel.
	ls.set(http.StatusOK, "203.0.113.1\n198.51.100.0/24\n203.0.113.3\n")
	now = now.Add(time.Hour)
	if res, err = f.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	want = []string{"198.51.100.0/24", "203.0.113.1", "203.0.113.3"}
	if got := keys(active(t, svc, "partner")); !slices.Equal(got, want) || res.Removed != 1 || res.Added != 1 {
		t.Fatalf("after the second pull: %v, %+v; want %v, one added, one removed", got, res, want)
	}
	if k := enf.kernel(); !slices.Equal(k, want) {
		t.Errorf("kernel holds %v, want %v", k, want)
	}

	// The server fails, then serves an error page with a 200: fail
	// static, counted.
	for _, tc := range []struct {
		code int
		body string
	}{{http.StatusBadGateway, "bad gateway"}, {http.StatusOK, "<html>oops</html>\n"}} {
		ls.set(tc.code, tc.body)
		if _, err := f.Pull(ctx); err == nil {
			t.Fatalf("pull of %d %q succeeded", tc.code, tc.body)
		}
		if got := keys(active(t, svc, "partner")); !slices.Equal(got, want) {
			t.Fatalf("after a failed pull: %v, want %v kept", got, want)
		}
	}
	if st := f.Stats(); st.Failures != 2 || st.Pulls != 4 || st.LastError == "" || st.Held != 3 {
		t.Errorf("stats %+v, want 4 pulls, 2 failures, the last error, 3 held", st)
	}
}

// TTLs are renewed while an entry stays listed, so it never lapses
// between pulls; a decision of another feed or origin is never touched.
func TestFileFeedRenewal(t *testing.T) {
	svc, enf := newService(t)
	ctx := context.Background()
	// Another origin and another feed whose name contains this one's.
	must(t, svc.Add(ctx, []model.Decision{
		{Value: netip.MustParsePrefix("203.0.113.1/32"), Type: "ban", Origin: model.OriginCLI, Reason: "manual", Until: time.Now().Add(time.Hour)},
		{Value: netip.MustParsePrefix("203.0.113.9/32"), Type: "ban", Origin: model.OriginList, Scenario: "tor-exits", Until: time.Now().Add(time.Hour)},
	}))
	path := filepath.Join(t.TempDir(), "tor.txt")
	must(t, os.WriteFile(path, []byte("203.0.113.1\n203.0.113.2\n"), 0o644))
	now := time.Now()
	f, err := New(Config{Name: "tor", File: path, Interval: time.Hour, Duration: 6 * time.Hour, MaxEntries: 10, MaxBytes: 1 << 20, Now: func() time.Time { return now }}, svc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	first := active(t, svc, "tor")
	if len(first) != 2 {
		t.Fatalf("held %v, want two", keys(first))
	}
	// An hour on, more than two intervals are left: kept as they are.
	now = now.Add(time.Hour)
	if res, err := f.Pull(ctx); err != nil || res.Renewed != 0 || res.Added != 0 {
		t.Fatalf("pull an hour on: %+v, %v; want nothing changed", res, err)
	}
	// Five hours on, one hour left: renewed to a full duration.
	now = now.Add(4 * time.Hour)
	if res, err := f.Pull(ctx); err != nil || res.Renewed != 2 {
		t.Fatalf("pull five hours on: %+v, %v; want two renewed", res, err)
	}
	for v, d := range active(t, svc, "tor") {
		if !d.Until.Equal(now.Add(6*time.Hour)) || d.ID == first[v].ID {
			t.Errorf("%s: until %s (ID %d), want renewed to %s", v, d.Until, d.ID, now.Add(6*time.Hour))
		}
	}
	// The file goes away: fail static.
	must(t, os.Remove(path))
	if _, err := f.Pull(ctx); err == nil {
		t.Fatal("pull of a missing file succeeded")
	}
	if got := keys(active(t, svc, "tor")); len(got) != 2 {
		t.Fatalf("after a failed pull: %v", got)
	}
	// Empty: every entry of this feed goes, nothing else does.
	must(t, os.WriteFile(path, []byte("# empty\n"), 0o644))
	if res, err := f.Pull(ctx); err != nil || res.Removed != 2 {
		t.Fatalf("pull of an empty list: %+v, %v", res, err)
	}
	if got := active(t, svc, "tor"); len(got) != 0 {
		t.Fatalf("still held: %v", keys(got))
	}
	if got := active(t, svc, "tor-exits"); len(got) != 1 {
		t.Fatalf("the other feed's decision: %v", keys(got))
	}
	if k := enf.kernel(); !slices.Equal(k, []string{"203.0.113.1", "203.0.113.9"}) {
		t.Errorf("kernel holds %v, want the manual and the other feed's bans", k)
	}
}

// max_entries caps what a feed holds, the list's first entries first, and
// allowlisted entries take no room; max_bytes fails the pull.
func TestFeedCaps(t *testing.T) {
	svc, _ := newService(t)
	ctx := context.Background()
	var b strings.Builder
	b.WriteString("198.18.250.1\n") // allowlisted
	for i := 1; i <= 10; i++ {
		fmt.Fprintf(&b, "203.0.113.%d\n", i)
	}
	path := filepath.Join(t.TempDir(), "big.txt")
	must(t, os.WriteFile(path, []byte(b.String()), 0o644))
	f, err := New(Config{Name: "big", File: path, Interval: time.Hour, Duration: time.Hour, MaxEntries: 4, MaxBytes: 1 << 20}, svc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4"}
	if got := keys(active(t, svc, "big")); !slices.Equal(got, want) {
		t.Fatalf("held %v, want %v", got, want)
	}
	if st := f.Stats(); st.Capped != 6 || st.Allowlisted != 1 || st.Held != 4 {
		t.Errorf("stats %+v, want 6 capped, 1 allowlisted, 4 held", st)
	}

	small, err := New(Config{Name: "big", File: path, Interval: time.Hour, Duration: time.Hour, MaxEntries: 100, MaxBytes: 64}, svc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := small.Pull(ctx); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("pull over max_bytes: err = %v, want ErrTooLarge", err)
	}
	if got := keys(active(t, svc, "big")); !slices.Equal(got, want) {
		t.Fatalf("after a pull over max_bytes: %v, want %v kept", got, want)
	}
}

// Run pulls at start and reports a failure; it stops with its context.
func TestRun(t *testing.T) {
	svc, _ := newService(t)
	path := filepath.Join(t.TempDir(), "l.txt")
	must(t, os.WriteFile(path, []byte("203.0.113.1\n"), 0o644))
	f, err := New(Config{Name: "l", File: path, Interval: time.Hour, Duration: time.Hour, MaxEntries: 10, MaxBytes: 1 << 20}, svc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx, nil) }()
	deadline := time.Now().Add(30 * time.Second)
	for f.Stats().Pulls == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no pull within 30s of start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := active(t, svc, "l"); len(got) != 1 {
		t.Fatalf("held %v after Run's first pull", keys(got))
	}
}

func TestNewRefuses(t *testing.T) {
	ok := Config{Name: "x", File: "/x", Interval: time.Hour, Duration: time.Hour, MaxEntries: 1, MaxBytes: 1}
	for _, mod := range []func(*Config){
		func(c *Config) { c.Name = "" },
		func(c *Config) { c.URL = "http://127.0.0.1/x" },
		func(c *Config) { c.File = "" },
		func(c *Config) { c.MaxEntries = 0 },
		func(c *Config) { c.Interval = 0 },
	} {
		c := ok
		mod(&c)
		if _, err := New(c, nil); err == nil {
			t.Errorf("New(%+v) succeeded", c)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A URL whose list did not change (ETag or Last-Modified) is not
// downloaded again, and its entries still count as listed: nothing is
// removed, and what is due is renewed.
func TestURLFeedNotModified(t *testing.T) {
	svc, _ := newService(t)
	var mu sync.Mutex
	var full, notModified int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("If-None-Match") == `"v1"` {
			notModified++
			w.WriteHeader(http.StatusNotModified)
			return
		}
		full++
		w.Header().Set("ETag", `"v1"`)
		fmt.Fprint(w, "203.0.113.1\n203.0.113.2\n")
	}))
	t.Cleanup(srv.Close)
	now := time.Now()
	f, err := New(Config{Name: "etag", URL: srv.URL, Interval: time.Hour, Duration: 4 * time.Hour, MaxEntries: 10, MaxBytes: 1 << 20, Now: func() time.Time { return now }}, svc)
	must(t, err)
	ctx := context.Background()
	if _, err := f.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	now = now.Add(3 * time.Hour) // one hour left: due
	res, err := f.Pull(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if full != 1 || notModified != 1 {
		t.Fatalf("%d full answers and %d not modified, want 1 and 1", full, notModified)
	}
	if res.Removed != 0 || res.Renewed != 2 {
		t.Fatalf("pull of an unchanged list: %+v, want both renewed, none removed", res)
	}
	if got := keys(active(t, svc, "etag")); !slices.Equal(got, []string{"203.0.113.1", "203.0.113.2"}) {
		t.Fatalf("held %v", got)
	}
}

// A URL's password stays out of what the feed shows: its source and its
// errors, which go to logs and moat status.
func TestSourceRedacted(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusForbidden)
	}))
	t.Cleanup(srv.Close)
	svc, _ := newService(t)
	u := strings.Replace(srv.URL, "http://", "http://user:s3cret@", 1) + "/list"
	f, err := New(Config{Name: "x", URL: u, Interval: time.Hour, Duration: 2 * time.Hour, MaxEntries: 1, MaxBytes: 1}, svc)
	must(t, err)
	_, err = f.Pull(context.Background())
	if err == nil || strings.Contains(err.Error(), "s3cret") || strings.Contains(f.Source(), "s3cret") || !strings.Contains(err.Error(), "403") {
		t.Fatalf("source %q, error %v: want a 403 and no password", f.Source(), err)
	}
}
