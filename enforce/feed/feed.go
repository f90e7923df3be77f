// Package feed turns list feeds (a file or a URL holding one address or
// CIDR range a line) into decisions of origin list, one scenario per feed:
// each pull adds what the list gained, renews what it still holds and
// deletes what it dropped. A pull that fails changes nothing, so a feed
// server being down never lifts the bans it listed (fail static); they
// last until their own expiry.
package feed

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
)

// Decisions is what a feed needs of the decision service.
type Decisions interface {
	Allowlisted(netip.Prefix) bool
	Add(ctx context.Context, ds []model.Decision) error
	Delete(ctx context.Context, f store.Filter) ([]model.Decision, error)
	List(ctx context.Context, f store.Filter) ([]store.Record, error)
}

// Config is one feed.
type Config struct {
	// Name is the feed's name, the scenario of its decisions.
	Name string
	// URL (http or https) or File is where the list is; exactly one.
	URL, File string
	// Interval is the time between pulls; Duration how long a listed
	// entry's ban lasts without a pull renewing it.
	Interval, Duration time.Duration
	// MaxEntries caps the decisions the feed holds (the list's first
	// entries win); MaxBytes caps the list read, past which a pull fails.
	MaxEntries int
	MaxBytes   int64
	// HTTP fetches URL feeds (a client with a timeout when nil).
	HTTP *http.Client
	Now  func() time.Time
}

// Errors a pull can fail with.
var (
	ErrTooLarge = errors.New("feed larger than its max_bytes")
	ErrGarbage  = errors.New("feed holds no address and lines that are not addresses")
)

// Feed is one feed. It is safe for concurrent use.
type Feed struct {
	cfg Config
	dec Decisions

	mu    sync.Mutex
	stats Stats

	// pulling serializes pulls and guards what the last list read from
	// the URL left for a conditional GET: its validators and the list, so
	// an unchanged list is neither downloaded nor parsed again.
	pulling        sync.Mutex
	etag, modified string
	last           []netip.Prefix
	lastSkipped    int
}

// Stats are a feed's counters and the outcome of its last pull.
type Stats struct {
	Name string
	// Pulls are the pulls tried, Failures those that failed (and changed
	// nothing).
	Pulls, Failures int64
	// Listed is the entries the last successful pull read, Held the
	// decisions the feed holds after it; Skipped counts that pull's lines
	// that were not addresses, Allowlisted its allowlisted entries, Capped
	// those past max_entries, Refused those the service refused (this
	// host's own addresses).
	Listed, Held, Skipped, Allowlisted, Capped, Refused int
	// LastSuccess is when a pull last succeeded; LastError is the last
	// pull's error, "" when it succeeded.
	LastSuccess time.Time
	LastError   string
}

// Result is what one pull changed.
type Result struct {
	Added, Renewed, Removed int
}

// New returns a feed over the decision service.
func New(cfg Config, dec Decisions) (*Feed, error) {
	if cfg.Name == "" || (cfg.URL == "") == (cfg.File == "") {
		return nil, fmt.Errorf("feed %q: want a name and exactly one of url and file", cfg.Name)
	}
	if cfg.Interval <= 0 || cfg.Duration <= 0 || cfg.MaxEntries <= 0 || cfg.MaxBytes <= 0 {
		return nil, fmt.Errorf("feed %s: interval, duration, max_entries and max_bytes must be positive", cfg.Name)
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: time.Minute}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Feed{cfg: cfg, dec: dec, stats: Stats{Name: cfg.Name}}, nil
}

// Name is the feed's name.
func (f *Feed) Name() string { return f.cfg.Name }

// Source is where the feed is read from, a URL's password left out: it
// goes to logs and to moat status.
func (f *Feed) Source() string {
	if f.cfg.URL == "" {
		return f.cfg.File
	}
	if u, err := url.Parse(f.cfg.URL); err == nil {
		return u.Redacted()
	}
	return f.cfg.URL
}

// Stats returns the counters.
func (f *Feed) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

// maxRetry bounds the wait after a failed pull when the interval is
// longer: a feed server back up is read within minutes, not hours.
const maxRetry = 5 * time.Minute

// Run pulls at once, then every interval, until ctx ends; a failed pull
// is retried sooner. Errors go to report (may be nil).
func (f *Feed) Run(ctx context.Context, report func(error)) error {
	wait := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		_, err := f.Pull(ctx)
		if ctx.Err() != nil {
			return nil
		}
		wait = f.cfg.Interval
		if err != nil {
			wait = min(wait, maxRetry)
			if report != nil {
				report(err)
			}
		}
	}
}

// Pull reads the feed once and brings its decisions in line with it.
func (f *Feed) Pull(ctx context.Context) (Result, error) {
	res, st, err := f.pull(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stats.Pulls++
	if err != nil {
		f.stats.Failures++
		f.stats.LastError = err.Error()
		return res, err
	}
	st.Name, st.Pulls, st.Failures = f.stats.Name, f.stats.Pulls, f.stats.Failures
	st.LastSuccess = f.cfg.Now()
	f.stats = st
	return res, nil
}

func (f *Feed) pull(ctx context.Context) (Result, Stats, error) {
	var res Result
	var st Stats
	f.pulling.Lock()
	defer f.pulling.Unlock()
	list, skipped, err := f.read(ctx)
	if err != nil {
		return res, st, fmt.Errorf("feed %s: %w", f.cfg.Name, err)
	}
	st.Listed, st.Skipped = len(list), skipped
	// Allowlist first: an allowlisted entry takes no room under the cap.
	kept := list[:0:0]
	for _, p := range list {
		if f.dec.Allowlisted(p) {
			st.Allowlisted++
			continue
		}
		kept = append(kept, p)
	}
	if len(kept) > f.cfg.MaxEntries {
		st.Capped = len(kept) - f.cfg.MaxEntries
		kept = kept[:f.cfg.MaxEntries]
	}
	held, err := f.held(ctx)
	if err != nil {
		return res, st, err
	}
	now := f.cfg.Now()
	until := now.Add(f.cfg.Duration)
	// Make before break: a renewed entry's new decision is added before
	// the old one is deleted (the kernel counts bans by decision ID), so a
	// pull never opens a window where a listed address gets through.
	var add, drop []model.Decision
	listed := make(map[netip.Prefix]bool, len(kept))
	for _, p := range kept {
		listed[p] = true
		old := held[p]
		if len(old) == 1 && !f.due(old[0], now) {
			continue
		}
		if len(old) > 0 {
			res.Renewed++
		}
		add = append(add, model.Decision{Value: p, Type: "ban", Origin: model.OriginList, Scenario: f.cfg.Name, Reason: "feed " + f.cfg.Name, Until: until})
		drop = append(drop, old...)
	}
	for p, ds := range held {
		if !listed[p] {
			drop = append(drop, ds...)
			res.Removed++
		}
	}
	added, refused, err := f.add(ctx, add)
	st.Refused = refused
	res.Added = added - res.Renewed
	if err != nil {
		return res, st, err
	}
	for _, d := range drop {
		if _, err := f.dec.Delete(ctx, store.Filter{ID: d.ID}); err != nil {
			return res, st, fmt.Errorf("feed %s: delete %s: %w", f.cfg.Name, model.ValueString(d.Value), err)
		}
	}
	st.Held = len(kept) - refused
	return res, st, nil
}

// due reports whether a held decision is to be renewed: once less than
// half its duration is left, or less than two intervals, whichever is
// longer. Renewing at every pull would write every entry of a big list
// to the store (and its history) at every interval; renewing this early
// keeps a listed entry banned through a missed pull.
func (f *Feed) due(d model.Decision, now time.Time) bool {
	if d.Until.IsZero() {
		return false
	}
	left := d.Until.Sub(now)
	return left < max(f.cfg.Duration/2, 2*f.cfg.Interval)
}

// held returns the feed's active decisions by value.
func (f *Feed) held(ctx context.Context) (map[netip.Prefix][]model.Decision, error) {
	recs, err := f.dec.List(ctx, store.Filter{Origin: string(model.OriginList), Scenario: f.cfg.Name})
	if err != nil {
		return nil, fmt.Errorf("feed %s: list its decisions: %w", f.cfg.Name, err)
	}
	held := map[netip.Prefix][]model.Decision{}
	for _, r := range recs {
		// The store matches a scenario by substring: feed "tor" must not
		// take feed "tor-exits"'s decisions for its own.
		if r.Scenario == f.cfg.Name {
			held[r.Value] = append(held[r.Value], r.Decision)
		}
	}
	return held, nil
}

// addChunk is how many decisions one store transaction adds.
const addChunk = 500

// add adds ds in chunks; a chunk the service refuses for one decision
// (an address this host protects) is added one by one, skipping it.
func (f *Feed) add(ctx context.Context, ds []model.Decision) (added, refused int, err error) {
	for len(ds) > 0 {
		n := min(len(ds), addChunk)
		chunk := ds[:n]
		ds = ds[n:]
		err := f.dec.Add(ctx, chunk)
		if err == nil {
			added += n
			continue
		}
		if !refusal(err) {
			return added, refused, fmt.Errorf("feed %s: add: %w", f.cfg.Name, err)
		}
		for i := range chunk {
			switch err := f.dec.Add(ctx, chunk[i:i+1]); {
			case err == nil:
				added++
			case refusal(err):
				refused++
			default:
				return added, refused, fmt.Errorf("feed %s: add: %w", f.cfg.Name, err)
			}
		}
	}
	return added, refused, nil
}

func refusal(err error) bool {
	return errors.Is(err, decision.ErrProtected) || errors.Is(err, decision.ErrAllowlisted) || errors.Is(err, decision.ErrInvalid)
}

// read reads and parses the list. From a URL it asks for the list only if
// it changed since the last one read (ETag, Last-Modified), and takes that
// one again when the server says it did not.
func (f *Feed) read(ctx context.Context) ([]netip.Prefix, int, error) {
	parse := func(r io.Reader) ([]netip.Prefix, int, error) {
		list, skipped, err := Parse(io.LimitReader(r, f.cfg.MaxBytes+1), f.cfg.MaxBytes)
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", f.Source(), err)
		}
		return list, skipped, nil
	}
	if f.cfg.File != "" {
		fh, err := os.Open(f.cfg.File)
		if err != nil {
			return nil, 0, err
		}
		defer fh.Close()
		return parse(fh)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.cfg.URL, nil)
	if err != nil {
		return nil, 0, err
	}
	if f.last != nil {
		if f.etag != "" {
			req.Header.Set("If-None-Match", f.etag)
		}
		if f.modified != "" {
			req.Header.Set("If-Modified-Since", f.modified)
		}
	}
	resp, err := f.cfg.HTTP.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotModified && f.last != nil:
		return f.last, f.lastSkipped, nil
	case resp.StatusCode != http.StatusOK:
		return nil, 0, fmt.Errorf("%s answered %s", f.Source(), resp.Status)
	}
	list, skipped, err := parse(resp.Body)
	if err != nil {
		return nil, 0, err
	}
	f.etag, f.modified = resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	f.last, f.lastSkipped = list, skipped
	if f.last == nil {
		f.last = []netip.Prefix{}
	}
	return list, skipped, nil
}

// maxLine bounds one line of a list.
const maxLine = 4096

// Parse reads a list: one address or CIDR range a line, anything after it
// (a list's own annotation, as in "198.51.100.0/24 ; SBL123") ignored, as
// are blank lines and lines starting with # or ;. Entries are canonical
// and unique, in list order; skipped counts the lines that hold no
// address. A list of more than maxBytes is an error, never a truncated
// list (whose missing tail would lift bans); so is a list with no address
// and some lines that are not, which is what an error page served with a
// 200 looks like.
func Parse(r io.Reader, maxBytes int64) (entries []netip.Prefix, skipped int, err error) {
	cr := &countingReader{r: r}
	sc := bufio.NewScanner(cr)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	seen := map[netip.Prefix]bool{}
	for sc.Scan() {
		if cr.n > maxBytes {
			return nil, 0, ErrTooLarge
		}
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		p, err := model.ParseValue(strings.Fields(line)[0])
		if err != nil || p.Addr().Zone() != "" {
			skipped++
			continue
		}
		if !seen[p] {
			seen[p] = true
			entries = append(entries, p)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, 0, err
	}
	if cr.n > maxBytes {
		return nil, 0, ErrTooLarge
	}
	if len(entries) == 0 && skipped > 0 {
		return nil, skipped, ErrGarbage
	}
	return entries, skipped, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
