package engine

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestGuardsChangeNothing: the filter guards skip filters, never change
// what they decide. An nginx corpus through the HTTP scenarios of both hub
// snapshots, and through moat's shipped content, gives the same alerts,
// in the same order, and the same counters with guards and without.
func TestGuardsChangeNothing(t *testing.T) {
	dir := shared(t)
	out, year := corpus(t, dir, "--ssh-lines", "10", "--nginx-lines", "30k", "--seed", "3")
	lines := slices.Collect(readLines(t, filepath.Join(out, "access.log"), "nginx").All())
	sharedCfg := hubConfig(dir, append(nginxItems, "crowdsecurity/base-http-scenarios", "crowdsecurity/http-cve")...)
	debianCfg := debianHub
	debianCfg.Items, debianCfg.Replay = append([]string{"crowdsecurity/nginx", "crowdsecurity/whitelist-good-actors"}, baseItems...), true
	shippedCfg := Config{HubDir: "../../packaging/hub", PatternDir: "../../packaging/patterns", Replay: true}
	for _, tc := range []struct {
		name string
		cfg  Config
	}{{"shared", sharedCfg}, {"debian", debianCfg}, {"shipped", shippedCfg}} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := os.Stat(tc.cfg.HubDir); err != nil {
				t.Skipf("SKIP: %s is missing (Debian's crowdsec package installs it): %v", tc.cfg.HubDir, err)
			}
			cfg := tc.cfg
			cfg.Year = year
			off := cfg
			off.NoGuards = true
			want, wst := serialRun(t, off, lines)
			got, gst := serialRun(t, cfg, lines)
			if len(want) == 0 {
				t.Fatal("no alerts: the corpus does not exercise the scenarios")
			}
			if diff := cmp.Diff(want, got, cmpopts.EquateEmpty(), cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
				t.Errorf("alerts differ (-without guards +with):\n%s", diff)
			}
			if diff := cmp.Diff(wst.Scenarios, gst.Scenarios, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("scenario counters differ (-without guards +with):\n%s", diff)
			}
		})
	}
}
