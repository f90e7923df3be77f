package engine

import (
	"path/filepath"
	"testing"
	"time"
)

// benchReplay replays a whole generated corpus once per iteration, in log
// order, through a fresh engine: the realistic case (time only moves
// forward, buckets and blackholes behave as in a real replay).
func benchReplay(b *testing.B, file, typ string, args []string, items ...string) {
	dir := shared(b)
	out, year := corpus(b, dir, args...)
	lines := readLines(b, filepath.Join(out, file), typ)
	cfg := hubConfig(dir, items...)
	cfg.Year = year
	b.ReportAllocs()
	var cpu, wall time.Duration
	var alerts uint64
	for b.Loop() {
		b.StopTimer()
		e, err := New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		cpu0, start := cpuTime(), time.Now()
		for _, l := range lines {
			e.Process(l)
		}
		wall += time.Since(start)
		cpu += cpuTime() - cpu0
		alerts = e.Stats().Alerts
	}
	n := float64(len(lines)) * float64(b.N)
	b.ReportMetric(n/wall.Seconds(), "lines/s")
	b.ReportMetric(n/cpu.Seconds(), "lines/cpu-s")
	b.ReportMetric(float64(alerts), "alerts")
}

func BenchmarkSSHReplay(b *testing.B) {
	benchReplay(b, "auth.log", "syslog", []string{"--ssh-lines", "1M", "--nginx-lines", "10", "--seed", "1"},
		append(sshItems, "crowdsecurity/ssh-bf", "crowdsecurity/ssh-slow-bf")...)
}
