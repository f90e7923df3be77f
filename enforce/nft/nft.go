// Package nft is moat's nftables backend. It owns one table (`table inet
// moat` by default, or `table netdev moat` when ingress interfaces are
// configured) and talks to the kernel over netlink only: single addresses go
// to the hash sets ban4/ban6, ranges to the interval sets
// ban4_range/ban6_range, and each element carries its own kernel timeout.
// It never reads, changes or flushes any other table.
package nft

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/mdlayher/netlink"

	"github.com/moatsec/moat/enforce"
	"github.com/moatsec/moat/internal/model"
	"github.com/moatsec/moat/internal/unix"
)

// Config says where moat's table lives and where its chains hook in.
type Config struct {
	// Table is the name of moat's own table; default "moat".
	Table string
	// Hook is "prerouting" (default) or "input" for the inet table.
	Hook string
	// Priority of the base chains; 0 means the default -300 (raw, before
	// conntrack), so priority 0 itself cannot be chosen.
	Priority int
	// Interfaces, when set, put the table in the netdev family with one
	// ingress chain per interface instead of the inet prerouting/input
	// chain. The interfaces must exist when Open or Ensure runs.
	Interfaces []string
	// NetNS is a network namespace fd to work in; 0 means the current one.
	NetNS int
	// NeverBlock are destination ports moat's chains accept before any
	// drop rule, banned source or not (see ports.go).
	NeverBlock []model.PortProto
}

// Set names, fixed: scripts and dashboards refer to them.
const (
	setBan4      = "ban4"
	setBan6      = "ban6"
	setBan4Range = "ban4_range"
	setBan6Range = "ban6_range"
)

const (
	// Elements per message. A message's element list has a u16 length
	// (see batch): an IPv4 element with timeout takes 28 bytes, an IPv6 one
	// 40, and a range twice that, so these stay well under 64 KiB.
	chunk4 = 1500
	chunk6 = 1000
	// Messages per transaction for the hash sets, whose commit cost does not
	// grow with the set: medium transactions load 1M elements faster than
	// one huge one, and keep the send buffer bounded. Interval-set changes
	// always go in one transaction (their commit costs O(set size)).
	msgsPerTxn = 16
	// Socket buffers, forced past wmem_max/rmem_max (CAP_NET_ADMIN): a
	// transaction is sent in one sendmsg, and a 1M-element dump streams back
	// faster with room to spare.
	sockBuf = 32 << 20
	// expiryTolerance absorbs the kernel keeping timeouts in jiffies and
	// reporting milliseconds; expiries closer than this count as equal when
	// comparing segments read back from the kernel.
	expiryTolerance = time.Second
	// ensureTimeout is the timeout of the element added right before it is
	// deleted in the same transaction; it only matters if the kernel had
	// lost the element, and then the delete removes it anyway.
	ensureTimeout = time.Second
	// noTimeout asks for elements without a timeout attribute (deletes).
	noTimeout time.Duration = -1
)

// family indexes the per-family state.
type family int

const (
	fam4 family = iota
	fam6
)

func familyOf(a netip.Addr) family {
	if a.Is4() {
		return fam4
	}
	return fam6
}

// Backend is the nftables enforcement point. Like every backend it has one
// caller (the reconciler) and is not safe for concurrent use.
type Backend struct {
	cfg  Config
	conn *nftables.Conn
	dump *rawConn
	// elems commits element transactions; batches are the two buffers
	// they are encoded into in turn.
	elems   *rawConn
	batches [2]batch
	// parts are Apply's lists of single-address changes, kept for the next
	// call: one ban should not allocate a chunk's worth of memory.
	parts  [2]singleOps
	table  *nftables.Table
	single [2]*nftables.Set
	ranged [2]*nftables.Set
	ports  [2]*nftables.Set
	never  *nftables.Set
	// portRules is set once a port set holds elements: until then the
	// chains have no port drop rules, so no packet pays for the lookups.
	portRules bool
	chains    []*nftables.Chain

	// known holds the single addresses moat believes the kernel has. It only
	// decides how an expiry change is sent (a re-add does not move an
	// existing element's timeout on every kernel, so known elements are
	// deleted and added again in one transaction); a wrong guess costs a few
	// extra messages, never a failed transaction. knownComplete is false
	// until a List has read the kernel, so until then every set entry is
	// treated as possibly present.
	known         addrSet
	knownComplete bool
	// ranges is the desired range view per family: prefix -> expiry. The
	// kernel holds its normalisation into disjoint segments.
	ranges [2]map[netip.Prefix]time.Time

	now func() time.Time
}

var (
	_ enforce.Backend     = (*Backend)(nil)
	_ enforce.PortBackend = (*Backend)(nil)
)

func (c *Config) setDefaults() error {
	if c.Table == "" {
		c.Table = "moat"
	}
	if c.Hook == "" {
		c.Hook = "prerouting"
	}
	if c.Priority == 0 {
		c.Priority = -300
	}
	if c.Hook != "prerouting" && c.Hook != "input" {
		return fmt.Errorf("nft: hook %q: want prerouting or input", c.Hook)
	}
	if err := checkNeverBlock(c.NeverBlock); err != nil {
		return err
	}
	for _, ifc := range c.Interfaces {
		if ifc == "" || len(ifc) >= unix.IFNAMSIZ {
			return fmt.Errorf("nft: bad interface name %q", ifc)
		}
	}
	return nil
}

// Open connects to nftables, makes sure moat's table, sets, chains and rules
// exist (creating only what is missing, never touching elements), and adopts
// the ranges the kernel already holds. A kernel without nf_tables gives an
// error wrapping enforce.ErrNotSupported.
func Open(ctx context.Context, cfg Config) (*Backend, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	conn, err := dial(cfg)
	if err != nil {
		return nil, err
	}
	dump, err := dialRaw(cfg)
	if err != nil {
		_ = conn.CloseLasting()
		return nil, err
	}
	elems, err := dialRaw(cfg)
	if err != nil {
		_ = conn.CloseLasting()
		_ = dump.Close()
		return nil, err
	}
	b := &Backend{cfg: cfg, conn: conn, dump: dump, elems: elems, known: newAddrSet(0, 0), now: time.Now}
	b.table = &nftables.Table{Name: cfg.Table, Family: nftables.TableFamilyINet}
	if len(cfg.Interfaces) > 0 {
		b.table.Family = nftables.TableFamilyNetdev
	}
	for f, names := range [2][2]string{{setBan4, setBan4Range}, {setBan6, setBan6Range}} {
		kt := nftables.TypeIPAddr
		if family(f) == fam6 {
			kt = nftables.TypeIP6Addr
		}
		b.single[f] = &nftables.Set{Table: b.table, Name: names[0], KeyType: kt, HasTimeout: true, KeyByteOrder: binaryutil.BigEndian}
		b.ranged[f] = &nftables.Set{Table: b.table, Name: names[1], KeyType: kt, HasTimeout: true, Interval: true, KeyByteOrder: binaryutil.BigEndian}
		b.ranges[f] = make(map[netip.Prefix]time.Time)
	}
	b.initPortSets()
	b.chains = b.wantChains()

	created, err := b.ensure(ctx)
	if err != nil {
		_ = b.Close()
		if errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.EOPNOTSUPP) {
			return nil, fmt.Errorf("nft: open table %s: %w: %w", cfg.Table, enforce.ErrNotSupported, err)
		}
		return nil, err
	}
	if err := b.syncNeverBlock(); err != nil {
		_ = b.Close()
		return nil, err
	}
	// Fresh single sets are empty, so moat knows all they hold.
	b.knownComplete = created[setBan4] && created[setBan6]
	// Adopt the ranges the kernel holds, so a restart neither drops them nor
	// has to re-create them.
	for f := range b.ranged {
		segs, err := b.readSegments(b.ranged[f])
		if err != nil {
			_ = b.Close()
			return nil, err
		}
		for _, s := range segs {
			for _, p := range rangePrefixes(s.start, s.end) {
				b.ranges[f][p] = s.expiry
			}
		}
	}
	return b, nil
}

func dial(cfg Config) (*nftables.Conn, error) {
	opts := []nftables.ConnOption{nftables.AsLasting(), nftables.WithSockOptions(tuneSocket)}
	if cfg.NetNS != 0 {
		opts = append(opts, nftables.WithNetNSFd(cfg.NetNS))
	}
	conn, err := nftables.New(opts...)
	if err != nil {
		if errors.Is(err, unix.EPROTONOSUPPORT) {
			return nil, fmt.Errorf("nft: netlink netfilter socket: %w: %w", enforce.ErrNotSupported, err)
		}
		return nil, fmt.Errorf("nft: netlink netfilter socket: %w", err)
	}
	return conn, nil
}

func tuneSocket(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("netlink raw conn: %w", err)
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		for _, opt := range []int{unix.SO_SNDBUFFORCE, unix.SO_RCVBUFFORCE} {
			if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, sockBuf); e != nil && serr == nil {
				serr = e
			}
		}
	})
	if err != nil {
		return fmt.Errorf("netlink socket control: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("force netlink socket buffers to %d bytes: %w", sockBuf, serr)
	}
	// Kernel error strings ("Could not process rule: ...") make failures
	// readable; older kernels without them still work.
	_ = c.SetOption(netlink.ExtendedAcknowledge, true)
	return primeDumpSize(c, rc)
}

// primeDumpSize makes the kernel fill set dumps in 32 KiB messages instead
// of 4 KiB ones. The kernel sizes dump messages by the largest buffer the
// socket has ever read with, and the netlink library starts every read with
// one page. A hash set dump re-walks the table from the start for every
// message, so a dump costs O(n²/elements per message): 8 times more per
// message makes a 100k-element List about 8 times faster. One small request
// read with a 64 KiB buffer is enough.
func primeDumpSize(c *netlink.Conn, rc syscall.RawConn) error {
	req := netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN),
			Flags: netlink.Request,
		},
		Data: []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	}
	if _, err := c.Send(req); err != nil {
		return fmt.Errorf("netlink generation request: %w", err)
	}
	buf := make([]byte, 64<<10)
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		_, _, rerr = unix.Recvfrom(int(fd), buf, 0)
		return rerr != unix.EAGAIN
	}); err != nil {
		return fmt.Errorf("netlink generation reply: %w", err)
	}
	if rerr != nil {
		return fmt.Errorf("netlink generation reply: %w", rerr)
	}
	return nil
}

// reconnect drops the lasting socket after a failed transaction: acks the
// library stopped reading would otherwise answer the next request.
func (b *Backend) reconnect() {
	_ = b.conn.CloseLasting()
	if c, err := dial(b.cfg); err == nil {
		b.conn = c
	}
	_ = b.dump.Close()
	if d, err := dialRaw(b.cfg); err == nil {
		b.dump = d
	}
	_ = b.elems.Close()
	if e, err := dialRaw(b.cfg); err == nil {
		b.elems = e
	}
	for i := range b.batches {
		b.batches[i].reset()
	}
}

func (b *Backend) flush(what string) error {
	if err := b.conn.Flush(); err != nil {
		b.reconnect()
		return fmt.Errorf("nft: commit %s in table %s: %w", what, b.table.Name, err)
	}
	return nil
}

// Name implements enforce.Backend.
func (b *Backend) Name() string { return "nftables" }

// ExpiresEntries tells the reconciler that elements carry kernel timeouts,
// so it need not delete expired entries itself.
func (b *Backend) ExpiresEntries() bool { return true }

// Close releases the netlink socket. The table stays: bans outlive moat.
func (b *Backend) Close() error {
	if err := errors.Join(b.conn.CloseLasting(), b.dump.Close(), b.elems.Close()); err != nil {
		return fmt.Errorf("nft: close netlink sockets: %w", err)
	}
	return nil
}
