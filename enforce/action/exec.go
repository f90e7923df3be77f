package action

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// This file is the one place outside detect/acquire where moat starts a
// program: running the operator's command is what an action is.

// basePath is the PATH a command gets: the daemon's own environment
// (credentials of its unit, a socket path) is not handed on.
const basePath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// outputTail is how much of a failed command's output its error keeps.
const outputTail = 512

// checkCommand reports a command that cannot run: found at load, not at
// the first ban.
func checkCommand(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("command: %w", err)
	}
	if st.IsDir() || st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("command %s: not an executable file", path)
	}
	return nil
}

// execute runs s's command for ev once. The command leads its own process
// group, so its timeout kills what it started too (a shell script's
// children, a hung curl), not only itself.
func execute(ctx context.Context, s *Spec, ev Event) (Result, int, error) {
	args := make([]string, 0, len(s.Args))
	for i, t := range s.Args {
		a, err := render(t, ev)
		if err != nil {
			return ResultTemplate, 0, fmt.Errorf("args[%d]: %w", i, err)
		}
		args = append(args, a)
	}
	env := append([]string{basePath}, ev.env()...)
	for _, v := range s.Env {
		val, err := render(v.tmpl, ev)
		if err != nil {
			return ResultTemplate, 0, fmt.Errorf("env %s: %w", v.name, err)
		}
		env = append(env, v.name+"="+val)
	}
	runCtx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	cmd := exec.CommandContext(runCtx, s.Command, args...)
	cmd.Env = env
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A child that outlives the group kill (it left the group) and keeps
	// the output pipe open must not hold the worker.
	cmd.WaitDelay = time.Second
	out := &tail{max: outputTail}
	cmd.Stdout, cmd.Stderr = out, out
	err := cmd.Run()
	if errors.Is(err, exec.ErrWaitDelay) {
		// The command ended but left a child holding its output: the
		// group still has that member, so its ID is still the group's.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if cmd.ProcessState != nil && cmd.ProcessState.Success() {
			err = nil
		}
	}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return ResultOK, 0, nil
	case ctx.Err() != nil:
		return ResultStopped, -1, err
	case errors.Is(runCtx.Err(), context.DeadlineExceeded):
		return ResultTimeout, -1, fmt.Errorf("killed after %s: %w%s", s.Timeout, err, out.suffix())
	case errors.As(err, &exitErr):
		return ResultExit, exitErr.ExitCode(), fmt.Errorf("%w%s", err, out.suffix())
	default:
		return ResultStart, 0, err
	}
}

// tail keeps the last max bytes written to it.
type tail struct {
	max int
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tail) suffix() string {
	s := strings.TrimSpace(string(t.buf))
	if s == "" {
		return ""
	}
	return ": output: " + strconvQuote(s)
}

// strconvQuote quotes output for a log line: it came from a program and
// may hold anything.
func strconvQuote(s string) string { return fmt.Sprintf("%q", s) }
