package hubstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// ErrBusy is returned by Lock while another process changes the store.
var ErrBusy = errors.New("another moat hub command is changing the hub store")

// Lock takes the store's lock for a change. It sits beside the directory,
// which a refused change replaces as a whole (Snapshot), and the kernel
// drops it with the process, so a crash leaves no stale lock behind. Read
// the store (Open) after taking it.
func Lock(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, fmt.Errorf("hub store lock: %w", err)
	}
	f, err := os.OpenFile(dir+".lock", os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("hub store lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w", dir, ErrBusy)
		}
		return nil, fmt.Errorf("hub store lock: %w", err)
	}
	return func() { f.Close() }, nil
}
