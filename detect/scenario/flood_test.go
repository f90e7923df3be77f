package scenario

import (
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/detect"
)

const sshLike = `type: leaky
name: test/ssh-bf
description: "ssh bruteforce"
filter: "evt.Meta.log_type == 'ssh_failed-auth'"
leakspeed: 10s
capacity: 5
groupby: evt.Meta.source_ip
blackhole: 1m
labels:
  remediation: true
---
type: leaky
name: test/ssh-bf_user-enum
description: "ssh user enumeration"
filter: evt.Meta.log_type == 'ssh_failed-auth'
groupby: evt.Meta.source_ip
distinct: evt.Meta.target_user
leakspeed: 10s
capacity: 5
blackhole: 1m
labels:
  remediation: true
`

func writeScenario(tb testing.TB, body string) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "s.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		tb.Fatal(err)
	}
	return p
}

// floodAddr is the i-th address of 198.18.0.0/15.
func floodAddr(i int) string {
	return netip.AddrFrom4([4]byte{198, 18 + byte(i>>16&1), byte(i >> 8), byte(i)}).String()
}

func sshEvent(ip, user string, t time.Time) *detect.Event {
	e := detect.NewEvent(detect.Line{Raw: "Failed password for " + user + " from " + ip, Src: "/var/log/auth.log", Module: "file", ReadAt: t, Process: true})
	e.Time = t
	e.Meta["log_type"] = "ssh_failed-auth"
	e.Meta["service"] = "ssh"
	e.Meta["source_ip"] = ip
	e.Meta["target_user"] = user
	e.Parsed["sshd_client_ip"] = ip
	e.Parsed["sshd_invalid_user"] = user
	return e
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestRandomEvents pours random events into every case scenario and the
// hub's: nothing panics, and every alert names a source and a scenario.
func TestRandomEvents(t *testing.T) {
	files, _ := filepath.Glob("testdata/*/scenario.yaml")
	set, err := Load(files, Options{MaxBuckets: 50})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	keys := []string{"log_type", "source_ip", "target_user", "http_path", "service", "SourceRange"}
	vals := []string{"ssh_failed-auth", "auth_success", "http_access-log", "ssh_success", "198.18.0.1", "2001:db8::1", "not-an-ip", "", "/.env", "198.18.0.0/24", "bad/range", "root"}
	t0 := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	alerts := 0
	for i := range 20000 {
		e := detect.NewEvent(detect.Line{})
		for range rng.IntN(6) {
			e.Meta[keys[rng.IntN(len(keys))]] = vals[rng.IntN(len(vals))]
		}
		if rng.IntN(2) == 0 {
			e.Meta["log_type"] = vals[rng.IntN(4)]
		}
		e.Parsed["verb"] = []string{"GET", "POST"}[rng.IntN(2)]
		// Time mostly moves forward, sometimes back, sometimes unset.
		switch rng.IntN(10) {
		case 0:
		case 1:
			e.Time = t0.Add(-time.Duration(rng.IntN(100)) * time.Second)
		default:
			e.Time = t0.Add(time.Duration(i) * time.Second / 3)
		}
		for _, a := range set.Pour(e) {
			alerts++
			if a.Scenario == "" || a.Value == "" || a.EventsCount < 1 || len(a.Events) == 0 {
				t.Fatalf("malformed alert %+v", a)
			}
			if (a.Scope == "Ip" || a.Scope == "Range") && !a.Source.IsValid() {
				t.Fatalf("alert without parsed source: %+v", a)
			}
		}
		if i%1000 == 0 {
			set.Tick(t0.Add(time.Duration(i) * time.Second / 3))
		}
	}
	set.Flush()
	if st := set.Stats(); st.Buckets != 0 {
		t.Errorf("%d buckets after Flush", st.Buckets)
	}
	if alerts == 0 {
		t.Error("random events raised no alert at all")
	}
}

// FuzzPour checks that arbitrary meta never panics and that alerts always
// carry their scenario and a source.
func FuzzPour(f *testing.F) {
	f.Add("ssh_failed-auth", "198.18.0.1", "root", int64(0))
	f.Add("http_access-log", "2001:db8::1", "/.env", int64(5e9))
	files, _ := filepath.Glob("testdata/*/scenario.yaml")
	set, err := Load(files, Options{MaxBuckets: 100})
	if err != nil {
		f.Fatal(err)
	}
	t0 := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, logType, ip, other string, dt int64) {
		e := detect.NewEvent(detect.Line{})
		e.Time = t0.Add(time.Duration(dt))
		e.Meta["log_type"] = logType
		e.Meta["source_ip"] = ip
		e.Meta["target_user"] = other
		e.Meta["http_path"] = other
		e.Parsed["verb"] = "POST"
		for _, a := range set.Pour(e) {
			if a.Scenario == "" || a.Value == "" {
				t.Fatalf("malformed alert %+v", a)
			}
		}
	})
}

// TestLoadErrors checks that bad files fail with file and line.
func TestLoadErrors(t *testing.T) {
	cases := []struct {
		name, body, want string
	}{
		{"unknown key", "type: trigger\nname: a\ndescription: d\nfilter: 'true'\nbogus: 1\n", `s.yaml:5: unknown key "bogus"`},
		{"second document", "type: trigger\nname: a\ndescription: d\nfilter: 'true'\n---\ntype: leaky\nname: b\ndescription: d\nfilter: 'true'\ncapacity: 0\nleakspeed: 1s\n", ":10: scenario b: bad capacity"},
		{"bad filter", "type: trigger\nname: a\ndescription: d\nfilter: 'evt.Nope'\n", ":4: scenario a: filter"},
		{"bad type", "type: sieve\nname: a\ndescription: d\nfilter: 'true'\n", `unknown type "sieve"`},
		{"counter capacity", "type: counter\nname: a\ndescription: d\nfilter: 'true'\nduration: 1s\ncapacity: 3\n", "capacity -1"},
		{"format", "format: 9.0\ntype: trigger\nname: a\ndescription: d\nfilter: 'true'\n", "newer than"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load([]string{writeScenario(t, c.body)}, Options{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
}

// TestTickCounter checks that live mode fires counters from the clock.
func TestTickCounter(t *testing.T) {
	set, err := Load([]string{"testdata/counter/scenario.yaml"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	e := detect.NewEvent(detect.Line{ReadAt: t0})
	e.Time = t0
	e.Meta["log_type"], e.Meta["source_ip"] = "http_access-log", "198.18.0.5"
	if a := set.Pour(e); len(a) != 0 {
		t.Fatalf("counter fired at once: %v", a)
	}
	if a := set.Tick(t0.Add(59 * time.Second)); len(a) != 0 {
		t.Fatalf("counter fired early: %v", a)
	}
	a := set.Tick(t0.Add(61 * time.Second))
	if len(a) != 1 || a[0].Value != "198.18.0.5" || a[0].EventsCount != 1 || !a[0].ReadAt.Equal(t0) {
		t.Fatalf("tick gave %+v", a)
	}
	if st := set.Stats(); st.Buckets != 0 {
		t.Errorf("%d buckets left after the counter fired", st.Buckets)
	}
}
