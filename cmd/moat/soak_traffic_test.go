package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
)

// write is the attack stream: every ~40 ms benign lines to both sinks,
// and every twelfth tick (two a second) one attacker's failures, all in one write, to the
// file or to journald in turn, until ctx ends or n attackers are written.
func (s *soakEnv) write(ctx context.Context, n int) {
	t := s.t
	benign := []string{
		"Accepted publickey for deploy from 192.0.2.77 port 51000 ssh2: ED25519 SHA256:abc",
		"pam_unix(sshd:session): session opened for user deploy(uid=1000) by (uid=0)",
		"Received disconnect from 192.0.2.79 port 53000:11: disconnected by user",
	}
	tick := time.NewTicker(40 * time.Millisecond)
	defer tick.Stop()
	for i, k := 0, 0; ctx.Err() == nil; k++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		lines := []string{benign[k%len(benign)]}
		attack := k%12 == 0 && i < n
		var a netip.Addr
		if attack {
			a = soakAttacker(i)
			for j := 0; j < failedPerAttacker; j++ {
				lines = append(lines, fmt.Sprintf("Failed password for root from %s port %d ssh2", a, 30000+j))
			}
		}
		toJournal := attack && i%2 == 1
		if !toJournal {
			s.appendFile(lines)
		}
		if toJournal || !attack {
			for _, l := range lines {
				if err := journal.Send(l, journal.PriInfo, map[string]string{"SYSLOG_IDENTIFIER": "sshd"}); err != nil {
					t.Errorf("soak: journal.Send: %v", err)
					return
				}
			}
		}
		if attack {
			s.mu.Lock()
			s.written = append(s.written, a)
			s.mu.Unlock()
			i++
			select {
			case s.burst <- struct{}{}:
			default:
			}
		}
	}
}

func (s *soakEnv) appendFile(lines []string) {
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	var b strings.Builder
	for i, l := range lines {
		fmt.Fprintf(&b, "%s victim sshd[%d]: %s\n", time.Now().Format(time.Stamp), 4000+i, l)
	}
	f, err := os.OpenFile(s.logPath, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	must(s.t, err)
	defer f.Close()
	if _, err := f.WriteString(b.String()); err != nil {
		s.t.Errorf("soak: append: %v", err)
	}
}

// rotate rotates the log as logrotate would: rename+create (the writer
// reopens by path at its next line) or copytruncate (copy, then truncate
// in place, with the writer held so no line falls between). A running
// daemon first gets a moment to read to the end, since lines written
// between its last read and a truncation exist only in the copy, which a
// running follower does not read (the limit of copytruncate in any
// follower).
func (s *soakEnv) rotate(kind string, cycle int) {
	t := s.t
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	time.Sleep(300 * time.Millisecond)
	gens := filepath.Join(s.dir, "auth.log.1")
	// Older generations shift as logrotate does: .1 -> .2 and so on
	// (only two are kept, like rotate 2).
	if _, err := os.Stat(gens); err == nil {
		must(t, os.Rename(gens, filepath.Join(s.dir, "auth.log.2")))
	}
	switch kind {
	case "rename":
		must(t, os.Rename(s.logPath, gens))
		must(t, os.WriteFile(s.logPath, nil, 0o644))
	case "copytruncate":
		b, err := os.ReadFile(s.logPath)
		must(t, err)
		must(t, os.WriteFile(gens, b, 0o644))
		must(t, os.Truncate(s.logPath, 0))
	}
}

// listen counts what reaches the victim: probes from banned addresses
// are leaks, those from the peer's own address show the path works.
func (s *soakEnv) listen(ctx context.Context, wg *sync.WaitGroup) {
	var conn *net.UDPConn
	must(s.t, s.victim.Do(func() error {
		var err error
		conn, err = net.ListenUDP("udp", &net.UDPAddr{Port: soakPort})
		return err
	}))
	wg.Add(2)
	go func() { defer wg.Done(); <-ctx.Done(); conn.Close() }()
	go func() {
		defer wg.Done()
		buf := make([]byte, 64)
		for {
			_, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			a := from.Addr().Unmap()
			if a.String() == soakPeer4 || a.String() == soakPeer6 {
				s.freeArrive.Add(1)
				continue
			}
			s.mu.Lock()
			banned := s.banned[a]
			s.mu.Unlock()
			if banned {
				s.leaked.Add(1)
				v, _ := s.leakedFrom.LoadOrStore(a, new(atomic.Int64))
				v.(*atomic.Int64).Add(1)
			}
		}
	}()
}

// probe sends one UDP packet every 10 ms from each address seen banned,
// and from the peer's own addresses.
func (s *soakEnv) probe(ctx context.Context) {
	dial := func(src netip.Addr) *net.UDPConn {
		dst := soakVictim4
		if src.Is6() {
			dst = soakVictim6
		}
		var c *net.UDPConn
		err := s.attacker.Do(func() error {
			var err error
			c, err = net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), &net.UDPAddr{IP: net.ParseIP(dst), Port: soakPort})
			return err
		})
		if err != nil {
			// Only a stray ban (reported at the end) has no address
			// on the attacker's side.
			s.t.Logf("soak: no probe from %s: %v", src, err)
			return nil
		}
		return c
	}
	free := []*net.UDPConn{dial(netip.MustParseAddr(soakPeer4)), dial(netip.MustParseAddr(soakPeer6))}
	var conns []*net.UDPConn
	defer func() {
		for _, c := range append(conns, free...) {
			if c != nil {
				c.Close()
			}
		}
	}()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	msg := []byte("probe")
	for {
		select {
		case <-ctx.Done():
			return
		case a := <-s.probeAdd:
			if c := dial(a); c != nil {
				conns = append(conns, c)
			}
		case <-tick.C:
			for _, c := range conns {
				c.Write(msg)
			}
			s.sent.Add(int64(len(conns)))
			for _, c := range free {
				if c != nil {
					c.Write(msg)
				}
			}
		}
	}
}
