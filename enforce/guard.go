package enforce

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/moatsec/moat/internal/model"
)

// ErrRefused is wrapped by every decision the guard will not let reach the
// kernel.
var ErrRefused = errors.New("refused")

// RefusedError says why a prefix may not be banned.
type RefusedError struct {
	Prefix netip.Prefix
	Reason string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("ban on %s refused: %s", e.Prefix, e.Reason)
}

func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

// GuardConfig sets what the guard protects.
type GuardConfig struct {
	// Allowlist holds ranges that are never banned.
	Allowlist []netip.Prefix
	// MinBits4 and MinBits6 refuse ranges wider than /MinBits.
	MinBits4, MinBits6 int
	// HostAddrs lists this host's addresses; nil means the addresses of the
	// network namespace moat runs in, read from the kernel.
	HostAddrs func() ([]netip.Addr, error)
}

// Guard is the last check before the kernel: it refuses bans that would
// lock the host out of itself or its admins out of the host.
type Guard struct {
	cfg GuardConfig

	mu        sync.Mutex
	allow     []netip.Prefix
	extra     func(netip.Prefix) []netip.Prefix
	host      []netip.Addr
	hostErr   error
	hostAt    time.Time
	hostEvery time.Duration
}

var alwaysProtected = []struct {
	p      netip.Prefix
	reason string
}{
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("0.0.0.0/32"), "unspecified address"},
	{netip.MustParsePrefix("::/128"), "unspecified address"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

// NewGuard returns a guard; host addresses are read lazily and refreshed
// every few seconds so an address added at run time is protected quickly.
func NewGuard(cfg GuardConfig) *Guard {
	if cfg.HostAddrs == nil {
		cfg.HostAddrs = interfaceAddrs
	}
	return &Guard{cfg: cfg, allow: append([]netip.Prefix(nil), cfg.Allowlist...), hostEvery: 5 * time.Second}
}

// SetAllowlist replaces the allowlist (config plus entries managed at run time).
func (g *Guard) SetAllowlist(allow []netip.Prefix) {
	g.mu.Lock()
	g.allow = append([]netip.Prefix(nil), allow...)
	g.mu.Unlock()
}

// SetExtra sets where further protected ranges come from: fn returns
// those overlapping a prefix (the networks of the allowlist's country and
// AS entries, too many to list in SetAllowlist). nil is none.
func (g *Guard) SetExtra(fn func(netip.Prefix) []netip.Prefix) {
	g.mu.Lock()
	g.extra = fn
	g.mu.Unlock()
}

// Check returns a *RefusedError when p must not be banned.
func (g *Guard) Check(p netip.Prefix) error {
	if !p.IsValid() {
		return &RefusedError{Prefix: p, Reason: "invalid prefix"}
	}
	p = p.Masked()
	if err := model.CheckWidth(p, g.cfg.MinBits4, g.cfg.MinBits6); err != nil {
		return &RefusedError{Prefix: p, Reason: fmt.Sprintf("range wider than the configured limit /%d", err.(*model.WidthError).MinBits)}
	}
	for _, a := range alwaysProtected {
		if a.p.Overlaps(p) {
			return &RefusedError{Prefix: p, Reason: a.reason}
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, a := range g.allow {
		if a.Overlaps(p) {
			return &RefusedError{Prefix: p, Reason: "allowlisted (" + a.String() + ")"}
		}
	}
	if g.extra != nil {
		if as := g.extra(p); len(as) > 0 {
			return &RefusedError{Prefix: p, Reason: "allowlisted (" + as[0].String() + ")"}
		}
	}
	g.refreshHost()
	if g.hostErr != nil {
		// Without knowing our own addresses we cannot prove a ban is safe.
		return &RefusedError{Prefix: p, Reason: "host addresses unknown: " + g.hostErr.Error()}
	}
	for _, a := range g.host {
		if p.Contains(a) {
			return &RefusedError{Prefix: p, Reason: "covers this host's address " + a.String()}
		}
	}
	return nil
}

// refreshHost rereads the host's addresses when they are due; g.mu held.
func (g *Guard) refreshHost() {
	if time.Since(g.hostAt) > g.hostEvery {
		g.host, g.hostErr = g.cfg.HostAddrs()
		g.hostAt = time.Now()
	}
}

func interfaceAddrs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("list interface addresses: %w", err)
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out, nil
}
