package acquire

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/detect/engine"
	"github.com/moatsec/moat/detect/parse"
	"github.com/moatsec/moat/internal/config"
	"github.com/moatsec/moat/internal/model"
	"github.com/moatsec/moat/internal/testutil"
	"github.com/moatsec/moat/packaging"
)

// freePort returns a loopback port nothing listens on right now.
func freePort(t testing.TB, network string) int {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type syslogRun struct {
	t    testing.TB
	src  *syslogSource
	port int
	out  chan detect.Line
	stop context.CancelFunc
	done chan error
}

// startSyslog runs a syslog source on a free loopback port until the test
// ends; mut adjusts its configuration.
func startSyslog(t testing.TB, proto string, mut func(*Config)) *syslogRun {
	t.Helper()
	return startSyslogTo(t, proto, mut, make(chan detect.Line, 1024))
}

// startSyslogTo is startSyslog sending to out.
func startSyslogTo(t testing.TB, proto string, mut func(*Config), out chan detect.Line) *syslogRun {
	t.Helper()
	cfg := defaultConfig()
	cfg.Source = KindSyslog
	cfg.Labels = map[string]string{"type": "syslog"}
	cfg.Protocol = proto
	cfg.ListenPort = freePort(t, proto)
	if mut != nil {
		mut(&cfg)
	}
	src, err := New(cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &syslogRun{t: t, src: src.(*syslogSource), port: cfg.ListenPort, out: out, stop: cancel, done: make(chan error, 1)}
	go func() { r.done <- src.Stream(ctx, r.out) }()
	select {
	case <-r.src.Positioned():
	case <-time.After(5 * time.Second):
		t.Fatal("listener not bound")
	}
	if r.src.Addr() == nil {
		cancel()
		t.Fatalf("listener failed: %v", <-r.done)
	}
	t.Cleanup(r.close)
	return r
}

func (r *syslogRun) close() {
	r.stop()
	select {
	case err := <-r.done:
		if err != nil {
			r.t.Errorf("Stream: %v", err)
		}
		r.done <- nil
	case <-time.After(5 * time.Second):
		r.t.Error("Stream did not return after cancellation")
	}
}

func (r *syslogRun) next() detect.Line {
	r.t.Helper()
	select {
	case l := <-r.out:
		return l
	case <-time.After(5 * time.Second):
		r.t.Fatalf("no line; stats %+v", r.src.Stats())
		return detect.Line{}
	}
}

func (r *syslogRun) quiet() {
	r.t.Helper()
	select {
	case l := <-r.out:
		r.t.Fatalf("unexpected line %q", l.Raw)
	case <-time.After(100 * time.Millisecond):
	}
}

// send writes raw bytes to the listener: one datagram, or on a fresh TCP
// connection that is then closed.
func (r *syslogRun) send(proto string, data ...[]byte) {
	r.t.Helper()
	c, err := net.Dial(proto, net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)))
	if err != nil {
		r.t.Fatal(err)
	}
	defer c.Close()
	for _, d := range data {
		if _, err := c.Write(d); err != nil {
			r.t.Fatal(err)
		}
	}
}

const sshdFailure = "Failed password for root from 198.51.100.7 port 22 ssh2"

// TestSyslogLoggerPeers: util-linux logger, in every framing it has, sends
// an sshd failure; the line handed on carries the syslog label, the peer
// as its source, and the shipped parsers take program and client address
// out of it.
func TestSyslogLoggerPeers(t *testing.T) {
	if _, err := exec.LookPath("logger"); err != nil {
		t.Skipf("SKIP: no logger(1): %v", err)
	}
	p := shippedPipeline(t)
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	host, _, _ = strings.Cut(host, ".")
	for _, tc := range []struct {
		proto string
		args  []string
	}{
		{"udp", []string{"--udp", "--rfc3164"}},
		{"udp", []string{"--udp", "--rfc5424"}},
		{"tcp", []string{"--tcp", "--rfc3164"}},
		{"tcp", []string{"--tcp", "--rfc5424"}},
		{"tcp", []string{"--tcp", "--rfc3164", "--octet-count"}},
		{"tcp", []string{"--tcp", "--rfc5424", "--octet-count"}},
	} {
		t.Run(strings.Join(tc.args, ""), func(t *testing.T) {
			r := startSyslog(t, tc.proto, nil)
			args := append([]string{"--server", "127.0.0.1", "--port", strconv.Itoa(r.port), "-t", "sshd", "--id=4242"}, tc.args...)
			args = append(args, "--", sshdFailure)
			if out, err := exec.Command("logger", args...).CombinedOutput(); err != nil {
				t.Fatalf("logger %v: %v: %s", args, err, out)
			}
			l := r.next()
			want := " sshd[4242]: " + sshdFailure
			if !strings.HasSuffix(l.Raw, want) || !strings.Contains(l.Raw, " "+host) {
				t.Fatalf("line %q: want host %q and suffix %q", l.Raw, host, want)
			}
			if _, err := time.Parse(syslogLineLayout, l.Raw[:len(syslogLineLayout)]); err != nil {
				t.Fatalf("line %q: timestamp: %v", l.Raw, err)
			}
			if l.Labels["type"] != "syslog" || l.Module != KindSyslog || l.Src != "127.0.0.1" || !l.Process || l.Time.IsZero() {
				t.Fatalf("line fields: %+v", l)
			}
			evt := detect.NewEvent(l)
			if !p.Parse(evt) {
				t.Fatalf("%q does not parse", l.Raw)
			}
			if evt.Parsed["program"] != "sshd" || evt.Meta["source_ip"] != "198.51.100.7" {
				t.Fatalf("%q: program %q, source_ip %q", l.Raw, evt.Parsed["program"], evt.Meta["source_ip"])
			}
			r.quiet()
			if st := r.src.Stats(); st.Lines != 1 || st.Malformed != 0 || st.Cut != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// TestSyslogFraming: messages of every shape on one TCP connection, and
// datagrams, each come out as one line; oversized ones are cut to
// max_message_len and counted, and what follows them is intact.
func TestSyslogFraming(t *testing.T) {
	const max = 100
	long := strings.Repeat("x", 3*max)
	msg := func(i int) string { return fmt.Sprintf("<38>Dec  7 04:00:00 h sshd[1]: m%d", i) }
	t.Run("tcp", func(t *testing.T) {
		r := startSyslog(t, "tcp", func(c *Config) { c.MaxMessageLen = max })
		r.send("tcp",
			[]byte(msg(1)+"\n"),
			[]byte(fmt.Sprintf("%d %s", len(msg(2)), msg(2))),
			[]byte(msg(3)+"\r\n"),
			[]byte("<38>Dec  7 04:00:00 h sshd[1]: "+long+"\n"), // cut, newline framing
			[]byte(msg(4)+"\n"),
			[]byte(fmt.Sprintf("%d <38>Dec  7 04:00:00 h sshd[1]: %s", len(long)+31, long)), // cut, counted
			[]byte(msg(5)+"\n\n"), // an empty frame gives no line
			[]byte("2026-12-07T04:00:00Z h sshd[1]: no pri, digits first\n"), // not an octet count
			[]byte(msg(6)), // the last frame, ended by the close
		)
		for _, want := range []string{"m1", "m2", "m3", "", "m4", "", "m5", "no pri, digits first", "m6"} {
			l := r.next()
			if want == "" {
				if !strings.HasSuffix(l.Raw, long[:max-31]) || len(l.Raw) > 2*max {
					t.Fatalf("cut line %q", l.Raw)
				}
				continue
			}
			if !strings.HasSuffix(l.Raw, ": "+want) {
				t.Fatalf("line %q, want message %q", l.Raw, want)
			}
		}
		r.quiet()
		if st := r.src.Stats(); st.Cut != 2 || st.Lines != 9 || st.Malformed != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
	t.Run("udp", func(t *testing.T) {
		r := startSyslog(t, "udp", func(c *Config) { c.MaxMessageLen = max })
		r.send("udp", []byte(msg(1)+"\n"))
		r.send("udp", []byte(msg(2)+long))
		r.send("udp", []byte(msg(3)))
		for _, want := range []string{"m1", "m2" + long[:max-len(msg(2))], "m3"} {
			if l := r.next(); !strings.HasSuffix(l.Raw, ": "+want) {
				t.Fatalf("line %q, want message %q", l.Raw, want)
			}
		}
		if st := r.src.Stats(); st.Cut != 1 || st.Lines != 3 {
			t.Fatalf("stats %+v", st)
		}
	})
	t.Run("truncated count", func(t *testing.T) {
		r := startSyslog(t, "tcp", nil)
		r.send("tcp", []byte("50 <38>short"))
		r.quiet()
		deadline := time.Now().Add(5 * time.Second)
		for r.src.Stats().Errors == 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if st := r.src.Stats(); st.Errors != 1 || !errors.Is(st.LastError, io.ErrUnexpectedEOF) {
			t.Fatalf("stats %+v", st)
		}
	})
}

// TestSyslogUDPDropsCounted: datagrams the kernel drops while the reader
// is held up are counted, so that every datagram sent is either a line or
// a drop.
func TestSyslogUDPDropsCounted(t *testing.T) {
	out := make(chan detect.Line)
	r := startSyslogTo(t, "udp", func(c *Config) { c.MaxMessageLen = 4096 }, out)
	c, err := net.Dial("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const sent = 20000 // 80 MB: more than any receive buffer the kernel grants
	msg := []byte("<13>" + strings.Repeat("x", 4000))
	for i := 0; i < sent; i++ {
		c.Write(msg)
	}
	c.Write([]byte("<13>last")) // carries the drop count, or is dropped too
	got := 0
	for {
		select {
		case <-out:
			got++
			continue
		case <-time.After(500 * time.Millisecond):
		}
		break
	}
	st := r.src.Stats()
	if st.Dropped == 0 || uint64(got) != st.Lines || st.Lines+st.Dropped < sent || st.Lines+st.Dropped > sent+1 {
		t.Fatalf("sent %d+1, received %d, stats %+v", sent, got, st)
	}
	t.Logf("sent %d+1: %d lines, %d dropped by the kernel", sent, st.Lines, st.Dropped)
}

// TestSyslogConnectionLimit: past max_connections a connection is closed
// at once and counted; once one closes, a new one is served.
func TestSyslogConnectionLimit(t *testing.T) {
	r := startSyslog(t, "tcp", func(c *Config) { c.MaxConnections = 2 })
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port))
	var held []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "<13>held %d\n", i)
		r.next() // served
		held = append(held, c)
	}
	extra, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	extra.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := extra.Read(make([]byte, 1)); err == nil {
		t.Fatal("a connection past the limit was not closed")
	}
	if st := r.src.Stats(); st.Errors != 1 || !strings.Contains(st.LastError.Error(), "max_connections") {
		t.Fatalf("stats %+v", st)
	}
	held[0].Close()
	time.Sleep(50 * time.Millisecond)
	r.send("tcp", []byte("<13>after\n"))
	if l := r.next(); !strings.HasSuffix(l.Raw, ": after") {
		t.Fatalf("line %q", l.Raw)
	}
}

// TestSyslogStop: cancelling ends Stream, closing the socket and every
// connection, also while a send is blocked on a full channel; the port
// can be bound again at once.
func TestSyslogStop(t *testing.T) {
	for _, proto := range []string{"udp", "tcp"} {
		t.Run(proto, func(t *testing.T) {
			r := startSyslogTo(t, proto, nil, make(chan detect.Line)) // never read
			c, err := net.Dial(proto, net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			fmt.Fprintf(c, "<13>blocked\n")
			time.Sleep(50 * time.Millisecond)
			r.stop()
			select {
			case err := <-r.done:
				if err != nil {
					t.Fatal(err)
				}
				r.done <- nil
			case <-time.After(5 * time.Second):
				t.Fatal("Stream did not return")
			}
			if proto == "tcp" {
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Read(make([]byte, 1)); err == nil {
					t.Fatal("connection not closed")
				}
			}
			r2 := startSyslog(t, proto, func(c *Config) { c.ListenPort = r.port })
			r2.send(proto, []byte("<13>again\n"))
			if l := r2.next(); !strings.HasSuffix(l.Raw, ": again") {
				t.Fatalf("line %q", l.Raw)
			}
		})
	}
}

// TestSourcesConfigGood: the example documents load, with the defaults
// and names documented, and build sources.
func TestSourcesConfigGood(t *testing.T) {
	data, err := os.ReadFile("testdata/sources/acquis.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cs, err := LoadConfig("acquis.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range cs {
		names = append(names, fmt.Sprintf("%s@%d", c.Name, c.Line))
		if _, err := New(c, t.TempDir()); err != nil {
			t.Fatalf("New(%s): %v", c.Where(), err)
		}
	}
	want := "syslog:udp://127.0.0.1:5514@2 syslog:tcp://[::1]:6514@7 command:/usr/bin/tail -F -n 0 /var/log/vendor/events.log@16" +
		" docker:nginx,^web-@/var/run/docker.sock@21 docker:labels@/run/podman/podman.sock@27"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("names\n got %s\nwant %s", got, want)
	}
	if d := cs[0].SyslogConfig.withDefaults(); d != (SyslogConfig{ListenAddr: "127.0.0.1", ListenPort: 5514, Protocol: "udp", MaxMessageLen: 2048, MaxConnections: 64}) {
		t.Fatalf("defaults %+v", d)
	}
}

// benchSyslog sends b.N sshd failures to a listener from one peer and
// reports the lines handed on per second; UDP also reports the share
// lost (the kernel drops datagrams when the socket buffer fills).
func benchSyslog(b *testing.B, proto string, frame func(i int) []byte) {
	r := startSyslog(b, proto, nil)
	c, err := net.Dial(proto, net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.ResetTimer()
	go func() {
		w := io.Writer(c)
		if proto == "tcp" {
			bw := bufio.NewWriterSize(c, 64<<10)
			defer bw.Flush()
			w = bw
		}
		for i := 0; i < b.N; i++ {
			if _, err := w.Write(frame(i)); err != nil {
				return
			}
		}
	}()
	got, began, last := 0, time.Now(), time.Now()
	for got < b.N {
		select {
		case <-r.out:
			got++
			last = time.Now()
			continue
		case <-time.After(time.Second):
		}
		break
	}
	b.StopTimer()
	// The rate up to the last line: a lost datagram's wait is not counted.
	b.ReportMetric(float64(got)/last.Sub(began).Seconds(), "lines/s")
	b.ReportMetric(100*float64(b.N-got)/float64(b.N), "%lost")
	if proto == "udp" {
		b.ReportMetric(100*float64(r.src.Stats().Dropped)/float64(b.N), "%dropped_counted")
	}
}

func BenchmarkSyslogUDP(b *testing.B) {
	benchSyslog(b, "udp", func(i int) []byte {
		return []byte("<38>Dec  7 04:00:00 web1 sshd[" + strconv.Itoa(i%30000+1) + "]: " + sshdFailure)
	})
}

func BenchmarkSyslogTCP(b *testing.B) {
	benchSyslog(b, "tcp", func(i int) []byte {
		return []byte("<38>Dec  7 04:00:00 web1 sshd[" + strconv.Itoa(i%30000+1) + "]: " + sshdFailure + "\n")
	})
}

func BenchmarkSyslogTCPOctetCounted(b *testing.B) {
	benchSyslog(b, "tcp", func(i int) []byte {
		m := `<38>1 2026-12-07T04:00:00.000001+00:00 web1 sshd ` + strconv.Itoa(i%30000+1) + ` - [timeQuality tzKnown="1"] ` + sshdFailure
		return []byte(strconv.Itoa(len(m)) + " " + m)
	})
}

// TestSyslogLoggerThroughput measures lines/s from util-linux logger
// sending a file line by line (logger -f), the figure docs/sources.md
// quotes. It runs only with MOAT_SYSLOG_THROUGHPUT=1: it takes seconds
// and its result depends on the machine.
func TestSyslogLoggerThroughput(t *testing.T) {
	if os.Getenv("MOAT_SYSLOG_THROUGHPUT") == "" {
		t.Skip("SKIP: set MOAT_SYSLOG_THROUGHPUT=1 to measure")
	}
	const n = 100000
	path := filepath.Join(t.TempDir(), "lines")
	var sb strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&sb, "Failed password for root from 198.51.100.%d port 22 ssh2\n", i%250+1)
	}
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"--udp", "--rfc3164"}, {"--udp", "--rfc5424"}, {"--tcp", "--rfc3164"}, {"--tcp", "--rfc5424", "--octet-count"}} {
		proto := strings.TrimPrefix(args[0], "--")
		r := startSyslog(t, proto, nil)
		cmd := exec.Command("logger", append([]string{"--server", "127.0.0.1", "--port", strconv.Itoa(r.port), "-t", "sshd", "--id=1", "-f", path}, args...)...)
		began := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		got, last := 0, began
		for got < n {
			select {
			case <-r.out:
				got++
				last = time.Now()
				continue
			case <-time.After(time.Second):
			}
			break
		}
		cmd.Wait()
		t.Logf("logger %s: %d of %d lines in %s: %.0f lines/s", strings.Join(args, " "), got, n, last.Sub(began).Round(time.Millisecond), float64(got)/last.Sub(began).Seconds())
		r.close()
	}
}

// TestSyslogThroughEngine: sshd failures sent by logger over TCP, in
// RFC 5424 with octet counting, go through the listener and the shipped
// parsers and scenarios and raise the ssh brute-force alert against the
// client address in the message, not the sender's host or address.
func TestSyslogThroughEngine(t *testing.T) {
	if _, err := exec.LookPath("logger"); err != nil {
		t.Skipf("SKIP: no logger(1): %v", err)
	}
	dir := t.TempDir()
	if err := os.CopyFS(dir, packaging.Files); err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(engine.Config{HubDir: filepath.Join(dir, "hub"), PatternDir: filepath.Join(dir, "patterns"), DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	r := startSyslog(t, "tcp", nil)
	for i := 0; i < 6; i++ {
		msg := fmt.Sprintf("Failed password for invalid user u%d from 198.51.100.7 port %d ssh2", i, 40000+i)
		args := []string{"--server", "127.0.0.1", "--port", strconv.Itoa(r.port), "--tcp", "--rfc5424", "--octet-count", "-t", "sshd", "--id=77", "--", msg}
		if out, err := exec.Command("logger", args...).CombinedOutput(); err != nil {
			t.Fatalf("logger: %v: %s", err, out)
		}
	}
	var alerts []model.Alert
	for i := 0; i < 6; i++ {
		alerts = append(alerts, e.Process(r.next())...)
	}
	alerts = append(alerts, e.Flush()...)
	found := false
	for _, a := range alerts {
		t.Logf("alert %s %s", a.Scenario, a.Value)
		if a.Scenario == "moat/ssh-bf" && a.Value == "198.51.100.7" {
			found = true
		}
	}
	if !found {
		t.Fatalf("no moat/ssh-bf alert for 198.51.100.7 in %+v; engine %+v", alerts, e.Stats())
	}
}

// TestSyslogLinesCrowdSecHub: the lines the listener builds parse with
// CrowdSec's own hub parsers (crowdsecurity/syslog-logs, sshd-logs) from
// the snapshot beside the checkout, as they do with CrowdSec's datasource.
func TestSyslogLinesCrowdSecHub(t *testing.T) {
	hub := testutil.Shared(t, "crowdsec-hub")
	var files []parse.File
	for _, f := range []string{"s00-raw/crowdsecurity/syslog-logs.yaml", "s01-parse/crowdsecurity/sshd-logs.yaml"} {
		files = append(files, parse.File{Path: filepath.Join(hub, "hub", "parsers", f), Stage: filepath.Dir(filepath.Dir(f))})
	}
	p, err := parse.Load(files, parse.Options{PatternDir: filepath.Join(hub, "patterns"), DataDir: t.TempDir(), Year: 2026})
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{
		"<13>Dec  7 04:06:42 vm sshd[4242]: " + sshdFailure,
		`<13>1 2026-12-07T04:06:42.175246+00:00 vm sshd 4242 - [timeQuality tzKnown="1" isSynced="0"] ` + sshdFailure,
	} {
		m := parseSyslog([]byte(in), syslogNow)
		evt := detect.NewEvent(detect.Line{Raw: m.line(syslogNow), Module: KindSyslog, Src: "127.0.0.1", Labels: map[string]string{"type": "syslog"}, Process: true})
		if !p.Parse(evt) || evt.Parsed["program"] != "sshd" || evt.Meta["source_ip"] != "198.51.100.7" || evt.Meta["machine"] != "vm" {
			t.Fatalf("%q -> %q: parsed %v meta %v", in, evt.Line.Raw, evt.Parsed, evt.Meta)
		}
	}
}

// TestSourcesDocExamples: every acquisition example in docs/sources.md
// loads and builds its sources, and every moat.yaml one (marked by its
// first line) loads as a configuration, so the page cannot drift from the
// code.
func TestSourcesDocExamples(t *testing.T) {
	doc, err := os.ReadFile("../../docs/sources.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(doc), "```yaml\n")[1:]
	if len(blocks) < 3 {
		t.Fatalf("%d yaml examples in docs/sources.md", len(blocks))
	}
	for i, b := range blocks {
		b, _, _ = strings.Cut(b, "```")
		if strings.HasPrefix(b, "# moat.yaml\n") {
			if _, err := config.Parse(fmt.Sprintf("docs/sources.md example %d", i+1), []byte(b)); err != nil {
				t.Fatalf("example %d: %v", i+1, err)
			}
			continue
		}
		cs, err := LoadConfig(fmt.Sprintf("docs/sources.md example %d", i+1), []byte(b))
		if err != nil || len(cs) == 0 {
			t.Fatalf("example %d: %v (%d documents)", i+1, err, len(cs))
		}
		for _, c := range cs {
			if _, err := New(c, t.TempDir()); err != nil {
				t.Fatalf("New(%s): %v", c.Where(), err)
			}
		}
	}
}
