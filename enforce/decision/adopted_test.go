package decision

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
)

// kernelMem is a kernel backend in memory.
type kernelMem struct {
	mu   sync.Mutex
	held map[netip.Prefix]time.Time
}

func (k *kernelMem) Name() string { return "mem" }

func (k *kernelMem) Apply(_ context.Context, d enforce.Diff) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, p := range d.Delete {
		delete(k.held, p)
	}
	for _, e := range d.Set {
		k.held[e.Prefix] = e.Expiry
	}
	return nil
}

func (k *kernelMem) List(context.Context) ([]enforce.Entry, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []enforce.Entry
	for p, e := range k.held {
		out = append(out, enforce.Entry{Prefix: p, Expiry: e})
	}
	return out, nil
}

func (k *kernelMem) has(p string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.held[netip.MustParsePrefix(p)]
	return ok
}

// TestDeleteReachesAdoptedBans: a ban the kernel holds from an earlier run
// that never stored it (adopted at start) is deleted by a delete naming its
// value, as moat decisions delete --ip and the API's delete do, and counted
// in what the delete returns; a filter naming what an adopted ban lacks
// leaves it alone.
func TestDeleteReachesAdoptedBans(t *testing.T) {
	const adopted, adoptedRange, stored = "198.18.6.1", "198.18.7.0/24", "198.18.6.2"
	cases := []struct {
		name string
		f    store.Filter
		all  bool
		want []string // values deleted, sorted
	}{
		{"ip", store.Filter{IP: netip.MustParseAddr(adopted)}, false, []string{adopted + "/32"}},
		{"value", store.Filter{Value: adopted}, false, []string{adopted + "/32"}},
		{"ip in an adopted range", store.Filter{IP: netip.MustParseAddr("198.18.7.9")}, false, []string{adoptedRange}},
		{"stored ip", store.Filter{IP: netip.MustParseAddr(stored)}, false, []string{stored + "/32"}},
		{"scope ip and type ban", store.Filter{IP: netip.MustParseAddr(adopted), Scope: "ip", Type: "ban"}, false, []string{adopted + "/32"}},
		{"origin", store.Filter{IP: netip.MustParseAddr(adopted), Origin: "cli"}, false, nil},
		{"scenario", store.Filter{Value: adopted, Scenario: "ssh"}, false, nil},
		{"all", store.Filter{}, true, []string{adopted + "/32", stored + "/32", adoptedRange}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			until := time.Now().Add(time.Hour).Truncate(time.Millisecond)
			k := &kernelMem{held: map[netip.Prefix]time.Time{
				netip.MustParsePrefix(adopted + "/32"): until,
				netip.MustParsePrefix(adoptedRange):    until,
			}}
			var svc *Service
			r := enforce.NewReconciler(enforce.ReconcilerConfig{Load: func(ctx context.Context, load func([]model.Decision) error) error {
				return sqlStore(svc).ActivePages(ctx, time.Now(), 0, load)
			}}, k)
			svc = newService(t, r)
			if err := sqlStore(svc).InsertDecisions(ctx, []model.Decision{{Value: netip.MustParsePrefix(stored + "/32"), Type: "ban", Origin: model.OriginCLI, Until: until}}); err != nil {
				t.Fatal(err)
			}
			rctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- r.Run(rctx) }()
			t.Cleanup(func() { cancel(); <-done })
			select {
			case <-r.Ready():
			case <-time.After(10 * time.Second):
				t.Fatal("the reconciler never became ready")
			}
			if _, err := r.Verify(ctx); err != nil {
				t.Fatal(err)
			}
			if r.Adopted() != 2 || !k.has(stored+"/32") {
				t.Fatalf("start adopted %d, stored ban held %v; want 2 adopted and the stored ban held", r.Adopted(), k.has(stored+"/32"))
			}

			var ds []model.Decision
			var err error
			if c.all {
				ds, err = svc.DeleteAll(ctx)
			} else {
				ds, err = svc.Delete(ctx, c.f)
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, d := range ds {
				got = append(got, d.Value.String())
				if d.ID == 0 && (d.Reason != AdoptedReason || !d.Until.Equal(until)) {
					t.Errorf("adopted ban reported as %+v, want reason %q and its kernel expiry", d, AdoptedReason)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, c.want) {
				t.Fatalf("deleted %v, want %v", got, c.want)
			}
			for _, p := range []string{adopted + "/32", adoptedRange, stored + "/32"} {
				if held, want := k.has(p), !slices.Contains(c.want, p); held != want {
					t.Errorf("%s in the kernel: %v, want %v", p, held, want)
				}
			}
		})
	}
}
