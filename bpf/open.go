package bpf

import (
	"errors"
	"fmt"
)

// Transport protocols an OpenPort can name.
const (
	ProtoTCP = 6
	ProtoUDP = 17
)

// MaxOpenPorts is the capacity of the open-port map.
const MaxOpenPorts = 256

// OpenPort is a destination port the filter never drops, banned source or
// not (enforce.never_block): a TCP or UDP port.
type OpenPort struct {
	Proto uint8
	Port  uint16
}

func (p OpenPort) key() moatOpenPort {
	// The program compares the port as it is on the wire; the map key is
	// stored in host order, which is little-endian for every target the
	// object is built for.
	return moatOpenPort{Proto: p.Proto, Port: p.Port>>8 | p.Port<<8}
}

// SetOpenPorts makes ps the filter's open ports, replacing the previous
// ones. The program checks them only for packets from banned sources, and
// only when Load was given some: with none, the check is compiled out.
func (f *Filter) SetOpenPorts(ps []OpenPort) error {
	if len(ps) > 0 && !f.checkOpen {
		return errors.New("xdp open ports: the program was loaded without any, so it does not check them (give them to Load)")
	}
	if len(ps) > MaxOpenPorts {
		return fmt.Errorf("xdp open ports: %d, at most %d", len(ps), MaxOpenPorts)
	}
	want := make(map[moatOpenPort]bool, len(ps))
	for _, p := range ps {
		if (p.Proto != ProtoTCP && p.Proto != ProtoUDP) || p.Port == 0 {
			return fmt.Errorf("xdp open port %d/%d: want a TCP or UDP port", p.Port, p.Proto)
		}
		want[p.key()] = true
	}
	m := f.objs.MoatOpen
	var stale []moatOpenPort
	var k moatOpenPort
	var v uint8
	it := m.Iterate()
	for it.Next(&k, &v) {
		if !want[k] {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("xdp open ports: read: %w", err)
	}
	var errs []error
	for k := range want {
		if err := m.Put(k, uint8(1)); err != nil {
			errs = append(errs, err)
		}
	}
	for _, k := range stale {
		if err := m.Delete(k); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("xdp open ports: update: %w", err)
	}
	return nil
}
