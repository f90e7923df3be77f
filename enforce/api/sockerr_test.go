package api

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

func TestDialError(t *testing.T) {
	denied := &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.EACCES)}
	refused := &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	for _, tc := range []struct {
		name          string
		err           error
		down, perm    bool
		wantInMessage string
	}{
		{"denied", denied, false, true, "permission denied on the daemon socket /run/moat/moat.sock: run as root, or join the group moat"},
		{"refused", refused, true, false, "not running"},
		{"other", errors.New("read: reset"), false, false, "reset"},
	} {
		err := dialError("/run/moat/moat.sock", tc.err)
		if errors.Is(err, ErrDaemonDown) != tc.down || errors.Is(err, os.ErrPermission) != tc.perm {
			t.Errorf("%s: %v: daemon down %v, permission %v", tc.name, err, errors.Is(err, ErrDaemonDown), errors.Is(err, os.ErrPermission))
		}
		if !strings.Contains(err.Error(), tc.wantInMessage) {
			t.Errorf("%s: %q does not say %q", tc.name, err, tc.wantInMessage)
		}
	}
}

// A user outside the socket's group gets the permission error, not "not
// running". The connect runs on a thread whose filesystem user is nobody:
// credentials are per thread in the kernel, and the thread is thrown away.
func TestClientPermissionDenied(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to act as another user")
	}
	dir, err := os.MkdirTemp("/tmp", "moat-perm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	sock := filepath.Join(dir, "moat.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// 0600, not the daemon's 0660: this process's groups stay root's on
	// every thread.
	if err := os.Chmod(sock, 0o600); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread ends with the goroutine.
		runtime.LockOSThread()
		if _, _, e := syscall.RawSyscall(syscall.SYS_SETFSUID, 65534, 0, 0); e != 0 {
			errc <- e
			return
		}
		var d net.Dialer
		c, err := d.DialContext(context.Background(), "unix", sock)
		if err == nil {
			c.Close()
		}
		errc <- err
	}()
	err = <-errc
	if err == nil {
		t.Fatal("nobody connected to a 0600 root socket")
	}
	got := dialError(sock, err)
	var pe *PermissionError
	if !errors.As(got, &pe) || pe.Socket != sock || pe.Group != "moat" {
		t.Fatalf("dialError(%v) = %v, want a PermissionError naming %s and group moat", err, got, sock)
	}
}
