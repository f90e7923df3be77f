package store

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/model"
)

func TestExpireSome(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, filepath.Join(t.TempDir(), FileName), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	var ds []model.Decision
	for i := range 5 {
		ds = append(ds, model.Decision{Value: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 7, byte(i)}), 32), Type: "ban", Origin: model.OriginCLI, Until: now.Add(time.Duration(i+1) * time.Minute)})
	}
	// A forever ban is never returned, however late the pass.
	ds = append(ds, model.Decision{Value: netip.MustParsePrefix("198.18.7.100/32"), Type: "ban", Origin: model.OriginCLI})
	if err := st.InsertDecisions(ctx, ds); err != nil {
		t.Fatal(err)
	}
	later := now.Add(4*time.Minute + time.Second)
	first, err := st.ExpireSome(ctx, later, 3)
	if err != nil || len(first) != 3 || first[0].ID != ds[0].ID || first[2].ID != ds[2].ID {
		t.Fatalf("first pass: %+v, %v", first, err)
	}
	rest, err := st.ExpireSome(ctx, later, 3)
	if err != nil || len(rest) != 1 || rest[0].ID != ds[3].ID || rest[0].Value != ds[3].Value {
		t.Fatalf("second pass: %+v, %v", rest, err)
	}
	if again, err := st.ExpireSome(ctx, later, 3); err != nil || len(again) != 0 {
		t.Fatalf("third pass: %+v, %v", again, err)
	}
	if never, err := st.ExpireSome(ctx, now.Add(100*365*24*time.Hour), 100); err != nil || len(never) != 1 || never[0].ID != ds[4].ID {
		t.Fatalf("far pass: %+v, %v", never, err)
	}
	active, err := st.Active(ctx, now.Add(100*365*24*time.Hour))
	if err != nil || len(active) != 1 || !active[0].Until.IsZero() {
		t.Fatalf("active: %+v, %v", active, err)
	}
}
