package metrics

import (
	"bytes"
	"os/exec"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

type fakeNotify []NotifyStat

func (f fakeNotify) NotifyStats() []NotifyStat { return f }

func TestNotifyCollector(t *testing.T) {
	c := NewNotifyCollector(fakeNotify{{
		Name: "slack", Kind: "webhook", Sent: 7, Failed: 1, Dropped: 3, Queued: 2,
		LatencyBounds: []float64{0.1, 1}, Buckets: []uint64{5, 2}, LatencyCount: 8, LatencySum: 1.5,
	}})
	want := `# HELP moat_notification_dropped_total Alerts dropped from a full notification queue, oldest first.
# TYPE moat_notification_dropped_total counter
moat_notification_dropped_total{channel="slack",kind="webhook"} 3
# HELP moat_notification_failed_total Notification messages given up on after their retries.
# TYPE moat_notification_failed_total counter
moat_notification_failed_total{channel="slack",kind="webhook"} 1
# HELP moat_notification_queue_length Alerts waiting in a notification channel's queue.
# TYPE moat_notification_queue_length gauge
moat_notification_queue_length{channel="slack",kind="webhook"} 2
# HELP moat_notification_send_duration_seconds Duration of each notification send attempt.
# TYPE moat_notification_send_duration_seconds histogram
moat_notification_send_duration_seconds_bucket{channel="slack",kind="webhook",le="0.1"} 5
moat_notification_send_duration_seconds_bucket{channel="slack",kind="webhook",le="1"} 7
moat_notification_send_duration_seconds_bucket{channel="slack",kind="webhook",le="+Inf"} 8
moat_notification_send_duration_seconds_sum{channel="slack",kind="webhook"} 1.5
moat_notification_send_duration_seconds_count{channel="slack",kind="webhook"} 8
# HELP moat_notification_sent_total Notification messages delivered (a group of alerts is one message).
# TYPE moat_notification_sent_total counter
moat_notification_sent_total{channel="slack",kind="webhook"} 7
`
	reg := prometheus.NewRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range fams {
		if err := enc.Encode(f); err != nil {
			t.Fatal(err)
		}
	}
	if buf.String() != want {
		t.Fatalf("scrape\n%s\nwant\n%s", buf.String(), want)
	}
	// Linted as the golden scrape is.
	promtool := needTool(t, "promtool", "prometheus")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}
