package metrics

import (
	"sort"

	"github.com/prometheus/client_golang/prometheus"
)

// AllowlistStat is the dynamic allowlist's state, copied from
// enforce/allowlist at scrape time.
type AllowlistStat struct {
	// Entries counts the live entries by source (config, file, runtime,
	// session).
	Entries map[string]int
	// SessionRefused counts bans refused because the address had a live
	// login session on this host.
	SessionRefused uint64
	ResolveErrors  uint64
	FileErrors     uint64
}

// Allowlist reads the allowlist's state.
type Allowlist interface {
	AllowlistStat() AllowlistStat
}

// AllowlistCollector exposes the allowlist, built at scrape time. Register
// it with Server.Registry.
type AllowlistCollector struct {
	a                                       Allowlist
	entries, sessions, resolveErrs, fileErr *prometheus.Desc
}

// NewAllowlistCollector returns the collector over a.
func NewAllowlistCollector(a Allowlist) *AllowlistCollector {
	return &AllowlistCollector{
		a:           a,
		entries:     desc("moat_allowlist_entries", "Live allowlist entries, by where they come from.", "source"),
		sessions:    desc("moat_allowlist_session_refused_total", "Bans refused because the address had a live login session on this host."),
		resolveErrs: desc("moat_allowlist_resolve_errors_total", "Failed lookups of allowlisted hostnames (their previous addresses stay protected)."),
		fileErr:     desc("moat_allowlist_file_errors_total", "Allowlist include lines skipped as invalid, and include files that could not be read."),
	}
}

func (c *AllowlistCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.entries, c.sessions, c.resolveErrs, c.fileErr} {
		ch <- d
	}
}

func (c *AllowlistCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.a.AllowlistStat()
	sources := make([]string, 0, len(s.Entries))
	for k := range s.Entries {
		sources = append(sources, k)
	}
	sort.Strings(sources)
	for _, k := range sources {
		gauge(ch, c.entries, float64(s.Entries[k]), k)
	}
	counter(ch, c.sessions, s.SessionRefused)
	counter(ch, c.resolveErrs, s.ResolveErrors)
	counter(ch, c.fileErr, s.FileErrors)
}
