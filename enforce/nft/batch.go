package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/moatsec/moat/internal/unix"
)

// batch is one nfnetlink transaction of set-element messages, encoded
// straight into a buffer that is reused from one transaction to the next.
// google/nftables builds several attribute values per element and copies
// the message twice more before sending; at a million elements that is
// hundreds of megabytes of garbage and the cost of a cold load.
type batch struct {
	buf  []byte
	msgs int // element messages, each acked by the kernel
	seq  uint32
	// Offsets of the open message and of its element list, which get their
	// lengths when closed.
	msgAt, listAt int
}

const (
	nlmsgHdrLen = unix.SizeofNlMsghdr
	nlaHdrLen   = unix.SizeofNlAttr
)

func (w *batch) reset() {
	w.buf, w.msgs = w.buf[:0], 0
}

func (w *batch) empty() bool { return w.msgs == 0 }

// header appends a netlink header and the nfgenmsg that follows it, and
// returns the header's offset.
func (w *batch) header(typ, flags uint16, family uint8, resID uint16) int {
	at := len(w.buf)
	w.seq++
	w.buf = binary.NativeEndian.AppendUint32(w.buf, 0) // length, set when closed
	w.buf = binary.NativeEndian.AppendUint16(w.buf, typ)
	w.buf = binary.NativeEndian.AppendUint16(w.buf, flags)
	w.buf = binary.NativeEndian.AppendUint32(w.buf, w.seq)
	w.buf = binary.NativeEndian.AppendUint32(w.buf, 0) // port id: the kernel's
	w.buf = append(w.buf, family, unix.NFNETLINK_V0)
	w.buf = binary.BigEndian.AppendUint16(w.buf, resID)
	return at
}

func (w *batch) closeMsg(at int) {
	binary.NativeEndian.PutUint32(w.buf[at:], uint32(len(w.buf)-at))
}

// attrHeader appends an attribute header for n bytes of data.
func (w *batch) attrHeader(typ uint16, n int) {
	w.buf = binary.NativeEndian.AppendUint16(w.buf, uint16(nlaHdrLen+n))
	w.buf = binary.NativeEndian.AppendUint16(w.buf, typ)
}

// attr appends one attribute with its padding.
func (w *batch) attr(typ uint16, data []byte) {
	w.attrHeader(typ, len(data))
	w.buf = append(w.buf, data...)
	w.pad()
}

func (w *batch) pad() {
	for len(w.buf)%unix.NLA_ALIGNTO != 0 {
		w.buf = append(w.buf, 0)
	}
}

// nest opens a nested attribute and returns its offset for closeNest.
func (w *batch) nest(typ uint16) int {
	at := len(w.buf)
	w.attrHeader(typ|unix.NLA_F_NESTED, 0) // length set by closeNest
	return at
}

// closeNest sets a nested attribute's length, which is 16 bits: callers
// keep element lists under maxListBytes.
func (w *batch) closeNest(at int) {
	binary.NativeEndian.PutUint16(w.buf[at:], uint16(len(w.buf)-at))
}

// maxListBytes bounds one message's element list (a u16 length).
const maxListBytes = 1<<16 - 1

// open starts a message that adds (or deletes) elements of one set.
func (w *batch) open(add bool, family uint8, table, set string) {
	if len(w.buf) == 0 {
		w.closeMsg(w.header(unix.NFNL_MSG_BATCH_BEGIN, unix.NLM_F_REQUEST, unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES))
	}
	typ, flags := uint16(unix.NFT_MSG_DELSETELEM), uint16(unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	if add {
		// Without NLM_F_EXCL, adding an element already present is no error.
		typ, flags = unix.NFT_MSG_NEWSETELEM, flags|unix.NLM_F_CREATE
	}
	w.msgAt = w.header(unix.NFNL_SUBSYS_NFTABLES<<8|typ, flags, family, 0)
	w.str(unix.NFTA_SET_ELEM_LIST_TABLE, table)
	w.str(unix.NFTA_SET_ELEM_LIST_SET, set)
	w.listAt = w.nest(unix.NFTA_SET_ELEM_LIST_ELEMENTS)
}

// str appends a NUL-terminated string attribute.
func (w *batch) str(typ uint16, s string) {
	w.attrHeader(typ, len(s)+1)
	w.buf = append(w.buf, s...)
	w.buf = append(w.buf, 0)
	w.pad()
}

// elem appends one element to the open message: its key, a timeout
// (none when zero) and, for an interval set, whether it ends a segment.
func (w *batch) elem(a netip.Addr, timeout time.Duration, end bool) {
	el := w.nest(unix.NFTA_LIST_ELEM)
	if end {
		var f [4]byte
		binary.BigEndian.PutUint32(f[:], unix.NFT_SET_ELEM_INTERVAL_END)
		w.attr(unix.NFTA_SET_ELEM_FLAGS, f[:])
	}
	key := w.nest(unix.NFTA_SET_ELEM_KEY)
	if a.Is4() {
		k := a.As4()
		w.attr(unix.NFTA_DATA_VALUE, k[:])
	} else {
		k := a.As16()
		w.attr(unix.NFTA_DATA_VALUE, k[:])
	}
	w.closeNest(key)
	if timeout != 0 {
		var t [8]byte
		binary.BigEndian.PutUint64(t[:], uint64(timeout.Milliseconds()))
		w.attr(unix.NFTA_SET_ELEM_TIMEOUT, t[:])
	}
	w.closeNest(el)
}

// closeList ends the open message.
func (w *batch) closeList() {
	if n := len(w.buf) - w.listAt; n > maxListBytes {
		// The chunk sizes rule this out; a silent overflow would make the
		// kernel misread the message.
		panic(fmt.Sprintf("nft: element list of %d bytes overflows its length", n))
	}
	w.closeNest(w.listAt)
	w.closeMsg(w.msgAt)
	w.msgs++
}

// end appends the batch end; the buffer is then ready to send.
func (w *batch) end() {
	w.closeMsg(w.header(unix.NFNL_MSG_BATCH_END, unix.NLM_F_REQUEST, unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES))
}

// send commits the batch on c and reads the kernel's answer to each
// message. nfnetlink runs a batch inside sendmsg, so every answer is queued
// on the socket when it returns.
func (c *rawConn) send(w *batch) error {
	w.end()
	var serr error
	if err := c.rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), w.buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		return serr != unix.EAGAIN
	}); err != nil {
		return fmt.Errorf("send batch: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("send batch: %w", serr)
	}
	acks, errs := 0, []error(nil)
	for acks+len(errs) < w.msgs {
		var n int
		var rerr error
		if err := c.rc.Control(func(fd uintptr) {
			n, _, rerr = unix.Recvfrom(int(fd), c.buf, unix.MSG_DONTWAIT)
		}); err != nil {
			return fmt.Errorf("read batch acks: %w", err)
		}
		if rerr == unix.EAGAIN {
			// The kernel answered the batch as a whole (no permission,
			// no memory) or not at all.
			break
		}
		if rerr != nil {
			return fmt.Errorf("read batch acks: %w", rerr)
		}
		a, e, err := readAcks(c.buf[:n])
		if err != nil {
			return err
		}
		acks += a
		errs = append(errs, e...)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if acks < w.msgs {
		return fmt.Errorf("batch of %d messages: %d acknowledged", w.msgs, acks)
	}
	return nil
}

// readAcks counts the acks in one read and returns the errors it holds.
func readAcks(b []byte) (acks int, errs []error, err error) {
	for len(b) >= nlmsgHdrLen {
		l := int(binary.NativeEndian.Uint32(b))
		typ := binary.NativeEndian.Uint16(b[4:])
		if l < nlmsgHdrLen || l > len(b) {
			return acks, errs, fmt.Errorf("read batch acks: truncated message of %d bytes", l)
		}
		if typ == unix.NLMSG_ERROR {
			if l < nlmsgHdrLen+4 {
				return acks, errs, fmt.Errorf("read batch acks: short error message")
			}
			code := int32(binary.NativeEndian.Uint32(b[nlmsgHdrLen:]))
			if code == 0 {
				acks++
			} else {
				errs = append(errs, unix.Errno(-code))
			}
		}
		l = (l + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1)
		if l > len(b) {
			break
		}
		b = b[l:]
	}
	return acks, errs, nil
}
