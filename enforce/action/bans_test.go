package action

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/enforce/profile"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/config"
	"github.com/moatsec/moat/internal/model"
)

// kernel records when each ban reached it.
type kernel struct {
	mu   sync.Mutex
	at   map[string]time.Time
	gone map[string]bool
}

func (k *kernel) Apply(_ context.Context, add, remove []model.Decision) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, d := range add {
		k.at[model.ValueString(d.Value)] = time.Now()
	}
	for _, d := range remove {
		k.gone[model.ValueString(d.Value)] = true
	}
	return nil
}

func (k *kernel) held(v string) (time.Time, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	t, ok := k.at[v]
	return t, ok
}

// TestSlowActionDoesNotDelayBans: bans from alerts go through the decision
// service while every action run hangs for a minute; each ban still
// reaches the kernel at once, and before its action starts.
func TestSlowActionDoesNotDelayBans(t *testing.T) {
	dir := t.TempDir()
	// The action records when it started, then hangs.
	slow := script(t, dir, "slow.sh", `date +%s%N > "$1/.tmp-$MOAT_VALUE"
mv "$1/.tmp-$MOAT_VALUE" "$1/started-$MOAT_VALUE"
sleep 60
`)
	st, err := store.Open(context.Background(), filepath.Join(dir, store.FileName), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	prof, err := profile.Parse("p.yaml", []byte("name: all\nfilters: [\"true\"]\ndecisions: [{type: ban, duration: 1h}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	k := &kernel{at: map[string]time.Time{}, gone: map[string]bool{}}
	svc, err := decision.New(st, prof, k)
	if err != nil {
		t.Fatal(err)
	}
	m := New(compile(t, "slow", config.Action{Command: slow, Args: []string{dir}, On: []string{"ban", "unban"}, Timeout: time.Minute, Concurrency: 2, Queue: 4}))
	svc.Enforced = m.Enforced
	start(t, m)

	const bans = 50
	ctx := context.Background()
	began := time.Now()
	for i := range bans {
		a := netip.AddrFrom4([4]byte{198, 18, 30, byte(i)})
		alert := model.Alert{Scenario: "crowdsecurity/ssh-bf", Scope: model.ScopeIP, Value: a.String(), Source: netip.PrefixFrom(a, 32), Remediation: true}
		if _, err := svc.HandleAlert(ctx, alert); err != nil {
			t.Fatal(err)
		}
		if _, ok := k.held(a.String()); !ok {
			t.Fatalf("ban %d not in the kernel when HandleAlert returned", i)
		}
	}
	// Each action run takes a minute and only two run at once: had a ban
	// waited for one, 50 bans would take 25 minutes, not seconds.
	if took := time.Since(began); took > 20*time.Second {
		t.Fatalf("%d bans took %s with a slow action", bans, took)
	}
	if _, err := svc.Delete(ctx, store.Filter{Value: "198.18.30.0"}); err != nil {
		t.Fatal(err)
	}
	// The first two bans' actions start; each started after its ban was
	// in the kernel.
	waitFor(t, "two actions to start", func() bool {
		ms, _ := filepath.Glob(filepath.Join(dir, "started-*"))
		return len(ms) == 2
	})
	ms, _ := filepath.Glob(filepath.Join(dir, "started-*"))
	for _, f := range ms {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var ns int64
		fmt.Sscan(strings.TrimSpace(string(data)), &ns)
		banned, ok := k.held(strings.TrimPrefix(filepath.Base(f), "started-"))
		if !ok || time.Unix(0, ns).Before(banned) {
			t.Errorf("%s: action started at %v, ban in the kernel at %v (held %v)", f, time.Unix(0, ns), banned, ok)
		}
	}
	s := m.Stats()[0]
	// 50 bans and an unban: two running, at most four queued (how many
	// the workers took during the loop varies), the rest dropped.
	if s.Dropped+uint64(s.Queued) != bans+1-2 || s.Queued > 4 {
		t.Errorf("stats: dropped %d queued %d, want %d in all, at most 4 queued", s.Dropped, s.Queued, bans+1-2)
	}
}
