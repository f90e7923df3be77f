package main

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/testutil"
)

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

// soakFigs are the figures of one kind of fault over the soak.
type soakFigs struct {
	n                        int
	down, settle             []time.Duration
	kernelBefore, lost       int
	storeLate, leaked, fails int
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
	cfg := daemonConfig(s.dir, root, acquis)
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
