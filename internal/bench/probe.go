package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

const (
	probePort = 9999
	// probeGap is the pause between two probe packets of one attacker:
	// the resolution of the measured latency.
	probeGap = 50 * time.Microsecond
	// probeQuiet is how long no probe may arrive before the attacker counts
	// as dropped: far longer than any queueing on a veth.
	probeQuiet = 20 * time.Millisecond
	// probeTimeout ends an attack that never got dropped.
	probeTimeout = 3 * time.Second
)

// prober sends numbered UDP packets from attacker addresses to a receiver
// in the victim's namespace, and finds when an attacker's packets stop
// arriving. Every packet carries the attacker's index and a sequence
// number; the receiver keeps the highest number seen per attacker.
type prober struct {
	attacker *netNS
	dst      netip.AddrPort
	recv     *net.UDPConn
	seen     []atomic.Int64
}

func newProber(victim, attacker *netNS, dst netip.Addr, attackers int) (*prober, error) {
	p := &prober{attacker: attacker, dst: netip.AddrPortFrom(dst, probePort), seen: make([]atomic.Int64, attackers)}
	for i := range p.seen {
		p.seen[i].Store(-1)
	}
	err := victim.do(func() error {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.IPv4Unspecified(), probePort)))
		p.recv = c
		return err
	})
	if err != nil {
		return nil, err
	}
	_ = p.recv.SetReadBuffer(8 << 20)
	go p.receive()
	return p, nil
}

func (p *prober) receive() {
	buf := make([]byte, 64)
	for {
		n, err := p.recv.Read(buf)
		if err != nil {
			return
		}
		if n < 8 {
			continue
		}
		i, seq := binary.BigEndian.Uint32(buf), int64(binary.BigEndian.Uint32(buf[4:]))
		if int(i) >= len(p.seen) {
			continue
		}
		for {
			cur := p.seen[i].Load()
			if seq <= cur || p.seen[i].CompareAndSwap(cur, seq) {
				break
			}
		}
	}
}

func (p *prober) close() { p.recv.Close() }

// drained reports whether the receiver has read everything that arrived
// and still has seen nothing past last. On a loaded machine the receiving
// goroutine can lag behind the packets for longer than probeQuiet; without
// this, probes waiting in the socket would count as dropped.
func (p *prober) drained(i, last int) bool {
	for range 100 {
		if queued(p.recv) == 0 {
			time.Sleep(time.Millisecond) // one that was read is being recorded
			return int(p.seen[i].Load()) == last
		}
		time.Sleep(time.Millisecond)
	}
	return false
}

// queued is the number of bytes waiting in a socket's receive queue.
func queued(c *net.UDPConn) int {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	var n int32
	_ = raw.Control(func(fd uintptr) {
		_, _, _ = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&n)))
	})
	return int(n)
}

// attack measures one attacker: it checks that its packets get through,
// calls prepare, then trigger (which writes the line that gets it banned)
// and returns the time from trigger's start to the send time of the first
// probe that never arrived, and the gap between that probe and the last
// one that did (the resolution of this sample).
func (p *prober) attack(ctx context.Context, i int, src netip.Addr, prepare, trigger func() error) (lat, gap time.Duration, err error) {
	var c *net.UDPConn
	err = p.attacker.do(func() error {
		var err error
		c, err = net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), net.UDPAddrFromAddrPort(p.dst))
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	var pkt [8]byte
	binary.BigEndian.PutUint32(pkt[:], uint32(i))
	send := func(seq int) {
		binary.BigEndian.PutUint32(pkt[4:], uint32(seq))
		_, _ = c.Write(pkt[:])
	}
	// Packet 0 until one arrives: the path works before the ban.
	deadline := time.Now().Add(2 * time.Second)
	for p.seen[i].Load() < 0 {
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("attacker %s: no probe arrived before the attack", src)
		}
		send(0)
		time.Sleep(time.Millisecond)
	}
	if err := prepare(); err != nil {
		return 0, 0, err
	}
	sent := []time.Time{{}} // sent[k]: when probe k left; 0 is the warm-up
	t0 := time.Now()
	if err := trigger(); err != nil {
		return 0, 0, err
	}
	for k := 1; ; k++ {
		if err := ctx.Err(); err != nil {
			return 0, 0, err
		}
		now := time.Now()
		sent = append(sent, now)
		send(k)
		last := int(p.seen[i].Load())
		if last+1 < len(sent) && now.Sub(sent[last+1]) > probeQuiet && p.drained(i, last) {
			if last < 1 {
				return sent[last+1].Sub(t0), sent[last+1].Sub(t0), nil
			}
			return sent[last+1].Sub(t0), sent[last+1].Sub(sent[last]), nil
		}
		if now.Sub(t0) > probeTimeout {
			return 0, 0, errNotDropped
		}
		// nanosleep(2) on this thread, not time.Sleep: the runtime's
		// timers wake a sleeping goroutine a millisecond late, which
		// would be the resolution.
		ts := syscall.NsecToTimespec(probeGap.Nanoseconds())
		_ = syscall.Nanosleep(&ts, nil)
	}
}

var errNotDropped = errors.New("the attacker's packets were not dropped in time")
