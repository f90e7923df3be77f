package enforce

import (
	"context"
	"net/netip"
	"time"
)

// PortEntry is a port-scoped ban in the kernel: packets from Prefix to
// destination Port over protocol Proto (6 tcp, 17 udp) are dropped until
// Expiry (zero: never); the prefix still reaches every other port.
type PortEntry struct {
	Prefix netip.Prefix
	Proto  uint8
	Port   uint16
	Expiry time.Time
}

// PortDiff is what a PortBackend must change. Set adds entries or moves
// their expiry; Delete removes them (their Expiry is ignored). An element
// appears at most once in the whole diff.
type PortDiff struct {
	Set, Delete []PortEntry
}

// PortBackend is a backend that can enforce port-scoped bans. Port-scoped
// bans are kept apart from the address sets: a plain ban costs no more for
// their existence, and backends that cannot match ports (XDP) never see
// them.
type PortBackend interface {
	ApplyPorts(ctx context.Context, d PortDiff) error
}
