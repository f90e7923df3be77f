package api

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/model"
)

// FuzzDecodeAlerts: a machine's push is attacker-controlled bytes. An
// error means nothing to store; an accepted push holds only alerts with a
// scenario and a source, and decisions moat can enforce as they are.
func FuzzDecodeAlerts(f *testing.F) {
	for _, s := range []string{
		sshAlert,
		strings.Replace(sshAlert, `"labels":null`, `"decisions":[{"duration":"1h","origin":"cscli","scenario":"manual","scope":"Ip","type":"ban","value":"192.0.2.20"}]`, 1),
		`[{"scenario":"a/b","source":{"scope":"Range","value":"2001:db8::/64"},"decisions":[{"duration":"2d","origin":"crowdsec","scenario":"a/b","scope":"Range","type":"captcha","value":"2001:db8::/64"}]}]`,
		`[{"scenario":"a/b","source":{"scope":"username","value":"root"},"decisions":[{"duration":"1h","origin":"cscli","scope":"Country","type":"ban","value":"FR"}]}]`,
		`[]`, `[null]`, `{}`, `[{"scenario":"a"`,
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, err := decodeAlerts(bytes.NewReader(data), "m", now)
		if err != nil {
			if ps != nil {
				t.Fatalf("error %v with alerts %v", err, ps)
			}
			return
		}
		if len(ps) == 0 || len(ps) > MaxAlertsPerPush {
			t.Fatalf("accepted %d alerts", len(ps))
		}
		for _, p := range ps {
			a := p.alert
			if a.Scenario == "" || a.Scope == "" || a.Value == "" || a.Labels["machine"] != "m" || p.origin != model.OriginMachine {
				t.Fatalf("accepted alert %+v", a)
			}
			if a.Source.IsValid() && (a.Source != model.Canonical(a.Source) || model.ValueString(a.Source) != a.Value) {
				t.Fatalf("alert source %v, value %q", a.Source, a.Value)
			}
			for _, d := range p.decisions {
				if !d.Value.IsValid() || d.Value != model.Canonical(d.Value) || !d.Until.After(now) || d.Until.Sub(now) > MaxDuration || !validWord(d.Type, 64) {
					t.Fatalf("accepted decision %+v", d)
				}
			}
		}
	})
}
