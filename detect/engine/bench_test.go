package engine

import (
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// benchInput generates a corpus with gen-corpus args into out and returns
// the lines of one of its files and an engine configuration for items.
func benchInput(b *testing.B, file, typ string, args, items []string) (lines corpusLines, cfg Config, out string) {
	dir := shared(b)
	out, year := corpus(b, dir, args...)
	cfg = hubConfig(dir, items...)
	cfg.Year = year
	return readLines(b, filepath.Join(out, file), typ), cfg, out
}

// benchEngine replays a generated corpus file through an engine built
// from items, b.N lines (cycling), and reports lines/s on one core. Cycling
// moves log time back at each turn, which re-arms buckets and blackholes:
// the overflow count is not a replay's; benchReplay's is.
func benchEngine(b *testing.B, file, typ string, items ...string) {
	lines, cfg, _ := benchInput(b, file, typ, []string{"--ssh-lines", "200k", "--nginx-lines", "50k", "--seed", "1"}, items)
	e, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0, _ := usage()
	start := time.Now()
	n := 0
	for b.Loop() {
		e.Process(lines.At(n % lines.Len()))
		n++
	}
	el := time.Since(start)
	b.ReportMetric(float64(n)/el.Seconds(), "lines/s")
	// On a shared machine wall time understates what a core does; the
	// process CPU time gives lines per CPU-second.
	if cpu1, _ := usage(); cpu1 > cpu0 {
		b.ReportMetric(float64(n)/(cpu1-cpu0).Seconds(), "lines/cpu-s")
	}
	st := e.Stats()
	b.ReportMetric(float64(st.Alerts), "alerts")
}

var sshItems = []string{"crowdsecurity/syslog-logs", "crowdsecurity/sshd-logs", "crowdsecurity/dateparse-enrich"}

// BenchmarkSSHParse: syslog-logs + sshd-logs + dateparse on auth.log.
func BenchmarkSSHParse(b *testing.B) {
	benchEngine(b, "auth.log", "syslog", sshItems...)
}

// BenchmarkSSHMix adds the ssh-bf scenarios.
func BenchmarkSSHMix(b *testing.B) {
	benchEngine(b, "auth.log", "syslog", append(sshItems, "crowdsecurity/ssh-bf", "crowdsecurity/ssh-slow-bf")...)
}

var nginxItems = []string{"crowdsecurity/syslog-logs", "crowdsecurity/nginx-logs", "crowdsecurity/http-logs", "crowdsecurity/dateparse-enrich"}

// BenchmarkNginxParse: syslog-logs (its non-syslog node) + nginx-logs + http-logs + dateparse on access.log.
func BenchmarkNginxParse(b *testing.B) {
	benchEngine(b, "access.log", "nginx", nginxItems...)
}

// BenchmarkNginxMix adds the base HTTP scenarios collection.
func BenchmarkNginxMix(b *testing.B) {
	benchEngine(b, "access.log", "nginx", append(nginxItems, "crowdsecurity/base-http-scenarios")...)
}

// benchReplay replays a whole generated corpus once per iteration, in log
// order, through a fresh engine: the realistic case (time only moves
// forward, buckets and blackholes behave as in a real replay).
func benchReplay(b *testing.B, file, typ string, args []string, items ...string) {
	lines, cfg, out := benchInput(b, file, typ, args, items)
	b.ReportAllocs()
	var cpu, wall time.Duration
	var alerts, flt uint64
	alerted := map[string]string{}
	for b.Loop() {
		b.StopTimer()
		e, err := New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		clear(alerted)
		b.StartTimer()
		cpu0, f0 := usage()
		start := time.Now()
		for l := range lines.All() {
			for _, a := range e.Process(l) {
				alerted[a.Value] = a.Scenario
			}
		}
		wall += time.Since(start)
		cpu1, f1 := usage()
		cpu += cpu1 - cpu0
		flt += f1 - f0
		alerts = e.Stats().Alerts
	}
	n := float64(lines.Len()) * float64(b.N)
	b.ReportMetric(n/wall.Seconds(), "lines/s")
	b.ReportMetric(n/cpu.Seconds(), "lines/cpu-s")
	b.ReportMetric(float64(alerts), "alerts")
	b.ReportMetric(float64(flt)/float64(b.N), "page-faults")
	// Detections against the corpus's ground truth.
	v := judge(readTruth(b, filepath.Join(out, "truth.tsv"), file), alerted)
	b.ReportMetric(float64(v.caught), "caught")
	b.ReportMetric(float64(len(v.missed)), "missed")
	b.ReportMetric(float64(len(v.falseBans)), "false-bans")
}

// BenchmarkSSHReplay: the sshd mix (syslog-logs, sshd-logs, dateparse,
// ssh-bf) over a 1M-line auth.log, once through.
func BenchmarkSSHReplay(b *testing.B) {
	benchReplay(b, "auth.log", "syslog", []string{"--ssh-lines", "1M", "--nginx-lines", "10", "--seed", "1"},
		append(sshItems, "crowdsecurity/ssh-bf")...)
}

// BenchmarkSSHSlowReplay adds ssh-slow-bf, as the sshd collection does:
// four scenarios fill a bucket for each failed login.
func BenchmarkSSHSlowReplay(b *testing.B) {
	benchReplay(b, "auth.log", "syslog", []string{"--ssh-lines", "1M", "--nginx-lines", "10", "--seed", "1"},
		append(sshItems, "crowdsecurity/ssh-bf", "crowdsecurity/ssh-slow-bf")...)
}

// BenchmarkNginxReplay: the nginx mix over a 200k-line access.log.
func BenchmarkNginxReplay(b *testing.B) {
	benchReplay(b, "access.log", "nginx", []string{"--ssh-lines", "10", "--nginx-lines", "200k", "--seed", "1"},
		append(nginxItems, "crowdsecurity/base-http-scenarios")...)
}

// usage returns the CPU time the process used and the page faults it
// took: on a VM, touching a fresh page can cost more than the work done on
// it.
func usage() (time.Duration, uint64) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), uint64(ru.Minflt + ru.Majflt)
}
