package engine

import (
	"runtime"
	"testing"
	"time"
)

// BenchmarkBacktrackerGain replays the sshd and nginx mixes end to end
// twice per iteration, once with the ASCII backtracker and once on Go's
// regexp alone, interleaved so both runs see the same machine load. It
// reports each throughput and their ratio: the backtracker is a second
// regex engine on attacker-controlled text and stays only while this
// ratio is above the run-to-run noise (about ±10 % on a 2-vCPU VM).
func BenchmarkBacktrackerGain(b *testing.B) {
	mixes := []struct {
		name, file, typ string
		args, items     []string
	}{
		{"sshd", "auth.log", "syslog", []string{"--ssh-lines", "1M", "--nginx-lines", "10", "--seed", "1"},
			append(sshItems, "crowdsecurity/ssh-bf")},
		{"nginx", "access.log", "nginx", []string{"--ssh-lines", "10", "--nginx-lines", "200k", "--seed", "1"},
			append(nginxItems, "crowdsecurity/base-http-scenarios")},
	}
	for _, m := range mixes {
		b.Run(m.name, func(b *testing.B) {
			lines, cfg, _ := benchInput(b, m.file, m.typ, m.args, m.items)
			var cpu [2]time.Duration
			var alerts [2]uint64
			for b.Loop() {
				for i, regexpOnly := range []bool{false, true} {
					b.StopTimer()
					// The other run's garbage is collected here, not
					// inside this run's CPU time.
					runtime.GC()
					c := cfg
					c.RegexpOnly = regexpOnly
					e, err := New(c)
					if err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					cpu0, _ := usage()
					for l := range lines.All() {
						e.Process(l)
					}
					cpu1, _ := usage()
					cpu[i] += cpu1 - cpu0
					alerts[i] = e.Stats().Alerts
				}
			}
			if alerts[0] != alerts[1] {
				b.Fatalf("alerts differ: %d with the backtracker, %d on Go's regexp alone", alerts[0], alerts[1])
			}
			n := float64(lines.Len()) * float64(b.N)
			withBT, regexpOnly := n/cpu[0].Seconds(), n/cpu[1].Seconds()
			b.ReportMetric(withBT, "lines/cpu-s")
			b.ReportMetric(regexpOnly, "regexp-only-lines/cpu-s")
			b.ReportMetric(withBT/regexpOnly, "gain")
		})
	}
}
