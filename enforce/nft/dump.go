package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"

	"github.com/moatsec/moat/internal/unix"
)

// element is one set element as a dump reports it.
type element struct {
	addr netip.Addr
	end  bool // interval end
	// expiry is when the element times out, zero when it has no timeout;
	// expired marks one that timed out and waits for garbage collection.
	expiry  time.Time
	expired bool
}

// rawConn is a netfilter socket moat reads and writes itself, for set
// dumps and element batches (see batch). google/nftables hands back a dump
// only once all of it has arrived, but the kernel writes each element's
// time left when it fills each message, and a big dump takes seconds:
// reading message by message and stamping each with its arrival keeps
// expiries exact to milliseconds instead of to the dump's length.
type rawConn struct {
	c   *netlink.Conn
	rc  syscall.RawConn
	buf []byte
}

func dialRaw(cfg Config) (*rawConn, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: cfg.NetNS})
	if err != nil {
		return nil, fmt.Errorf("nft: netlink netfilter socket: %w", err)
	}
	if err := tuneSocket(c); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("nft: %w", err)
	}
	rc, err := c.SyscallConn()
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("nft: netlink raw conn: %w", err)
	}
	return &rawConn{c: c, rc: rc, buf: make([]byte, 64<<10)}, nil
}

func (d *rawConn) Close() error { return d.c.Close() }

// dump reads every element of one set.
func (d *rawConn) dump(t *nftables.Table, set string, now func() time.Time) ([]element, error) {
	var out []element
	err := d.dumpEach(t, set, func(b []byte) error {
		var err error
		out, err = decodeElements(b, now(), out)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// dumpEach asks for a dump of one set and hands each NEWSETELEM message's
// attributes to fn as it arrives.
func (d *rawConn) dumpEach(t *nftables.Table, set string, fn func([]byte) error) error {
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_SET_ELEM_LIST_TABLE, Data: []byte(t.Name + "\x00")},
		{Type: unix.NFTA_SET_ELEM_LIST_SET, Data: []byte(set + "\x00")},
	})
	if err != nil {
		return err
	}
	req, err := d.c.Send(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETSETELEM),
			Flags: netlink.Request | netlink.Dump,
		},
		Data: append([]byte{byte(t.Family), unix.NFNETLINK_V0, 0, 0}, attrs...),
	})
	if err != nil {
		return fmt.Errorf("send dump request: %w", err)
	}
	for {
		var n int
		var rerr error
		if err := d.rc.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), d.buf, 0)
			return rerr != unix.EAGAIN
		}); err != nil {
			return fmt.Errorf("receive dump: %w", err)
		}
		if rerr != nil {
			return fmt.Errorf("receive dump: %w", rerr)
		}
		msgs, err := syscall.ParseNetlinkMessage(d.buf[:n])
		if err != nil {
			return fmt.Errorf("parse dump: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != req.Header.Sequence {
				continue // a late answer to an earlier request
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return nil
			case unix.NLMSG_ERROR:
				if len(m.Data) < 4 {
					return errors.New("short netlink error message")
				}
				if code := int32(binary.NativeEndian.Uint32(m.Data[:4])); code != 0 {
					return fmt.Errorf("dump set %s: %w", set, unix.Errno(-code))
				}
				return nil
			}
			if len(m.Data) < 4 {
				continue
			}
			if err := fn(m.Data[4:]); err != nil {
				return fmt.Errorf("decode set %s: %w", set, err)
			}
		}
	}
}

// decodeElements appends the elements of one NEWSETELEM message.
func decodeElements(b []byte, at time.Time, out []element) ([]element, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return nil, err
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		if ad.Type() != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			continue
		}
		ad.Nested(func(list *netlink.AttributeDecoder) error {
			for list.Next() {
				if list.Type() != unix.NFTA_LIST_ELEM {
					continue
				}
				var e element
				var timeout, left uint64
				var key []byte
				list.Nested(func(el *netlink.AttributeDecoder) error {
					for el.Next() {
						switch el.Type() {
						case unix.NFTA_SET_ELEM_KEY:
							el.Nested(func(k *netlink.AttributeDecoder) error {
								for k.Next() {
									if k.Type() == unix.NFTA_DATA_VALUE {
										key = k.Bytes()
									}
								}
								return nil
							})
						case unix.NFTA_SET_ELEM_FLAGS:
							e.end = el.Uint32()&unix.NFT_SET_ELEM_INTERVAL_END != 0
						case unix.NFTA_SET_ELEM_TIMEOUT:
							timeout = el.Uint64()
						case unix.NFTA_SET_ELEM_EXPIRATION:
							left = el.Uint64()
						}
					}
					return nil
				})
				a, ok := netip.AddrFromSlice(key)
				if !ok {
					return fmt.Errorf("element key of %d bytes", len(key))
				}
				e.addr = a
				if timeout != 0 {
					e.expiry = at.Add(time.Duration(left) * time.Millisecond)
					e.expired = left == 0
				}
				out = append(out, e)
			}
			return nil
		})
	}
	if err := ad.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// readElements dumps a set.
//
// A hash set dump walks the kernel's hash table afresh for every netlink
// message, skipping what it already sent; if the table is resized in
// between (it grows and shrinks on its own after big changes), the dump
// repeats some elements and misses others. A repeat is the visible sign, so
// such a dump is taken again, and the union of the attempts is returned.
func (b *Backend) readElements(s *nftables.Set) ([]element, error) {
	type key struct {
		a   netip.Addr
		end bool
	}
	var union map[key]element
	for attempt := 0; ; attempt++ {
		els, err := b.dump.dump(b.table, s.Name, b.now)
		if err != nil {
			b.reconnect()
			return nil, fmt.Errorf("nft: read set %s: %w", s.Name, err)
		}
		seen := make(map[key]element, len(els))
		for _, e := range els {
			seen[key{e.addr, e.end}] = e
		}
		if len(seen) == len(els) && union == nil {
			return els, nil
		}
		if union == nil {
			union = seen
		} else {
			for k, e := range seen {
				union[k] = e
			}
		}
		if len(seen) == len(els) || attempt == 2 {
			break
		}
	}
	out := make([]element, 0, len(union))
	for _, e := range union {
		out = append(out, e)
	}
	return out, nil
}
