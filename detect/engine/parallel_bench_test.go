package engine

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/internal/model"
)

// benchRun replays a whole generated corpus once per iteration through a
// fresh engine's Run with 1 and 2 parse workers, and reports wall lines/s
// and lines per CPU-second: what parallel parsing buys, and what the
// hand-off costs.
func benchRun(b *testing.B, file, typ string, args []string, items ...string) {
	lines, cfg, _ := benchInput(b, file, typ, args, items)
	for _, n := range []int{1, 2} {
		b.Run("workers="+strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			var cpu, wall time.Duration
			var alerts uint64
			for b.Loop() {
				b.StopTimer()
				e, err := New(cfg)
				if err != nil {
					b.Fatal(err)
				}
				in := make(chan detect.Line, 4096)
				b.StartTimer()
				cpu0, _ := usage()
				start := time.Now()
				go func() {
					defer close(in)
					for l := range lines.All() {
						in <- l
					}
				}()
				if err := e.Run(context.Background(), in, n, func(detect.Line, []model.Alert) {}); err != nil {
					b.Fatal(err)
				}
				wall += time.Since(start)
				cpu1, _ := usage()
				cpu += cpu1 - cpu0
				alerts = e.Stats().Alerts
			}
			total := float64(lines.Len()) * float64(b.N)
			b.ReportMetric(total/wall.Seconds(), "lines/s")
			b.ReportMetric(total/cpu.Seconds(), "lines/cpu-s")
			b.ReportMetric(float64(alerts), "alerts")
		})
	}
}

// BenchmarkSSHRun: the sshd mix of BenchmarkSSHReplay through Run.
func BenchmarkSSHRun(b *testing.B) {
	benchRun(b, "auth.log", "syslog", []string{"--ssh-lines", "1M", "--nginx-lines", "10", "--seed", "1"},
		append(sshItems, "crowdsecurity/ssh-bf")...)
}

// BenchmarkNginxRun: the nginx mix of BenchmarkNginxReplay through Run.
func BenchmarkNginxRun(b *testing.B) {
	benchRun(b, "access.log", "nginx", []string{"--ssh-lines", "10", "--nginx-lines", "200k", "--seed", "1"},
		append(nginxItems, "crowdsecurity/base-http-scenarios")...)
}
