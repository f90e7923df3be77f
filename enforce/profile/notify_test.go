package profile

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/model"
)

// TestNotifications: the channels of every matching profile reach the
// outcome once each, and a name moat.yaml lacks is an error at its line.
func TestNotifications(t *testing.T) {
	set, err := Parse("profiles.yaml", []byte(`name: ssh
filters: ["Alert.Scenario startsWith 'ssh'"]
decisions: [{type: ban, duration: 4h}]
notifications:
  - mail
  - slack
on_success: continue
---
name: all
filters: ["true"]
notifications: [slack, siem]
`))
	if err != nil {
		t.Fatal(err)
	}
	a := model.Alert{Scenario: "ssh-bf", Scope: model.ScopeIP, Value: "198.18.0.1", Source: netip.MustParsePrefix("198.18.0.1/32")}
	out, err := set.Decide(context.Background(), a, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"mail", "slack", "siem"}; !slices.Equal(out.Notifications, want) {
		t.Fatalf("notifications %v, want %v", out.Notifications, want)
	}
	known := func(n string) bool { return n != "slack" }
	err = set.CheckNotifications(known)
	if err == nil || err.Error() != `profiles.yaml:6: profile ssh: notification "slack": no such channel under notifications: in moat.yaml` {
		t.Fatalf("CheckNotifications = %v", err)
	}
	if err := set.CheckNotifications(func(string) bool { return true }); err != nil {
		t.Fatal(err)
	}
}
