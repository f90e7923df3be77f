package scenario

import (
	"runtime"
	"testing"
	"time"

	"github.com/moatsec/moat/detect"
)

func hubSet(b *testing.B) *Set {
	b.Helper()
	env := hubEnv(b)
	var files []string
	for _, f := range hubScenarioFiles(b) {
		if _, err := Load([]string{f}, Options{Env: env}); err == nil {
			files = append(files, f)
		}
	}
	set, err := Load(files, Options{Env: env})
	if err != nil {
		b.Fatal(err)
	}
	return set
}

func reportRate(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkPourNoMatch pours events that match no scenario of the whole
// hub: the cost every unrelated log line pays.
func BenchmarkPourNoMatch(b *testing.B) {
	set := hubSet(b)
	e := detect.NewEvent(detect.Line{})
	e.Time = time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	e.Meta["log_type"] = "cron_job"
	e.Meta["service"] = "cron"
	e.Meta["source_ip"] = "198.18.0.1"
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if set.Pour(e) != nil {
			b.Fatal("unexpected alert")
		}
	}
	reportRate(b)
}

// BenchmarkPourMatchHub pours ssh failures from a rotating set of sources
// through every hub scenario: filters run, leaky buckets fill and leak,
// and some overflow.
func BenchmarkPourMatchHub(b *testing.B) {
	set := hubSet(b)
	benchPourSSH(b, set)
}

// BenchmarkPourMatchSSH is the same with only ssh-bf-like scenarios.
func BenchmarkPourMatchSSH(b *testing.B) {
	set, err := Load([]string{writeScenario(b, sshLike)}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	benchPourSSH(b, set)
}

func benchPourSSH(b *testing.B, set *Set) {
	const sources = 1024
	t0 := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	evs := make([]*detect.Event, sources)
	for i := range evs {
		evs[i] = sshEvent(floodAddr(i), "root", t0)
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		e := evs[i%sources]
		// One event per source per second: a slow brute force that
		// overflows now and then.
		e.Time = t0.Add(time.Duration(i/sources) * time.Second)
		set.Pour(e)
		i++
	}
	reportRate(b)
}

// BenchmarkFlood1M pours 1M distinct sources into ssh-bf-like scenarios
// and reports the heap the set holds afterwards.
func BenchmarkFlood1M(b *testing.B) {
	t0 := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	const n = 1_000_000
	for b.Loop() {
		set, err := Load([]string{writeScenario(b, sshLike)}, Options{})
		if err != nil {
			b.Fatal(err)
		}
		before := heapInUse()
		start := time.Now()
		for i := range n {
			// A fresh event per source keeps the retained events realistic.
			e := sshEvent(floodAddr(i), "root", t0.Add(time.Duration(i)*10*time.Microsecond))
			set.Pour(e)
		}
		el := time.Since(start)
		after := heapInUse()
		b.ReportMetric(float64(n)/el.Seconds(), "events/s")
		b.ReportMetric(float64(int64(after)-int64(before))/(1<<20), "heap-MiB")
		b.ReportMetric(float64(set.Stats().Evictions), "evictions")
		runtime.KeepAlive(set)
	}
}

// BenchmarkPourNoMatchSSH is the unrelated-line cost with prefiltered
// scenarios only: a map lookup, no expr VM.
func BenchmarkPourNoMatchSSH(b *testing.B) {
	set, err := Load([]string{writeScenario(b, sshLike)}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	e := detect.NewEvent(detect.Line{})
	e.Time = time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	e.Meta["log_type"] = "cron_job"
	b.ReportAllocs()
	for b.Loop() {
		if set.Pour(e) != nil {
			b.Fatal("unexpected alert")
		}
	}
	reportRate(b)
}
