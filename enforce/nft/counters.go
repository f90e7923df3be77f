package nft

import (
	"context"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// Counter is what one drop rule has matched.
type Counter struct {
	Packets, Bytes uint64
}

// ruleSet returns the set a rule drops from, when it is one of moat's drop
// rules as dropRule writes them, with its counter.
func ruleSet(r *nftables.Rule) (set string, cnt Counter, ok bool) {
	var drop, counter bool
	for _, e := range r.Exprs {
		switch e := e.(type) {
		case *expr.Lookup:
			if e.Invert {
				return "", Counter{}, false
			}
			set = e.SetName
		case *expr.Counter:
			counter = true
			cnt = Counter{Packets: e.Packets, Bytes: e.Bytes}
		case *expr.Verdict:
			drop = e.Kind == expr.VerdictDrop
		}
	}
	n := 6
	if set == setPort4 || set == setPort6 {
		n = 8 // the key is a concatenation of three loads
	}
	return set, cnt, set != "" && drop && counter && len(r.Exprs) == n
}

// Counters returns packets and bytes dropped by each rule, keyed by set name
// and summed over moat's chains.
func (b *Backend) Counters(ctx context.Context) (map[string]Counter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make(map[string]Counter, 4)
	for _, c := range b.chains {
		rules, err := b.conn.GetRules(b.table, c)
		if err != nil {
			return nil, fmt.Errorf("nft: read counters of chain %s: %w", c.Name, err)
		}
		for _, r := range rules {
			if set, cnt, ok := ruleSet(r); ok {
				sum := out[set]
				sum.Packets += cnt.Packets
				sum.Bytes += cnt.Bytes
				out[set] = sum
			}
		}
	}
	return out, nil
}
