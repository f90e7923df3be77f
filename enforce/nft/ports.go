package nft

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"

	"github.com/moatsec/moat/enforce"
	"github.com/moatsec/moat/internal/model"
)

// Port-scoped bans and never-blocked ports.
//
// A port-scoped ban is an element `addr . proto . port` of ban4_port or
// ban6_port: one set per address family, with the protocol inside the key
// rather than one set per protocol, so a packet costs one lookup whatever
// its protocol, and a ban of a port over TCP and UDP is two elements of one
// set. The sets are concatenated interval sets (the kernel's pipapo
// backend) so a port-scoped ban may cover a range as well as one address
// (IPv6 addresses are widened to a prefix). Their lookup is slower than the
// hash sets', which is why plain bans never go there: those sets hold only
// the few service-scoped bans.
//
// The port drop rules are written with the first port-scoped ban (or at
// Open when the sets hold some), not before: until a host uses such bans,
// its packets meet the same rules as before they existed. They then stay
// until moat restarts with the sets empty.
//
// never_block holds `proto . port` pairs; its rule is the first of each of
// moat's chains and accepts, so no moat drop rule sees a packet to such a
// port. Accept ends only moat's chain: every other table still filters the
// packet as before. The rule exists only when never_block is configured, so
// without it a packet pays nothing.

// Set names, fixed like the others.
const (
	setPort4      = "ban4_port"
	setPort6      = "ban6_port"
	setNeverBlock = "never_block"
)

// portChunk is the port elements per message: an element carries two
// keys of up to 24 bytes and a timeout, well under the u16 list limit.
const portChunk = 400

// reg32 is the first 32-bit register (NFT_REG32_00): concatenated lookups
// read their key from consecutive 32-bit registers.
const reg32 = 8

func portSetType(f family) nftables.SetDatatype {
	addr := nftables.TypeIPAddr
	if f == fam6 {
		addr = nftables.TypeIP6Addr
	}
	t, err := nftables.ConcatSetType(addr, nftables.TypeInetProto, nftables.TypeInetService)
	if err != nil {
		panic(err) // three fixed types always fit
	}
	return t
}

func (b *Backend) initPortSets() {
	for f, name := range [2]string{setPort4, setPort6} {
		b.ports[f] = &nftables.Set{Table: b.table, Name: name, KeyType: portSetType(family(f)),
			Concatenation: true, Interval: true, HasTimeout: true, KeyByteOrder: binaryutil.BigEndian}
	}
	t, err := nftables.ConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)
	if err != nil {
		panic(err)
	}
	b.never = &nftables.Set{Table: b.table, Name: setNeverBlock, KeyType: t, Concatenation: true, KeyByteOrder: binaryutil.BigEndian}
}

// portKey encodes addr . proto . port, each field padded to 4 bytes.
func portKey(a netip.Addr, proto uint8, port uint16) []byte {
	k := make([]byte, 0, 24)
	k = append(k, a.AsSlice()...)
	k = append(k, proto, 0, 0, 0)
	return append(k, byte(port>>8), byte(port), 0, 0)
}

func neverKey(p model.PortProto) []byte {
	return []byte{p.Proto, 0, 0, 0, byte(p.Port >> 8), byte(p.Port), 0, 0}
}

func portElem(e enforce.PortEntry, timeout time.Duration) nftables.SetElement {
	p := e.Prefix.Masked()
	return nftables.SetElement{
		Key:     portKey(p.Addr(), e.Proto, e.Port),
		KeyEnd:  portKey(lastAddr(p), e.Proto, e.Port),
		Timeout: timeout,
	}
}

// ApplyPorts implements enforce.PortBackend, in one transaction. Like the
// single-address sets, a set entry is added, deleted and added again so the
// kernel takes its new timeout whether or not it held the element, and a
// delete first adds the element so one that timed out cannot fail the
// transaction.
func (b *Backend) ApplyPorts(ctx context.Context, d enforce.PortDiff) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := b.now()
	var set, del [2][]nftables.SetElement
	var refresh [2][]nftables.SetElement
	for _, e := range d.Set {
		if !e.Prefix.IsValid() || e.Port == 0 {
			return fmt.Errorf("nft: invalid port ban %v port %d", e.Prefix, e.Port)
		}
		e.Prefix = model.Canonical(e.Prefix)
		f := familyOf(e.Prefix.Addr())
		to, live := timeoutFor(e.Expiry, now)
		if !live {
			del[f] = append(del[f], portElem(e, 0))
			continue
		}
		refresh[f] = append(refresh[f], portElem(e, 0))
		set[f] = append(set[f], portElem(e, to))
	}
	for _, e := range d.Delete {
		if !e.Prefix.IsValid() {
			return fmt.Errorf("nft: invalid port ban %v", e.Prefix)
		}
		e.Prefix = model.Canonical(e.Prefix)
		f := familyOf(e.Prefix.Addr())
		del[f] = append(del[f], portElem(e, 0))
	}
	queue := func(s *nftables.Set, els []nftables.SetElement, add bool, timeout time.Duration) error {
		for c := range slices.Chunk(els, portChunk) {
			if timeout != 0 {
				c = slices.Clone(c)
				for i := range c {
					c[i].Timeout = timeout
				}
			}
			var err error
			if add {
				err = b.conn.SetAddElements(s, c)
			} else {
				err = b.conn.SetDeleteElements(s, c)
			}
			if err != nil {
				return fmt.Errorf("nft: queue %s elements: %w", s.Name, err)
			}
		}
		return nil
	}
	queued := false
	for f, s := range b.ports {
		for _, step := range []struct {
			els     []nftables.SetElement
			add     bool
			timeout time.Duration
		}{
			// Deletes first: an element may make room for a wider one
			// of the same service, which the set would refuse beside it.
			{del[f], true, ensureTimeout}, {del[f], false, 0},
			{refresh[f], true, ensureTimeout}, {refresh[f], false, 0}, {set[f], true, 0},
		} {
			if len(step.els) == 0 {
				continue
			}
			if err := queue(s, step.els, step.add, step.timeout); err != nil {
				b.reconnect()
				return err
			}
			queued = true
		}
	}
	if !queued {
		return nil
	}
	if !b.portRules && len(d.Set) > 0 {
		// The rules commit with the first elements, in one transaction.
		b.portRules = true
		for _, c := range b.chains {
			for f, s := range b.ports {
				b.conn.AddRule(b.portDropRule(c, s, family(f)))
			}
		}
	}
	if err := b.flush("port-scoped bans"); err != nil {
		return err
	}
	return nil
}

// notePortRules sets portRules when a port set already holds elements (an
// earlier run's bans).
func (b *Backend) notePortRules() error {
	if b.portRules {
		return nil
	}
	for _, s := range b.ports {
		els, err := b.conn.GetSetElements(s)
		if err != nil {
			return fmt.Errorf("nft: list %s: %w", s.Name, err)
		}
		if len(els) > 0 {
			b.portRules = true
			return nil
		}
	}
	return nil
}

// ListPorts returns the port-scoped bans the kernel holds.
func (b *Backend) ListPorts(ctx context.Context) ([]enforce.PortEntry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := b.now()
	var out []enforce.PortEntry
	for f, s := range b.ports {
		els, err := b.conn.GetSetElements(s)
		if err != nil {
			return nil, fmt.Errorf("nft: list %s: %w", s.Name, err)
		}
		n := 4
		if family(f) == fam6 {
			n = 16
		}
		for _, el := range els {
			if len(el.Key) != n+8 || len(el.KeyEnd) != n+8 {
				continue
			}
			start, _ := netip.AddrFromSlice(el.Key[:n])
			end, _ := netip.AddrFromSlice(el.KeyEnd[:n])
			e := enforce.PortEntry{Proto: el.Key[n], Port: uint16(el.Key[n+4])<<8 | uint16(el.Key[n+5])}
			if el.Timeout != 0 {
				e.Expiry = now.Add(el.Expires)
			}
			for _, p := range rangePrefixes(start, end) {
				e.Prefix = p
				out = append(out, e)
			}
		}
	}
	return out, nil
}

// portDropRule builds `<family match> <saddr> . meta l4proto . th dport
// @set counter drop`.
func (b *Backend) portDropRule(c *nftables.Chain, s *nftables.Set, f family) *nftables.Rule {
	r := b.dropRule(c, s, f)
	off, n := uint32(12), uint32(4)
	if f == fam6 {
		off, n = 8, 16
	}
	l4 := uint32(reg32 + n/4)
	r.Exprs = []expr.Any{
		r.Exprs[0], r.Exprs[1],
		&expr.Payload{DestRegister: reg32, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: l4},
		&expr.Payload{DestRegister: l4 + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: reg32, SetName: s.Name},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
	return r
}

// neverBlockRule builds `meta l4proto . th dport @never_block accept`.
func (b *Backend) neverBlockRule(c *nftables.Chain) *nftables.Rule {
	return &nftables.Rule{Table: b.table, Chain: c, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg32},
		&expr.Payload{DestRegister: reg32 + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: reg32, SetName: setNeverBlock},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}}
}

// isNeverBlockRule recognises the rule neverBlockRule writes.
func isNeverBlockRule(r *nftables.Rule) bool {
	if len(r.Exprs) != 4 {
		return false
	}
	l, ok := r.Exprs[2].(*expr.Lookup)
	v, ok2 := r.Exprs[3].(*expr.Verdict)
	return ok && ok2 && !l.Invert && l.SetName == setNeverBlock && v.Kind == expr.VerdictAccept
}

// syncNeverBlock makes never_block hold exactly the configured ports, in
// one transaction: a flush and the adds commit together, so no packet
// meets a half-filled set.
func (b *Backend) syncNeverBlock() error {
	b.conn.FlushSet(b.never)
	if len(b.cfg.NeverBlock) > 0 {
		els := make([]nftables.SetElement, len(b.cfg.NeverBlock))
		for i, p := range b.cfg.NeverBlock {
			els[i] = nftables.SetElement{Key: neverKey(p)}
		}
		if err := b.conn.SetAddElements(b.never, els); err != nil {
			return fmt.Errorf("nft: queue %s elements: %w", setNeverBlock, err)
		}
	}
	return b.flush(setNeverBlock + " elements")
}

// checkNeverBlock refuses protocols the rule cannot match.
func checkNeverBlock(ps []model.PortProto) error {
	for _, p := range ps {
		if (p.Proto != model.ProtoTCP && p.Proto != model.ProtoUDP) || p.Port == 0 {
			return fmt.Errorf("nft: never_block %v: want a TCP or UDP port", p)
		}
	}
	return nil
}
