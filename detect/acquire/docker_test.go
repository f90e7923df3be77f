package acquire

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatsec/moat/detect"
)

// Besides the real podman of docker_podman_test.go (where installed), the
// source is tested against this fake of the Engine API's few endpoints it
// uses, served on a unix socket: the
// container list, inspect (for Tty), and logs with follow, since and
// timestamps, multiplexed with 8-byte frame headers unless the container
// has a TTY.

type fakeLog struct {
	ts     time.Time
	stream byte // 1 stdout, 2 stderr
	text   string
}

type fakeContainer struct {
	id, name string
	tty      bool
	running  bool
	labels   map[string]string
	logs     []fakeLog
}

type fakeDocker struct {
	mu      sync.Mutex
	cs      []*fakeContainer
	changed chan struct{} // closed and replaced on every change
	sock    string
	srv     *httptest.Server
	// frameSplit, when set, writes every payload in two frames, as the
	// engine does with lines over 16 KiB.
	frameSplit bool
}

func newFakeDocker(t *testing.T) *fakeDocker {
	t.Helper()
	f := &fakeDocker{changed: make(chan struct{}), sock: filepath.Join(t.TempDir(), "docker.sock")}
	ln, err := net.Listen("unix", f.sock)
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.srv.Listener = ln
	f.srv.Start()
	t.Cleanup(func() {
		f.update(func() {
			for _, c := range f.cs {
				c.running = false // ends the followers' streams
			}
		})
		f.srv.Close()
	})
	return f
}

func (f *fakeDocker) update(fn func()) {
	f.mu.Lock()
	fn()
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

func (f *fakeDocker) add(c *fakeContainer) { f.update(func() { f.cs = append(f.cs, c) }) }

func (f *fakeDocker) log(c *fakeContainer, ts time.Time, stream byte, text string) {
	f.update(func() { c.logs = append(c.logs, fakeLog{ts, stream, text}) })
}

func (f *fakeDocker) find(id string) *fakeContainer {
	for _, c := range f.cs {
		if c.id == id {
			return c
		}
	}
	return nil
}

func (f *fakeDocker) serve(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	f.mu.Lock()
	switch {
	case r.URL.Path == "/containers/json":
		var list []map[string]any
		for _, c := range f.cs {
			state := "exited"
			if c.running {
				state = "running"
			}
			list = append(list, map[string]any{"Id": c.id, "Names": []string{"/" + c.name}, "Labels": c.labels, "State": state})
		}
		f.mu.Unlock()
		json.NewEncoder(w).Encode(list)
	case len(parts) == 3 && parts[0] == "containers" && parts[2] == "json" && f.find(parts[1]) != nil:
		c := f.find(parts[1])
		f.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"Id": c.id, "Config": map[string]any{"Tty": c.tty}})
	case len(parts) == 3 && parts[0] == "containers" && parts[2] == "logs" && f.find(parts[1]) != nil:
		c := f.find(parts[1])
		f.mu.Unlock()
		f.serveLogs(w, r, c)
	default:
		f.mu.Unlock()
		http.Error(w, `{"message":"no such container"}`, http.StatusNotFound)
	}
}

func (f *fakeDocker) serveLogs(w http.ResponseWriter, r *http.Request, c *fakeContainer) {
	q := r.URL.Query()
	var since time.Time
	if s := q.Get("since"); s != "" {
		// As podman reads it: a float64, which rounds the nanoseconds.
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			http.Error(w, "bad since", http.StatusBadRequest)
			return
		}
		sec, frac := math.Modf(f)
		since = time.Unix(int64(sec), int64(frac*1e9))
	}
	if q.Get("timestamps") != "1" {
		http.Error(w, "want timestamps", http.StatusBadRequest)
		return
	}
	want := map[byte]bool{1: q.Get("stdout") == "1", 2: q.Get("stderr") == "1"}
	w.WriteHeader(http.StatusOK)
	next := 0
	for {
		f.mu.Lock()
		logs, running, changed := c.logs[next:], c.running, f.changed
		next = len(c.logs)
		f.mu.Unlock()
		for _, l := range logs {
			if l.ts.Before(since) || !want[l.stream] {
				continue
			}
			payload := l.ts.UTC().Format(time.RFC3339Nano) + " " + l.text + "\n"
			if c.tty {
				w.Write([]byte(payload))
				continue
			}
			chunks := []string{payload}
			if f.frameSplit && len(payload) > 40 {
				// The engine's split: both parts carry the timestamp.
				chunks = []string{payload[:40], l.ts.UTC().Format(time.RFC3339Nano) + " " + payload[40:]}
			}
			for _, ch := range chunks {
				var hdr [8]byte
				hdr[0] = l.stream
				binary.BigEndian.PutUint32(hdr[4:], uint32(len(ch)))
				w.Write(hdr[:])
				w.Write([]byte(ch))
			}
		}
		w.(http.Flusher).Flush()
		if !running || q.Get("follow") != "1" {
			return
		}
		select {
		case <-changed:
		case <-r.Context().Done():
			return
		}
	}
}

type dockerRun struct {
	t    *testing.T
	src  *dockerSource
	out  chan detect.Line
	stop context.CancelFunc
	done chan error
}

func startDocker(t *testing.T, f *fakeDocker, stateDir string, mut func(*Config), opts ...Option) *dockerRun {
	t.Helper()
	cfg := defaultConfig()
	cfg.Source = KindDocker
	cfg.Labels = map[string]string{"type": "nginx"}
	cfg.DockerHost = "unix://" + f.sock
	cfg.CheckInterval = 100 * time.Millisecond
	cfg.Start = "head"
	cfg.ContainerName = []string{"web"}
	if mut != nil {
		mut(&cfg)
	}
	src, err := New(cfg, stateDir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &dockerRun{t: t, src: src.(*dockerSource), out: make(chan detect.Line, 1024), stop: cancel, done: make(chan error, 1)}
	go func() { r.done <- src.Stream(ctx, r.out) }()
	t.Cleanup(func() { r.close() })
	select {
	case <-r.src.Positioned():
	case <-time.After(5 * time.Second):
		t.Fatal("not positioned")
	}
	return r
}

func (r *dockerRun) close() {
	r.stop()
	select {
	case err := <-r.done:
		if err != nil {
			r.t.Errorf("Stream: %v", err)
		}
		r.done <- nil
	case <-time.After(5 * time.Second):
		r.t.Error("Stream did not return")
	}
}

// expect receives lines with the given texts, in order, and nothing more.
func (r *dockerRun) expect(texts ...string) []detect.Line {
	r.t.Helper()
	var got []detect.Line
	for _, want := range texts {
		select {
		case l := <-r.out:
			if l.Raw != want {
				r.t.Fatalf("line %q, want %q (after %d lines)", l.Raw, want, len(got))
			}
			got = append(got, l)
		case <-time.After(5 * time.Second):
			r.t.Fatalf("no line %q; stats %+v", want, r.src.Stats())
		}
	}
	select {
	case l := <-r.out:
		r.t.Fatalf("unexpected line %q", l.Raw)
	case <-time.After(300 * time.Millisecond):
	}
	return got
}

// dockerT0 has nanoseconds a float64 cannot hold: read back as podman
// reads since=, atMS(2) comes out 115ns late.
var dockerT0 = time.Date(2026, 12, 7, 4, 0, 0, 987654426, time.UTC)

func atMS(ms int) time.Time { return dockerT0.Add(time.Duration(ms) * time.Millisecond) }

// TestDockerFollow: matching containers are followed, TTY and not, both
// streams, lines appended later too, and containers that start while the
// source runs are picked up; others are left alone.
func TestDockerFollow(t *testing.T) {
	f := newFakeDocker(t)
	web := &fakeContainer{id: "aaaa1111", name: "web", running: true}
	tty := &fakeContainer{id: "bbbb2222", name: "tty-app", tty: true, running: true}
	other := &fakeContainer{id: "cccc3333", name: "db", running: true}
	f.add(web)
	f.add(tty)
	f.add(other)
	f.log(web, atMS(1), 1, "GET / 200")
	f.log(web, atMS(2), 2, "error: x")
	f.log(tty, atMS(3), 1, "tty line")
	f.log(other, atMS(4), 1, "not followed")
	r := startDocker(t, f, "", func(c *Config) { c.ContainerNameRegexp = []string{"^tty-"} })
	got := map[string]detect.Line{}
	for i := 0; i < 3; i++ {
		select {
		case l := <-r.out:
			got[l.Raw] = l
		case <-time.After(5 * time.Second):
			t.Fatalf("lines so far %v; stats %+v", got, r.src.Stats())
		}
	}
	if l := got["GET / 200"]; l.Src != "web" || l.Module != KindDocker || l.Labels["type"] != "nginx" || !l.Time.Equal(atMS(1)) || !l.Process {
		t.Fatalf("line %+v", l)
	}
	if l, ok := got["tty line"]; !ok || l.Src != "tty-app" {
		t.Fatalf("tty line %+v", l)
	}
	if _, ok := got["error: x"]; !ok {
		t.Fatalf("stderr line missing: %v", got)
	}
	f.log(web, atMS(5), 1, "later")
	r.expect("later")
	late := &fakeContainer{id: "dddd4444", name: "web-2", running: true, labels: map[string]string{"crowdsec.enable": "true", "crowdsec.labels.type": "apache2"}}
	f.log(late, atMS(6), 1, "from a late container")
	f.add(late)
	r.expect() // not selected: web-2 is not web
	r.close()

	r = startDocker(t, f, "", func(c *Config) { c.ContainerName, c.UseContainerLabels = nil, true; c.Labels = nil })
	if l := r.expect("from a late container")[0]; l.Labels["type"] != "apache2" || l.Src != "web-2" {
		t.Fatalf("line %+v", l)
	}
	r.close()

	no := false
	r = startDocker(t, f, "", func(c *Config) { c.FollowStderr = &no })
	r.expect("GET / 200", "later") // not "error: x", from stderr
}

// TestDockerCutAndSplitFrames: a line the engine split over two frames is
// one line again; a line over max_line_length is cut and counted.
func TestDockerCutAndSplitFrames(t *testing.T) {
	f := newFakeDocker(t)
	f.frameSplit = true
	web := &fakeContainer{id: "aaaa1111", name: "web", running: true}
	f.add(web)
	long := strings.Repeat("x", 100)
	f.log(web, atMS(1), 1, "a line long enough to be split over two frames")
	f.log(web, atMS(2), 1, long)
	f.log(web, atMS(3), 1, "after")
	r := startDocker(t, f, "", func(c *Config) { c.MaxLineLength = 64 })
	r.expect("a line long enough to be split over two frames", long[:64], "after")
	if st := r.src.Stats(); st.Cut != 1 || st.Lines != 3 {
		t.Fatalf("stats %+v", st)
	}
}

// TestDockerResume: across a restart of the source, and of the container
// while the source is down, no line is lost or repeated, lines sharing a
// timestamp included; with acknowledgements, only acknowledged lines
// count as done.
func TestDockerResume(t *testing.T) {
	for _, acks := range []bool{false, true} {
		t.Run(fmt.Sprintf("acks=%v", acks), func(t *testing.T) {
			f := newFakeDocker(t)
			state := t.TempDir()
			web := &fakeContainer{id: "aaaa1111", name: "web", running: true}
			f.add(web)
			var opts []Option
			if acks {
				opts = append(opts, WithAcks())
			}
			f.log(web, atMS(1), 1, "l1")
			f.log(web, atMS(2), 1, "l2a")
			f.log(web, atMS(2), 2, "l2b") // the same timestamp
			f.log(web, atMS(2), 1, "l2c")
			r := startDocker(t, f, state, nil, opts...)
			got := r.expect("l1", "l2a", "l2b", "l2c")
			if acks {
				got[1].Pos.Ack() // l2b and l2c received, not acknowledged
			}
			r.close()
			if err := r.src.Checkpoint(); err != nil {
				t.Fatal(err)
			}
			// Written while moat is down, across a container restart.
			f.log(web, atMS(2), 1, "l2d")
			f.update(func() { web.running = false })
			f.update(func() { web.running = true })
			f.log(web, atMS(3), 1, "l3")
			r = startDocker(t, f, state, nil, opts...)
			if acks {
				r.expect("l2b", "l2c", "l2d", "l3")
			} else {
				r.expect("l2d", "l3")
			}
		})
	}
}

// TestDockerStopsAndShortLives: a container restarted while followed
// goes on where it was, without a repeat even when nothing was
// acknowledged; one that starts, logs and exits between two lists is
// still read; one that exits is read to its end.
func TestDockerStopsAndShortLives(t *testing.T) {
	f := newFakeDocker(t)
	web := &fakeContainer{id: "aaaa1111", name: "web", running: true}
	f.add(web)
	f.log(web, atMS(1), 1, "l1")
	r := startDocker(t, f, t.TempDir(), func(c *Config) { c.ContainerNameRegexp = []string{"^job-"} }, WithAcks())
	r.expect("l1")
	f.update(func() { web.running = false })
	time.Sleep(300 * time.Millisecond) // listed stopped
	f.update(func() { web.running = true })
	f.log(web, atMS(2), 1, "l2")
	r.expect("l2")
	job := &fakeContainer{id: "eeee5555", name: "job-1", logs: []fakeLog{{atMS(3), 1, "ran and exited"}}}
	f.add(job)
	r.expect("ran and exited")
	f.log(web, atMS(4), 2, "last words")
	f.update(func() { web.running = false })
	r.expect("last words")
}

// TestDockerTailStart: a first start at the tail skips what containers
// logged before, and a restart before any line still starts there.
func TestDockerTailStart(t *testing.T) {
	f := newFakeDocker(t)
	state := t.TempDir()
	web := &fakeContainer{id: "aaaa1111", name: "web", running: true}
	f.add(web)
	f.log(web, time.Now().Add(-time.Hour), 1, "old")
	tail := func(c *Config) { c.Start = "tail" }
	r := startDocker(t, f, state, tail)
	r.expect()
	r.close()
	f.log(web, time.Now(), 1, "new while down")
	r = startDocker(t, f, state, tail)
	r.expect("new while down")
}

// TestDockerUnreachable: no API socket is counted, not fatal, and the
// source is still positioned (it gave up trying) and stops cleanly.
func TestDockerUnreachable(t *testing.T) {
	cfg := defaultConfig()
	cfg.Source, cfg.Labels = KindDocker, map[string]string{"type": "x"}
	cfg.ContainerName, cfg.DockerHost = []string{"web"}, "unix://"+filepath.Join(t.TempDir(), "none.sock")
	src, err := New(cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Stream(ctx, make(chan detect.Line)) }()
	select {
	case <-src.(Positioner).Positioned():
	case <-time.After(5 * time.Second):
		t.Fatal("not positioned")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := src.Stats(); st.Errors == 0 || !strings.Contains(st.LastError.Error(), "list containers") {
		t.Fatalf("stats %+v", st)
	}
}

// FuzzDockerStream reads arbitrary bytes as a container's log stream,
// multiplexed and raw. Reading ends (at the stream's end, or at a broken
// frame), never hands on a line over the maximum, and every line is in
// the stream.
func FuzzDockerStream(f *testing.F) {
	frame := func(stream byte, s string) string {
		var hdr [8]byte
		hdr[0] = stream
		binary.BigEndian.PutUint32(hdr[4:], uint32(len(s)))
		return string(hdr[:]) + s
	}
	for _, s := range []string{
		frame(1, "2026-12-07T04:00:00.000000001Z GET / 200\n") + frame(2, "2026-12-07T04:00:00.5Z err\n"),
		frame(1, "2026-12-07T04:00:00Z part one ") + frame(1, "2026-12-07T04:00:01Z part two\n"),
		frame(3, "x") + "\xff\xff\xff\xff",
		"\x01\x00\x00\x00\xff\xff\xff\xff2026-12-07T04:00:00Z claims 4 GiB",
		"2026-12-07T04:00:00Z tty line\r\n2026-12-07T04:00:01+02:00 another\nno timestamp\n",
	} {
		f.Add([]byte(s))
	}
	const max = 64
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, raw := range []bool{false, true} {
			cfg := defaultConfig()
			cfg.MaxLineLength = max
			s := &dockerSource{cfg: cfg, state: dockerState{Containers: map[string]dockerPos{}}, sent: map[string]dockerPos{}}
			out := make(chan detect.Line, len(data)+1)
			fl := &dockerFollower{s: s, id: "c", src: "c", out: out}
			var err error
			if raw {
				err = fl.readRaw(context.Background(), bytes.NewReader(data))
			} else {
				err = fl.readMuxed(context.Background(), bytes.NewReader(data))
			}
			if err == nil {
				t.Fatalf("%q: reading ended without an error", data)
			}
			close(out)
			for l := range out {
				if len(l.Raw) > max {
					t.Fatalf("%q: line %q over the maximum", data, l.Raw)
				}
				// A multiplexed line may join two frames' payloads.
				if raw && !bytes.Contains(data, []byte(l.Raw)) {
					t.Fatalf("%q: line %q is not in the stream", data, l.Raw)
				}
			}
		}
	})
}
