package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/moatsec/moat/internal/config"
)

// file appends one JSON line per alert (NDJSON, for SIEM shippers) and
// rotates by size: path.1 is the newest old file, path.N the oldest kept.
type file struct {
	path     string
	maxSize  int64
	maxFiles int

	mu   sync.Mutex
	f    *os.File
	size int64
}

// fileLine is one line of the file: the alert with where it was raised.
type fileLine struct {
	Time    time.Time `json:"time"`
	Host    string    `json:"host"`
	Channel string    `json:"channel"`
	Test    bool      `json:"test,omitempty"`
	Alert
}

func newFile(n config.Notification) *file {
	f := &file{path: n.Path, maxSize: int64(n.MaxSizeMB) << 20, maxFiles: n.MaxFiles}
	if f.maxSize <= 0 {
		f.maxSize = 100 << 20
	}
	if f.maxFiles <= 0 {
		f.maxFiles = 5
	}
	return f
}

func (f *file) Target() string { return f.path }

func (f *file) Check(*Message) error { return nil }

func (f *file) Send(_ context.Context, m *Message) error {
	var buf []byte
	now := time.Now().UTC()
	for _, a := range m.Alerts {
		b, err := json.Marshal(fileLine{Time: now, Host: m.Host, Channel: m.Channel, Test: m.Test, Alert: a})
		if err != nil {
			return fmt.Errorf("file %s: %w", f.path, err)
		}
		buf = append(append(buf, b...), '\n')
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.write(buf); err != nil {
		// Reopened on the next message: the file may have been moved or
		// its disk filled and freed.
		if f.f != nil {
			f.f.Close()
			f.f = nil
		}
		return fmt.Errorf("file %s: %w", f.path, err)
	}
	return nil
}

func (f *file) write(buf []byte) error {
	if f.f != nil && f.moved() {
		// logrotate or an operator moved the file: write a new one
		// where the shipper looks.
		f.f.Close()
		f.f = nil
	}
	if f.f == nil {
		if err := f.open(); err != nil {
			return err
		}
	}
	if f.size > 0 && f.size+int64(len(buf)) > f.maxSize {
		if err := f.rotate(); err != nil {
			return err
		}
	}
	n, err := f.f.Write(buf)
	f.size += int64(n)
	return err
}

// moved reports whether path no longer names the open file.
func (f *file) moved() bool {
	st, err := os.Stat(f.path)
	if err != nil {
		return true
	}
	cur, err := f.f.Stat()
	return err != nil || !os.SameFile(st, cur)
}

func (f *file) open() error {
	if err := os.MkdirAll(filepath.Dir(f.path), 0o750); err != nil {
		return err
	}
	fd, err := os.OpenFile(f.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	st, err := fd.Stat()
	if err != nil {
		fd.Close()
		return err
	}
	f.f, f.size = fd, st.Size()
	return nil
}

// rotate shifts path.i to path.i+1, dropping the oldest, and starts a new
// file. A shipper following the file by name reopens it.
func (f *file) rotate() error {
	if err := f.f.Close(); err != nil {
		return err
	}
	f.f = nil
	if err := os.Remove(fmt.Sprintf("%s.%d", f.path, f.maxFiles)); err != nil && !os.IsNotExist(err) {
		return err
	}
	for i := f.maxFiles - 1; i >= 1; i-- {
		if err := os.Rename(fmt.Sprintf("%s.%d", f.path, i), fmt.Sprintf("%s.%d", f.path, i+1)); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	if err := os.Rename(f.path, f.path+".1"); err != nil {
		return err
	}
	return f.open()
}
