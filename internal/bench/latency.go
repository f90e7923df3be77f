package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
)

// Latency is the live path, log line written to attacker dropped, for one
// source and one backend over every repetition.
type Latency struct {
	Source  string `json:"source"`  // file or journald
	Backend string `json:"backend"` // nftables or xdp
	// Attacks counts the attackers measured (all runs); Misses those never
	// dropped within the timeout (not in the samples).
	Attacks int `json:"attacks"`
	Misses  int `json:"misses"`
	// P50, P99 and Max are per run, summarised over runs (ms).
	P50 Stat `json:"p50_ms"`
	P99 Stat `json:"p99_ms"`
	Max Stat `json:"max_ms"`
	// Pooled are the percentiles of every sample of every run (ms).
	Pooled struct {
		P50 float64 `json:"p50"`
		P99 float64 `json:"p99"`
		Max float64 `json:"max"`
	} `json:"pooled_ms"`
	TargetP99 float64 `json:"target_p99_ms"`
	// ProbeGap is the gap between the last probe that arrived and the
	// first that did not, per sample (µs): the resolution.
	ProbeGap Stat `json:"probe_gap_us"`
	// WarmUp is the first attack after each start, not in the samples.
	WarmUp  []float64 `json:"warmup_ms"`
	Samples []float64 `json:"samples_ms"`
}

// latencyRun is one child's answer: one sample per attacker (ms).
type latencyRun struct {
	Samples []float64 `json:"samples_ms"`
	Misses  int       `json:"misses"`
	WarmUp  float64   `json:"warmup_ms"`
	Gaps    []float64 `json:"probe_gaps_us"`
}

// targets are the p99 goals per source (ms).
var latencyTargets = map[string]float64{"file": 2, "journald": 5}

// runLatency runs one repetition of one source and backend in a child
// process in its own mount namespace (a private journald needs one, and a
// multi-threaded Go process cannot enter one itself).
func runLatency(ctx context.Context, o *Options, source, backend string) (latencyRun, error) {
	self, err := os.Executable()
	if err != nil {
		return latencyRun{}, err
	}
	dir, err := os.MkdirTemp(o.WorkDir, "latency-")
	if err != nil {
		return latencyRun{}, err
	}
	defer os.RemoveAll(dir)
	cmd := exec.CommandContext(ctx, "unshare", "-m", "--propagation", "private", self, "latency-child",
		"-source", source, "-backend", backend, "-attacks", fmt.Sprint(o.Attacks), "-moat", o.moatBin, "-repo", o.Repo, "-dir", dir)
	var out bytes.Buffer
	cmd.Stdout = &out
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	if err := cmd.Run(); err != nil {
		return latencyRun{}, fmt.Errorf("latency %s/%s: %w\n%s", source, backend, err, tail(errOut.String(), 3000))
	}
	var r latencyRun
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return r, fmt.Errorf("latency %s/%s: child output: %w", source, backend, err)
	}
	return r, nil
}

// LatencyChild is the child half of runLatency, run as `moat-bench
// latency-child`: it sets up the namespaces (and journald), starts moat,
// attacks and prints the samples as JSON on stdout.
func LatencyChild(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("latency-child", flag.ContinueOnError)
	source := fs.String("source", "file", "file or journald")
	backend := fs.String("backend", "nftables", "nftables or xdp")
	attacks := fs.Int("attacks", 200, "attackers")
	moat := fs.String("moat", "", "moat binary")
	repo := fs.String("repo", ".", "checkout")
	dir := fs.String("dir", "", "scratch directory")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r, err := latencyChild(ctx, *source, *backend, *attacks, *moat, *repo, *dir)
	if err != nil {
		fmt.Fprintln(stderr, "moat-bench: latency:", err)
		return 1
	}
	if err := json.NewEncoder(stdout).Encode(r); err != nil {
		return 1
	}
	return 0
}

const (
	victimAddr = "198.19.0.1"
	victimDev  = "mbv0"
	attackDev  = "mba0"
)

// attackerAddr is attacker i's address, in the victim's /16.
func attackerAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 19, byte(1 + i/250), byte(1 + i%250)})
}

func latencyChild(ctx context.Context, source, backend string, attacks int, moat, repo, dir string) (latencyRun, error) {
	var res latencyRun
	if source == "journald" {
		stop, err := privateJournald(ctx, dir)
		if err != nil {
			return res, err
		}
		defer stop()
	}
	victim, err := newNetNS(ctx, "mb-v")
	if err != nil {
		return res, err
	}
	defer victim.del()
	attacker, err := newNetNS(ctx, "mb-a")
	if err != nil {
		return res, err
	}
	defer attacker.del()
	addrs := []string{"198.19.0.2/16"}
	// One more attacker than measured: the first attack after the start
	// warms the path up (journald creates its file with the first entry
	// moat sees) and is not counted.
	for i := range attacks + 1 {
		addrs = append(addrs, attackerAddr(i).String()+"/16")
	}
	if err := vethPair(ctx, attacker, victim, attackDev, victimDev, addrs, []string{victimAddr + "/16"}); err != nil {
		return res, err
	}
	logPath := filepath.Join(dir, "auth.log")
	cfg, err := writeDaemonConfig(dir, repo, source, backend, logPath)
	if err != nil {
		return res, err
	}
	d, err := startDaemon(ctx, victim, moat, cfg)
	if err != nil {
		return res, err
	}
	defer d.stop(moat, cfg)

	p, err := newProber(victim, attacker, netip.MustParseAddr(victimAddr), attacks+1)
	if err != nil {
		return res, err
	}
	defer p.close()
	w, err := newLineWriter(source, logPath)
	if err != nil {
		return res, err
	}
	defer w.close()
	for i := range attacks + 1 {
		ip := attackerAddr(i)
		line := "Failed password for root from " + ip.String() + " port 4000 ssh2"
		prepare := func() error {
			// Five failures fill ssh-bf's bucket; the sixth, timed,
			// overflows it.
			for range 5 {
				if err := w.write(line); err != nil {
					return err
				}
			}
			time.Sleep(5 * time.Millisecond)
			return nil
		}
		lat, gap, err := p.attack(ctx, i, ip, prepare, func() error { return w.write(line) })
		switch {
		case err == errNotDropped:
			res.Misses++
		case err != nil:
			return res, fmt.Errorf("%w\n%s", err, tail(d.logs.String(), 3000))
		case i == 0:
			res.WarmUp = float64(lat.Nanoseconds()) / 1e6
		default:
			res.Samples = append(res.Samples, float64(lat.Nanoseconds())/1e6)
			res.Gaps = append(res.Gaps, float64(gap.Nanoseconds())/1e3)
		}
	}
	if len(res.Samples) == 0 {
		return res, fmt.Errorf("no attacker was dropped\n%s", tail(d.logs.String(), 3000))
	}
	return res, nil
}

// writeDaemonConfig writes moat's configuration for one latency run: the
// checkout's shipped content, one source, one backend.
func writeDaemonConfig(dir, repo, source, backend, logPath string) (string, error) {
	acquis := filepath.Join(dir, "acquis.d")
	if err := os.MkdirAll(acquis, 0o755); err != nil {
		return "", err
	}
	src := "source: file\nfilenames: [" + logPath + "]\nlabels: {type: syslog}\n"
	if source == "journald" {
		src = "source: journalctl\njournalctl_filter: [SYSLOG_IDENTIFIER=sshd]\nlabels: {type: syslog}\n"
	}
	if err := os.WriteFile(logPath, nil, 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(acquis, "sshd.yaml"), []byte(src), 0o644); err != nil {
		return "", err
	}
	enf := "enforce:\n  nftables: {enabled: true}\n  xdp: {enabled: false}\n"
	if backend == "xdp" {
		enf = fmt.Sprintf("enforce:\n  nftables: {enabled: false}\n  xdp:\n    enabled: true\n    interfaces: [%s]\n    pin_dir: /sys/fs/bpf/%s\n", victimDev, filepath.Base(dir))
	}
	cfg := fmt.Sprintf(`state_dir: %[1]s/state
api:
  socket: %[1]s/moat.sock
  listen: ""
metrics:
  listen: ""
hub:
  dir: %[2]s/packaging/hub
  patterns: %[2]s/packaging/patterns
  data: %[1]s/data
acquisition:
  dir: %[3]s
profiles: %[2]s/packaging/profiles.yaml
`, dir, repo, acquis) + enf
	path := filepath.Join(dir, "moat.yaml")
	return path, os.WriteFile(path, []byte(cfg), 0o644)
}

// daemon is moat run inside the victim's namespace.
type daemon struct {
	cmd  *exec.Cmd
	logs *syncBuffer
	ns   *netNS
}

func startDaemon(ctx context.Context, ns *netNS, moat, cfg string) (*daemon, error) {
	d := &daemon{logs: &syncBuffer{}, ns: ns}
	d.cmd = exec.Command("nsenter", "--net="+ns.path(), moat, "run", "--config", cfg)
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	if err := d.cmd.Start(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(d.logs.String(), "moat running") {
		if time.Now().After(deadline) || ctx.Err() != nil {
			d.cmd.Process.Kill()
			d.cmd.Wait()
			return nil, fmt.Errorf("moat did not start:\n%s", tail(d.logs.String(), 3000))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return d, nil
}

// stop ends the daemon and removes what it put in the kernel.
func (d *daemon) stop(moat, cfg string) {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		d.cmd.Process.Kill()
		<-done
	}
	_ = exec.Command("nsenter", "--net="+d.ns.path(), moat, "cleanup", "--config", cfg).Run()
}

// privateJournald mounts tmpfs over journald's runtime directories in this
// (private) mount namespace and starts a journald of its own there.
func privateJournald(ctx context.Context, dir string) (func(), error) {
	for _, d := range []string{"/run/systemd/journal", "/run/log"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
		if _, err := run(ctx, "mount", "-t", "tmpfs", "tmpfs", d); err != nil {
			return nil, err
		}
	}
	conf := filepath.Join(dir, "journald.conf")
	if err := os.WriteFile(conf, []byte("[Journal]\nStorage=volatile\nRateLimitIntervalSec=0\nRateLimitBurst=0\nReadKMsg=no\nForwardToSyslog=no\nForwardToWall=no\n"), 0o644); err != nil {
		return nil, err
	}
	if _, err := run(ctx, "mount", "--bind", conf, "/etc/systemd/journald.conf"); err != nil {
		return nil, err
	}
	jd := exec.Command("/lib/systemd/systemd-journald")
	if err := jd.Start(); err != nil {
		return nil, err
	}
	stop := func() { jd.Process.Kill(); jd.Wait() }
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat("/run/systemd/journal/socket"); err == nil {
			return stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("private journald: no socket after 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lineWriter writes sshd lines to the file moat tails or to journald.
type lineWriter struct {
	f   *os.File
	pid int
}

func newLineWriter(source, path string) (*lineWriter, error) {
	w := &lineWriter{pid: 4000}
	if source == "file" {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return nil, err
		}
		w.f = f
	}
	return w, nil
}

func (w *lineWriter) write(msg string) error {
	if w.f == nil {
		return journal.Send(msg, journal.PriInfo, map[string]string{"SYSLOG_IDENTIFIER": "sshd"})
	}
	w.pid++
	_, err := fmt.Fprintf(w.f, "%s victim sshd[%d]: %s\n", time.Now().Format(time.Stamp), w.pid, msg)
	return err
}

func (w *lineWriter) close() {
	if w.f != nil {
		w.f.Close()
	}
}
