package bpf

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"

	"github.com/moatsec/moat/internal/unix"
)

// Defaults for Options.
const (
	DefaultPinDir = "/sys/fs/bpf/moat"
	// DefaultMaxSingles is the capacity of each single-address map (one per
	// family). A hash map's bucket array is sized by this even when empty
	// (about 16 MiB per family at 1Mi), so it is not larger.
	DefaultMaxSingles = 1 << 20
	// DefaultMaxRanges is the capacity of each range trie (one per family).
	DefaultMaxRanges = 1 << 16
)

// ErrNotSupported is wrapped by errors that come from a kernel unable to run
// or attach the XDP filter.
var ErrNotSupported = errors.New("XDP not supported by this kernel")

// Names of the pinned maps; they are also the map names in xdp.c.
var mapNames = []string{moatMapMoatSingle4, moatMapMoatSingle6, moatMapMoatRange4, moatMapMoatRange6, moatMapMoatStats}

// Link pins are named linkPrefix + mode + "_" + interface, so the mode an
// attachment was made in is known again after a restart.
const linkPrefix = "xdp_"

// Mode is how the program is attached to an interface.
type Mode string

const (
	// ModeNative runs the program in the driver, before an skb exists.
	ModeNative Mode = "native"
	// ModeGeneric runs it after skb allocation, for drivers without XDP
	// support. It is slower than native mode but drops the same packets.
	ModeGeneric Mode = "generic"
)

func (m Mode) pinTag() string {
	if m == ModeGeneric {
		return "skb"
	}
	return "drv"
}

func modeFromTag(tag string) (Mode, bool) {
	switch tag {
	case "drv":
		return ModeNative, true
	case "skb":
		return ModeGeneric, true
	}
	return "", false
}

// Options configure Load. Zero values take the defaults.
type Options struct {
	// PinDir is the bpffs directory for moat's pins.
	PinDir string
	// MaxSingles and MaxRanges are the capacities per address family. They
	// apply only when the maps are created; adopted maps keep their size.
	MaxSingles, MaxRanges int
	// OpenPorts are filled in before Load returns, so before the program
	// can be attached anywhere.
	OpenPorts []OpenPort
}

// Filter is the loaded XDP program and its maps. Its methods are not safe for
// concurrent use.
type Filter struct {
	objs    moatObjects
	pinDir  string
	adopted bool
	links   map[string]link.Link
	// Set's buffers, kept from one call to the next: a big load comes in
	// many calls, and fresh memory costs more than the map updates.
	setKeys keys
	setVals [4][]moatBan
	// checkOpen is whether the program was loaded to check open ports.
	checkOpen bool
}

// Load loads the program and creates its maps, or adopts the maps already
// pinned in opts.PinDir by an earlier run so that their bans are kept. The
// program is always loaded fresh; Attach swaps it into existing attachments.
// If the filesystem holding PinDir is not a bpffs, one is mounted (at
// /sys/fs/bpf for the default location, else at PinDir).
func Load(opts Options) (*Filter, error) {
	if opts.PinDir == "" {
		opts.PinDir = DefaultPinDir
	}
	if opts.MaxSingles == 0 {
		opts.MaxSingles = DefaultMaxSingles
	}
	if opts.MaxRanges == 0 {
		opts.MaxRanges = DefaultMaxRanges
	}
	if opts.MaxSingles < 0 || opts.MaxSingles > 1<<30 || opts.MaxRanges < 0 || opts.MaxRanges > 1<<30 {
		return nil, fmt.Errorf("load xdp filter: map sizes %d/%d out of range", opts.MaxSingles, opts.MaxRanges)
	}
	if err := features.HaveProgramType(ebpf.XDP); err != nil {
		if errors.Is(err, ebpf.ErrNotSupported) {
			return nil, fmt.Errorf("load xdp filter: %w: %w", ErrNotSupported, err)
		}
		return nil, fmt.Errorf("load xdp filter: probe program type: %w", err)
	}
	if err := ensurePinDir(opts.PinDir); err != nil {
		return nil, fmt.Errorf("load xdp filter: %w", err)
	}

	spec, err := loadMoat()
	if err != nil {
		return nil, fmt.Errorf("load xdp filter: %w", err)
	}
	sizes := map[string]int{
		moatMapMoatSingle4: opts.MaxSingles, moatMapMoatSingle6: opts.MaxSingles,
		moatMapMoatRange4: opts.MaxRanges, moatMapMoatRange6: opts.MaxRanges,
	}
	adopted := false
	for name, size := range sizes {
		ms := spec.Maps[name]
		ms.MaxEntries = uint32(size)
		// An adopted map keeps its size: changing it would mean recreating
		// the map and a window without bans.
		pinned, err := pinnedMaxEntries(filepath.Join(opts.PinDir, name))
		if err != nil {
			return nil, fmt.Errorf("load xdp filter: %w", err)
		}
		if pinned > 0 {
			ms.MaxEntries = pinned
			adopted = true
		}
	}

	if len(opts.OpenPorts) > 0 {
		if err := spec.Variables[moatVarCheckOpenPorts].Set(uint8(1)); err != nil {
			return nil, fmt.Errorf("load xdp filter: %w", err)
		}
	}
	f := &Filter{pinDir: opts.PinDir, adopted: adopted, links: map[string]link.Link{}, checkOpen: len(opts.OpenPorts) > 0}
	err = spec.LoadAndAssign(&f.objs, &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: opts.PinDir}})
	switch {
	case errors.Is(err, ebpf.ErrMapIncompatible):
		return nil, fmt.Errorf("load xdp filter: maps pinned in %s are from an incompatible moat version (remove them with cleanup): %w", opts.PinDir, err)
	case errors.Is(err, ebpf.ErrNotSupported):
		return nil, fmt.Errorf("load xdp filter: %w: %w", ErrNotSupported, err)
	case err != nil:
		return nil, fmt.Errorf("load xdp filter: %w", err)
	}
	if err := f.SetOpenPorts(opts.OpenPorts); err != nil {
		_ = f.objs.Close()
		return nil, fmt.Errorf("load xdp filter: %w", err)
	}
	return f, nil
}

func pinnedMaxEntries(path string) (uint32, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	m, err := ebpf.LoadPinnedMap(path, nil)
	if err != nil {
		return 0, fmt.Errorf("open pinned map %s: %w", path, err)
	}
	defer m.Close()
	return m.MaxEntries(), nil
}

// ensurePinDir makes dir exist on a bpffs, mounting one if needed.
func ensurePinDir(dir string) error {
	ok, err := onBPFFS(dir)
	if err != nil {
		return err
	}
	if !ok {
		mnt := dir
		if dir == DefaultPinDir || strings.HasPrefix(dir, "/sys/fs/bpf/") {
			mnt = "/sys/fs/bpf"
		}
		if err := os.MkdirAll(mnt, 0o700); err != nil {
			return fmt.Errorf("create bpffs mount point %s: %w", mnt, err)
		}
		if err := unix.Mount("bpffs", mnt, "bpf", 0, "mode=0700"); err != nil {
			return fmt.Errorf("mount bpffs on %s: %w", mnt, err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create pin dir %s: %w", dir, err)
	}
	return nil
}

// onBPFFS reports whether dir, or its nearest existing ancestor, is on a
// bpffs.
func onBPFFS(dir string) (bool, error) {
	for p := filepath.Clean(dir); ; p = filepath.Dir(p) {
		var st unix.Statfs_t
		err := unix.Statfs(p, &st)
		if err == nil {
			return st.Type == unix.BPF_FS_MAGIC, nil
		}
		if !errors.Is(err, unix.ENOENT) || p == "/" {
			return false, fmt.Errorf("statfs %s: %w", p, err)
		}
	}
}

// Adopted reports whether Load found pinned maps from an earlier run.
func (f *Filter) Adopted() bool { return f.adopted }

// PinDir is the directory holding the filter's pins.
func (f *Filter) PinDir() string { return f.pinDir }

// Capacity returns the size of the single-address maps and the range tries,
// per family.
func (f *Filter) Capacity() (singles, ranges int) {
	return int(f.objs.MoatSingle4.MaxEntries()), int(f.objs.MoatRange4.MaxEntries())
}

// MapIDs returns the kernel IDs of the pinned maps by name; they change only
// when a map is recreated.
func (f *Filter) MapIDs() (map[string]uint32, error) {
	ids := make(map[string]uint32, len(mapNames))
	for _, name := range mapNames {
		m := f.mapByName(name)
		info, err := m.Info()
		if err != nil {
			return nil, fmt.Errorf("map %s info: %w", name, err)
		}
		id, _ := info.ID()
		ids[name] = uint32(id)
	}
	return ids, nil
}

func (f *Filter) mapByName(name string) *ebpf.Map {
	switch name {
	case moatMapMoatSingle4:
		return f.objs.MoatSingle4
	case moatMapMoatSingle6:
		return f.objs.MoatSingle6
	case moatMapMoatRange4:
		return f.objs.MoatRange4
	case moatMapMoatRange6:
		return f.objs.MoatRange6
	case moatMapMoatStats:
		return f.objs.MoatStats
	}
	return nil
}

// Attach attaches the program to the interface named ifname in the calling
// thread's network namespace (interface indexes are per namespace), and pins
// the link so the program stays attached when moat exits. It tries native
// mode first and falls back to generic mode; the returned Mode says which one
// is in use. If an earlier run left a pinned link on this interface, the new
// program replaces the old one atomically, so no packet passes unfiltered.
func (f *Filter) Attach(ifname string) (Mode, error) {
	iface, err := net.InterfaceByName(ifname)
	if err != nil {
		return "", fmt.Errorf("attach xdp to %s: %w", ifname, err)
	}
	if mode, ok, err := f.adoptLink(ifname, iface.Index); err != nil || ok {
		return mode, err
	}

	mode := ModeNative
	l, err := link.AttachXDP(link.XDPOptions{Program: f.objs.MoatXdp, Interface: iface.Index, Flags: link.XDPDriverMode})
	if err != nil {
		nativeErr := err
		mode = ModeGeneric
		l, err = link.AttachXDP(link.XDPOptions{Program: f.objs.MoatXdp, Interface: iface.Index, Flags: link.XDPGenericMode})
		if err != nil {
			if errors.Is(err, ebpf.ErrNotSupported) {
				return "", fmt.Errorf("attach xdp to %s: %w: %w", ifname, ErrNotSupported, err)
			}
			return "", fmt.Errorf("attach xdp to %s: native: %v; generic: %w", ifname, nativeErr, err)
		}
	}
	if err := l.Pin(filepath.Join(f.pinDir, linkPrefix+mode.pinTag()+"_"+ifname)); err != nil {
		l.Close()
		return "", fmt.Errorf("attach xdp to %s: pin link: %w", ifname, err)
	}
	f.links[ifname] = l
	return mode, nil
}

// adoptLink swaps the program into a link pinned by an earlier run. A pin
// whose interface no longer exists (or is another one with the same name
// now) is dropped so the caller attaches afresh.
func (f *Filter) adoptLink(ifname string, ifindex int) (Mode, bool, error) {
	for _, mode := range []Mode{ModeNative, ModeGeneric} {
		path := filepath.Join(f.pinDir, linkPrefix+mode.pinTag()+"_"+ifname)
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			continue
		}
		l, err := link.LoadPinnedLink(path, nil)
		if err != nil {
			return "", false, fmt.Errorf("attach xdp to %s: open pinned link: %w", ifname, err)
		}
		info, err := l.Info()
		if err != nil {
			l.Close()
			return "", false, fmt.Errorf("attach xdp to %s: pinned link info: %w", ifname, err)
		}
		if info.XDP() != nil && int(info.XDP().Ifindex) == ifindex {
			if err := l.Update(f.objs.MoatXdp); err != nil {
				l.Close()
				return "", false, fmt.Errorf("attach xdp to %s: replace program in pinned link: %w", ifname, err)
			}
			f.links[ifname] = l
			return mode, true, nil
		}
		// Stale: the link's device is gone (ifindex 0) or was replaced.
		_ = l.Detach()
		err = l.Unpin()
		l.Close()
		if err != nil {
			return "", false, fmt.Errorf("attach xdp to %s: drop stale link pin: %w", ifname, err)
		}
	}
	return "", false, nil
}

// Attachment is an interface that holds a pinned moat link.
type Attachment struct {
	Interface string
	Mode      Mode
}

// Attachments lists the pinned links in the pin directory.
func (f *Filter) Attachments() ([]Attachment, error) {
	return attachments(f.pinDir)
}

func attachments(dir string) ([]Attachment, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list pins in %s: %w", dir, err)
	}
	var out []Attachment
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), linkPrefix)
		if !ok {
			continue
		}
		tag, ifname, ok := strings.Cut(rest, "_")
		mode, known := modeFromTag(tag)
		if !ok || !known {
			continue
		}
		out = append(out, Attachment{Interface: ifname, Mode: mode})
	}
	return out, nil
}

// Detach removes the program from ifname and deletes the link's pin.
func (f *Filter) Detach(ifname string) error {
	if l, ok := f.links[ifname]; ok {
		l.Close()
		delete(f.links, ifname)
	}
	for _, mode := range []Mode{ModeNative, ModeGeneric} {
		if err := detachPinned(filepath.Join(f.pinDir, linkPrefix+mode.pinTag()+"_"+ifname)); err != nil {
			return fmt.Errorf("detach xdp from %s: %w", ifname, err)
		}
	}
	return nil
}

func detachPinned(path string) error {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	l, err := link.LoadPinnedLink(path, nil)
	if err != nil {
		// Not a link we can open: still remove the pin, which releases it.
		if rmErr := os.Remove(path); rmErr != nil {
			return fmt.Errorf("open pinned link %s: %w; remove: %w", path, err, rmErr)
		}
		return nil
	}
	defer l.Close()
	// A link whose device vanished is already detached; Detach may then
	// fail, and dropping the last reference below is enough anyway.
	_ = l.Detach()
	if err := l.Unpin(); err != nil {
		return fmt.Errorf("unpin link %s: %w", path, err)
	}
	return nil
}

// Counters are the program's counters summed over CPUs since the maps were
// created.
type Counters struct {
	DroppedPackets uint64
	DroppedBytes   uint64
	PassedPackets  uint64
	// ExpiredHits counts packets whose source matched a ban that had
	// expired but was still in a map.
	ExpiredHits uint64
}

// Counters reads and sums the per-CPU counters.
func (f *Filter) Counters() (Counters, error) {
	var per []moatStats
	if err := f.objs.MoatStats.Lookup(uint32(0), &per); err != nil {
		return Counters{}, fmt.Errorf("read xdp counters: %w", err)
	}
	var c Counters
	for _, s := range per {
		c.DroppedPackets += s.DropPackets
		c.DroppedBytes += s.DropBytes
		c.PassedPackets += s.PassPackets
		c.ExpiredHits += s.ExpiredHits
	}
	return c, nil
}

// EnableRunTimeStats makes the kernel account run time for every BPF
// program until the returned Closer is closed. It costs a little per run,
// so it is meant for benchmarks and short diagnostics.
func EnableRunTimeStats() (io.Closer, error) {
	c, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return nil, fmt.Errorf("enable bpf run-time stats: %w", err)
	}
	return c, nil
}

// RunStats is the program's accumulated run time, counted while run-time
// stats are enabled.
type RunStats struct {
	RunTime  time.Duration
	RunCount uint64
}

// RunStats reads the program's run-time statistics.
func (f *Filter) RunStats() (RunStats, error) {
	st, err := f.objs.MoatXdp.Stats()
	if err != nil {
		return RunStats{}, fmt.Errorf("read xdp program stats: %w", err)
	}
	return RunStats{RunTime: st.Runtime, RunCount: st.RunCount}, nil
}

// Close releases the filter's file descriptors. Pinned maps and links stay,
// so the program keeps dropping with its current bans after moat exits.
func (f *Filter) Close() error {
	var errs []error
	for name, l := range f.links {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close link on %s: %w", name, err))
		}
	}
	f.links = nil
	if err := f.objs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close xdp objects: %w", err))
	}
	return errors.Join(errs...)
}

// Cleanup detaches every link pinned in pinDir and removes the pins moat
// created there (links and maps), then pinDir itself if it is left empty.
// Other files are left alone. A missing pinDir is not an error.
func Cleanup(pinDir string) error {
	if _, err := os.Stat(pinDir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	atts, err := attachments(pinDir)
	if err != nil {
		return fmt.Errorf("cleanup %s: %w", pinDir, err)
	}
	var errs []error
	for _, a := range atts {
		if err := detachPinned(filepath.Join(pinDir, linkPrefix+a.Mode.pinTag()+"_"+a.Interface)); err != nil {
			errs = append(errs, err)
		}
	}
	for _, name := range mapNames {
		if err := os.Remove(filepath.Join(pinDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove pinned map: %w", err))
		}
	}
	if err := os.Remove(pinDir); err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST) {
		errs = append(errs, fmt.Errorf("remove pin dir: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cleanup %s: %w", pinDir, err)
	}
	return nil
}

// TestRun runs the program in the kernel on frame (an Ethernet frame)
// repeat times, without any interface but against the live maps, and
// returns whether it dropped the frame and the mean run time. The runs
// count in Counters like real packets. It is meant for self-tests and for
// measuring the program without the cost of a receive path.
func (f *Filter) TestRun(frame []byte, repeat int) (drop bool, perRun time.Duration, err error) {
	if repeat < 1 {
		repeat = 1
	}
	ret, d, err := f.objs.MoatXdp.Benchmark(frame, repeat, nil)
	if err != nil {
		return false, 0, fmt.Errorf("test run xdp program: %w", err)
	}
	const xdpDrop = 1
	return ret == xdpDrop, d, nil
}
