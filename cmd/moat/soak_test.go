package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/testutil"
)

// The fault soak: "what moat saw, it acts on exactly once; what it
// enforced, it keeps". A live daemon follows a log file and a private
// journald while a stream of SSH brute forcers (and benign lines) is
// written to both, and is killed (SIGKILL), restarted (SIGTERM, start) and
// reloaded (SIGHUP) over and over, with rename+create and copytruncate
// rotations of the file in between, some while it runs and some while it
// is down. Meanwhile every address seen banned in the kernel sends UDP
// probes from a second namespace every 10 ms; none may arrive.
//
// Checked per cycle: every address in the kernel sets before the fault is
// in them after the restart, and in the store shortly after (a kill may
// land between the kernel write and the store write; the unacknowledged
// line raises the alert again). Checked at the end: every attacker written
// has exactly one decision, of the first-offence duration (a duplicate
// alert after a restart must neither take a second decision nor escalate),
// no other address was banned, and no probe from a banned address arrived.
//
// The test process cannot leave its mount namespace (it is
// multi-threaded), so it re-runs itself under unshare -m to mount the
// private journald, as TestDetectionToKernelLatencyJournald does.

const (
	soakVictim4 = "192.0.2.1"
	soakPeer4   = "192.0.2.2" // the attacker namespace's own address: never banned, probes the path
	soakVictim6 = "2001:db8:ffff::1"
	soakPeer6   = "2001:db8:ffff::2"
	soakPort    = 9999
	// failedPerAttacker is above ssh-bf's capacity (5), below ssh-slow-bf's
	// (10): one alert per attacker, of one scenario.
	failedPerAttacker = 7
	firstOffence      = 4 * time.Hour
)

// soakAttacker returns the i-th attacker address: two of three IPv4 (from
// 198.51.100.0/24 and 203.0.113.0/24), one of three IPv6 (2001:db8:1::/64).
func soakAttacker(i int) netip.Addr {
	switch i % 3 {
	case 2:
		return netip.MustParseAddr(fmt.Sprintf("2001:db8:1::%x", 0x100+i))
	case 0:
		return netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + (i/3)%250)})
	default:
		return netip.AddrFrom4([4]byte{203, 0, 113, byte(1 + (i/3)%250)})
	}
}

func TestSoakFaults(t *testing.T) {
	testutil.RequireRoot(t)
	if os.Getenv("MOAT_SOAK_CHILD") == "1" {
		soakChild(t)
		return
	}
	for _, bin := range []string{"/lib/systemd/systemd-journald", "nft", "unshare", "nsenter"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("the soak needs %s: %v", bin, err)
		}
	}
	cycles, attackers := 50, 480
	if testing.Short() {
		cycles, attackers = 5, 60
	}
	victim, attacker := testutil.NewNetNS(t), testutil.NewNetNS(t)
	va, _ := testutil.VethPair(t, attacker, victim, []string{soakPeer4 + "/24", soakPeer6 + "/64"}, []string{soakVictim4 + "/24", soakVictim6 + "/64"})
	// The attackers' addresses live on the attacker's end, so probes can
	// be sent from each; the victim routes them back through the veth.
	var batch strings.Builder
	for i := 0; i < attackers; i++ {
		a := soakAttacker(i)
		fmt.Fprintf(&batch, "addr add %s/%d dev %s nodad\n", a, a.BitLen(), va.Name)
	}
	cmd := exec.Command("ip", "-n", attacker.Name, "-force", "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.ReplaceAll(batch.String(), "/32 dev "+va.Name+" nodad", "/32 dev "+va.Name))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("attacker addresses: %v\n%s", err, out)
	}
	for _, r := range []string{"198.51.100.0/24", "203.0.113.0/24"} {
		victim.Run(t, "ip", "route", "add", r, "via", soakPeer4)
	}
	victim.Run(t, "ip", "-6", "route", "add", "2001:db8:1::/64", "via", soakPeer6)

	dir := t.TempDir()
	pids := filepath.Join(dir, "pids")
	// Whatever the child started (journald, daemons) dies with the test,
	// even when the child itself was killed.
	t.Cleanup(func() {
		b, _ := os.ReadFile(pids)
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	child := exec.Command("unshare", "-m", "--propagation", "private", os.Args[0], "-test.run=^TestSoakFaults$", "-test.v", "-test.timeout=15m")
	if testing.Short() {
		child.Args = append(child.Args, "-test.short")
	}
	child.Env = append(os.Environ(), "MOAT_SOAK_CHILD=1", "MOAT_SOAK_VICTIM="+victim.Name, "MOAT_SOAK_ATTACKER="+attacker.Name,
		"MOAT_SOAK_DIR="+dir, fmt.Sprintf("MOAT_SOAK_CYCLES=%d", cycles), fmt.Sprintf("MOAT_SOAK_ATTACKERS=%d", attackers))
	out, err := child.StdoutPipe()
	must(t, err)
	child.Stderr = child.Stdout
	must(t, child.Start())
	var all strings.Builder
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		all.WriteString(l + "\n")
		if i := strings.Index(l, "soak:"); i >= 0 {
			t.Log(l[i:])
		}
	}
	if err := child.Wait(); err != nil {
		t.Fatalf("soak child: %v\n%s", err, tail(all.String(), 200))
	}
}

func tail(s string, lines int) string {
	ls := strings.Split(s, "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

func soakChild(t *testing.T) {
	env := func(k string) string {
		v := os.Getenv(k)
		if v == "" {
			t.Fatalf("%s unset", k)
		}
		return v
	}
	cycles, _ := strconv.Atoi(env("MOAT_SOAK_CYCLES"))
	attackers, _ := strconv.Atoi(env("MOAT_SOAK_ATTACKERS"))
	s := &soakEnv{t: t, victim: &testutil.NetNS{Name: env("MOAT_SOAK_VICTIM")}, attacker: &testutil.NetNS{Name: env("MOAT_SOAK_ATTACKER")},
		dir: env("MOAT_SOAK_DIR"), banned: map[netip.Addr]bool{}, probeAdd: make(chan netip.Addr, 1024), burst: make(chan struct{}, 1)}
	s.pidFile = filepath.Join(s.dir, "pids")
	s.startJournald()
	s.writeConfig()

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	s.listen(ctx, &wg)
	wg.Add(1)
	go func() { defer wg.Done(); s.probe(ctx) }()

	s.d = s.start()
	wctx, stopWriting := context.WithCancel(ctx)
	writerDone := make(chan struct{})
	go func() { defer close(writerDone); s.write(wctx, attackers) }()
	wg.Add(1)
	go func() { defer wg.Done(); s.watchBans(ctx) }()

	byKind := map[string]*soakFigs{}
	kinds := []string{"kill", "term", "hup"}
	rng := rand.New(rand.NewPCG(1, uint64(cycles)))
	rotations := map[string]int{}
	for c := 0; c < cycles; c++ {
		kind := kinds[(c+rng.IntN(2))%3]
		if c < 3 {
			kind = kinds[c] // every kind, even in -short
		}
		f := byKind[kind]
		if f == nil {
			f = &soakFigs{}
			byKind[kind] = f
		}
		f.n++
		time.Sleep(time.Duration(1200+rng.IntN(1500)) * time.Millisecond)
		// Rotate every third cycle: alternately rename+create and
		// copytruncate, alternately while running and while down.
		rot, rotDown := "", false
		if c%3 == 1 {
			rot = []string{"rename", "copytruncate"}[(c/3)%2]
			rotDown = kind != "hup" && rng.IntN(2) == 0
		}
		if rot != "" && !rotDown {
			s.rotate(rot, c)
			rotations[rot+" (running)"]++
		}
		// The kernel as the fault finds it (an nft dump takes tens of ms,
		// so it is taken first).
		before := s.kernel()
		// Half the faults land 0-3 ms after an attacker's lines were
		// written: while they are read, raised, banned and stored.
		onBurst := rng.IntN(2) == 0
		if onBurst {
			s.afterBurst(rng)
		}
		leakedBefore := s.leaked.Load()
		f.kernelBefore += len(before)
		t0 := time.Now()
		s.fault(c, kind, rot, rotDown, rotations, f)
		down := time.Since(t0)
		f.down = append(f.down, down)
		s.checkKernelKept(c, kind, before, f)
		t1 := time.Now()
		s.checkStoredKept(c, kind, before, f)
		f.settle = append(f.settle, time.Since(t1))
		leaked := s.leaked.Load() - leakedBefore
		f.leaked += int(leaked)
		t.Logf("soak: cycle %2d %-4s on-burst=%-5v rot=%-22s kernel before %3d, down/reload %v, store settled %v, leaked %d", c, kind, onBurst,
			rot+map[bool]string{true: " (down)", false: ""}[rotDown && rot != ""], len(before), down.Round(time.Millisecond), time.Since(t1).Round(time.Millisecond), leaked)
	}

	// The stream stops; every attacker written must end up banned.
	stopWriting()
	<-writerDone
	s.mu.Lock()
	written := slices.Clone(s.written)
	s.mu.Unlock()
	unbanned := s.awaitBanned(written)
	time.Sleep(500 * time.Millisecond) // the last probes
	if err := s.d.stop(t, syscall.SIGTERM); err != nil {
		t.Errorf("soak: final SIGTERM: %v", err)
	}
	cancel()
	wg.Wait()

	// Exactly once: one decision per attacker, first offence, ssh-bf.
	rows := s.decisions()
	s.checkExactlyOnce(written, rows, unbanned)
	s.checkProbes()
	for _, k := range kinds {
		f := byKind[k]
		if f == nil {
			continue
		}
		t.Logf("soak: %-4s ×%2d: down/reload p50 %v max %v; kernel bans held before %d (sum), lost %d; store caught up late in %d cycles (settle max %v); leaked probes %d; failures %d",
			k, f.n, pct(f.down, 50), pct(f.down, 100), f.kernelBefore, f.lost, f.storeLate, pct(f.settle, 100), f.leaked, f.fails)
	}
	t.Logf("soak: %d cycles, %d daemon starts, rotations %v; %d attackers written (file and journald), %d decisions stored, %d probes sent from banned addresses, %d arrived; %d free probes arrived",
		cycles, s.runs, rotations, len(written), len(rows), s.sent.Load(), s.leaked.Load(), s.freeArrive.Load())
}
