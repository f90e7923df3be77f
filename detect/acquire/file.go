package acquire

import (
	"bytes"
	"compress/gzip"
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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	// Files holds the position in the file each path named when saved.
	Files map[string]filePos `json:"files"`
	// Draining holds, per path, the files rotated away from it that were
	// not yet read to their end (under WithAcks: not yet acknowledged to
	// their end), oldest first.
	Draining map[string][]filePos `json:"draining,omitempty"`
}

// mark is a resumable place in a file: the offset just past a line, and
// whether it is inside a line that was cut.
type mark struct {
	off  int64
	skip bool
}

// fileCursor is what the saver knows of one open file; its fields are
// guarded by fileSource.mu, pending is atomic.
type fileCursor struct {
	path     string
	dev, ino uint64
	fpLen    int
	fp       []byte
	sent     mark // end of the last line sent
	acked    mark // end of the last line acknowledged (WithAcks)
	pending  atomic.Int64
	live     bool // the file path names; else one rotated away
	closed   bool
}

// fileAck is where an acknowledged line ends.
type fileAck struct {
	cur *fileCursor
	at  mark
}

type fileSource struct {
	cfg       Config
	statePath string
	excl      []*regexp.Regexp
	c         counters
	start     startGate
	// grace is how long a file rotated away is kept open after its last
	// growth: its writer may not have reopened its log yet.
	grace time.Duration
	ack   *ackLog[fileAck] // nil without WithAcks

	mu sync.Mutex
	// carry holds loaded positions of paths not opened (yet), saved as
	// they were.
	carry map[string]filePos
	curs  []*fileCursor // in opening order
	dirty bool
}

// DrainGrace is how long a file renamed away by rotation is still read
// after it last grew: the writer appends to it until it reopens its log.
const DrainGrace = 5 * time.Second

func newFileSource(cfg Config, stateDir string, o options) (*fileSource, error) {
	s := &fileSource{cfg: cfg, statePath: stateFile(stateDir, "file", cfg.Name), carry: map[string]filePos{}, start: newStartGate(), grace: DrainGrace}
	for _, r := range cfg.ExcludeRegexps {
		s.excl = append(s.excl, regexp.MustCompile(r)) // checked by Validate
	}
	if o.acks {
		s.ack = newAckLog[fileAck]()
	}
	return s, nil
}

func (s *fileSource) Name() string { return s.cfg.Name }

func (s *fileSource) Stats() Stats { return s.c.snapshot() }

// Positioned implements Positioner.
func (s *fileSource) Positioned() <-chan struct{} { return s.start.ch }

// Ack implements detect.Acker: under WithAcks the source saves, for every
// file, the end of its newest acknowledged line.
func (s *fileSource) Ack(p detect.Position) {
	if s.ack != nil && p.Source() == detect.Acker(s) {
		s.ack.ack(p.Seq())
	}
}

// Checkpoint implements Checkpointer.
func (s *fileSource) Checkpoint() error { return s.saveErr() }

// tailer reads one file for path: the file path names (live), or one
// rotated away from it, read to its end before it is let go.
type tailer struct {
	path     string
	f        *os.File
	zr       *gzip.Reader // a compressed generation, read as a stream
	zdone    bool         // zr reached its end or failed
	dev, ino uint64
	off      int64 // next byte to read (uncompressed)
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
	grown    time.Time
	cur      *fileCursor
}

func (t *tailer) close() {
	if t.zr != nil {
		t.zr.Close()
	}
	t.f.Close()
}

// fileRun is the state of one Stream call.
type fileRun struct {
	s     *fileSource
	ctx   context.Context
	out   chan<- detect.Line
	tails map[string]*tailer
	// drains are files rotated away from their path, oldest first.
	drains  []*tailer
	buf     []byte
	fp      []byte
	watcher *fsnotify.Watcher
	watched map[string]bool
	// tailNew: files found by the first scan of a first start begin at
	// their end.
	tailNew bool
	// savedDrains are the loaded Draining positions of paths not opened
	// yet.
	savedDrains map[string][]filePos
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
	s.carry, s.curs = st.Files, nil
	if s.carry == nil {
		s.carry = map[string]filePos{}
	}
	s.mu.Unlock()
	r := &fileRun{
		s: s, ctx: ctx, out: out,
		tails:       map[string]*tailer{},
		buf:         make([]byte, readBufSize),
		fp:          make([]byte, fpMax),
		watched:     map[string]bool{},
		tailNew:     !found && s.cfg.Start == "tail" && s.cfg.Mode == "tail",
		savedDrains: st.Draining,
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
	var kick chan struct{}
	if s.ack != nil {
		kick = s.ack.kick
	}
	defer runSaver(s.save, kick)()

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
		return nilIfStopped(r.closeDrains(true))
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

func (s *fileSource) save() { _ = s.saveErr() }

// saveErr writes the positions if they moved: under WithAcks the ends of
// the acknowledged lines, else of the lines sent. A failure is also
// counted.
func (s *fileSource) saveErr() error {
	if s.ack != nil {
		s.ack.take(func(a fileAck) {
			a.cur.pending.Add(-1)
			s.mu.Lock()
			a.cur.acked = a.at
			s.dirty = true
			s.mu.Unlock()
		})
	}
	s.mu.Lock()
	if !s.dirty {
		s.mu.Unlock()
		return nil
	}
	st := fileState{Files: make(map[string]filePos, len(s.carry)+len(s.curs))}
	for k, v := range s.carry {
		st.Files[k] = v
	}
	kept := s.curs[:0]
	for _, c := range s.curs {
		if c.closed && (s.ack == nil || c.pending.Load() == 0) {
			continue
		}
		kept = append(kept, c)
		at := c.sent
		if s.ack != nil {
			at = c.acked
		}
		p := filePos{Dev: c.dev, Ino: c.ino, Offset: at.off, Skip: at.skip, FPLen: c.fpLen, FP: c.fp}
		if c.live {
			st.Files[c.path] = p
			continue
		}
		if st.Draining == nil {
			st.Draining = map[string][]filePos{}
		}
		st.Draining[c.path] = append(st.Draining[c.path], p)
	}
	clear(s.curs[len(kept):])
	s.curs = kept
	s.dirty = false
	s.mu.Unlock()
	if err := saveState(s.statePath, &st); err != nil {
		s.c.fail(err)
		s.mu.Lock()
		s.dirty = true
		s.mu.Unlock()
		return fmt.Errorf("file source %s: %w", s.cfg.Name, err)
	}
	return nil
}

func (r *fileRun) closeAll() {
	for _, t := range r.tails {
		t.close()
	}
	for _, t := range r.drains {
		t.close()
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
	for p := range r.s.carry {
		if _, ok := r.tails[p]; !ok && !slices.Contains(paths, p) && r.s.cfg.matches(p) {
			paths = append(paths, p)
		}
	}
	r.s.mu.Unlock()
	for p := range r.savedDrains {
		if _, ok := r.tails[p]; !ok && !slices.Contains(paths, p) && r.s.cfg.matches(p) {
			paths = append(paths, p)
		}
	}
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

// open starts following path. With saved positions, it first resumes
// the files they belong to, wherever rotation put them, and every
// generation rotated away after the newest of them, oldest first, as
// draining tailers; path itself is then read from where it was left, or
// from its head when it is a new file. A file new to a first start begins
// at its end; one new to a later start at its head.
func (r *fileRun) open(path string) (*tailer, error) {
	r.s.mu.Lock()
	saved, hasSaved := r.s.carry[path]
	r.s.mu.Unlock()
	drains := r.savedDrains[path]
	delete(r.savedDrains, path)
	if hasSaved || len(drains) > 0 {
		t, err := r.resumePath(path, saved, hasSaved, drains)
		r.s.mu.Lock()
		delete(r.s.carry, path)
		r.s.dirty = true
		r.s.mu.Unlock()
		return t, err
	}
	return r.openLive(path)
}

// openLive opens the file path names; nil when there is none.
func (r *fileRun) openLive(path string) (*tailer, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	t, err := r.newTailer(path, f)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil || fi.IsDir() {
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("stat %s: %w", path, err)
		}
		return nil, nil
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
	r.track(t, true)
	return t, nil
}

// resumePath opens path's saved files (see open) and returns the tailer
// of path itself.
func (r *fileRun) resumePath(path string, saved filePos, hasSaved bool, drains []filePos) (*tailer, error) {
	cands := append([]string{path}, r.generations(path)...)
	used := map[[2]uint64]bool{}
	add := func(t *tailer) bool {
		id := [2]uint64{t.dev, t.ino}
		if used[id] {
			t.close()
			return false
		}
		used[id] = true
		t.detached, t.grown = true, time.Now()
		r.track(t, false)
		r.drains = append(r.drains, t)
		return true
	}
	for _, d := range drains {
		if name := r.locateName(path, cands, d); name != "" && name != path {
			if t := r.resume(path, name, d); t != nil {
				add(t)
			}
		}
	}
	var live *tailer
	if hasSaved {
		switch i := r.locate(cands, saved); {
		case i == 0:
			if live = r.resume(path, path, saved); live != nil {
				if used[[2]uint64{live.dev, live.ino}] {
					live.close()
					live = nil
				} else {
					r.track(live, true)
				}
			}
		case i > 0:
			// Rotated while moat was down: the rest of that file, then
			// each newer generation whole, then path.
			if t := r.resume(path, cands[i], saved); t != nil {
				add(t)
			}
			for j := i - 1; j >= 1; j-- {
				if t := r.resume(path, cands[j], filePos{}); t != nil {
					add(t)
				}
			}
		default:
			// Renamed to a name no rotation scheme gives: its rest, then
			// path (its place among generations is unknown).
			if name := r.locateName(path, nil, saved); name != "" {
				if t := r.resume(path, name, saved); t != nil {
					add(t)
				}
			}
		}
	}
	if live != nil {
		return live, nil
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) && len(r.drains) > 0 {
		// Rotated and not yet recreated: the newest file read for path
		// stays its tailer, as the daemon may still write to it.
		if t := r.drains[len(r.drains)-1]; t.path == path && t.zr == nil {
			r.drains = r.drains[:len(r.drains)-1]
			r.s.mu.Lock()
			t.cur.live = true
			r.s.mu.Unlock()
			return t, nil
		}
	}
	t, err := r.openLive(path)
	if t != nil && used[[2]uint64{t.dev, t.ino}] {
		// Already read as a rotated file (hard-linked back): not twice.
		r.untrack(t)
		t.close()
		return nil, nil
	}
	return t, err
}

// genRe matches the names logrotate gives generations of a file: numbered
// (auth.log.1, auth.log.2.gz) or dated (auth.log-20240101[.gz]).
var genRe = regexp.MustCompile(`^(?:\.([0-9]+)|-([0-9][0-9_-]*))(?:\.gz)?$`)

// generations lists the rotated generations of path, newest first; names
// the configuration follows on their own are left to that.
func (r *fileRun) generations(path string) []string {
	dir, base := filepath.Split(path)
	ents, err := os.ReadDir(filepath.Clean(dir))
	if err != nil {
		return nil
	}
	type gen struct {
		name string
		num  int
	}
	var gens []gen
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), base)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		m := genRe.FindStringSubmatch(rest)
		if m == nil {
			continue
		}
		name := filepath.Join(dir, e.Name())
		if r.s.cfg.matches(name) && !r.excluded(name) {
			continue
		}
		n := -1 // dated: older than any numbered one, ordered by name
		if m[1] != "" {
			n, _ = strconv.Atoi(m[1])
		}
		gens = append(gens, gen{name, n})
	}
	sort.Slice(gens, func(i, j int) bool {
		a, b := gens[i], gens[j]
		if (a.num < 0) != (b.num < 0) {
			return a.num >= 0
		}
		if a.num >= 0 {
			return a.num < b.num
		}
		return a.name > b.name
	})
	out := make([]string, len(gens))
	for i, g := range gens {
		out[i] = g.name
	}
	return out
}

// locate returns the index in cands (path, then its generations newest
// first) of the file p was saved in: the same inode with the same first
// bytes, else (a copy, a compressed generation) the first bytes alone.
// -1 when none.
func (r *fileRun) locate(cands []string, p filePos) int {
	for i, name := range cands {
		fi, err := os.Stat(name)
		if err != nil {
			continue
		}
		if dev, ino := devIno(fi); dev == p.Dev && ino == p.Ino && r.holds(name, fi, p) {
			return i
		}
	}
	if p.FPLen == 0 {
		return -1 // nothing tells its content apart
	}
	for i, name := range cands {
		if fi, err := os.Stat(name); err == nil && r.holds(name, fi, p) {
			return i
		}
	}
	return -1
}

// locateName is locate returning the name, and looking by inode through
// the whole directory when no candidate is the file.
func (r *fileRun) locateName(path string, cands []string, p filePos) string {
	if i := r.locate(cands, p); i >= 0 {
		return cands[i]
	}
	name := findInode(filepath.Dir(path), p.Dev, p.Ino)
	if name == "" {
		return ""
	}
	if fi, err := os.Stat(name); err != nil || !r.holds(name, fi, p) {
		return ""
	}
	return name
}

// findInode looks in dir for the file with the given identity.
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

// holds reports whether name has p's first bytes and reaches its offset.
func (r *fileRun) holds(name string, fi fs.FileInfo, p filePos) bool {
	f, err := os.Open(name)
	if err != nil {
		return false
	}
	defer f.Close()
	if isGzip(f) {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return false
		}
		defer zr.Close()
		return r.fpMatchesReader(zr, p)
	}
	return fi.Size() >= p.Offset && r.fpMatches(f, p)
}

func isGzip(f *os.File) bool {
	var m [2]byte
	n, _ := f.ReadAt(m[:], 0)
	return n == 2 && m[0] == 0x1f && m[1] == 0x8b
}

// resume opens name for path at p (the zero filePos: at its head), as a
// stream when it is compressed; nil when it cannot be read.
func (r *fileRun) resume(path, name string, p filePos) *tailer {
	f, err := os.Open(name)
	if err != nil {
		r.s.c.fail(fmt.Errorf("open %s: %w", name, err))
		return nil
	}
	t, err := r.newTailer(path, f)
	if err != nil {
		r.s.c.fail(err)
		return nil
	}
	if !isGzip(f) {
		t.off, t.commit, t.skip, t.sp.skip = p.Offset, p.Offset, p.Skip, p.Skip
		return t
	}
	// The fingerprint of a compressed file is of its uncompressed head.
	zr, err := gzip.NewReader(f)
	if err == nil {
		var n int
		n, err = io.ReadFull(zr, r.fp)
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			err = nil
		}
		t.fpLen, t.fp = n, sha256.Sum256(r.fp[:n])
	}
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err == nil {
		err = zr.Reset(f)
	}
	if err == nil {
		var n int64
		n, err = io.CopyN(io.Discard, zr, p.Offset)
		if err == io.EOF && n == p.Offset {
			err = nil
		}
	}
	if err != nil {
		r.s.c.fail(fmt.Errorf("read %s: %w", name, err))
		f.Close()
		return nil
	}
	t.zr = zr
	t.off, t.commit, t.skip, t.sp.skip = p.Offset, p.Offset, p.Skip, p.Skip
	return t
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

func (r *fileRun) fpMatchesReader(rd io.Reader, p filePos) bool {
	if p.FPLen == 0 || p.FPLen > len(r.fp) {
		return p.FPLen == 0
	}
	if _, err := io.ReadFull(rd, r.fp[:p.FPLen]); err != nil {
		return false
	}
	h := sha256.Sum256(r.fp[:p.FPLen])
	return bytes.Equal(h[:], p.FP)
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

// track gives t a cursor for the saver, starting at t's position.
func (r *fileRun) track(t *tailer, live bool) {
	t.cur = &fileCursor{path: t.path, dev: t.dev, ino: t.ino, live: live}
	m := mark{t.commit, t.skip}
	t.cur.sent, t.cur.acked = m, m
	r.s.mu.Lock()
	r.s.curs = append(r.s.curs, t.cur)
	r.s.mu.Unlock()
	r.publish(t)
}

// untrack forgets t's cursor: t was let go without being read.
func (r *fileRun) untrack(t *tailer) {
	r.s.mu.Lock()
	t.cur.closed, t.cur.live = true, false
	r.s.dirty = true
	r.s.mu.Unlock()
}

// publish records t's committed position for the saver.
func (r *fileRun) publish(t *tailer) {
	r.updateFP(t)
	var fp []byte
	if t.fpLen > 0 {
		fp = append([]byte(nil), t.fp[:]...)
	}
	r.s.mu.Lock()
	c := t.cur
	c.sent = mark{t.commit, t.skip}
	if c.fpLen != t.fpLen {
		c.fpLen, c.fp = t.fpLen, fp
	}
	r.s.dirty = true
	r.s.mu.Unlock()
}

// updateFP extends the fingerprint while the file is shorter than fpMax,
// from the bytes read so far. A tailer that started past the head (resumed,
// or at the end of a file) reads it once. A compressed file's was taken
// when it was opened.
func (r *fileRun) updateFP(t *tailer) {
	want := int(min(t.off, fpMax))
	if t.zr != nil || t.fpLen >= want {
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

// readAll reads the rotated files, oldest first, then every path.
func (r *fileRun) readAll() error {
	if err := r.drainAll(); err != nil {
		return err
	}
	for _, p := range r.sortedPaths() {
		if err := r.follow(r.tails[p]); err != nil {
			return err
		}
	}
	return nil
}

// drainAll reads the rotated files to their current end.
func (r *fileRun) drainAll() error {
	now := time.Now()
	for _, t := range r.drains {
		before := t.off
		if err := r.drain(t); err != nil {
			return err
		}
		if t.off != before {
			t.grown = now
		}
	}
	return nil
}

// closeDrains lets go of the rotated files that stopped growing a grace
// period ago (all with force), sending their unterminated last lines. A
// compressed generation, read whole, goes at once.
func (r *fileRun) closeDrains(force bool) error {
	kept := r.drains[:0]
	var err error
	for i, t := range r.drains {
		if err == nil && (force || t.zr != nil || time.Since(t.grown) >= r.s.grace) {
			if err = r.flushPartial(t); err == nil {
				t.close()
				r.untrack(t)
				continue
			}
		}
		kept = append(kept, r.drains[i])
	}
	clear(r.drains[len(kept):])
	r.drains = kept
	return err
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
	// written before the daemon reopens): read the rotated and detached
	// files.
	if ev.Has(fsnotify.Write) {
		if err := r.drainAll(); err != nil {
			return err
		}
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
// file past the old offset, rotated files done with, files that vanished
// for good.
func (r *fileRun) tick() error {
	if err := r.scan(); err != nil {
		return err
	}
	if err := r.drainAll(); err != nil {
		return err
	}
	if err := r.closeDrains(false); err != nil {
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
				// until it reopens its log, and follow keeps reading it
				// once the path names a new file.
				if err := r.flushPartial(t); err != nil {
					return err
				}
				t.close()
				delete(r.tails, p)
				r.untrack(t)
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

// truncated starts t again at the head of its file (copytruncate), with a
// new cursor: the old one keeps the lines sent from the old content until
// they are acknowledged.
func (r *fileRun) truncated(t *tailer) {
	r.untrack(t)
	t.off, t.commit, t.skip = 0, 0, false
	t.sp.reset()
	t.fpLen, t.head = 0, t.head[:0]
	r.track(t, true)
}

// follow reads t to its end, sends the lines, then checks whether path was
// truncated or now names another file.
func (r *fileRun) follow(t *tailer) error {
	// A file truncated and refilled past our offset before we looked has
	// other first bytes; a pread of at most fpMax bytes per wake-up.
	if t.fpLen > 0 && !t.detached && !r.fpMatches(t.f, filePos{FPLen: t.fpLen, FP: t.fp[:]}) {
		r.truncated(t)
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
			continue
		}
		// Replaced (rename rotation, delete and recreate): the old file
		// stays open and is read on until it stopped growing for a grace
		// period, since its writer appends to it until it reopens.
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
		r.s.mu.Lock()
		t.cur.live = false
		r.s.dirty = true
		r.s.mu.Unlock()
		t.detached, t.grown = true, time.Now()
		r.drains = append(r.drains, t)
		r.tails[t.path] = nt
		r.track(nt, true)
		t = nt
	}
	return nil
}

func (r *fileRun) flushPartial(t *tailer) error {
	l := t.sp.flush()
	if l == nil {
		return nil
	}
	noticed := time.Now()
	if !r.sendLine(t, l, false, noticed, mark{t.off, false}) {
		return errStopped
	}
	t.commit, t.skip = t.off, false
	r.publish(t)
	return nil
}

// sendLine sends a line of t that ends at end.
func (r *fileRun) sendLine(t *tailer, line []byte, cut bool, noticed time.Time, end mark) bool {
	l := detect.Line{Raw: string(line), Src: t.path, Module: KindFile, Labels: r.s.cfg.Labels, Process: true}
	a := r.s.ack
	if a != nil {
		l.Pos = detect.NewPosition(r.s, a.next())
	}
	at, ok := sendAt(r.ctx, r.out, l)
	if !ok {
		return false
	}
	if a != nil {
		t.cur.pending.Add(1)
		a.sent(l.Pos.Seq(), fileAck{t.cur, end})
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
		var n int
		var err error
		if t.zr != nil {
			if t.zdone {
				return nil
			}
			n, err = t.zr.Read(r.buf)
			t.zdone = err != nil
		} else {
			n, err = t.f.ReadAt(r.buf, t.off)
		}
		if n > 0 {
			read = true
			base := t.off
			if t.zr == nil {
				t.noteHead(base, r.buf[:n])
			}
			t.off += int64(n)
			r.s.c.bytes.Add(uint64(n))
			ok := t.sp.feed(r.buf[:n], func(line []byte, cut bool, end int) bool {
				m := mark{base + int64(end), t.sp.skip}
				if !r.sendLine(t, line, cut, noticed, m) {
					return false
				}
				t.commit, t.skip = m.off, m.skip
				return true
			})
			if !ok {
				return errStopped
			}
		}
		if err == io.EOF || (n == 0 && err == nil) {
			return nil
		}
		if err != nil {
			name := t.path
			if t.detached {
				name = t.f.Name()
			}
			r.s.c.fail(fmt.Errorf("read %s at byte %d: %w", name, t.off, err))
			return nil
		}
	}
}
