package main

import (
	"math/rand/v2"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// afterBurst waits for an attacker's lines to be written (5 s at most),
// then 0-3 ms more.
func (s *soakEnv) afterBurst(rng *rand.Rand) {
	select {
	case <-s.burst:
	default:
	}
	select {
	case <-s.burst:
	case <-time.After(5 * time.Second):
	}
	time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
}

// fault is one cycle's fault: a kill or a stop and a start (the file
// rotated while down when rotDown), or a reload.
func (s *soakEnv) fault(c int, kind, rot string, rotDown bool, rotations map[string]int, f *soakFigs) {
	t := s.t
	switch kind {
	case "kill", "term":
		sig := syscall.SIGKILL
		if kind == "term" {
			sig = syscall.SIGTERM
		}
		err := s.d.stop(t, sig)
		if kind == "term" && err != nil {
			t.Errorf("soak: cycle %d: exit after SIGTERM: %v\n%s", c, err, tail(s.d.stderr.String(), 40))
			f.fails++
		}
		if rot != "" && rotDown {
			s.rotate(rot, c)
			rotations[rot+" (down)"]++
		}
		s.d = s.start()
	case "hup":
		n := strings.Count(s.d.stderr.String(), "configuration reloaded")
		must(t, s.d.cmd.Process.Signal(syscall.SIGHUP))
		waitFor(t, 20*time.Second, "the reload", func() bool {
			select {
			case err := <-s.d.done:
				t.Fatalf("soak: cycle %d: the daemon exited on SIGHUP: %v\n%s", c, err, tail(s.d.stderr.String(), 40))
			default:
			}
			return strings.Count(s.d.stderr.String(), "configuration reloaded") > n
		})
	}
}

// checkKernelKept: what the kernel held before a fault stays in it.
func (s *soakEnv) checkKernelKept(c int, kind string, before map[netip.Addr]bool, f *soakFigs) {
	t := s.t
	after := s.kernel()
	var lost []string
	for a := range before {
		if !after[a] {
			lost = append(lost, a.String())
		}
	}
	if len(lost) > 0 {
		f.lost += len(lost)
		t.Errorf("soak: cycle %d (%s): %d bans in the kernel before are gone after: %v", c, kind, len(lost), lost)
	}
}

// checkStoredKept: what the kernel held before a fault is stored, at once
// or once the lines a kill left unacknowledged are read again (15 s).
func (s *soakEnv) checkStoredKept(c int, kind string, before map[netip.Addr]bool, f *soakFigs) {
	t := s.t
	t1 := time.Now()
	var missing []netip.Addr
	late := false
	for {
		missing = missing[:0]
		stored := s.stored()
		for a := range before {
			if _, ok := stored[a]; !ok {
				missing = append(missing, a)
			}
		}
		if len(missing) == 0 || time.Since(t1) > 15*time.Second {
			break
		}
		late = true
		time.Sleep(100 * time.Millisecond)
	}
	if late {
		f.storeLate++
	}
	if len(missing) > 0 {
		f.lost += len(missing)
		t.Errorf("soak: cycle %d (%s): %d bans enforced before are not in the store 15s after: %v", c, kind, len(missing), missing)
	}
}
