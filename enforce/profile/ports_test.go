package profile

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

// A profile may ban only the scenario's service, as a fail2ban jail does.
func TestPortScopedProfile(t *testing.T) {
	set, err := Parse("profiles.yaml", []byte(`name: smtp
filters:
  - Alert.GetScenario() == "crowdsecurity/postfix-spam"
decisions:
  - type: ban
    duration: 4h
    ports: [587, 25, 465, 25]
    protocol: tcp
on_success: break
---
name: default
filters:
  - Alert.Remediation == true
decisions:
  - type: ban
    duration: 4h
`))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, tc := range []struct {
		scenario string
		ports    []uint16
		proto    string
	}{
		{"crowdsecurity/postfix-spam", []uint16{25, 465, 587}, "tcp"},
		{"crowdsecurity/ssh-bf", nil, ""},
	} {
		a := ipAlert("198.18.0.9")
		a.Scenario = tc.scenario
		out, err := set.Decide(context.Background(), a, nil, now)
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Decisions) != 1 {
			t.Fatalf("%s: %d decisions", tc.scenario, len(out.Decisions))
		}
		d := out.Decisions[0]
		if !slices.Equal(d.Ports, tc.ports) || d.Protocol != tc.proto || d.PortScoped() != (tc.ports != nil) {
			t.Errorf("%s: decision ports %v/%q, want %v/%q", tc.scenario, d.Ports, d.Protocol, tc.ports, tc.proto)
		}
	}
}

func TestBadPortScopedProfile(t *testing.T) {
	for _, tc := range []struct{ decision, want string }{
		{"ports: [0]", "profiles.yaml:4: profile p: decision bad ports: port 0"},
		{"ports: [25]\n    protocol: icmp", `profiles.yaml:4: profile p: decision bad ports: protocol "icmp"`},
		{"protocol: tcp", `profiles.yaml:4: profile p: decision bad ports: protocol "tcp" without ports`},
		{"ports: [70000]", "profiles.yaml:5:"},
	} {
		src := "name: p\nfilters: [\"true\"]\ndecisions:\n  - duration: 4h\n    " + tc.decision + "\n"
		_, err := Parse("profiles.yaml", []byte(src))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want it to start with %q", tc.decision, err, tc.want)
		}
	}
}
