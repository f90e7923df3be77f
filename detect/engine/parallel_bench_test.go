package engine

import (
	"context"
	"os"
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
	benchRunWith(b, cfg, lines)
}

// benchRunWith is benchRun for a configuration of the caller's.
func benchRunWith(b *testing.B, cfg Config, lines corpusLines) {
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

// benchDebianRun is benchRun on the hub snapshot Debian's crowdsec package
// installs: what a Debian user loads, not the snapshot moat is tested on.
func benchDebianRun(b *testing.B, file, typ string, args []string, items ...string) {
	if _, err := os.Stat(debianHub.HubDir); err != nil {
		b.Skipf("Debian's hub snapshot is not installed (apt-get install crowdsec): %v", err)
	}
	lines, gen, _ := benchInput(b, file, typ, args, nil)
	cfg := debianHub
	cfg.Items, cfg.Replay, cfg.Year = append(items, baseItems...), true, gen.Year
	benchRunWith(b, cfg, lines)
}

// BenchmarkDebianNginxRun: Debian's nginx collection and the whitelists
// (with the parsers every install has, see baseItems) over a 200k-line
// access.log.
func BenchmarkDebianNginxRun(b *testing.B) {
	benchDebianRun(b, "access.log", "nginx", []string{"--ssh-lines", "10", "--nginx-lines", "200k", "--seed", "1"},
		"crowdsecurity/nginx", "crowdsecurity/whitelist-good-actors")
}

// BenchmarkDebianLinuxRun: Debian's linux collection over a 1M-line
// auth.log.
func BenchmarkDebianLinuxRun(b *testing.B) {
	benchDebianRun(b, "auth.log", "syslog", []string{"--ssh-lines", "1M", "--nginx-lines", "10", "--seed", "1"},
		"crowdsecurity/linux")
}

// BenchmarkNginxGuards is BenchmarkNginxRun with the filter guards off
// and on (see scenario.Options.NoGuards): what deciding the HTTP
// scenarios' literal tests at once saves.
func BenchmarkNginxGuards(b *testing.B) {
	lines, cfg, _ := benchInput(b, "access.log", "nginx", []string{"--ssh-lines", "10", "--nginx-lines", "200k", "--seed", "1"},
		append(nginxItems, "crowdsecurity/base-http-scenarios"))
	for _, guards := range []string{"off", "on"} {
		b.Run("guards="+guards, func(b *testing.B) {
			c := cfg
			c.NoGuards = guards == "off"
			benchRunWith(b, c, lines)
		})
	}
}
