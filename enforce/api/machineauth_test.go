package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/store"
)

// countingMachines counts the password checks (a bcrypt each).
type countingMachines struct {
	*store.Store
	auths atomic.Int64
}

func (c *countingMachines) AuthMachine(ctx context.Context, id, password, ip, version string, scenarios []string) (store.Machine, error) {
	c.auths.Add(1)
	return c.Store.AuthMachine(ctx, id, password, ip, version, scenarios)
}

// A login costs a password check (bcrypt); a request with its token
// costs an HMAC and a lookup, never a bcrypt: an agent pushing ten times
// a second must not cost the server ten bcrypts.
func TestTokenCheckIsNoPasswordCheck(t *testing.T) {
	f := newFixture(t)
	cm := &countingMachines{Store: f.st}
	if err := f.srv.EnableMachines(MachineConfig{Store: cm, Secret: testSecret, TokenLifetime: time.Hour}); err != nil {
		t.Fatal(err)
	}
	m := &machineFixture{fixture: f, mach: httptest.NewServer(f.srv.MachineHandler())}
	t.Cleanup(m.mach.Close)
	tok := m.login(t, "agent-1")
	if n := cm.auths.Load(); n != 1 {
		t.Fatalf("%d password checks for one login", n)
	}
	for range 20 {
		if code, body := m.call(t, "GET", "/v1/heartbeat", tok, ""); code != http.StatusOK {
			t.Fatalf("heartbeat: %d %s", code, body)
		}
		if code, body := m.call(t, "POST", "/v1/alerts", tok, sshAlert); code != http.StatusCreated {
			t.Fatalf("push: %d %s", code, body)
		}
	}
	if n := cm.auths.Load(); n != 1 {
		t.Errorf("%d password checks after 40 requests with the token, want the login's only", n)
	}
}
