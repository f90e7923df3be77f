package notify

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/config"
	"github.com/moatsec/moat/internal/model"
)

// fakeSender records messages; fail makes attempts fail, block makes
// them wait for their context, boom makes them panic.
type fakeSender struct {
	mu       sync.Mutex
	msgs     []*Message
	attempts int
	fail     int // attempts left to fail
	block    bool
	boom     bool
	got      chan struct{}
}

func newFakeSender() *fakeSender { return &fakeSender{got: make(chan struct{}, 1000)} }

func (f *fakeSender) Send(ctx context.Context, m *Message) error {
	f.mu.Lock()
	f.attempts++
	fail, block, boom := f.fail > 0, f.block, f.boom
	if fail {
		f.fail--
	}
	f.mu.Unlock()
	switch {
	case boom:
		panic("template function exploded")
	case block:
		<-ctx.Done()
		return ctx.Err()
	case fail:
		return errors.New("refused")
	}
	f.mu.Lock()
	f.msgs = append(f.msgs, m)
	f.mu.Unlock()
	f.got <- struct{}{}
	return nil
}

func (f *fakeSender) Target() string       { return "fake" }
func (f *fakeSender) Check(*Message) error { return nil }

func (f *fakeSender) wait(t *testing.T, n int) []*Message {
	t.Helper()
	for range n {
		select {
		case <-f.got:
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d of %d messages came", len(f.messages()), n)
		}
	}
	return f.messages()
}

func (f *fakeSender) messages() []*Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.msgs)
}

func testAlert(ip string) model.Alert {
	a := SampleAlert(time.Now())
	a.Value, a.Source = ip, netip.PrefixFrom(netip.MustParseAddr(ip), 32)
	return a
}

func run(t *testing.T, m *Manager) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestRingDropsOldest(t *testing.T) {
	r := newRing(3)
	var dropped int
	for i := range 5 {
		if r.push(item{a: model.Alert{Value: string(rune('a' + i))}}) {
			dropped++
		}
	}
	got := r.take(nil, 10)
	var vals []string
	for _, it := range got {
		vals = append(vals, it.a.Value)
	}
	if dropped != 2 || strings.Join(vals, "") != "cde" {
		t.Fatalf("dropped %d, kept %v; want 2 and c d e", dropped, vals)
	}
}

// TestGrouping: alerts queued within group_wait go in one message, up to
// group_threshold; one alone waits group_wait and goes alone.
func TestGrouping(t *testing.T) {
	f := newFakeSender()
	m := NewManager()
	if err := m.Add("g", "fake", f, Options{GroupWait: 200 * time.Millisecond, GroupThreshold: 3}); err != nil {
		t.Fatal(err)
	}
	run(t, m)
	for i := range 4 {
		m.Notify(testAlert("198.51.100."+string(rune('1'+i))), nil, []string{"g", "unknown"})
	}
	msgs := f.wait(t, 2)
	if len(msgs[0].Alerts) != 3 || len(msgs[1].Alerts) != 1 {
		t.Fatalf("messages of %d and %d alerts, want 3 then 1", len(msgs[0].Alerts), len(msgs[1].Alerts))
	}
	if msgs[0].Alert.Value != "198.51.100.1" {
		t.Fatalf("first alert %s", msgs[0].Alert.Value)
	}
	start := time.Now()
	m.Notify(testAlert("198.51.100.9"), nil, []string{"g"})
	f.wait(t, 1)
	if waited := time.Since(start); waited < 150*time.Millisecond {
		t.Fatalf("a lone alert went after %s, want about group_wait", waited)
	}
}

// TestRetriesAndPanics: a failing attempt is retried with backoff; a
// panicking sender fails its message, is reported, and the channel goes on.
func TestRetriesAndPanics(t *testing.T) {
	f := newFakeSender()
	f.fail = 2
	m := NewManager()
	var mu sync.Mutex
	var reported []string
	m.OnError = func(ch string, err error) {
		mu.Lock()
		reported = append(reported, ch+": "+err.Error())
		mu.Unlock()
	}
	if err := m.Add("r", "fake", f, Options{Retries: 3, Backoff: 10 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	run(t, m)
	m.Notify(testAlert("198.51.100.1"), nil, []string{"r"})
	f.wait(t, 1)
	st := m.Stats()[0]
	if st.Sent != 1 || st.Attempts != 3 || st.Failed != 0 {
		t.Fatalf("stats %+v, want 1 sent after 3 attempts", st)
	}
	f.mu.Lock()
	f.boom = true
	f.mu.Unlock()
	m.Notify(testAlert("198.51.100.2"), nil, []string{"r"})
	deadline := time.Now().Add(5 * time.Second)
	for m.Stats()[0].Failed == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	st = m.Stats()[0]
	if st.Failed != 1 || !strings.Contains(st.LastError, "sender panicked: template function exploded") {
		t.Fatalf("after a panic: %+v", st)
	}
	f.mu.Lock()
	f.boom = false
	f.mu.Unlock()
	m.Notify(testAlert("198.51.100.3"), nil, []string{"r"})
	f.wait(t, 1)
	mu.Lock()
	defer mu.Unlock()
	if len(reported) != 1 || !strings.HasPrefix(reported[0], "r: 1 alert(s) not sent after 4 attempt(s)") {
		t.Fatalf("reported %q", reported)
	}
}

// TestHangingChannelDropsOldest: a channel whose sender hangs keeps at
// most its queue, counts what it dropped, and Notify never waits on it.
func TestHangingChannelDropsOldest(t *testing.T) {
	f := newFakeSender()
	f.block = true
	m := NewManager()
	if err := m.Add("h", "fake", f, Options{Queue: 10, Timeout: time.Hour, Retries: -1}); err != nil {
		t.Fatal(err)
	}
	run(t, m)
	alerts := make([]model.Alert, 1000)
	for i := range alerts {
		alerts[i] = testAlert(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}).String())
	}
	start := time.Now()
	for _, a := range alerts {
		m.Notify(a, nil, []string{"h"})
	}
	took := time.Since(start)
	t.Logf("1000 Notify calls on a hanging channel: %s", took)
	if took > 50*time.Millisecond {
		t.Fatalf("1000 Notify calls on a hanging channel took %s", took)
	}
	st := m.Stats()[0]
	// One alert is in the hanging attempt, ten wait.
	if st.Queued != 10 || st.Dropped < 989 || st.Dropped > 990 {
		t.Fatalf("stats %+v, want 10 queued and 989 or 990 dropped", st)
	}
}

func TestTemplateFuncsMatchConfig(t *testing.T) {
	got := slices.Sorted(maps.Keys(funcs("")))
	want := slices.Sorted(slices.Values(config.NotifyTemplateFuncs))
	if !slices.Equal(got, want) {
		t.Fatalf("template functions %v, config knows %v", got, want)
	}
}

// TestFromConfigRendersAtLoad: a template that fails on an alert (a field
// that does not exist) stops the load at the channel's key.
func TestFromConfigRendersAtLoad(t *testing.T) {
	cfg, err := config.Parse("moat.yaml", []byte(`notifications:
  hook:
    kind: webhook
    url: http://127.0.0.1:1/x
    body: |
      {"a": 1,
       "c": {{ .Alert.Country }}}
`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = FromConfig(&cfg)
	want := `moat.yaml:7: notification hook: body: line 2 of the template: at <.Alert.Country>: can't evaluate field Country in type notify.Alert`
	if err == nil || err.Error() != want {
		t.Fatalf("FromConfig = %v\nwant %s", err, want)
	}
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("%T is not a config error", err)
	}
}

func TestEventLines(t *testing.T) {
	a := newAlert(model.Alert{Events: []map[string]string{
		{"timestamp": "2026-01-02T03:04:05Z", "source_ip": "198.51.100.1", "target_user": "ad min", "service": "ssh"},
	}}, nil)
	want := `2026-01-02T03:04:05Z service=ssh source_ip=198.51.100.1 target_user="ad min"`
	if len(a.Lines) != 1 || a.Lines[0] != want {
		t.Fatalf("lines %q, want %q", a.Lines, want)
	}
}

// TestMissingMetaKeyRenders: a meta key an alert lacks does not fail the
// message; a password file that cannot be read fails the load at its line.
func TestMissingMetaKeyRenders(t *testing.T) {
	m := channelsFrom(t, `notifications:
  hook: {kind: webhook, url: "http://127.0.0.1:1/x", body: '{{ .Alert.Meta.country }}|{{ index .Alert.Meta "service" }}'}
`)
	w := m.channels["hook"].send.(*webhook)
	body, err := w.body.render(newMessage("hook", "h", []item{{a: SampleAlert(time.Now())}}), maxRender)
	if err != nil || string(body) != "<no value>|ssh" {
		t.Fatalf("render = %q, %v", body, err)
	}
	cfg, err := config.Parse("moat.yaml", []byte(`notifications:
  mail:
    kind: email
    smtp:
      host: 127.0.0.1
      username: moat
      password_file: /nonexistent/smtp.pass
    from: moat@example.org
    to: [root@example.org]
`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = FromConfig(&cfg)
	want := "moat.yaml:7: notification mail: smtp.password_file: open /nonexistent/smtp.pass: no such file or directory"
	if err == nil || err.Error() != want {
		t.Fatalf("FromConfig = %v\nwant %s", err, want)
	}
}

// TestContextTemplate: a template reads the alert context by key, as a
// list to join or as JSON; a key the alert lacks renders empty, and a
// template ranging over every key works on an alert without context.
func TestContextTemplate(t *testing.T) {
	m := channelsFrom(t, `notifications:
  hook:
    kind: webhook
    url: "http://127.0.0.1:1/x"
    headers: {Content-Type: text/plain}
    body: '{{ join "," .Alert.Context.target_user }}|{{ json (index .Alert.Context "target_user") }}|{{ .Alert.Context.nothing }}|{{ range $k, $v := .Alert.Context }}{{ $k }}={{ len $v }};{{ end }}'
`)
	w := m.channels["hook"].send.(*webhook)
	a := SampleAlert(time.Now())
	a.Context = map[string][]string{"target_user": {"root", "ad\"min"}, "target_uri": {"/wp-login.php"}}
	body, err := w.body.render(newMessage("hook", "h", []item{{a: a}}), maxRender)
	if want := `root,ad"min|["root","ad\"min"]|<no value>|target_uri=1;target_user=2;`; err != nil || string(body) != want {
		t.Fatalf("render = %q, %v\nwant %q", body, err, want)
	}
	a.Context = nil
	body, err = w.body.render(newMessage("hook", "h", []item{{a: a}}), maxRender)
	if want := `|null|<no value>|`; err != nil || string(body) != want {
		t.Fatalf("render without context = %q, %v\nwant %q", body, err, want)
	}
}
