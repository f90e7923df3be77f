package acquire

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/internal/yamlerr"
)

// SyslogConfig holds the keys of a syslog source, under the names
// CrowdSec's syslog datasource gives them, so its acquisition files load
// unchanged. A zero value means the default.
type SyslogConfig struct {
	// ListenAddr is the IP address to listen on. It defaults to loopback:
	// whoever can send to the listener can write any line the parsers
	// see, so listening beyond the host is a choice the file states.
	ListenAddr string `yaml:"listen_addr"`
	ListenPort int    `yaml:"listen_port"`
	// Protocol is udp (the default, and all CrowdSec has) or tcp.
	Protocol string `yaml:"protocol"`
	// MaxMessageLen bounds one message; longer ones are cut (and
	// counted in Stats.Cut), never buffered whole.
	MaxMessageLen int `yaml:"max_message_len"`
	// MaxConnections bounds the TCP connections served at once; more
	// are closed as they arrive (and counted in Stats.Errors).
	MaxConnections int `yaml:"max_connections"`
	// DisableRFCParser hands on the message after its PRI as it came,
	// without reading a header out of it (CrowdSec's key).
	DisableRFCParser bool `yaml:"disable_rfc_parser"`
}

// Defaults of a syslog source: CrowdSec's, plus the TCP bounds it lacks.
const (
	DefaultSyslogAddr           = "127.0.0.1"
	DefaultSyslogPort           = 514
	DefaultSyslogMaxMessageLen  = 2048
	DefaultSyslogMaxConnections = 64
	// MaxSyslogMessageLen is the largest max_message_len accepted.
	MaxSyslogMessageLen = 1 << 20
)

const (
	// syslogIdleTimeout closes a TCP connection that sent nothing for
	// this long, so idle or stalled peers cannot hold every connection
	// slot; senders such as rsyslog reconnect on their next message.
	syslogIdleTimeout = 5 * time.Minute
	// syslogReadBuffer is the UDP socket buffer asked for (the kernel
	// caps it at net.core.rmem_max): a burst is queued there while the
	// pipeline catches up, instead of dropped.
	syslogReadBuffer = 4 << 20
)

// withDefaults fills the zero keys.
func (c SyslogConfig) withDefaults() SyslogConfig {
	if c.ListenAddr == "" {
		c.ListenAddr = DefaultSyslogAddr
	}
	if c.ListenPort == 0 {
		c.ListenPort = DefaultSyslogPort
	}
	if c.Protocol == "" {
		c.Protocol = "udp"
	}
	if c.MaxMessageLen == 0 {
		c.MaxMessageLen = DefaultSyslogMaxMessageLen
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = DefaultSyslogMaxConnections
	}
	return c
}

// address is where the source listens, as net.Listen takes it.
func (c SyslogConfig) address() string {
	d := c.withDefaults()
	return net.JoinHostPort(d.ListenAddr, strconv.Itoa(d.ListenPort))
}

// validateSyslog checks the syslog keys; errors name the key at fault.
func (c *Config) validateSyslog() error {
	bad := func(key string, format string, a ...any) error {
		return yamlerr.AtKey(fmt.Errorf(format, a...), key)
	}
	s := c.SyslogConfig
	if s.ListenAddr != "" {
		a, err := netip.ParseAddr(s.ListenAddr)
		if err != nil || a.Zone() != "" {
			return bad("listen_addr", "listen_addr %q is not an IP address", s.ListenAddr)
		}
	}
	if s.ListenPort < 0 || s.ListenPort > 65535 {
		return bad("listen_port", "listen_port %d is not a port (1-65535)", s.ListenPort)
	}
	switch s.Protocol {
	case "", "udp", "tcp":
	default:
		return bad("protocol", "protocol %q: want udp or tcp", s.Protocol)
	}
	if s.MaxMessageLen != 0 && (s.MaxMessageLen < 64 || s.MaxMessageLen > MaxSyslogMessageLen) {
		return bad("max_message_len", "max_message_len %d: want 64 to %d", s.MaxMessageLen, MaxSyslogMessageLen)
	}
	if s.MaxConnections < 0 {
		return bad("max_connections", "max_connections %d is negative", s.MaxConnections)
	}
	if s.MaxConnections != 0 && s.Protocol != "tcp" {
		return bad("max_connections", "max_connections applies to protocol tcp only")
	}
	if c.Mode != "tail" {
		return bad("mode", "mode %q: a syslog listener only follows (tail)", c.Mode)
	}
	return nil
}

// syslogSource listens for syslog messages on UDP or TCP and hands each
// on as one line. Messages have no position to resume from: a message
// sent while moat is down is lost unless the sender queues it (rsyslog
// over TCP does).
type syslogSource struct {
	cfg   Config
	sc    SyslogConfig // defaults filled
	c     counters
	start startGate

	mu   sync.Mutex
	addr net.Addr // where the socket is bound, once it is
}

var _ Positioner = (*syslogSource)(nil)

func newSyslogSource(cfg Config) *syslogSource {
	return &syslogSource{cfg: cfg, sc: cfg.SyslogConfig.withDefaults(), start: newStartGate()}
}

func (s *syslogSource) Name() string { return s.cfg.Name }

func (s *syslogSource) Stats() Stats { return s.c.snapshot() }

// Positioned implements Positioner: it is closed once the socket is bound,
// from when on every message sent is received.
func (s *syslogSource) Positioned() <-chan struct{} { return s.start.ch }

// Addr is the bound address, nil before.
func (s *syslogSource) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

func (s *syslogSource) bound(a net.Addr) {
	s.mu.Lock()
	s.addr = a
	s.mu.Unlock()
	s.start.open()
}

// Stream listens until ctx ends. It fails only when the socket cannot be
// bound; a bad message or a broken connection is counted, never fatal.
func (s *syslogSource) Stream(ctx context.Context, out chan<- detect.Line) error {
	defer s.start.open()
	var err error
	if s.sc.Protocol == "tcp" {
		err = s.streamTCP(ctx, out)
	} else {
		err = s.streamUDP(ctx, out)
	}
	if err != nil {
		return fmt.Errorf("syslog source %s: %w", s.cfg.Name, err)
	}
	return nil
}

func (s *syslogSource) streamUDP(ctx context.Context, out chan<- detect.Line) error {
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, "udp", s.sc.address())
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	conn := pc.(*net.UDPConn)
	defer conn.Close()
	_ = conn.SetReadBuffer(syslogReadBuffer) // a smaller buffer still works
	drops := countDrops(conn)
	s.bound(conn.LocalAddr())
	defer context.AfterFunc(ctx, func() { conn.Close() })()
	// One byte more than the maximum: a datagram that fills it was longer
	// and the kernel dropped its tail.
	buf := make([]byte, s.sc.MaxMessageLen+1)
	oob := make([]byte, 64)
	for {
		n, oobn, _, peer, err := conn.ReadMsgUDPAddrPort(buf, oob)
		if oobn > 0 {
			drops.update(oob[:oobn], &s.c)
		}
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// An error on a connectionless socket (an ICMP error queued
			// for it) concerns no later message: count it, read on.
			s.c.fail(fmt.Errorf("syslog read: %w", err))
			continue
		}
		msg, cut := buf[:n], false
		if n > s.sc.MaxMessageLen {
			msg, cut = msg[:s.sc.MaxMessageLen], true
		}
		if !s.deliver(ctx, out, msg, cut, peer.Addr(), time.Now()) {
			return nil
		}
	}
}

func (s *syslogSource) streamTCP(ctx context.Context, out chan<- detect.Line) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.sc.address())
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	s.bound(ln.Addr())
	defer context.AfterFunc(ctx, func() { ln.Close() })()
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, s.sc.MaxConnections)
	backoff := 5 * time.Millisecond
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of descriptors and the like: wait a little, so the
			// loop does not spin while the condition lasts.
			s.c.fail(fmt.Errorf("syslog accept: %w", err))
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		select {
		case slots <- struct{}{}:
		default:
			s.c.fail(fmt.Errorf("syslog: connection from %s refused: %d connections open (max_connections)", conn.RemoteAddr(), cap(slots)))
			conn.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			s.serveConn(ctx, conn, out)
		}()
	}
}

// serveConn reads one TCP peer's messages until it disconnects, idles past
// syslogIdleTimeout, breaks framing or ctx ends.
func (s *syslogSource) serveConn(ctx context.Context, conn net.Conn, out chan<- detect.Line) {
	defer conn.Close()
	defer context.AfterFunc(ctx, func() { conn.Close() })()
	var peer netip.Addr
	if ta, ok := conn.RemoteAddr().(*net.TCPAddr); ok {
		peer = ta.AddrPort().Addr()
	}
	fr := newFrameReader(conn, s.sc.MaxMessageLen)
	var moved time.Time
	for {
		// Moving the deadline costs a timer update; once a second is
		// precise enough for a five-minute timeout.
		if now := time.Now(); now.Sub(moved) >= time.Second {
			moved = now
			_ = conn.SetReadDeadline(now.Add(syslogIdleTimeout))
		}
		msg, cut, err := fr.next()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, os.ErrDeadlineExceeded) {
				s.c.fail(fmt.Errorf("syslog connection from %s: %w", conn.RemoteAddr(), err))
			}
			return
		}
		if !s.deliver(ctx, out, msg, cut, peer, time.Now()) {
			return
		}
	}
}

// deliver builds the line for one message and sends it. It reports false
// when ctx ended first.
func (s *syslogSource) deliver(ctx context.Context, out chan<- detect.Line, msg []byte, cut bool, peer netip.Addr, recv time.Time) bool {
	s.c.bytes.Add(uint64(len(msg)))
	if cut {
		s.c.cut.Add(1)
	}
	if len(bytes.TrimRight(msg, "\r\n\x00")) == 0 {
		return true // an empty frame carries no line
	}
	raw := s.lineFor(msg, recv)
	if len(raw) > s.cfg.MaxLineLength {
		// Escaping can lengthen a message up to four times.
		raw = string(cutRune([]byte(raw[:s.cfg.MaxLineLength])))
		if !cut {
			s.c.cut.Add(1)
		}
	}
	l := detect.Line{Raw: raw, Src: peer.Unmap().String(), Module: KindSyslog, Labels: s.cfg.Labels, Time: recv, Process: true}
	at, ok := sendAt(ctx, out, l)
	if !ok {
		return false
	}
	s.c.lines.Add(1)
	s.c.lag.Store(int64(at.Sub(recv)))
	return true
}

// lineFor is the text handed on for msg.
func (s *syslogSource) lineFor(msg []byte, recv time.Time) string {
	if s.sc.DisableRFCParser {
		rest, _, ok := parsePRI(bytes.TrimRight(msg, "\r\n\x00"))
		if !ok {
			s.c.malformed.Add(1)
		}
		var sb strings.Builder
		writeEscaped(&sb, rest)
		return sb.String()
	}
	m := parseSyslog(msg, recv)
	if m.malformed {
		s.c.malformed.Add(1)
	}
	return m.line(recv)
}

// udpDrops turns the kernel's count of datagrams dropped on a socket
// (SO_RXQ_OVFL: the receive buffer was full) into Stats.Dropped, so a
// flood that outruns the reader shows, instead of passing silently.
type udpDrops struct {
	on   bool
	last uint32 // the socket's cumulative count at the last message
}

// countDrops asks the kernel to report drops on conn; on a kernel that
// cannot, drops go uncounted.
func countDrops(conn *net.UDPConn) *udpDrops {
	d := &udpDrops{}
	rc, err := conn.SyscallConn()
	if err != nil {
		return d
	}
	_ = rc.Control(func(fd uintptr) {
		d.on = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RXQ_OVFL, 1) == nil
	})
	return d
}

// update reads the drop count from a message's control data. The kernel
// adds it to every message once the count is above zero.
func (d *udpDrops) update(oob []byte, c *counters) {
	if !d.on {
		return
	}
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return
	}
	for _, m := range msgs {
		if m.Header.Level == syscall.SOL_SOCKET && m.Header.Type == syscall.SO_RXQ_OVFL && len(m.Data) >= 4 {
			total := binary.NativeEndian.Uint32(m.Data)
			c.dropped.Add(uint64(total - d.last)) // wraps as the kernel's counter does
			d.last = total
		}
	}
}

// frameReader splits a TCP stream into syslog messages as RFC 6587 frames
// them: octet counting ("LEN SP MSG") or a trailing newline, decided per
// frame as rsyslog does. It holds at most max+1 bytes of a message.
type frameReader struct {
	r   *bufio.Reader
	max int
	buf []byte
	// err is returned by the next call: a cut message was handed on
	// before the stream ended.
	err error
}

func newFrameReader(r io.Reader, max int) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, max+1), max: max, buf: make([]byte, max)}
}

// maxLenDigits bounds the octet count: nine digits (just under 1 GB) are
// more than any sender uses, and the count is never buffered anyway.
const maxLenDigits = 9

// next returns the next message without its framing; cut reports that it
// was longer than max and only its start is returned. The message is
// valid until the next call.
func (f *frameReader) next() (msg []byte, cut bool, err error) {
	if f.err != nil {
		return nil, false, f.err
	}
	n, digits, err := f.octetCount()
	if err != nil {
		return nil, false, err
	}
	if digits > 0 {
		if _, err := f.r.Discard(digits + 1); err != nil {
			return nil, false, err
		}
		take := min(n, f.max)
		if _, err := io.ReadFull(f.r, f.buf[:take]); err != nil {
			return nil, false, unexpected(err)
		}
		if n > take {
			if _, err := f.r.Discard(n - take); err != nil {
				f.err = unexpected(err)
			}
			return f.buf[:take], true, nil
		}
		return f.buf[:take], false, nil
	}
	return f.line()
}

// octetCount looks (without reading) for "LEN SP" at the start of the
// frame: digits is 0 when the frame is newline-terminated instead. It only
// peeks at bytes the frame must hold anyway, so it never waits for more
// than the sender sent.
func (f *frameReader) octetCount() (n, digits int, err error) {
	for i := 0; ; i++ {
		b, err := f.r.Peek(i + 1)
		if err != nil {
			if i > 0 && errors.Is(err, io.EOF) {
				return 0, 0, nil // a last unterminated frame of digits
			}
			return 0, 0, err
		}
		c := b[i]
		switch {
		case c >= '0' && c <= '9' && (i > 0 || c != '0') && i < maxLenDigits:
			n = n*10 + int(c-'0')
		case c == ' ' && i > 0:
			return n, i, nil
		default:
			return 0, 0, nil
		}
	}
}

// line reads a newline-terminated frame, cutting one longer than max and
// dropping its rest up to the newline.
func (f *frameReader) line() ([]byte, bool, error) {
	l, err := f.r.ReadSlice('\n')
	switch {
	case err == nil:
		return l[:len(l)-1], false, nil
	case errors.Is(err, bufio.ErrBufferFull):
		keep := append(f.buf[:0], l[:f.max]...)
		for {
			_, err = f.r.ReadSlice('\n')
			if !errors.Is(err, bufio.ErrBufferFull) {
				break
			}
		}
		f.err = err // nil when the newline came
		return keep, true, nil
	case len(l) > 0 && errors.Is(err, io.EOF):
		// The peer closed after a last message without a newline.
		keep := append(f.buf[:0], l...)
		f.err = io.EOF
		return keep, false, nil
	}
	return nil, false, err
}

// unexpected turns an EOF inside a counted frame into the error it is.
func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("octet-counted frame: %w", io.ErrUnexpectedEOF)
	}
	return err
}
