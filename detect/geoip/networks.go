package geoip

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/moatsec/moat/internal/model"
)

// netIndex is the networks of every country (or AS) of one database,
// walked once on first use.
type netIndex struct {
	once sync.Once
	done atomic.Bool
	nets map[string][]netip.Prefix
	n    int
	err  error
}

// Networks returns the networks the database assigns to g: a country's
// in the City database, an AS's in the ASN database. They are sorted,
// disjoint, and adjacent ones are merged into their covering prefix. A
// country or AS the database does not know has none.
//
// The first call for a database walks all of it (a few seconds for a full
// GeoLite2 City) and keeps the networks of every country or AS; later
// calls answer from memory. The slice is shared: callers must not change
// it.
func (d *DB) Networks(g model.Geo) ([]netip.Prefix, error) {
	var r *maxminddb.Reader
	var x *netIndex
	var key func(maxminddb.Result) (string, error)
	switch g.Scope {
	case model.ScopeCountry:
		if !d.HasCity() {
			return nil, fmt.Errorf("%w: country networks need a City database", ErrNoDatabase)
		}
		r, x, key = d.city, &d.countries, countryKey
	case model.ScopeAS:
		if !d.HasASN() {
			return nil, fmt.Errorf("%w: AS networks need an ASN database", ErrNoDatabase)
		}
		r, x, key = d.asn, &d.systems, asKey
	default:
		return nil, fmt.Errorf("geoip: networks of scope %q: want %s or %s", g.Scope, model.ScopeCountry, model.ScopeAS)
	}
	x.once.Do(func() {
		x.nets, x.n, x.err = walk(r, key)
		x.done.Store(true)
	})
	if x.err != nil {
		return nil, x.err
	}
	return x.nets[g.Value], nil
}

// IndexedNetworks is how many networks the country and AS indexes hold,
// 0 for one not walked yet.
func (d *DB) IndexedNetworks() (countries, systems int) {
	return d.countries.size(), d.systems.size()
}

func (x *netIndex) size() int {
	if !x.done.Load() {
		return 0
	}
	return x.n
}

func countryKey(res maxminddb.Result) (string, error) {
	var code string
	err := res.DecodePath(&code, "country", "iso_code")
	return code, err
}

func asKey(res maxminddb.Result) (string, error) {
	var n uint64
	if err := res.DecodePath(&n, "autonomous_system_number"); err != nil || n == 0 {
		return "", err
	}
	return strconv.FormatUint(n, 10), nil
}

// walk reads every network of r with data and files it under key's answer
// ("" files it nowhere). Records are shared by many networks, so each is
// decoded once.
func walk(r *maxminddb.Reader, key func(maxminddb.Result) (string, error)) (map[string][]netip.Prefix, int, error) {
	out := map[string][]netip.Prefix{}
	keys := map[uintptr]string{}
	for res := range r.Networks() {
		if err := res.Err(); err != nil {
			return nil, 0, fmt.Errorf("geoip: walk networks: %w", err)
		}
		off := res.Offset()
		k, ok := keys[off]
		if !ok {
			var err error
			if k, err = key(res); err != nil {
				return nil, 0, fmt.Errorf("geoip: walk networks: record of %s: %w", res.Prefix(), err)
			}
			keys[off] = k
		}
		if k == "" {
			continue
		}
		out[k] = appendMerged(out[k], res.Prefix())
	}
	n := 0
	for k, ps := range out {
		slices.SortFunc(ps, comparePrefix)
		out[k] = slices.Clip(ps)
		n += len(ps)
	}
	return out, n, nil
}

// appendMerged appends p to ps, merging it with the last prefix when the
// two are the halves of one (repeatedly): networks walked in address order
// come out as few prefixes as cover them.
func appendMerged(ps []netip.Prefix, p netip.Prefix) []netip.Prefix {
	for len(ps) > 0 && p.Bits() > 0 {
		last := ps[len(ps)-1]
		if last.Bits() != p.Bits() || last == p {
			break
		}
		parent, _ := p.Addr().Prefix(p.Bits() - 1)
		if lp, _ := last.Addr().Prefix(last.Bits() - 1); lp != parent {
			break
		}
		ps, p = ps[:len(ps)-1], parent
	}
	return append(ps, p)
}

// comparePrefix orders IPv4 before IPv6, then by address, then wider first.
func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
