package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

type fakeAllowlist AllowlistStat

func (f fakeAllowlist) AllowlistStat() AllowlistStat { return AllowlistStat(f) }

func TestAllowlistCollector(t *testing.T) {
	c := NewAllowlistCollector(fakeAllowlist{Entries: map[string]int{"config": 3, "session": 1}, SessionRefused: 4, ResolveErrors: 2})
	want := `# HELP moat_allowlist_entries Live allowlist entries, by where they come from.
# TYPE moat_allowlist_entries gauge
moat_allowlist_entries{source="config"} 3
moat_allowlist_entries{source="session"} 1
# HELP moat_allowlist_file_errors_total Allowlist include lines skipped as invalid, and include files that could not be read.
# TYPE moat_allowlist_file_errors_total counter
moat_allowlist_file_errors_total 0
# HELP moat_allowlist_resolve_errors_total Failed lookups of allowlisted hostnames (their previous addresses stay protected).
# TYPE moat_allowlist_resolve_errors_total counter
moat_allowlist_resolve_errors_total 2
# HELP moat_allowlist_session_refused_total Bans refused because the address had a live login session on this host.
# TYPE moat_allowlist_session_refused_total counter
moat_allowlist_session_refused_total 4
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if n, err := testutil.CollectAndLint(c); err != nil || len(n) != 0 {
		t.Errorf("lint: %v %v", n, err)
	}
}
