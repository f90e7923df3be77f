package nft

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"

	"github.com/moatsec/moat/internal/unix"
)

// Cleanup deletes moat's table (inet and netdev) and with it every chain,
// set and element moat made. An absent table is not an error.
func Cleanup(ctx context.Context, cfg Config) error {
	if err := cfg.setDefaults(); err != nil {
		return err
	}
	conn, err := dial(cfg)
	if err != nil {
		return err
	}
	defer func() { _ = conn.CloseLasting() }()
	for _, fam := range []nftables.TableFamily{nftables.TableFamilyINet, nftables.TableFamilyNetdev} {
		if err := ctx.Err(); err != nil {
			return err
		}
		t := &nftables.Table{Name: cfg.Table, Family: fam}
		if _, err := conn.ListTableOfFamily(cfg.Table, fam); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return fmt.Errorf("nft: look up table %s: %w", cfg.Table, err)
		}
		conn.DelTable(t)
		if err := conn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("nft: delete table %s: %w", cfg.Table, err)
		}
	}
	return nil
}

func (b *Backend) wantChains() []*nftables.Chain {
	prio := nftables.ChainPriorityRef(nftables.ChainPriority(b.cfg.Priority))
	if len(b.cfg.Interfaces) > 0 {
		var cs []*nftables.Chain
		for _, ifc := range b.cfg.Interfaces {
			cs = append(cs, &nftables.Chain{
				Name: "moat-ingress-" + ifc, Table: b.table, Type: nftables.ChainTypeFilter,
				Hooknum: nftables.ChainHookIngress, Priority: prio, Device: ifc,
			})
		}
		return cs
	}
	hook := nftables.ChainHookPrerouting
	if b.cfg.Hook == "input" {
		hook = nftables.ChainHookInput
	}
	return []*nftables.Chain{{
		Name: "moat-" + b.cfg.Hook, Table: b.table, Type: nftables.ChainTypeFilter,
		Hooknum: hook, Priority: prio,
	}}
}

// Ensure re-creates whatever part of moat's table is missing (the table,
// a set, a chain, a drop rule) without touching set elements, and removes
// rules in moat's chains that moat did not write. The verify pass calls it
// before List.
func (b *Backend) Ensure(ctx context.Context) error {
	created, err := b.ensure(ctx)
	if err != nil {
		return err
	}
	// A re-created single set is empty; the ranges of a re-created range
	// set are put back by the next Apply, which reads the kernel first.
	for f, s := range b.single {
		if created[s.Name] {
			b.known.clear(family(f))
		}
	}
	if created[setNeverBlock] && len(b.cfg.NeverBlock) > 0 {
		return b.syncNeverBlock()
	}
	return nil
}

// ensure creates what is missing and reports which sets it created.
func (b *Backend) ensure(ctx context.Context) (map[string]bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	tableExists := true
	if _, err := b.conn.ListTableOfFamily(b.table.Name, b.table.Family); err != nil {
		if !errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("nft: look up table %s: %w", b.table.Name, err)
		}
		tableExists = false
	}
	have := map[string]bool{}
	if tableExists {
		sets, err := b.conn.GetSets(b.table)
		if err != nil {
			return nil, fmt.Errorf("nft: list sets of table %s: %w", b.table.Name, err)
		}
		for _, s := range sets {
			have[s.Name] = true
		}
	}
	if !tableExists {
		b.conn.AddTable(b.table)
	}
	created := map[string]bool{}
	for _, s := range []*nftables.Set{b.single[fam4], b.single[fam6], b.ranged[fam4], b.ranged[fam6], b.ports[fam4], b.ports[fam6], b.never} {
		if have[s.Name] {
			continue
		}
		if err := b.conn.AddSet(s, nil); err != nil {
			return nil, fmt.Errorf("nft: add set %s: %w", s.Name, err)
		}
		created[s.Name] = true
	}
	// Steady state sends nothing: a verify pass should not commit a
	// transaction. Should the look-up fail for another reason than absence,
	// adding an existing base chain with the same hook is a no-op update.
	for _, c := range b.chains {
		if !tableExists {
			b.conn.AddChain(c)
		} else if _, err := b.conn.ListChain(b.table, c.Name); err != nil {
			b.conn.AddChain(c)
		}
	}
	// A chain left by another Hook setting would keep dropping on its own.
	if len(b.cfg.Interfaces) == 0 && tableExists {
		for _, hook := range []string{"prerouting", "input"} {
			if hook == b.cfg.Hook {
				continue
			}
			if _, err := b.conn.ListChain(b.table, "moat-"+hook); err == nil {
				b.conn.DelChain(&nftables.Chain{Name: "moat-" + hook, Table: b.table})
			}
		}
	}
	if err := b.flush("table, sets and chains"); err != nil {
		return nil, err
	}
	if err := b.notePortRules(); err != nil {
		return nil, err
	}
	for _, c := range b.chains {
		if err := b.ensureRules(c); err != nil {
			return nil, err
		}
	}
	if err := b.flush("drop rules"); err != nil {
		return nil, err
	}
	return created, nil
}

// dropRule builds `<family match> <saddr> @set counter drop`.
func (b *Backend) dropRule(c *nftables.Chain, s *nftables.Set, f family) *nftables.Rule {
	var proto expr.Any
	var protoData []byte
	if b.table.Family == nftables.TableFamilyNetdev {
		proto = &expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1}
		protoData = binaryutil.BigEndian.PutUint16(unix.ETH_P_IP)
		if f == fam6 {
			protoData = binaryutil.BigEndian.PutUint16(unix.ETH_P_IPV6)
		}
	} else {
		proto = &expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}
		protoData = []byte{unix.NFPROTO_IPV4}
		if f == fam6 {
			protoData = []byte{unix.NFPROTO_IPV6}
		}
	}
	off, n := uint32(12), uint32(4)
	if f == fam6 {
		off, n = 8, 16
	}
	return &nftables.Rule{Table: b.table, Chain: c, Exprs: []expr.Any{
		proto,
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: protoData},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Lookup{SourceRegister: 1, SetName: s.Name},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}}
}

// ensureRules queues the drop rules missing from c and the deletion of
// rules moat did not write.
func (b *Backend) ensureRules(c *nftables.Chain) error {
	rules, err := b.conn.GetRules(b.table, c)
	if err != nil {
		return fmt.Errorf("nft: list rules of chain %s: %w", c.Name, err)
	}
	want := map[string]family{
		b.single[fam4].Name: fam4, b.ranged[fam4].Name: fam4,
		b.single[fam6].Name: fam6, b.ranged[fam6].Name: fam6,
	}
	if b.portRules {
		want[b.ports[fam4].Name], want[b.ports[fam6].Name] = fam4, fam6
	}
	seen := map[string]bool{}
	wantNever := len(b.cfg.NeverBlock) > 0
	for i, r := range rules {
		set, _, ok := ruleSet(r)
		if _, wanted := want[set]; ok && wanted && !seen[set] {
			seen[set] = true
			continue
		}
		// The accept rule counts only in first place: behind a drop
		// rule it would not keep its ports open.
		if wantNever && i == 0 && isNeverBlockRule(r) {
			seen[setNeverBlock] = true
			continue
		}
		if err := b.conn.DelRule(&nftables.Rule{Table: b.table, Chain: c, Handle: r.Handle}); err != nil {
			return fmt.Errorf("nft: delete foreign rule %d in chain %s: %w", r.Handle, c.Name, err)
		}
	}
	for _, s := range []*nftables.Set{b.single[fam4], b.ranged[fam4], b.single[fam6], b.ranged[fam6]} {
		if !seen[s.Name] {
			b.conn.AddRule(b.dropRule(c, s, want[s.Name]))
		}
	}
	for f, s := range b.ports {
		if b.portRules && !seen[s.Name] {
			b.conn.AddRule(b.portDropRule(c, s, family(f)))
		}
	}
	if wantNever && !seen[setNeverBlock] {
		b.conn.InsertRule(b.neverBlockRule(c))
	}
	return nil
}
