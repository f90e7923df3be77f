package acquire

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/internal/yamlerr"
)

// DockerConfig holds the keys of a docker source, under the names
// CrowdSec's docker datasource gives them. A container is followed when
// any of the selectors matches it.
type DockerConfig struct {
	ContainerName       []string `yaml:"container_name"`
	ContainerID         []string `yaml:"container_id"` // a full id or a prefix of one
	ContainerNameRegexp []string `yaml:"container_name_regexp"`
	ContainerIDRegexp   []string `yaml:"container_id_regexp"`
	// DockerHost is the Engine API socket: unix:///path or /path.
	DockerHost string `yaml:"docker_host"`
	// CheckInterval is how often the container list is read, to pick up
	// containers that started.
	CheckInterval time.Duration `yaml:"check_interval"`
	// UseContainerLabels follows containers labelled crowdsec.enable=true
	// and takes each one's acquisition labels from its crowdsec.labels.*
	// labels (crowdsec.labels.type=nginx), as CrowdSec does.
	UseContainerLabels bool `yaml:"use_container_labels"`
	// FollowStdout and FollowStderr choose the streams read; both are
	// read when unset.
	FollowStdout *bool `yaml:"follow_stdout"`
	FollowStderr *bool `yaml:"follow_stderr"`
}

// streams is the stdout and stderr query values.
func (c DockerConfig) streams() (stdout, stderr string) {
	on := func(b *bool) string {
		if b == nil || *b {
			return "1"
		}
		return "0"
	}
	return on(c.FollowStdout), on(c.FollowStderr)
}

// Defaults of a docker source.
const (
	DefaultDockerHost          = "unix:///var/run/docker.sock"
	DefaultDockerCheckInterval = time.Second
)

// dockerTSLen bounds the timestamp the API puts before each line
// (RFC 3339 with nanoseconds, up to 35 bytes with a zone offset).
const dockerTSLen = 40

func (c DockerConfig) socket() string {
	h := c.DockerHost
	if h == "" {
		h = DefaultDockerHost
	}
	return strings.TrimPrefix(h, "unix://")
}

// validateDocker checks the docker keys; errors name the key at fault.
func (c *Config) validateDocker() error {
	d := c.DockerConfig
	if len(d.ContainerName)+len(d.ContainerID)+len(d.ContainerNameRegexp)+len(d.ContainerIDRegexp) == 0 && !d.UseContainerLabels {
		return yamlerr.AtKey(errors.New("source docker needs container_name, container_id, container_name_regexp, container_id_regexp or use_container_labels"), "source")
	}
	if d.UseContainerLabels && len(d.ContainerName)+len(d.ContainerID)+len(d.ContainerNameRegexp)+len(d.ContainerIDRegexp) > 0 {
		// As CrowdSec: the labels pick the containers, or the selectors do.
		return yamlerr.AtKey(errors.New("use_container_labels excludes container_name, container_id and their regexps"), "use_container_labels")
	}
	if out, errs := d.streams(); out == "0" && errs == "0" {
		return yamlerr.AtKey(errors.New("follow_stdout and follow_stderr are both false: nothing to read"), "follow_stderr")
	}
	for _, k := range []struct {
		key string
		res []string
	}{{"container_name_regexp", d.ContainerNameRegexp}, {"container_id_regexp", d.ContainerIDRegexp}} {
		for i, r := range k.res {
			if _, err := regexp.Compile(r); err != nil {
				return yamlerr.AtKey(fmt.Errorf("%s %q: %v", k.key, r, err), k.key, i)
			}
		}
	}
	if d.DockerHost != "" && !filepath.IsAbs(d.socket()) {
		return yamlerr.AtKey(fmt.Errorf("docker_host %q: want unix:///path/to/socket (only a local socket is supported)", d.DockerHost), "docker_host")
	}
	if c.Mode != "tail" {
		return yamlerr.AtKey(fmt.Errorf("mode %q: a docker source only follows (tail)", c.Mode), "mode")
	}
	if d.CheckInterval != 0 && d.CheckInterval < 100*time.Millisecond {
		return yamlerr.AtKey(fmt.Errorf("check_interval %s is below 100ms", d.CheckInterval), "check_interval")
	}
	return nil
}

// dockerPos is where a container's log was read up to: the timestamp of
// the last line, and how many lines carried exactly that timestamp (the
// API's since= is inclusive, so a resume skips that many).
type dockerPos struct {
	TS string `json:"ts"`
	N  int    `json:"n"`
}

type dockerState struct {
	// Started is when the first start began reading, zero for start:
	// head; a container without a position is read from then on, so no
	// line written since the first start is skipped.
	Started    time.Time            `json:"started"`
	Containers map[string]dockerPos `json:"containers"`
}

// dockerAck is a position to save once acknowledged.
type dockerAck struct {
	id  string
	pos dockerPos
}

// dockerSource follows the logs of the containers its selectors match,
// through the Docker Engine API (podman's compatible API too).
type dockerSource struct {
	cfg       Config
	statePath string
	c         counters
	start     startGate
	client    *http.Client
	names     []*regexp.Regexp
	ids       []*regexp.Regexp

	ack    *ackLog[dockerAck]
	sendMu sync.Mutex // one sender at a time: sequence numbers follow channel order

	mu    sync.Mutex
	state dockerState
	dirty bool
	// sent is the position of the last line sent per container: a
	// container read again in this process (its stream broke, it was
	// restarted) resumes there, not at the saved position, which under
	// WithAcks trails it.
	sent map[string]dockerPos
}

var (
	_ Positioner   = (*dockerSource)(nil)
	_ Checkpointer = (*dockerSource)(nil)
	_ detect.Acker = (*dockerSource)(nil)
)

func newDockerSource(cfg Config, stateDir string, o options) (*dockerSource, error) {
	sock := cfg.DockerConfig.socket()
	s := &dockerSource{
		cfg: cfg, statePath: stateFile(stateDir, "docker", cfg.Name), start: newStartGate(),
		client: &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", sock)
			},
			ResponseHeaderTimeout: dockerCallTimeout,
		}},
	}
	for _, r := range cfg.ContainerNameRegexp {
		s.names = append(s.names, regexp.MustCompile(r)) // validated
	}
	for _, r := range cfg.ContainerIDRegexp {
		s.ids = append(s.ids, regexp.MustCompile(r))
	}
	if o.acks {
		s.ack = newAckLog[dockerAck]()
	}
	return s, nil
}

func (s *dockerSource) Name() string { return s.cfg.Name }

func (s *dockerSource) Stats() Stats { return s.c.snapshot() }

// Positioned implements Positioner: closed once the first container list
// was read and every matching container has its start position.
func (s *dockerSource) Positioned() <-chan struct{} { return s.start.ch }

// Ack implements detect.Acker.
func (s *dockerSource) Ack(p detect.Position) {
	if s.ack != nil && p.Source() == detect.Acker(s) {
		s.ack.ack(p.Seq())
	}
}

// Checkpoint implements Checkpointer.
func (s *dockerSource) Checkpoint() error { return s.saveErr() }

func (s *dockerSource) save() { _ = s.saveErr() }

func (s *dockerSource) saveErr() error {
	if s.ack != nil {
		s.ack.take(func(a dockerAck) { s.setPos(a.id, a.pos) })
	}
	s.mu.Lock()
	if !s.dirty {
		s.mu.Unlock()
		return nil
	}
	st := dockerState{Started: s.state.Started, Containers: make(map[string]dockerPos, len(s.state.Containers))}
	for k, v := range s.state.Containers {
		st.Containers[k] = v
	}
	s.dirty = false
	s.mu.Unlock()
	if err := saveState(s.statePath, &st); err != nil {
		s.c.fail(err)
		s.mu.Lock()
		s.dirty = true
		s.mu.Unlock()
		return fmt.Errorf("docker source %s: %w", s.cfg.Name, err)
	}
	return nil
}

func (s *dockerSource) setPos(id string, p dockerPos) {
	s.mu.Lock()
	s.state.Containers[id] = p
	s.dirty = true
	s.mu.Unlock()
}

// pos is where reading container id resumes, and the first start's time.
func (s *dockerSource) pos(id string) (dockerPos, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.sent[id]; ok {
		return p, s.state.Started
	}
	return s.state.Containers[id], s.state.Started
}

// dockerContainer is what the container list says of one container.
type dockerContainer struct {
	ID     string            `json:"Id"`
	Names  []string          `json:"Names"`
	Labels map[string]string `json:"Labels"`
	State  string            `json:"State"`
}

// Stream follows matching containers until ctx ends: it reads the
// container list every check_interval and follows each running container
// it is not following yet, from its saved position.
func (s *dockerSource) Stream(ctx context.Context, out chan<- detect.Line) error {
	defer s.start.open()
	if _, err := loadState(s.statePath, &s.state); err != nil {
		return fmt.Errorf("docker source %s: %w", s.cfg.Name, err)
	}
	s.mu.Lock()
	s.sent = map[string]dockerPos{}
	if s.state.Containers == nil {
		s.state.Containers = map[string]dockerPos{}
		if s.cfg.Start == "tail" {
			s.state.Started = time.Now().UTC()
		}
		s.dirty = true // the start is saved like a position
	}
	s.mu.Unlock()
	var kick chan struct{}
	if s.ack != nil {
		kick = s.ack.kick
	}
	defer runSaver(s.save, kick)()

	interval := s.cfg.CheckInterval
	if interval == 0 {
		interval = DefaultDockerCheckInterval
	}
	fs := &dockerFollowers{busy: map[string]bool{}}
	defer fs.wg.Wait()
	prev := map[string]string{} // container id -> state at the last list
	for {
		list, err := s.list(ctx)
		if err != nil && ctx.Err() == nil {
			s.c.fail(fmt.Errorf("docker source %s: list containers: %w", s.cfg.Name, err))
		}
		if err == nil {
			prev = s.startFollowers(ctx, list, prev, fs, out)
			s.prune(list)
		}
		s.start.open()
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

// dockerFollowers tracks the containers being read.
type dockerFollowers struct {
	wg   sync.WaitGroup
	mu   sync.Mutex
	busy map[string]bool
}

// startFollowers starts reading each matching container not being read:
// a running (or paused) one is followed until it stops; one seen stopped
// for the first time is read once to its end, which catches what a
// container logged while moat was down, or between two lists, before it
// exited. It returns the states seen, for the next call.
func (s *dockerSource) startFollowers(ctx context.Context, list []dockerContainer, prev map[string]string, fs *dockerFollowers, out chan<- detect.Line) map[string]string {
	seen := make(map[string]string, len(list))
	for _, ct := range list {
		seen[ct.ID] = ct.State
		labels, ok := s.match(ct)
		if !ok {
			continue
		}
		switch ct.State {
		case "running", "paused", "restarting":
		case "exited", "dead":
			if prev[ct.ID] == ct.State {
				continue // read to its end already
			}
		default:
			continue // created, removing: no log to read yet, or any more
		}
		fs.mu.Lock()
		busy := fs.busy[ct.ID]
		fs.busy[ct.ID] = true
		fs.mu.Unlock()
		if busy {
			// Still reading: a container seen stopped is read again at
			// the next list.
			delete(seen, ct.ID)
			continue
		}
		fs.wg.Add(1)
		go func() {
			defer fs.wg.Done()
			if err := s.follow(ctx, ct, labels, out); err != nil && ctx.Err() == nil {
				s.c.fail(fmt.Errorf("docker source %s: container %s: %w", s.cfg.Name, containerName(ct), err))
			}
			fs.mu.Lock()
			delete(fs.busy, ct.ID)
			fs.mu.Unlock()
		}()
	}
	return seen
}

// prune forgets the positions of containers that no longer exist, so the
// state does not grow with every container ever run.
func (s *dockerSource) prune(list []dockerContainer) {
	seen := make(map[string]bool, len(list))
	for _, ct := range list {
		seen[ct.ID] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.state.Containers {
		if !seen[id] {
			delete(s.state.Containers, id)
			s.dirty = true
		}
	}
	for id := range s.sent {
		if !seen[id] {
			delete(s.sent, id)
		}
	}
}

func containerName(ct dockerContainer) string {
	if len(ct.Names) > 0 {
		return strings.TrimPrefix(ct.Names[0], "/")
	}
	return ct.ID
}

// match reports whether a selector picks ct, and the labels its lines get.
func (s *dockerSource) match(ct dockerContainer) (map[string]string, bool) {
	d := s.cfg.DockerConfig
	if d.UseContainerLabels && ct.Labels["crowdsec.enable"] == "true" {
		labels := map[string]string{}
		for k, v := range s.cfg.Labels {
			labels[k] = v
		}
		for k, v := range ct.Labels {
			if name, ok := strings.CutPrefix(k, "crowdsec.labels."); ok && name != "" {
				labels[name] = v
			}
		}
		return labels, labels["type"] != ""
	}
	for _, n := range ct.Names {
		n = strings.TrimPrefix(n, "/")
		for _, want := range d.ContainerName {
			if n == strings.TrimPrefix(want, "/") {
				return s.cfg.Labels, true
			}
		}
		for _, re := range s.names {
			if re.MatchString(n) {
				return s.cfg.Labels, true
			}
		}
	}
	for _, want := range d.ContainerID {
		if want != "" && strings.HasPrefix(ct.ID, want) {
			return s.cfg.Labels, true
		}
	}
	for _, re := range s.ids {
		if re.MatchString(ct.ID) {
			return s.cfg.Labels, true
		}
	}
	return nil, false
}

// dockerCallTimeout bounds a request that is not a log stream: an API
// that stalls mid-answer must not stop the source from noticing new
// containers for good.
const dockerCallTimeout = 30 * time.Second

// get issues an API request and decodes its JSON answer into v.
func (s *dockerSource) get(ctx context.Context, path string, q url.Values, v any) error {
	ctx, cancel := context.WithTimeout(ctx, dockerCallTimeout)
	defer cancel()
	resp, err := s.request(ctx, path, q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// A container list is small; the bound keeps a broken peer from
	// handing us gigabytes.
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

func (s *dockerSource) request(ctx context.Context, path string, q url.Values) (*http.Response, error) {
	u := "http://docker" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(msg)))
	}
	return resp, nil
}

func (s *dockerSource) list(ctx context.Context) ([]dockerContainer, error) {
	var list []dockerContainer
	err := s.get(ctx, "/containers/json", url.Values{"all": {"1"}}, &list)
	return list, err
}

// follow reads one container's log from its position until the
// container stops (the API ends the stream) or ctx ends.
func (s *dockerSource) follow(ctx context.Context, ct dockerContainer, labels map[string]string, out chan<- detect.Line) error {
	var info struct {
		Config struct {
			Tty bool `json:"Tty"`
		} `json:"Config"`
	}
	if err := s.get(ctx, "/containers/"+url.PathEscape(ct.ID)+"/json", nil, &info); err != nil {
		return err
	}
	pos, started := s.pos(ct.ID)
	since := started
	if pos.TS != "" {
		t, err := time.Parse(time.RFC3339Nano, pos.TS)
		if err != nil {
			return fmt.Errorf("saved position %q: %w", pos.TS, err)
		}
		since = t
	}
	stdout, stderr := s.cfg.DockerConfig.streams()
	q := url.Values{"follow": {"1"}, "stdout": {stdout}, "stderr": {stderr}, "timestamps": {"1"}}
	if !since.IsZero() {
		// Asked a microsecond early: podman reads since= as a float64,
		// which rounds nanoseconds by up to a few hundred, and could
		// round past lines at the position's time. The lines before it
		// that this lets through are skipped below.
		early := since.Add(-time.Microsecond)
		q.Set("since", strconv.FormatInt(early.Unix(), 10)+"."+fmt.Sprintf("%09d", early.Nanosecond()))
	}
	resp, err := s.request(ctx, "/containers/"+url.PathEscape(ct.ID)+"/logs", q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	defer context.AfterFunc(ctx, func() { resp.Body.Close() })()
	f := &dockerFollower{s: s, id: ct.ID, src: containerName(ct), labels: labels, out: out, resume: pos, resumeT: since}
	if info.Config.Tty {
		err = f.readRaw(ctx, resp.Body)
	} else {
		err = f.readMuxed(ctx, resp.Body)
	}
	if ctx.Err() != nil || errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// dockerFollower turns one container's log stream into lines.
type dockerFollower struct {
	s      *dockerSource
	id     string
	src    string
	labels map[string]string
	out    chan<- detect.Line
	// resume is the saved position the stream was asked from. since= is
	// inclusive, so lines before it, and the first resume.N lines at its
	// time, were delivered before and are skipped.
	resume  dockerPos
	resumeT time.Time
	// cur is the position of the last line seen.
	cur dockerPos
}

// readRaw reads a TTY container's stream: plain "TS line\n" lines.
func (f *dockerFollower) readRaw(ctx context.Context, r io.Reader) error {
	sp := splitter{max: f.s.cfg.MaxLineLength + dockerTSLen}
	buf := make([]byte, readBufSize)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			f.s.c.bytes.Add(uint64(n))
			ok := sp.feed(buf[:n], func(line []byte, cut bool, _ int) bool {
				ts, rest := cutDockerTS(line)
				// The splitter's bound leaves room for the timestamp; a
				// line without one is held to the maximum here.
				if len(rest) > f.s.cfg.MaxLineLength {
					rest, cut = cutRune(rest[:f.s.cfg.MaxLineLength]), true
				}
				return f.emit(ctx, ts, rest, cut)
			})
			if !ok {
				return nil
			}
		}
		if err != nil {
			return err
		}
	}
}

// readMuxed reads a non-TTY container's stream: frames of an 8-byte
// header (stream, 3 zero bytes, big-endian payload length) and a payload
// that starts with the timestamp. Payloads are read in bounded chunks,
// whatever length the header claims.
func (f *dockerFollower) readMuxed(ctx context.Context, r io.Reader) error {
	var hdr [8]byte
	// One splitter per stream: a line split over frames (the engine
	// splits lines over 16 KiB) is joined again, never with the other
	// stream's text.
	sps := [3]splitter{{max: f.s.cfg.MaxLineLength}, {max: f.s.cfg.MaxLineLength}, {max: f.s.cfg.MaxLineLength}}
	buf := make([]byte, readBufSize)
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return err
		}
		stream := int(hdr[0])
		if stream > 2 {
			return fmt.Errorf("log stream: bad frame header %x", hdr)
		}
		size := int64(binary.BigEndian.Uint32(hdr[4:]))
		f.s.c.bytes.Add(uint64(size) + 8)
		var ts time.Time
		for first := true; size > 0; first = false {
			n := int(min(size, int64(len(buf))))
			if _, err := io.ReadFull(r, buf[:n]); err != nil {
				return fmt.Errorf("log stream: %w", unexpected(err))
			}
			size -= int64(n)
			p := buf[:n]
			if first {
				ts, p = cutDockerTS(p)
			}
			ok := sps[stream].feed(p, func(line []byte, cut bool, _ int) bool {
				return f.emit(ctx, ts, line, cut)
			})
			if !ok {
				return nil
			}
		}
	}
}

// cutDockerTS splits "TS rest" into the timestamp and the rest; a line
// without one keeps all its text and a zero time.
func cutDockerTS(b []byte) (time.Time, []byte) {
	i := 0
	for i < len(b) && i < dockerTSLen && b[i] != ' ' {
		i++
	}
	if i == len(b) || b[i] != ' ' {
		return time.Time{}, b
	}
	t, err := time.Parse(time.RFC3339Nano, string(b[:i]))
	if err != nil {
		return time.Time{}, b
	}
	return t, b[i+1:]
}

// emit hands on one line, unless a resumed stream already delivered it.
func (f *dockerFollower) emit(ctx context.Context, ts time.Time, line []byte, cut bool) bool {
	s := f.s
	pos := f.cur // a line without a time keeps the last position
	if !ts.IsZero() {
		pos = dockerPos{TS: ts.UTC().Format(time.RFC3339Nano), N: 1}
		if pos.TS == f.cur.TS {
			pos.N = f.cur.N + 1
		}
		if ts.Before(f.resumeT) || pos.TS == f.resume.TS && pos.N <= f.resume.N {
			f.cur = pos
			return true
		}
	}
	if cut {
		s.c.cut.Add(1)
	}
	l := detect.Line{Raw: string(line), Src: f.src, Module: KindDocker, Labels: f.labels, Time: ts, Process: true}
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if s.ack != nil {
		l.Pos = detect.NewPosition(s, s.ack.next())
	}
	at, ok := sendAt(ctx, f.out, l)
	if !ok {
		return false
	}
	if s.ack != nil {
		s.ack.sent(l.Pos.Seq(), dockerAck{f.id, pos})
	} else {
		s.setPos(f.id, pos)
	}
	s.mu.Lock()
	s.sent[f.id] = pos
	s.mu.Unlock()
	f.cur = pos
	s.c.lines.Add(1)
	if !ts.IsZero() {
		s.c.lag.Store(int64(at.Sub(ts)))
	}
	return true
}
