package store

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/moatsec/moat/internal/model"
)

// sshAlert is an ssh brute-force alert as the shipped scenario raises it:
// sixteen events with the sshd parser's meta.
func sshAlert(i int) (model.Alert, []model.Decision) {
	a := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second)
	al := model.Alert{
		Scenario: "moat/ssh-bf", ScenarioVersion: "0.1", ScenarioHash: "5d41402abc4b2a76b9719d911017c592",
		Message: fmt.Sprintf("Ip %s performed 'moat/ssh-bf' (16 events over 45s) at %s", a, at),
		Scope:   model.ScopeIP, Value: a.String(), Source: netip.PrefixFrom(a, 32),
		Start: at.Add(-45 * time.Second), Stop: at, EventsCount: 16, Remediation: true,
		Labels: map[string]string{"service": "ssh", "type": "bruteforce", "remediation": "true"},
	}
	for j := range 16 {
		al.Events = append(al.Events, map[string]string{
			"timestamp": at.Add(time.Duration(j-16) * 3 * time.Second).Format(time.RFC3339), "source_ip": a.String(),
			"target_user": fmt.Sprintf("user%d", j), "service": "ssh", "log_type": "ssh_failed-auth",
			"machine": "web-01", "datasource_path": "/var/log/auth.log", "datasource_type": "file",
		})
	}
	al.Meta = al.Events[15]
	ds := []model.Decision{{Value: al.Source, Type: "ban", Origin: model.OriginLocal, Scenario: al.Scenario, Reason: al.Scenario, Until: at.Add(4 * time.Hour)}}
	return al, ds
}

// bytesPerAlert stores n alerts with their decisions and returns the
// store's file bytes per alert.
func bytesPerAlert(tb testing.TB, n int) float64 {
	s, err := Open(context.Background(), filepath.Join(tb.TempDir(), FileName), Options{})
	if err != nil {
		tb.Fatal(err)
	}
	defer s.Close()
	for i := range n {
		a, ds := sshAlert(i)
		if _, err := s.InsertAlert(context.Background(), a, ds); err != nil {
			tb.Fatal(err)
		}
	}
	if _, err := s.w.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		tb.Fatal(err)
	}
	return float64(s.Size()) / float64(n)
}

// maxBytesPerAlert bounds the file an ssh brute-force alert of 16 events
// and its ban take: 4,317 bytes measured with the events sampled to 10
// (compressed, 794; see encodeAlert for why they are not).
const maxBytesPerAlert = 5000

func TestBytesPerAlert(t *testing.T) {
	n := 20_000
	if testing.Short() {
		n = 2_000
	}
	got := bytesPerAlert(t, n)
	t.Logf("%.0f bytes of store per alert", got)
	if got > maxBytesPerAlert {
		t.Errorf("%.0f bytes of store per alert, want at most %d", got, maxBytesPerAlert)
	}
}

// BenchmarkBytesPerAlert reports the store's file bytes per stored alert.
func BenchmarkBytesPerAlert(b *testing.B) {
	for b.Loop() {
		b.ReportMetric(bytesPerAlert(b, 100_000), "bytes/alert")
	}
}

// TestAlertStoredForm: an alert reads back as stored, its events sampled
// to the first and last halves of MaxStoredEvents.
func TestAlertStoredForm(t *testing.T) {
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), FileName), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a, _ := sshAlert(7)
	id, err := s.InsertAlert(context.Background(), a, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.GetAlert(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	want := a
	want.Events = append(append([]map[string]string{}, a.Events[:MaxStoredEvents/2]...), a.Events[16-MaxStoredEvents/2:]...)
	if diff := cmp.Diff(want, got.Alert, cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
		t.Fatalf("stored alert changed (-want +got):\n%s", diff)
	}
}

// TestCapAlerts keeps the newest alerts, and those an active ban refers to.
func TestCapAlerts(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), FileName), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var banned int64
	for i := range 30 {
		a, ds := sshAlert(i)
		if i != 3 {
			ds = nil
		}
		id, err := s.InsertAlert(ctx, a, ds)
		if err != nil {
			t.Fatal(err)
		}
		if i == 3 {
			banned = id
		}
	}
	n, err := s.CapAlerts(ctx, 10)
	if err != nil || n != 19 {
		t.Fatalf("CapAlerts deleted %d, %v; want 19", n, err)
	}
	left, err := s.ListAlerts(ctx, AlertFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 11 || left[len(left)-1].ID != banned || left[0].ID != 30 {
		t.Fatalf("%d alerts left (newest %d, oldest %d), want the 10 newest and the banned one %d", len(left), left[0].ID, left[len(left)-1].ID, banned)
	}
}
