package acquire

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/moatsec/moat/detect"
)

// fpMax is how many leading bytes identify a file beyond its inode: an inode
// reused after delete-and-recreate has different first bytes.
const fpMax = 1024

const readBufSize = 64 * 1024

// filePos is a persisted position in one file.
type filePos struct {
	Dev    uint64 `json:"dev"`
	Ino    uint64 `json:"ino"`
	Offset int64  `json:"offset"`
	// Skip: the offset is inside a line that was cut; drop up to its newline.
	Skip  bool   `json:"skip,omitempty"`
	FPLen int    `json:"fp_len"`
	FP    []byte `json:"fp"`
}

type fileState struct {
	Files map[string]filePos `json:"files"`
}

type fileSource struct {
	cfg       Config
	statePath string
	excl      []*regexp.Regexp
	c         counters
	start     startGate

	mu    sync.Mutex
	pos   map[string]filePos
	dirty bool
}

func newFileSource(cfg Config, stateDir string) (*fileSource, error) {
	s := &fileSource{cfg: cfg, statePath: stateFile(stateDir, "file", cfg.Name), pos: map[string]filePos{}, start: newStartGate()}
	for _, r := range cfg.ExcludeRegexps {
		s.excl = append(s.excl, regexp.MustCompile(r)) // checked by Validate
	}
	return s, nil
}

func (s *fileSource) Name() string { return s.cfg.Name }

func (s *fileSource) Stats() Stats { return s.c.snapshot() }

// Positioned implements Positioner.
func (s *fileSource) Positioned() <-chan struct{} { return s.start.ch }

// tailer follows one path. f may be a file that no longer lives at path (it
// was rotated away): it is read to its end before path is reopened.
type tailer struct {
	path     string
	f        *os.File
	dev, ino uint64
	off      int64 // next byte to read
	commit   int64 // end of the last line sent
	skip     bool  // commit is inside a cut line
	sp       splitter
	fpLen    int
	fp       [sha256.Size]byte
	// head holds the file's first bytes as they were read, up to fpMax,
	// for the fingerprint: reading them again later could see a file
	// truncated and refilled meanwhile, and fingerprint that instead.
	head     []byte
	detached bool // path no longer names f
	idle     int  // poll ticks without new data while detached
}

// fileRun is the state of one Stream call.
type fileRun struct {
	s       *fileSource
	ctx     context.Context
	out     chan<- detect.Line
	tails   map[string]*tailer
	buf     []byte
	fp      []byte
	watcher *fsnotify.Watcher
	watched map[string]bool
	// tailNew: files found by the first scan of a first start begin at
	// their end.
	tailNew bool
}

var errStopped = errors.New("stopped")

func (s *fileSource) Stream(ctx context.Context, out chan<- detect.Line) error {
	defer s.start.open()
	var st fileState
	found, err := loadState(s.statePath, &st)
	if err != nil {
		return fmt.Errorf("file source %s: %w", s.cfg.Name, err)
	}
	s.mu.Lock()
	s.pos = st.Files
	if s.pos == nil {
		s.pos = map[string]filePos{}
	}
	s.mu.Unlock()
	r := &fileRun{
		s: s, ctx: ctx, out: out,
		tails:   map[string]*tailer{},
		buf:     make([]byte, readBufSize),
		fp:      make([]byte, fpMax),
		watched: map[string]bool{},
		tailNew: !found && s.cfg.Start == "tail" && s.cfg.Mode == "tail",
	}
	defer r.closeAll()
	if s.cfg.Mode == "tail" && !s.cfg.PollWithoutInotify {
		w, err := fsnotify.NewWatcher()
		if err != nil {
			if s.cfg.ForceInotify {
				return fmt.Errorf("file source %s: inotify: %w", s.cfg.Name, err)
			}
		} else {
			r.watcher = w
			defer w.Close()
		}
	}
	defer runSaver(s.save)()

	err = r.scan()
	s.start.open()
	if err != nil {
		return err
	}
	r.tailNew = false
	if err := r.readAll(); err != nil {
		return nilIfStopped(err)
	}
	if s.cfg.Mode == "cat" {
		return nil
	}
	tick := time.NewTicker(s.cfg.PollInterval)
	defer tick.Stop()
	var events <-chan fsnotify.Event
	var errs <-chan error
	if r.watcher != nil {
		events, errs = r.watcher.Events, r.watcher.Errors
	}
	for {
		var err error
		select {
		case <-ctx.Done():
			return nil
		case ev := <-events:
			err = r.event(ev)
		case werr := <-errs:
			// An overflowed queue loses events: re-read everything.
			s.c.fail(fmt.Errorf("inotify: %w", werr))
			err = r.readAll()
		case <-tick.C:
			err = r.tick()
		}
		if err != nil {
			return nilIfStopped(err)
		}
	}
}

func nilIfStopped(err error) error {
	if errors.Is(err, errStopped) {
		return nil
	}
	return err
}

func (s *fileSource) save() {
	s.mu.Lock()
	if !s.dirty {
		s.mu.Unlock()
		return
	}
	st := fileState{Files: make(map[string]filePos, len(s.pos))}
	for k, v := range s.pos {
		st.Files[k] = v
	}
	s.dirty = false
	s.mu.Unlock()
	if err := saveState(s.statePath, &st); err != nil {
		s.c.fail(err)
		s.mu.Lock()
		s.dirty = true
		s.mu.Unlock()
	}
}

func (r *fileRun) closeAll() {
	for _, t := range r.tails {
		t.f.Close()
	}
}

// scan evaluates the globs, opens new files and watches their directories.
func (r *fileRun) scan() error {
	var paths []string
	for _, pat := range r.s.cfg.Patterns() {
		ms, _ := filepath.Glob(pat) // patterns are checked by Validate
		paths = append(paths, ms...)
		if r.watcher != nil {
			dirs := []string{filepath.Dir(pat)}
			if hasMeta(dirs[0]) {
				dirs, _ = filepath.Glob(dirs[0])
			}
			for _, d := range dirs {
				if r.watched[d] {
					continue
				}
				if err := r.watcher.Add(d); err != nil {
					if errors.Is(err, fs.ErrNotExist) {
						continue // a later scan watches it once it exists
					}
					if r.s.cfg.ForceInotify {
						return fmt.Errorf("file source %s: watch %s: %w", r.s.cfg.Name, d, err)
					}
					r.s.c.fail(fmt.Errorf("watch %s: %w", d, err))
					continue
				}
				r.watched[d] = true
			}
		}
	}
	// A path with a saved position that is missing was rotated while moat
	// was down; open finds the renamed file.
	r.s.mu.Lock()
	for p := range r.s.pos {
		if _, ok := r.tails[p]; !ok && !slices.Contains(paths, p) && r.s.cfg.matches(p) {
			paths = append(paths, p)
		}
	}
	r.s.mu.Unlock()
	sort.Strings(paths)
	for _, p := range paths {
		if _, ok := r.tails[p]; ok || r.excluded(p) {
			continue
		}
		t, err := r.open(p)
		if err != nil {
			r.s.c.fail(err)
			continue
		}
		if t != nil {
			r.tails[p] = t
		}
	}
	return nil
}

func hasMeta(p string) bool { return bytes.ContainsAny([]byte(p), `*?[\`) }

func (r *fileRun) excluded(p string) bool {
	for _, re := range r.s.excl {
		if re.MatchString(p) {
			return true
		}
	}
	return false
}

func devIno(fi fs.FileInfo) (uint64, uint64) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0
	}
	return uint64(st.Dev), st.Ino
}

// open starts following path: at its saved position, in the rotated file the
// saved position belongs to, at its end on a first start, else at its head.
func (r *fileRun) open(path string) (*tailer, error) {
	r.s.mu.Lock()
	saved, hasSaved := r.s.pos[path]
	r.s.mu.Unlock()
	fi, err := os.Stat(path)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("stat %s: %w", path, err)
		}
		// Rotated while moat was down and not yet recreated: read on in
		// the renamed file, where the daemon may still write.
		if hasSaved {
			if name := findInode(filepath.Dir(path), saved.Dev, saved.Ino); name != "" {
				return r.resume(path, name, saved)
			}
			// Gone: a file that appears at path later is a new one.
			r.s.mu.Lock()
			delete(r.s.pos, path)
			r.s.dirty = true
			r.s.mu.Unlock()
		}
		return nil, nil
	}
	if fi.IsDir() {
		return nil, nil
	}
	if hasSaved {
		dev, ino := devIno(fi)
		name := path
		if dev != saved.Dev || ino != saved.Ino {
			// Rotated while moat was down: finish the old file first.
			name = findInode(filepath.Dir(path), saved.Dev, saved.Ino)
		}
		if name != "" {
			if t, err := r.resume(path, name, saved); err != nil || t != nil {
				return t, err
			}
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	t, err := r.newTailer(path, f)
	if err != nil {
		return nil, err
	}
	if r.tailNew {
		// Start at the last line boundary so a partial line being written
		// is not taken for a whole one later.
		t.off = fi.Size()
		t.commit = t.off
		if t.off > 0 {
			var b [1]byte
			if _, err := f.ReadAt(b[:], t.off-1); err == nil && b[0] != '\n' {
				t.sp.skip = true
				t.skip = true
			}
		}
	}
	r.publish(t)
	return t, nil
}

// resume opens name (path itself or its rotated self) at the saved offset if
// it is still the same file; nil means it is not.
func (r *fileRun) resume(path, name string, saved filePos) (*tailer, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, nil
	}
	t, err := r.newTailer(path, f)
	if err != nil {
		f.Close()
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil || t.dev != saved.Dev || t.ino != saved.Ino || fi.Size() < saved.Offset || !r.fpMatches(f, saved) {
		f.Close()
		return nil, nil
	}
	t.off, t.commit, t.skip, t.sp.skip = saved.Offset, saved.Offset, saved.Skip, saved.Skip
	t.detached = name != path
	return t, nil
}

func (r *fileRun) fpMatches(f *os.File, p filePos) bool {
	if p.FPLen == 0 {
		return true
	}
	n, _ := f.ReadAt(r.fp[:p.FPLen], 0)
	if n != p.FPLen {
		return false
	}
	h := sha256.Sum256(r.fp[:n])
	return bytes.Equal(h[:], p.FP)
}

// findInode looks in dir for the file with the given identity (logrotate's
// rename keeps it in the same directory).
func findInode(dir string, dev, ino uint64) string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		if d, i := devIno(fi); d == dev && i == ino {
			return filepath.Join(dir, e.Name())
		}
	}
	return ""
}

func (r *fileRun) newTailer(path string, f *os.File) (*tailer, error) {
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	t := &tailer{path: path, f: f, sp: splitter{max: r.s.cfg.MaxLineLength}}
	t.dev, t.ino = devIno(fi)
	return t, nil
}

// publish records t's committed position for the saver.
func (r *fileRun) publish(t *tailer) {
	r.updateFP(t)
	p := filePos{Dev: t.dev, Ino: t.ino, Offset: t.commit, Skip: t.skip, FPLen: t.fpLen}
	if t.fpLen > 0 {
		p.FP = append([]byte(nil), t.fp[:]...)
	}
	r.s.mu.Lock()
	r.s.pos[t.path] = p
	r.s.dirty = true
	r.s.mu.Unlock()
}

// updateFP extends the fingerprint while the file is shorter than fpMax,
// from the bytes read so far. A tailer that started past the head (resumed,
// or at the end of a file) reads it once.
func (r *fileRun) updateFP(t *tailer) {
	want := int(min(t.off, fpMax))
	if t.fpLen >= want {
		return
	}
	if len(t.head) < want {
		n, _ := t.f.ReadAt(r.fp[:want], 0)
		if n < want {
			return
		}
		t.head = append(t.head[:0], r.fp[:n]...)
	}
	t.fpLen = want
	t.fp = sha256.Sum256(t.head[:want])
	if t.fpLen >= fpMax {
		t.head = nil
	}
}

// noteHead keeps the bytes of a read at base that fall in the head.
func (t *tailer) noteHead(base int64, b []byte) {
	if base < fpMax && base == int64(len(t.head)) {
		t.head = append(t.head, b[:min(len(b), fpMax-int(base))]...)
	}
}

func (r *fileRun) readAll() error {
	for _, p := range r.sortedPaths() {
		if err := r.follow(r.tails[p]); err != nil {
			return err
		}
	}
	return nil
}

func (r *fileRun) sortedPaths() []string {
	ps := make([]string, 0, len(r.tails))
	for p := range r.tails {
		ps = append(ps, p)
	}
	sort.Strings(ps)
	return ps
}

// event handles one inotify event from a watched directory.
func (r *fileRun) event(ev fsnotify.Event) error {
	if t, ok := r.tails[ev.Name]; ok {
		return r.follow(t)
	}
	if ev.Has(fsnotify.Create) || ev.Has(fsnotify.Rename) {
		if err := r.scan(); err != nil {
			return err
		}
		if t, ok := r.tails[ev.Name]; ok {
			return r.follow(t)
		}
	}
	// A write to a file that was renamed away (auth.log.1 still being
	// written before the daemon reopens): read the detached tailers.
	if ev.Has(fsnotify.Write) {
		for _, p := range r.sortedPaths() {
			if t := r.tails[p]; t.detached {
				if err := r.follow(t); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// tick is the poll: new files, missed events, truncation that refilled a
// file past the old offset, files that vanished for good.
func (r *fileRun) tick() error {
	if err := r.scan(); err != nil {
		return err
	}
	for _, p := range r.sortedPaths() {
		t := r.tails[p]
		before := t.off
		if err := r.follow(t); err != nil {
			return err
		}
		if t, ok := r.tails[p]; ok && t.detached {
			if t.off == before {
				t.idle++
			} else {
				t.idle = 0
			}
			if t.idle >= 2 && !linked(t.f) {
				// Gone for good (deleted, not recreated): let it go. A
				// renamed file stays followed: the daemon may write to it
				// until it reopens its log, and follow reads it to its
				// end once the path names a new file.
				if err := r.flushPartial(t); err != nil {
					return err
				}
				t.f.Close()
				delete(r.tails, p)
				r.s.mu.Lock()
				delete(r.s.pos, p)
				r.s.dirty = true
				r.s.mu.Unlock()
			}
		}
	}
	return nil
}

// linked reports whether f still has a name (renamed, not deleted).
func linked(f *os.File) bool {
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return !ok || st.Nlink > 0
}

func (r *fileRun) truncated(t *tailer) {
	t.off, t.commit, t.skip = 0, 0, false
	t.sp.reset()
	t.fpLen, t.head = 0, t.head[:0]
}

// follow reads t to its end, sends the lines, then checks whether path was
// truncated or now names another file.
func (r *fileRun) follow(t *tailer) error {
	// A file truncated and refilled past our offset before we looked has
	// other first bytes; a pread of at most fpMax bytes per wake-up.
	if t.fpLen > 0 && !t.detached && !r.fpMatches(t.f, filePos{FPLen: t.fpLen, FP: t.fp[:]}) {
		r.truncated(t)
		r.publish(t)
	}
	for range 4 { // bounded: a file rotating in a loop must not pin us here
		if err := r.drain(t); err != nil {
			return err
		}
		fi, err := os.Stat(t.path)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				t.detached = true
				return nil
			}
			r.s.c.fail(fmt.Errorf("stat %s: %w", t.path, err))
			return nil
		}
		dev, ino := devIno(fi)
		if dev == t.dev && ino == t.ino {
			t.detached = false
			if fi.Size() >= t.off {
				return nil
			}
			// copytruncate: start again at the head.
			r.truncated(t)
			r.publish(t)
			continue
		}
		// Replaced (rename rotation, delete and recreate): the old file is
		// read to its end above; its unterminated last line will not grow.
		if err := r.flushPartial(t); err != nil {
			return err
		}
		f, err := os.Open(t.path)
		if err != nil {
			r.s.c.fail(fmt.Errorf("open %s: %w", t.path, err))
			return nil
		}
		nt, err := r.newTailer(t.path, f)
		if err != nil {
			r.s.c.fail(err)
			return nil
		}
		t.f.Close()
		*t = *nt
		r.publish(t)
	}
	return nil
}

func (r *fileRun) flushPartial(t *tailer) error {
	l := t.sp.flush()
	if l == nil {
		return nil
	}
	noticed := time.Now()
	if !r.sendLine(t, l, false, noticed) {
		return errStopped
	}
	t.commit, t.skip = t.off, false
	r.publish(t)
	return nil
}

func (r *fileRun) sendLine(t *tailer, line []byte, cut bool, noticed time.Time) bool {
	l := detect.Line{Raw: string(line), Src: t.path, Module: KindFile, Labels: r.s.cfg.Labels, Process: true}
	at, ok := sendAt(r.ctx, r.out, l)
	if !ok {
		return false
	}
	r.s.c.lines.Add(1)
	if cut {
		r.s.c.cut.Add(1)
	}
	r.s.c.lag.Store(int64(at.Sub(noticed)))
	return true
}

// drain reads t from its offset to the end of the file and sends the lines.
func (r *fileRun) drain(t *tailer) error {
	noticed := time.Now()
	read := false
	defer func() {
		if read {
			r.publish(t)
		}
	}()
	for {
		n, err := t.f.ReadAt(r.buf, t.off)
		if n > 0 {
			read = true
			base := t.off
			t.noteHead(base, r.buf[:n])
			t.off += int64(n)
			r.s.c.bytes.Add(uint64(n))
			ok := t.sp.feed(r.buf[:n], func(line []byte, cut bool, end int) bool {
				if !r.sendLine(t, line, cut, noticed) {
					return false
				}
				t.commit, t.skip = base+int64(end), t.sp.skip
				return true
			})
			if !ok {
				return errStopped
			}
		}
		if err == io.EOF || n == 0 {
			return nil
		}
		if err != nil {
			r.s.c.fail(fmt.Errorf("read %s: %w", t.path, err))
			return nil
		}
	}
}
