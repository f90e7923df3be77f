package api

import (
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/model"
)

// The hand-written stream encoder must write exactly what encoding/json
// writes for CrowdSec's decision model.
func FuzzAppendLAPI(f *testing.F) {
	for _, s := range []string{"crowdsecurity/ssh-bf", "", "a\"b\\c", "<script>&", "é\u2028\x00\xff", "manual 'ban'"} {
		f.Add(s, "reason", "ban", int64(42), true, int64(3600))
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, scenario, reason, typ string, id int64, simulated bool, secs int64) {
		d := model.Decision{ID: id, Value: netip.MustParsePrefix("2001:db8::/48"), Type: typ, Origin: model.OriginCLI, Scenario: scenario, Reason: reason, Simulated: simulated}
		if secs != 0 {
			d.Until = now.Add(time.Duration(secs%(1<<30)) * time.Second)
		}
		want, err := json.Marshal(toLAPI(d, now))
		if err != nil {
			t.Fatal(err)
		}
		if got := appendLAPI(nil, d, now); string(got) != string(want) {
			t.Fatalf("appendLAPI:\n%s\nencoding/json:\n%s", got, want)
		}
	})
}
