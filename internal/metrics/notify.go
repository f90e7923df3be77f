package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// NotifyStat is one notification channel's counters, copied from
// enforce/notify at scrape time.
type NotifyStat struct {
	Name, Kind string
	// Sent and Failed count messages; Dropped counts alerts pushed out
	// of the full queue; Queued the alerts waiting now.
	Sent, Failed, Dropped uint64
	Queued                int
	// Latency is the send attempts' durations: Buckets[i] counts those
	// at or under LatencyBounds[i] (not cumulative).
	LatencyBounds []float64
	Buckets       []uint64
	LatencyCount  uint64
	LatencySum    float64
}

// Notifications reads the channels' counters.
type Notifications interface {
	NotifyStats() []NotifyStat
}

// NotifyCollector exposes the notification channels' counters, built at
// scrape time. Register it with Server.Registry.
type NotifyCollector struct {
	n                                     Notifications
	sent, failed, dropped, queue, latency *prometheus.Desc
}

// NewNotifyCollector returns the collector over n.
func NewNotifyCollector(n Notifications) *NotifyCollector {
	l := []string{"channel", "kind"}
	return &NotifyCollector{
		n:       n,
		sent:    desc("moat_notification_sent_total", "Notification messages delivered (a group of alerts is one message).", l...),
		failed:  desc("moat_notification_failed_total", "Notification messages given up on after their retries.", l...),
		dropped: desc("moat_notification_dropped_total", "Alerts dropped from a full notification queue, oldest first.", l...),
		queue:   desc("moat_notification_queue_length", "Alerts waiting in a notification channel's queue.", l...),
		latency: desc("moat_notification_send_duration_seconds", "Duration of each notification send attempt.", l...),
	}
}

func (c *NotifyCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.sent, c.failed, c.dropped, c.queue, c.latency} {
		ch <- d
	}
}

func (c *NotifyCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.n.NotifyStats() {
		counter(ch, c.sent, s.Sent, s.Name, s.Kind)
		counter(ch, c.failed, s.Failed, s.Name, s.Kind)
		counter(ch, c.dropped, s.Dropped, s.Name, s.Kind)
		gauge(ch, c.queue, float64(s.Queued), s.Name, s.Kind)
		buckets := make(map[float64]uint64, len(s.LatencyBounds))
		var cum uint64
		for i, b := range s.LatencyBounds {
			if i < len(s.Buckets) {
				cum += s.Buckets[i]
			}
			buckets[b] = cum
		}
		ch <- prometheus.MustNewConstHistogram(c.latency, s.LatencyCount, s.LatencySum, buckets, s.Name, s.Kind)
	}
}
