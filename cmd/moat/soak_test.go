package main

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/journal"

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

// soakEnv is the child's world: namespaces, files, the daemon and the
// counters the checks read.
type soakEnv struct {
	t                *testing.T
	victim, attacker *testutil.NetNS
	dir, cfgPath     string
	logPath, dbPath  string
	pidFile          string

	fileMu sync.Mutex // the writer against rotations

	mu      sync.Mutex
	written []netip.Addr // attackers whose lines are written, in order
	banned  map[netip.Addr]bool

	probeAdd           chan netip.Addr
	burst              chan struct{} // an attacker's lines were just written
	leaked, freeArrive atomic.Int64
	leakedFrom         sync.Map // netip.Addr -> *atomic.Int64
	sent               atomic.Int64

	d    *daemonProc
	runs int
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

	type figs struct {
		n                        int
		down, settle             []time.Duration
		kernelBefore, lost       int
		storeLate, leaked, fails int
	}
	byKind := map[string]*figs{}
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
			f = &figs{}
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
		leakedBefore := s.leaked.Load()
		f.kernelBefore += len(before)
		t0 := time.Now()
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
		down := time.Since(t0)
		f.down = append(f.down, down)
		// What the kernel held before stays in it: checked at once.
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
		// ... and is stored, at once or once the lines a kill left
		// unacknowledged are read again.
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
	var unbanned []netip.Addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		stored, kern := s.stored(), s.kernel()
		unbanned = unbanned[:0]
		for _, a := range written {
			if _, ok := stored[a]; !ok || !kern[a] {
				unbanned = append(unbanned, a)
			}
		}
		if len(unbanned) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // the last probes
	if err := s.d.stop(t, syscall.SIGTERM); err != nil {
		t.Errorf("soak: final SIGTERM: %v", err)
	}
	cancel()
	wg.Wait()

	// Exactly once: one decision per attacker, first offence, ssh-bf.
	rows := s.decisions()
	per := map[netip.Addr][]decRow{}
	for _, r := range rows {
		per[r.addr] = append(per[r.addr], r)
	}
	isAttacker := map[netip.Addr]bool{}
	for _, a := range written {
		isAttacker[a] = true
	}
	var dup, wrongDur, stray []string
	for a, rs := range per {
		if !isAttacker[a] {
			for _, r := range rs {
				stray = append(stray, fmt.Sprintf("%s %s %v deleted=%v", a, r.scenario, r.until.Sub(r.created).Round(time.Minute), r.deleted))
			}
			continue
		}
		if len(rs) > 1 {
			dup = append(dup, fmt.Sprintf("%s×%d", a, len(rs)))
		}
		for _, r := range rs {
			if d := r.until.Sub(r.created); d < firstOffence-time.Minute || d > firstOffence+time.Minute || r.scenario != "moat/ssh-bf" {
				wrongDur = append(wrongDur, fmt.Sprintf("%s %s %v", a, r.scenario, d.Round(time.Minute)))
			}
		}
	}
	if len(unbanned) > 0 {
		t.Errorf("soak: %d of %d attackers written are not banned (store and kernel): %v", len(unbanned), len(written), unbanned)
		s.explainMissed(unbanned)
	}
	if len(dup) > 0 {
		t.Errorf("soak: %d attackers have more than one decision: %v", len(dup), dup)
	}
	if len(wrongDur) > 0 {
		t.Errorf("soak: %d decisions are not a first-offence ssh-bf ban (%v): %v", len(wrongDur), firstOffence, wrongDur)
	}
	if len(stray) > 0 {
		t.Errorf("soak: addresses that never attacked were banned: %v", stray)
	}
	var leakers []string
	s.leakedFrom.Range(func(k, v any) bool {
		leakers = append(leakers, fmt.Sprintf("%s:%d", k, v.(*atomic.Int64).Load()))
		return true
	})
	if n := s.leaked.Load(); n > 0 {
		t.Errorf("soak: %d probes from banned addresses arrived: %v", n, leakers)
	}
	if s.freeArrive.Load() == 0 {
		t.Errorf("soak: no probe from the free address arrived: the probe path is broken, the leak count means nothing")
	}
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

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s) - 1) * p / 100
	return s[i].Round(time.Millisecond)
}

func (s *soakEnv) recordPid(pid int) {
	f, err := os.OpenFile(s.pidFile, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	must(s.t, err)
	fmt.Fprintf(f, "%d\n", pid)
	f.Close()
}

// startJournald mounts a private journald (small files, so it rotates
// during the soak) over this process's mount namespace.
func (s *soakEnv) startJournald() {
	t := s.t
	for _, d := range []string{"/run/systemd/journal", "/run/log"} {
		must(t, os.MkdirAll(d, 0o755))
		testutil.Run(t, "mount", "-t", "tmpfs", "tmpfs", d)
	}
	conf := filepath.Join(s.dir, "journald.conf")
	must(t, os.WriteFile(conf, []byte("[Journal]\nStorage=volatile\nRateLimitIntervalSec=0\nRateLimitBurst=0\nReadKMsg=no\nForwardToSyslog=no\nForwardToWall=no\nRuntimeMaxFileSize=1M\nRuntimeMaxUse=64M\n"), 0o644))
	testutil.Run(t, "mount", "--bind", conf, "/etc/systemd/journald.conf")
	jd := exec.Command("/lib/systemd/systemd-journald")
	must(t, jd.Start())
	s.recordPid(jd.Process.Pid)
	t.Cleanup(func() { jd.Process.Kill(); jd.Wait() })
	waitFor(t, 10*time.Second, "the journald socket", func() bool {
		_, err := os.Stat("/run/systemd/journal/socket")
		return err == nil
	})
}

func (s *soakEnv) writeConfig() {
	t, root := s.t, repoRoot(s.t)
	s.cfgPath = filepath.Join(s.dir, "moat.yaml")
	s.logPath = filepath.Join(s.dir, "auth.log")
	s.dbPath = filepath.Join(s.dir, "state", "moat.db")
	acquis := filepath.Join(s.dir, "acquis.d")
	must(t, os.MkdirAll(acquis, 0o755))
	must(t, os.WriteFile(s.logPath, nil, 0o644))
	must(t, os.WriteFile(filepath.Join(acquis, "auth.yaml"), []byte(fmt.Sprintf("source: file\nfilenames:\n  - %s\nlabels:\n  type: syslog\n", s.logPath)), 0o644))
	must(t, os.WriteFile(filepath.Join(acquis, "sshd.yaml"), []byte("source: journalctl\njournalctl_filter: [SYSLOG_IDENTIFIER=sshd]\nlabels: {type: syslog}\n"), 0o644))
	cfg := fmt.Sprintf(`state_dir: %[1]s/state
api:
  socket: %[1]s/moat.sock
  listen: ""
metrics:
  listen: 127.0.0.1:9641
hub:
  dir: %[2]s/packaging/hub
  patterns: %[2]s/packaging/patterns
  data: %[1]s/data
acquisition:
  dir: %[3]s
profiles: %[2]s/packaging/profiles.yaml
enforce:
  verify_interval: 2s
`, s.dir, root, acquis)
	must(t, os.WriteFile(s.cfgPath, []byte(cfg), 0o644))
}

// start runs the daemon in the victim namespace and waits until it runs.
func (s *soakEnv) start() *daemonProc {
	t := s.t
	s.runs++
	cmd := exec.Command("nsenter", "--net="+s.victim.Path(), os.Args[0], "run", "--config", s.cfgPath)
	cmd.Env = append(os.Environ(), "MOAT_TEST_MAIN=1")
	d := &daemonProc{cmd: cmd, stderr: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stderr, cmd.Stdout = d.stderr, d.stderr
	must(t, cmd.Start())
	s.recordPid(cmd.Process.Pid)
	go func() { d.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-d.done
		}
	})
	waitFor(t, 60*time.Second, "the daemon to start", func() bool {
		select {
		case err := <-d.done:
			t.Fatalf("soak: daemon run %d exited at start: %v\n%s", s.runs, err, d.stderr.String())
		default:
		}
		return strings.Contains(d.stderr.String(), "moat running")
	})
	return d
}

// write is the attack stream: every ~40 ms benign lines to both sinks,
// and every twelfth tick (two a second) one attacker's failures, all in one write, to the
// file or to journald in turn, until ctx ends or n attackers are written.
func (s *soakEnv) write(ctx context.Context, n int) {
	t := s.t
	benign := []string{
		"Accepted publickey for deploy from 192.0.2.77 port 51000 ssh2: ED25519 SHA256:abc",
		"pam_unix(sshd:session): session opened for user deploy(uid=1000) by (uid=0)",
		"Received disconnect from 192.0.2.79 port 53000:11: disconnected by user",
	}
	tick := time.NewTicker(40 * time.Millisecond)
	defer tick.Stop()
	for i, k := 0, 0; ctx.Err() == nil; k++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		lines := []string{benign[k%len(benign)]}
		attack := k%12 == 0 && i < n
		var a netip.Addr
		if attack {
			a = soakAttacker(i)
			for j := 0; j < failedPerAttacker; j++ {
				lines = append(lines, fmt.Sprintf("Failed password for root from %s port %d ssh2", a, 30000+j))
			}
		}
		toJournal := attack && i%2 == 1
		if !toJournal {
			s.appendFile(lines)
		}
		if toJournal || !attack {
			for _, l := range lines {
				if err := journal.Send(l, journal.PriInfo, map[string]string{"SYSLOG_IDENTIFIER": "sshd"}); err != nil {
					t.Errorf("soak: journal.Send: %v", err)
					return
				}
			}
		}
		if attack {
			s.mu.Lock()
			s.written = append(s.written, a)
			s.mu.Unlock()
			i++
			select {
			case s.burst <- struct{}{}:
			default:
			}
		}
	}
}

func (s *soakEnv) appendFile(lines []string) {
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	var b strings.Builder
	for i, l := range lines {
		fmt.Fprintf(&b, "%s victim sshd[%d]: %s\n", time.Now().Format(time.Stamp), 4000+i, l)
	}
	f, err := os.OpenFile(s.logPath, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	must(s.t, err)
	defer f.Close()
	if _, err := f.WriteString(b.String()); err != nil {
		s.t.Errorf("soak: append: %v", err)
	}
}

// rotate rotates the log as logrotate would: rename+create (the writer
// reopens by path at its next line) or copytruncate (copy, then truncate
// in place, with the writer held so no line falls between). A running
// daemon first gets a moment to read to the end, since lines written
// between its last read and a truncation exist only in the copy, which a
// running follower does not read (the limit of copytruncate in any
// follower).
func (s *soakEnv) rotate(kind string, cycle int) {
	t := s.t
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	time.Sleep(300 * time.Millisecond)
	gens := filepath.Join(s.dir, "auth.log.1")
	// Older generations shift as logrotate does: .1 -> .2 and so on
	// (only two are kept, like rotate 2).
	if _, err := os.Stat(gens); err == nil {
		must(t, os.Rename(gens, filepath.Join(s.dir, "auth.log.2")))
	}
	switch kind {
	case "rename":
		must(t, os.Rename(s.logPath, gens))
		must(t, os.WriteFile(s.logPath, nil, 0o644))
	case "copytruncate":
		b, err := os.ReadFile(s.logPath)
		must(t, err)
		must(t, os.WriteFile(gens, b, 0o644))
		must(t, os.Truncate(s.logPath, 0))
	}
}

// listen counts what reaches the victim: probes from banned addresses
// are leaks, those from the peer's own address show the path works.
func (s *soakEnv) listen(ctx context.Context, wg *sync.WaitGroup) {
	var conn *net.UDPConn
	must(s.t, s.victim.Do(func() error {
		var err error
		conn, err = net.ListenUDP("udp", &net.UDPAddr{Port: soakPort})
		return err
	}))
	wg.Add(2)
	go func() { defer wg.Done(); <-ctx.Done(); conn.Close() }()
	go func() {
		defer wg.Done()
		buf := make([]byte, 64)
		for {
			_, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			a := from.Addr().Unmap()
			if a.String() == soakPeer4 || a.String() == soakPeer6 {
				s.freeArrive.Add(1)
				continue
			}
			s.mu.Lock()
			banned := s.banned[a]
			s.mu.Unlock()
			if banned {
				s.leaked.Add(1)
				v, _ := s.leakedFrom.LoadOrStore(a, new(atomic.Int64))
				v.(*atomic.Int64).Add(1)
			}
		}
	}()
}

// probe sends one UDP packet every 10 ms from each address seen banned,
// and from the peer's own addresses.
func (s *soakEnv) probe(ctx context.Context) {
	dial := func(src netip.Addr) *net.UDPConn {
		dst := soakVictim4
		if src.Is6() {
			dst = soakVictim6
		}
		var c *net.UDPConn
		err := s.attacker.Do(func() error {
			var err error
			c, err = net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), &net.UDPAddr{IP: net.ParseIP(dst), Port: soakPort})
			return err
		})
		if err != nil {
			// Only a stray ban (reported at the end) has no address
			// on the attacker's side.
			s.t.Logf("soak: no probe from %s: %v", src, err)
			return nil
		}
		return c
	}
	free := []*net.UDPConn{dial(netip.MustParseAddr(soakPeer4)), dial(netip.MustParseAddr(soakPeer6))}
	var conns []*net.UDPConn
	defer func() {
		for _, c := range append(conns, free...) {
			if c != nil {
				c.Close()
			}
		}
	}()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	msg := []byte("probe")
	for {
		select {
		case <-ctx.Done():
			return
		case a := <-s.probeAdd:
			if c := dial(a); c != nil {
				conns = append(conns, c)
			}
		case <-tick.C:
			for _, c := range conns {
				c.Write(msg)
			}
			s.sent.Add(int64(len(conns)))
			for _, c := range free {
				if c != nil {
					c.Write(msg)
				}
			}
		}
	}
}

// watchBans turns addresses that appear in the kernel sets into probe
// sources; from then on no packet of theirs may arrive.
func (s *soakEnv) watchBans(ctx context.Context) {
	for ctx.Err() == nil {
		for a := range s.kernel() {
			s.mu.Lock()
			isNew := !s.banned[a]
			s.banned[a] = true
			s.mu.Unlock()
			if isNew {
				select {
				case s.probeAdd <- a:
				case <-ctx.Done():
					return
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// kernel returns the single addresses in the nft sets ban4 and ban6.
func (s *soakEnv) kernel() map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	for _, set := range []string{"ban4", "ban6"} {
		b, err := s.victim.Command("nft", "list", "set", "inet", "moat", set).CombinedOutput()
		if err != nil {
			continue // the table is made at the first start
		}
		for _, f := range strings.FieldsFunc(string(b), func(r rune) bool { return r == ' ' || r == ',' || r == '\n' || r == '\t' || r == '{' || r == '}' }) {
			if a, err := netip.ParseAddr(f); err == nil {
				out[a] = true
			}
		}
	}
	return out
}

type decRow struct {
	addr           netip.Addr
	scenario       string
	created, until time.Time
	deleted        bool
}

// decisions reads every decision row from the store, read-only, beside a
// running daemon (SQLite WAL lets readers in during its writes).
func (s *soakEnv) decisions() []decRow {
	if _, err := os.Stat(s.dbPath); err != nil {
		return nil
	}
	db, err := sql.Open("sqlite3", "file:"+s.dbPath+"?mode=ro&_busy_timeout=5000")
	must(s.t, err)
	defer db.Close()
	rows, err := db.Query(`SELECT value, scenario, created_at, until, deleted_at IS NOT NULL FROM decisions`)
	if err != nil {
		s.t.Fatalf("soak: read the store: %v", err)
	}
	defer rows.Close()
	var out []decRow
	for rows.Next() {
		var v string
		var r decRow
		var created, until int64
		must(s.t, rows.Scan(&v, &r.scenario, &created, &until, &r.deleted))
		p, err := netip.ParsePrefix(v)
		if err != nil {
			a, err2 := netip.ParseAddr(v)
			if err2 != nil {
				s.t.Fatalf("soak: stored value %q: %v", v, err)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		r.addr = p.Addr()
		r.created, r.until = time.Unix(0, created), time.Unix(0, until)
		out = append(out, r)
	}
	must(s.t, rows.Err())
	return out
}

// stored returns the addresses with an active decision in the store.
func (s *soakEnv) stored() map[netip.Addr]decRow {
	out := map[netip.Addr]decRow{}
	for _, r := range s.decisions() {
		if !r.deleted {
			out[r.addr] = r
		}
	}
	return out
}

// explainMissed logs, for each attacker not banned, where its lines are,
// so a miss can be told from a line never written.
func (s *soakEnv) explainMissed(missed []netip.Addr) {
	for _, a := range missed {
		var where []string
		for _, p := range []string{s.logPath, s.logPath + ".1", s.logPath + ".2"} {
			b, _ := os.ReadFile(p)
			if n := strings.Count(string(b), "from "+a.String()+" port"); n > 0 {
				where = append(where, fmt.Sprintf("%s:%d", filepath.Base(p), n))
			}
		}
		s.t.Logf("soak: missed %s: lines in %v (none listed: sent to journald)", a, where)
	}
}
