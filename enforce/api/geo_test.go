package api

import (
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/model"
)

// A Country decision reaches a bouncer as CrowdSec's LAPI serves one
// (scope Country, value the code), and only to a bouncer that asks for
// that scope: the default stream is ip and range.
func TestGeoDecisionsToBouncers(t *testing.T) {
	now := time.Now()
	d := model.Decision{ID: 7, Geo: model.Geo{Scope: model.ScopeCountry, Value: "CN"}, Type: "ban", Origin: model.OriginCLI, Until: now.Add(time.Hour)}
	l := toLAPI(d, now)
	if l.Scope != "Country" || l.Value != "CN" {
		t.Errorf("LAPI decision scope %q value %q", l.Scope, l.Value)
	}
	if b := string(appendLAPI(nil, d, now)); !strings.Contains(b, `"scope":"Country"`) || !strings.Contains(b, `"value":"CN"`) {
		t.Errorf("streamed as %s", b)
	}
	for _, tc := range []struct {
		scopes []string
		want   bool
	}{
		{[]string{"ip", "range"}, false},
		{[]string{"country"}, true},
		{nil, true},
	} {
		if got := (streamFilter{scopes: tc.scopes}).match(d); got != tc.want {
			t.Errorf("scopes %v: match = %v, want %v", tc.scopes, got, tc.want)
		}
	}
	if a := fromModel(d); a.Scope != "Country" || a.Value != "CN" {
		t.Errorf("admin decision scope %q value %q", a.Scope, a.Value)
	}
}
