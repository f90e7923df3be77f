package notify

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/enforce/profile"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
)

// stamper is a kernel backend that notes when each value was applied.
type stamper struct {
	mu      sync.Mutex
	applied map[netip.Prefix]chan time.Time
}

func (s *stamper) done(p netip.Prefix) chan time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.applied[p]
	if !ok {
		c = make(chan time.Time, 1)
		s.applied[p] = c
	}
	return c
}

func (s *stamper) Apply(_ context.Context, add, _ []model.Decision) error {
	now := time.Now()
	for _, d := range add {
		select {
		case s.done(d.Value) <- now:
		default:
		}
	}
	return nil
}

const hotProfiles = `name: ban
filters: ["Alert.Remediation == true"]
decisions: [{type: ban, duration: 4h}]
%s
`

// pipeline is a dispatcher over a real store and a stamping backend, its
// profiles sending to channels when notify is set.
type pipeline struct {
	in  chan decision.Batch
	enf *stamper
}

func startPipeline(t *testing.T, m *Manager, channels ...string) *pipeline {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), store.FileName), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	extra := ""
	if len(channels) > 0 {
		extra = "notifications: [" + strings.Join(channels, ", ") + "]"
	}
	prof, err := profile.Parse("profiles.yaml", []byte(fmt.Sprintf(hotProfiles, extra)))
	if err != nil {
		t.Fatal(err)
	}
	if err := prof.CheckNotifications(m.Has); err != nil {
		t.Fatal(err)
	}
	p := &pipeline{in: make(chan decision.Batch), enf: &stamper{applied: map[netip.Prefix]chan time.Time{}}}
	svc, err := decision.New(st, prof, p.enf)
	if err != nil {
		t.Fatal(err)
	}
	d := decision.NewDispatcher(svc, decision.DispatcherConfig{Notify: m.Notify})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx, p.in); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return p
}

// ban hands one alert to the dispatcher and returns the time until the
// backend held its ban.
func (p *pipeline) ban(t *testing.T, a model.Alert) time.Duration {
	t.Helper()
	start := time.Now()
	p.in <- decision.Batch{Alerts: []model.Alert{a}}
	select {
	case at := <-p.enf.done(a.Source):
		return at.Sub(start)
	case <-time.After(10 * time.Second):
		t.Fatalf("%s never reached the backend", a.Value)
		return 0
	}
}

func hotAlert(i int) model.Alert {
	addr := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
	a := SampleAlert(time.Now())
	a.Value, a.Source = addr.String(), netip.PrefixFrom(addr, 32)
	return a
}

// hangingListener accepts connections and never answers.
func hangingListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// refusedAddr is a loopback port nothing listens on.
func refusedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}

// TestDeadChannelsDoNotSlowBans measures the detection-to-kernel path
// (alert handed to the dispatcher to ban applied by the backend) with no
// channel, with a webhook that accepts and never answers, and with a
// webhook and an SMTP server that refuse, in rounds so the machine's
// noise hits every case alike, and requires the dead channels' figures to
// stay within a small bound of the case without channels.
func TestDeadChannelsDoNotSlowBans(t *testing.T) {
	hang, refused := hangingListener(t), refusedAddr(t)
	m := channelsFrom(t, fmt.Sprintf(`notifications:
  hang: {kind: webhook, url: "http://%s/hook", timeout: 1m, queue: 50}
  refused: {kind: webhook, url: "http://%s/hook", retries: 100, retry_backoff: 1ms, queue: 50}
  mail:
    kind: email
    smtp: {host: 127.0.0.1, port: %s, tls: none}
    from: moat@example.org
    to: [root@example.org]
    retries: 100
    retry_backoff: 1ms
  mail-hang:
    kind: email
    smtp: {host: 127.0.0.1, port: %s, tls: none}
    from: moat@example.org
    to: [root@example.org]
    timeout: 1m
`, hang, refused, refused[len("127.0.0.1:"):], hang[len("127.0.0.1:"):]))
	run(t, m)
	none := startPipeline(t, NewManager())
	dead := startPipeline(t, m, "hang", "refused", "mail", "mail-hang")

	const rounds, perRound = 5, 60
	var noneLat, deadLat []time.Duration
	n := 0
	for range rounds {
		for range perRound {
			noneLat = append(noneLat, none.ban(t, hotAlert(n)))
			n++
		}
		for range perRound {
			deadLat = append(deadLat, dead.ban(t, hotAlert(n)))
			n++
		}
	}
	for _, p := range []int{50, 90, 99} {
		t.Logf("alert to kernel p%d: no channel %s, dead channels %s", p, pct(noneLat, p), pct(deadLat, p))
	}
	for _, st := range m.Stats() {
		t.Logf("channel %s: queued %d, dropped %d, attempts %d, sent %d, last error %q", st.Name, st.Queued, st.Dropped, st.Attempts, st.Sent, st.LastError)
	}
	// Bounds: a dead channel costs the ban path a queue push (well under a
	// microsecond); the slack is for two shared cores' scheduling noise.
	if d, b := pct(deadLat, 50), pct(noneLat, 50); d > b+2*time.Millisecond {
		t.Errorf("median alert to kernel %s with dead channels, %s without", d, b)
	}
	if d, b := pct(deadLat, 90), pct(noneLat, 90); d > b+5*time.Millisecond {
		t.Errorf("p90 alert to kernel %s with dead channels, %s without", d, b)
	}
	hangSt := m.Stats()[0]
	if hangSt.Name != "hang" || hangSt.Sent != 0 || hangSt.Dropped == 0 {
		t.Errorf("hanging channel %+v: want nothing sent and the oldest dropped", hangSt)
	}
}

// TestAlertRaisedAgainDoesNotNotify: an alert raised again for a ban that
// is active (a restart re-reading unacknowledged lines) takes no decision
// and sends nothing; only new bans notify.
func TestAlertRaisedAgainDoesNotNotify(t *testing.T) {
	f := newFakeSender()
	m := NewManager()
	if err := m.Add("hook", "fake", f, Options{}); err != nil {
		t.Fatal(err)
	}
	run(t, m)
	p := startPipeline(t, m, "hook")
	a := hotAlert(1)
	p.ban(t, a)
	f.wait(t, 1)
	p.in <- decision.Batch{Alerts: []model.Alert{a}}
	p.ban(t, hotAlert(2))
	msgs := f.wait(t, 1)
	if len(msgs) != 2 || msgs[1].Alert.Value != hotAlert(2).Value {
		t.Fatalf("%d messages, the last for %s; want 2, the last for the new ban", len(msgs), msgs[len(msgs)-1].Alert.Value)
	}
}

// TestHangingServerBoundedByTimeout: a webhook or SMTP server that
// accepts and never answers fails the attempt at the channel's timeout.
func TestHangingServerBoundedByTimeout(t *testing.T) {
	hang := hangingListener(t)
	m := channelsFrom(t, fmt.Sprintf(`notifications:
  hook: {kind: webhook, url: "http://%s/hook", timeout: 300ms}
  mail:
    kind: email
    smtp: {host: 127.0.0.1, port: %s, tls: none}
    from: moat@example.org
    to: [root@example.org]
    timeout: 300ms
`, hang, hang[len("127.0.0.1:"):]))
	for _, name := range []string{"hook", "mail"} {
		start := time.Now()
		err := m.Test(t.Context(), name)
		took := time.Since(start)
		if err == nil || took < 250*time.Millisecond || took > 2*time.Second {
			t.Errorf("%s: Test = %v after %s, want a timeout after about 300ms", name, err, took)
		}
	}
}
