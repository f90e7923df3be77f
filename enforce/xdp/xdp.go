// Package xdp is the enforce.Backend that drops banned sources in XDP, using
// the filter of package bpf. Its maps and links are pinned, so bans and the
// attachment survive a daemon restart: Open adopts them and Close leaves
// them in place.
package xdp

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/moatsec/moat/bpf"
	"github.com/moatsec/moat/enforce"
	"github.com/moatsec/moat/internal/model"
	"github.com/moatsec/moat/internal/unix"
)

// Config configures Open. Zero values take the bpf package defaults.
type Config struct {
	// PinDir is the bpffs directory for the pinned maps and links
	// (default /sys/fs/bpf/moat).
	PinDir string
	// Interfaces to attach to, looked up in the calling thread's network
	// namespace. Attachments pinned by an earlier run on interfaces no
	// longer listed are removed.
	Interfaces []string
	// MaxSingles and MaxRanges are map capacities per address family; they
	// take effect only when the maps are created, not when adopted.
	MaxSingles, MaxRanges int
	// NeverBlock are destination ports the program passes even from a
	// banned source. Port-scoped bans are not enforced here: the program
	// would have to read the ports of every packet, not only of banned
	// sources' ones; nftables holds them (see enforce/nft/ports.go).
	NeverBlock []model.PortProto
}

// ErrMapFull is wrapped by Apply when a ban map has no room left.
var ErrMapFull = bpf.ErrMapFull

// Counters are the XDP program's packet counters, summed over CPUs.
type Counters = bpf.Counters

// Backend drops packets from banned sources in XDP. Like every
// enforce.Backend it is not safe for concurrent use.
type Backend struct {
	f     *bpf.Filter
	modes map[string]string
	// set is Apply's buffer, kept for the next call (a load comes in many).
	set []bpf.Ban
}

var _ enforce.Backend = (*Backend)(nil)

// Open loads the XDP filter, adopting maps pinned by an earlier run, and
// attaches it to cfg.Interfaces (native mode, else generic; see Modes). An
// existing attachment gets the new program without a gap. A kernel that
// cannot run XDP gives an error wrapping enforce.ErrNotSupported.
func Open(ctx context.Context, cfg Config) (*Backend, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open xdp backend: %w", err)
	}
	open := make([]bpf.OpenPort, len(cfg.NeverBlock))
	for i, p := range cfg.NeverBlock {
		open[i] = bpf.OpenPort{Proto: p.Proto, Port: p.Port}
	}
	f, err := bpf.Load(bpf.Options{PinDir: cfg.PinDir, MaxSingles: cfg.MaxSingles, MaxRanges: cfg.MaxRanges, OpenPorts: open})
	if err != nil {
		return nil, openErr(err)
	}
	b := &Backend{f: f, modes: map[string]string{}}
	if err := b.attach(ctx, cfg.Interfaces); err != nil {
		f.Close()
		return nil, openErr(err)
	}
	return b, nil
}

func openErr(err error) error {
	if errors.Is(err, bpf.ErrNotSupported) {
		return fmt.Errorf("open xdp backend: %w: %w", enforce.ErrNotSupported, err)
	}
	return fmt.Errorf("open xdp backend: %w", err)
}

func (b *Backend) attach(ctx context.Context, ifaces []string) error {
	old, err := b.f.Attachments()
	if err != nil {
		return err
	}
	for _, a := range old {
		if !slices.Contains(ifaces, a.Interface) {
			if err := b.f.Detach(a.Interface); err != nil {
				return err
			}
		}
	}
	for _, name := range ifaces {
		if err := ctx.Err(); err != nil {
			return err
		}
		mode, err := b.f.Attach(name)
		if err != nil {
			return err
		}
		b.modes[name] = string(mode)
	}
	return nil
}

// Name implements enforce.Backend.
func (b *Backend) Name() string { return "xdp" }

// Modes maps each attached interface to "native" or "generic"; generic
// means the driver has no XDP support and moat fell back to the slower
// skb-based hook.
func (b *Backend) Modes() map[string]string {
	out := make(map[string]string, len(b.modes))
	for k, v := range b.modes {
		out[k] = v
	}
	return out
}

// clock pairs a wall-clock and a CLOCK_BOOTTIME reading taken together, to
// convert between the two.
type clock struct {
	wall time.Time
	boot int64 // ns
}

func now() (clock, error) {
	var ts unix.Timespec
	wall := time.Now()
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return clock{}, fmt.Errorf("read CLOCK_BOOTTIME: %w", err)
	}
	return clock{wall: wall, boot: ts.Nano()}, nil
}

// toBoot converts a wall-clock expiry; ok is false when it has passed.
func (c clock) toBoot(expiry time.Time) (ns uint64, ok bool) {
	if expiry.IsZero() {
		return 0, true
	}
	left := expiry.Sub(c.wall)
	if left <= 0 {
		return 0, false
	}
	return uint64(c.boot) + uint64(left), true
}

func (c clock) toWall(ns uint64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return c.wall.Add(time.Duration(int64(ns) - c.boot))
}

// Apply implements enforce.Backend: deletions first (they free room), then
// additions and expiry moves, each as batched map updates. Entries whose
// expiry has already passed are deleted instead of set. Deleting an absent
// prefix is not an error. On error part of the diff may be applied; List
// tells what the kernel holds.
func (b *Backend) Apply(ctx context.Context, d enforce.Diff) error {
	if d.Empty() {
		return nil
	}
	c, err := now()
	if err != nil {
		return fmt.Errorf("xdp apply: %w", err)
	}
	del := d.Delete
	set := b.set[:0]
	defer func() { b.set = set[:0] }()
	for _, e := range d.Set {
		ns, ok := c.toBoot(e.Expiry)
		if !ok {
			if len(del) == len(d.Delete) {
				del = slices.Clone(d.Delete)
			}
			del = append(del, e.Prefix)
			continue
		}
		set = append(set, bpf.Ban{Prefix: e.Prefix, ExpiresNs: ns})
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("xdp apply: %w", err)
	}
	if len(del) > 0 {
		if _, err := b.f.Delete(del); err != nil {
			return fmt.Errorf("xdp apply: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("xdp apply: %w", err)
	}
	if len(set) > 0 {
		if err := b.f.Set(set); err != nil {
			return fmt.Errorf("xdp apply: %w", err)
		}
	}
	return nil
}

// List implements enforce.Backend. Prefixes come back masked and with
// IPv4-mapped IPv6 turned into IPv4; expiries are converted back to wall
// clock, and expired entries still in the maps are included.
func (b *Backend) List(ctx context.Context) ([]enforce.Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("xdp list: %w", err)
	}
	bans, err := b.f.Entries()
	if err != nil {
		return nil, fmt.Errorf("xdp list: %w", err)
	}
	c, err := now()
	if err != nil {
		return nil, fmt.Errorf("xdp list: %w", err)
	}
	out := make([]enforce.Entry, len(bans))
	for i, ban := range bans {
		out[i] = enforce.Entry{Prefix: ban.Prefix, Expiry: c.toWall(ban.ExpiresNs)}
	}
	return out, nil
}

// Counters returns the program's packet counters, summed over CPUs.
func (b *Backend) Counters() (Counters, error) {
	c, err := b.f.Counters()
	if err != nil {
		return Counters{}, fmt.Errorf("xdp counters: %w", err)
	}
	return c, nil
}

// Close releases file descriptors only: the pinned maps and links stay, so
// the kernel keeps dropping until the next Open adopts them.
func (b *Backend) Close() error {
	if err := b.f.Close(); err != nil {
		return fmt.Errorf("close xdp backend: %w", err)
	}
	return nil
}

// Cleanup detaches moat's XDP links and removes every pin moat created in
// pinDir (default /sys/fs/bpf/moat), for uninstall or disabling XDP.
func Cleanup(pinDir string) error {
	if pinDir == "" {
		pinDir = bpf.DefaultPinDir
	}
	if err := bpf.Cleanup(pinDir); err != nil {
		return fmt.Errorf("xdp cleanup: %w", err)
	}
	return nil
}

// CountElements reports how many entries each ban map holds in the kernel
// now, expired ones included, keyed by the names moat's nftables sets use
// (ban4, ban6, ban4_range, ban6_range) so both backends line up. Unlike the
// other methods it is safe to call while the reconciler writes.
func (b *Backend) CountElements(ctx context.Context) (map[string]int, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("xdp count elements: %w", err)
	}
	n, err := b.f.Counts()
	if err != nil {
		return nil, fmt.Errorf("xdp count elements: %w", err)
	}
	return map[string]int{"ban4": n[0], "ban6": n[1], "ban4_range": n[2], "ban6_range": n[3]}, nil
}
