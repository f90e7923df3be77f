package acquire

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/internal/yamlerr"
)

// This is the one production file that imports os/exec (the guard test
// allows it by name): running the configured program is what a command
// source is for, as sshguard's LOGREADER runs one. moat itself still
// shells out to nothing.

// CommandConfig holds the keys of a command source: a program whose
// standard output is a log, one line per line, such as a vendor tool
// that prints events or "journalctl -f" on a host where moat runs
// without libsystemd.
type CommandConfig struct {
	// Command is the program and its arguments, run without a shell. The
	// program is an absolute path: a daemon's PATH is not the one the
	// file's author had in mind.
	Command []string `yaml:"command"`
}

// Restart policy of a command source in mode tail.
const (
	// CommandRestartMin is the wait before the first restart; it doubles
	// per quick exit up to CommandRestartMax.
	CommandRestartMin = time.Second
	CommandRestartMax = time.Minute
	// commandStable is how long a run must last for the next exit to
	// count as the first: a program that ran an hour and exited is
	// restarted at once, one that exits at start is not respawned
	// in a tight loop.
	commandStable = time.Minute
	// commandStopGrace is how long a stopped program has between SIGTERM
	// and SIGKILL.
	commandStopGrace = 5 * time.Second
	// stderrLineMax bounds one logged line of the program's stderr, and
	// stderrBurst and stderrEvery the rate: a program that floods its
	// stderr floods neither moat's log nor its memory.
	stderrLineMax = 1024
	stderrBurst   = 20
	stderrEvery   = time.Second
)

// validateCommand checks the command keys; errors name the key at fault.
func (c *Config) validateCommand() error {
	if len(c.Command) == 0 || c.Command[0] == "" {
		return yamlerr.AtKey(errors.New("source command needs command: [program, args...]"), "source")
	}
	if !filepath.IsAbs(c.Command[0]) {
		return yamlerr.AtKey(fmt.Errorf("command %q is not an absolute path", c.Command[0]), "command", 0)
	}
	for i, a := range c.Command {
		if strings.IndexByte(a, 0) >= 0 {
			return yamlerr.AtKey(fmt.Errorf("command argument %d holds a NUL byte", i), "command", i)
		}
	}
	return nil
}

// commandSource runs a program and reads its standard output as lines. In
// mode tail the program is restarted when it exits, after a backoff; in
// mode cat it runs once. The program's output has no position a restart
// could resume from: lines carry the zero Pos.
type commandSource struct {
	cfg Config
	c   counters
	log *slog.Logger // stderr goes here; nil drops it (still counted)

	restartMin, restartMax, stable, grace time.Duration

	starts  atomic.Uint64 // runs started, for tests and status
	stderrN atomic.Uint64 // stderr lines read
}

func newCommandSource(cfg Config, o options) *commandSource {
	return &commandSource{
		cfg: cfg, log: o.log,
		restartMin: CommandRestartMin, restartMax: CommandRestartMax,
		stable: commandStable, grace: commandStopGrace,
	}
}

func (s *commandSource) Name() string { return s.cfg.Name }

func (s *commandSource) Stats() Stats { return s.c.snapshot() }

// Stream runs the program until ctx ends (mode tail) or until it exits
// (mode cat, which returns the program's failure, if any).
func (s *commandSource) Stream(ctx context.Context, out chan<- detect.Line) error {
	delay := s.restartMin
	for {
		began := time.Now()
		err := s.run(ctx, out)
		if ctx.Err() != nil {
			return nil
		}
		if s.cfg.Mode == "cat" {
			if err != nil {
				return fmt.Errorf("command source %s: %w", s.cfg.Name, err)
			}
			return nil
		}
		if err == nil {
			err = errors.New("exited")
		}
		if time.Since(began) >= s.stable {
			delay = s.restartMin
		}
		s.c.fail(fmt.Errorf("command source %s: %w; restarting in %s", s.cfg.Name, err, delay))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(2*delay, s.restartMax)
	}
}

// run starts the program once and reads it until it exits, or until ctx
// ends, when it is stopped. It returns why the program ended, nil for a
// clean exit.
func (s *commandSource) run(ctx context.Context, out chan<- detect.Line) error {
	cmd := exec.Command(s.cfg.Command[0], s.cfg.Command[1:]...)
	cmd.Dir = "/"
	// Its own process group, so a stop reaches what the program started
	// (a shell pipeline); and SIGKILL if moat dies without stopping it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("stdout pipe: %w", err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return fmt.Errorf("stderr pipe: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	s.starts.Add(1)
	exited := make(chan struct{})
	defer close(exited)
	go s.stopOnCancel(ctx, cmd.Process.Pid, exited, stdout)

	var lastErr lastLine
	errDone := make(chan struct{})
	go func() {
		defer close(errDone)
		s.readStderr(stderr, &lastErr)
	}()
	s.readStdout(ctx, stdout, out)
	if ctx.Err() == nil {
		// The program closed its stdout: let stderr drain, but not wait
		// on a child that kept stderr open after the program is gone.
		select {
		case <-errDone:
		case <-time.After(time.Second):
		}
	}
	err = cmd.Wait() // closes the pipes, ending the stderr reader
	<-errDone
	if err != nil {
		if l := lastErr.get(); l != "" {
			return fmt.Errorf("%w (stderr: %s)", err, l)
		}
		return err
	}
	return nil
}

// stopOnCancel stops the program's process group once ctx ends: SIGTERM,
// then SIGKILL after the grace period. A process that left the group
// (setsid) may still hold stdout open, so after the kill the read end is
// closed too: a stop never waits on it. It returns when exited closes.
func (s *commandSource) stopOnCancel(ctx context.Context, pid int, exited <-chan struct{}, stdout io.Closer) {
	select {
	case <-exited:
		return
	case <-ctx.Done():
	}
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-exited:
		return
	case <-time.After(s.grace):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	select {
	case <-exited:
	case <-time.After(s.grace):
		stdout.Close()
	}
}

// readStdout hands on each line of r until EOF or until ctx ends.
func (s *commandSource) readStdout(ctx context.Context, r io.Reader, out chan<- detect.Line) {
	sp := splitter{max: s.cfg.MaxLineLength}
	src := s.cfg.Command[0]
	emit := func(line []byte, cut bool, _ int) bool {
		if cut {
			s.c.cut.Add(1)
		}
		l := detect.Line{Raw: string(line), Src: src, Module: KindCommand, Labels: s.cfg.Labels, Process: true}
		if _, ok := sendAt(ctx, out, l); !ok {
			return false
		}
		s.c.lines.Add(1)
		return true
	}
	buf := make([]byte, 64*1024)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			s.c.bytes.Add(uint64(n))
			if !sp.feed(buf[:n], emit) {
				return
			}
		}
		if err != nil {
			if l := sp.flush(); l != nil {
				emit(l, false, 0)
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, fs.ErrClosed) {
				s.c.fail(fmt.Errorf("command source %s: read stdout: %w", s.cfg.Name, err))
			}
			return
		}
	}
}

// readStderr reads the program's stderr to its end: each line, cut at
// stderrLineMax, is logged at a bounded rate, and the last one is kept
// for the error an exit reports.
func (s *commandSource) readStderr(r io.Reader, last *lastLine) {
	br := bufio.NewReaderSize(r, stderrLineMax)
	tokens, refill := stderrBurst, time.Now()
	suppressed := 0
	for {
		l, err := br.ReadSlice('\n')
		if len(l) > 0 {
			long := errors.Is(err, bufio.ErrBufferFull)
			text := strings.ToValidUTF8(strings.TrimRight(string(l), "\r\n"), "\uFFFD")
			s.stderrN.Add(1)
			last.set(text)
			if n := int(time.Since(refill) / stderrEvery); n > 0 {
				tokens, refill = min(stderrBurst, tokens+n), refill.Add(time.Duration(n)*stderrEvery)
			}
			switch {
			case tokens > 0 && s.log != nil:
				tokens--
				s.log.Warn("command stderr", "source", s.cfg.Name, "line", text, "cut", long, "suppressed", suppressed)
				suppressed = 0
			default:
				suppressed++
			}
			for long && errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n') // drop the rest of a long line
			}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// lastLine is the newest stderr line, shared with the goroutine that reads it.
type lastLine struct {
	mu sync.Mutex
	s  string
}

func (l *lastLine) set(s string) {
	l.mu.Lock()
	l.s = s
	l.mu.Unlock()
}

func (l *lastLine) get() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.s
}
