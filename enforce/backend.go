package enforce

import (
	"context"
	"errors"
	"net/netip"
	"time"
)

// Entry is one address or range a backend must drop until Expiry (zero
// Expiry means never). Single addresses are full-length prefixes.
type Entry struct {
	Prefix netip.Prefix
	Expiry time.Time
}

// Diff is what a backend must change. Set adds entries or moves the expiry
// of entries it already holds; Delete removes prefixes. A prefix appears at
// most once in the whole diff.
type Diff struct {
	Set    []Entry
	Delete []netip.Prefix
}

// Empty reports whether the diff changes nothing.
func (d Diff) Empty() bool { return len(d.Set) == 0 && len(d.Delete) == 0 }

// Backend is a kernel enforcement point. The reconciler is its only caller
// and never calls it concurrently.
type Backend interface {
	// Name is a short label for logs and metrics ("nftables", "xdp").
	Name() string
	// Apply makes the kernel hold the change, in as few kernel transactions
	// as the backend allows. It must not keep d: the reconciler reuses its
	// slices once every backend has returned.
	Apply(ctx context.Context, d Diff) error
	// List returns what the kernel holds now, including entries whose
	// expiry has passed but that are still present.
	List(ctx context.Context) ([]Entry, error)
}

// ErrNotSupported is returned (wrapped) by a backend the running kernel
// cannot host, so moat can fall back to the others.
var ErrNotSupported = errors.New("not supported by this kernel")
