package nft

import (
	"encoding/binary"
	"net/netip"
)

// addrSet is a set of single addresses keyed by their bytes. IPv4 keys are
// uint32 so a million of them use the runtime's fast 32-bit map path; a
// netip.Addr key would hash its zone handle too.
type addrSet struct {
	v4 map[uint32]struct{}
	v6 map[[16]byte]struct{}
}

func newAddrSet(n4, n6 int) addrSet {
	return addrSet{v4: make(map[uint32]struct{}, n4), v6: make(map[[16]byte]struct{}, n6)}
}

// add inserts a and reports whether it was already there: one map
// operation where has and add would take two.
func (s addrSet) add(a netip.Addr) (had bool) {
	if a.Is4() {
		n := len(s.v4)
		s.v4[v4key(a)] = struct{}{}
		return len(s.v4) == n
	}
	n := len(s.v6)
	s.v6[a.As16()] = struct{}{}
	return len(s.v6) == n
}

func (s addrSet) del(a netip.Addr) {
	if a.Is4() {
		delete(s.v4, v4key(a))
		return
	}
	delete(s.v6, a.As16())
}

// clear forgets every address of one family.
func (s addrSet) clear(f family) {
	if f == fam4 {
		clear(s.v4)
		return
	}
	clear(s.v6)
}

func v4key(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}
