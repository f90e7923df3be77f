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
	"slices"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/moatsec/moat/enforce"
	"github.com/moatsec/moat/internal/model"
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
}

// Counter is what one drop rule has matched.
type Counter struct {
	Packets, Bytes uint64
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
	chains []*nftables.Chain

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

var _ enforce.Backend = (*Backend)(nil)

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
	b.chains = b.wantChains()

	created, err := b.ensure(ctx)
	if err != nil {
		_ = b.Close()
		if errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.EOPNOTSUPP) {
			return nil, fmt.Errorf("nft: open table %s: %w: %w", cfg.Table, enforce.ErrNotSupported, err)
		}
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

// Cleanup deletes moat's table (inet and netdev) and with it every chain,
// set and element moat made. An absent table is not an error.
func Cleanup(ctx context.Context, cfg Config) error {
	if err := cfg.setDefaults(); err != nil {
		return err
	}
	conn, err := dial(cfg)
	if err != nil {
		return err
	}
	defer func() { _ = conn.CloseLasting() }()
	for _, fam := range []nftables.TableFamily{nftables.TableFamilyINet, nftables.TableFamilyNetdev} {
		if err := ctx.Err(); err != nil {
			return err
		}
		t := &nftables.Table{Name: cfg.Table, Family: fam}
		if _, err := conn.ListTableOfFamily(cfg.Table, fam); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return fmt.Errorf("nft: look up table %s: %w", cfg.Table, err)
		}
		conn.DelTable(t)
		if err := conn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("nft: delete table %s: %w", cfg.Table, err)
		}
	}
	return nil
}

func (b *Backend) wantChains() []*nftables.Chain {
	prio := nftables.ChainPriorityRef(nftables.ChainPriority(b.cfg.Priority))
	if len(b.cfg.Interfaces) > 0 {
		var cs []*nftables.Chain
		for _, ifc := range b.cfg.Interfaces {
			cs = append(cs, &nftables.Chain{
				Name: "moat-ingress-" + ifc, Table: b.table, Type: nftables.ChainTypeFilter,
				Hooknum: nftables.ChainHookIngress, Priority: prio, Device: ifc,
			})
		}
		return cs
	}
	hook := nftables.ChainHookPrerouting
	if b.cfg.Hook == "input" {
		hook = nftables.ChainHookInput
	}
	return []*nftables.Chain{{
		Name: "moat-" + b.cfg.Hook, Table: b.table, Type: nftables.ChainTypeFilter,
		Hooknum: hook, Priority: prio,
	}}
}

// Ensure re-creates whatever part of moat's table is missing (the table,
// a set, a chain, a drop rule) without touching set elements, and removes
// rules in moat's chains that moat did not write. The verify pass calls it
// before List.
func (b *Backend) Ensure(ctx context.Context) error {
	created, err := b.ensure(ctx)
	if err != nil {
		return err
	}
	// A re-created single set is empty; the ranges of a re-created range
	// set are put back by the next Apply, which reads the kernel first.
	for f, s := range b.single {
		if created[s.Name] {
			b.known.clear(family(f))
		}
	}
	return nil
}

// ensure creates what is missing and reports which sets it created.
func (b *Backend) ensure(ctx context.Context) (map[string]bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	tableExists := true
	if _, err := b.conn.ListTableOfFamily(b.table.Name, b.table.Family); err != nil {
		if !errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("nft: look up table %s: %w", b.table.Name, err)
		}
		tableExists = false
	}
	have := map[string]bool{}
	if tableExists {
		sets, err := b.conn.GetSets(b.table)
		if err != nil {
			return nil, fmt.Errorf("nft: list sets of table %s: %w", b.table.Name, err)
		}
		for _, s := range sets {
			have[s.Name] = true
		}
	}
	if !tableExists {
		b.conn.AddTable(b.table)
	}
	created := map[string]bool{}
	for _, s := range []*nftables.Set{b.single[fam4], b.single[fam6], b.ranged[fam4], b.ranged[fam6]} {
		if have[s.Name] {
			continue
		}
		if err := b.conn.AddSet(s, nil); err != nil {
			return nil, fmt.Errorf("nft: add set %s: %w", s.Name, err)
		}
		created[s.Name] = true
	}
	// Steady state sends nothing: a verify pass should not commit a
	// transaction. Should the look-up fail for another reason than absence,
	// adding an existing base chain with the same hook is a no-op update.
	for _, c := range b.chains {
		if !tableExists {
			b.conn.AddChain(c)
		} else if _, err := b.conn.ListChain(b.table, c.Name); err != nil {
			b.conn.AddChain(c)
		}
	}
	// A chain left by another Hook setting would keep dropping on its own.
	if len(b.cfg.Interfaces) == 0 && tableExists {
		for _, hook := range []string{"prerouting", "input"} {
			if hook == b.cfg.Hook {
				continue
			}
			if _, err := b.conn.ListChain(b.table, "moat-"+hook); err == nil {
				b.conn.DelChain(&nftables.Chain{Name: "moat-" + hook, Table: b.table})
			}
		}
	}
	if err := b.flush("table, sets and chains"); err != nil {
		return nil, err
	}
	for _, c := range b.chains {
		if err := b.ensureRules(c); err != nil {
			return nil, err
		}
	}
	if err := b.flush("drop rules"); err != nil {
		return nil, err
	}
	return created, nil
}

// dropRule builds `<family match> <saddr> @set counter drop`.
func (b *Backend) dropRule(c *nftables.Chain, s *nftables.Set, f family) *nftables.Rule {
	var proto expr.Any
	var protoData []byte
	if b.table.Family == nftables.TableFamilyNetdev {
		proto = &expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1}
		protoData = binaryutil.BigEndian.PutUint16(unix.ETH_P_IP)
		if f == fam6 {
			protoData = binaryutil.BigEndian.PutUint16(unix.ETH_P_IPV6)
		}
	} else {
		proto = &expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}
		protoData = []byte{unix.NFPROTO_IPV4}
		if f == fam6 {
			protoData = []byte{unix.NFPROTO_IPV6}
		}
	}
	off, n := uint32(12), uint32(4)
	if f == fam6 {
		off, n = 8, 16
	}
	return &nftables.Rule{Table: b.table, Chain: c, Exprs: []expr.Any{
		proto,
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: protoData},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Lookup{SourceRegister: 1, SetName: s.Name},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}}
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
	return set, cnt, set != "" && drop && counter && len(r.Exprs) == 6
}

// ensureRules queues the drop rules missing from c and the deletion of
// rules moat did not write.
func (b *Backend) ensureRules(c *nftables.Chain) error {
	rules, err := b.conn.GetRules(b.table, c)
	if err != nil {
		return fmt.Errorf("nft: list rules of chain %s: %w", c.Name, err)
	}
	want := map[string]family{
		b.single[fam4].Name: fam4, b.ranged[fam4].Name: fam4,
		b.single[fam6].Name: fam6, b.ranged[fam6].Name: fam6,
	}
	seen := map[string]bool{}
	for _, r := range rules {
		set, _, ok := ruleSet(r)
		if _, wanted := want[set]; ok && wanted && !seen[set] {
			seen[set] = true
			continue
		}
		if err := b.conn.DelRule(&nftables.Rule{Table: b.table, Chain: c, Handle: r.Handle}); err != nil {
			return fmt.Errorf("nft: delete foreign rule %d in chain %s: %w", r.Handle, c.Name, err)
		}
	}
	for _, s := range []*nftables.Set{b.single[fam4], b.ranged[fam4], b.single[fam6], b.ranged[fam6]} {
		if !seen[s.Name] {
			b.conn.AddRule(b.dropRule(c, s, want[s.Name]))
		}
	}
	return nil
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

func isSingle(p netip.Prefix) bool { return p.Bits() == p.Addr().BitLen() }

// timeoutFor converts an absolute expiry into a kernel timeout, rounded up
// to the kernel's millisecond; ok is false when it has already passed.
func timeoutFor(exp, now time.Time) (time.Duration, bool) {
	if exp.IsZero() {
		return 0, true
	}
	d := exp.Sub(now)
	if d <= 0 {
		return 0, false
	}
	return (d + time.Millisecond - 1).Truncate(time.Millisecond), true
}

// txn queues element messages and commits when a transaction is full, but
// only between groups of messages that must commit together. It encodes
// into two buffers in turn: while the kernel commits one transaction, the
// next is encoded, so the encoding costs no kernel time. Commits still
// happen one after another, in order.
type txn struct {
	b     *Backend
	ctx   context.Context
	limit int
	cur   int // the batch being encoded
	// aborted: the sockets were replaced after an error.
	aborted bool
	// committing carries the result of the commit running in the
	// background; nil when none is.
	committing chan error
}

func (b *Backend) newTxn(ctx context.Context) *txn {
	return &txn{b: b, ctx: ctx, limit: msgsPerTxn}
}

func (t *txn) batch() *batch { return &t.b.batches[t.cur] }

// open starts a message of changes to set s; elements follow with
// t.batch().elem, and closeList ends it.
func (t *txn) open(add bool, s *nftables.Set) *batch {
	w := t.batch()
	w.open(add, byte(s.Table.Family), s.Table.Name, s.Name)
	return w
}

// boundary commits if the transaction is full.
func (t *txn) boundary(what string) error {
	if t.batch().msgs < t.limit {
		return nil
	}
	return t.commit(what, false)
}

// commit sends what is queued once the previous commit is done, and returns
// that previous commit's result. In the background while more is encoded
// (wait collects it); inline for the last one, which has nothing to overlap
// with: a single ban should not pay for a handoff.
func (t *txn) commit(what string, inline bool) error {
	w := t.batch()
	if w.empty() {
		return nil
	}
	if err := t.wait(); err != nil {
		return err
	}
	if err := t.ctx.Err(); err != nil {
		return t.abort(err)
	}
	t.cur = 1 - t.cur
	if inline {
		if err := t.b.commitBatch(w, what); err != nil {
			return t.abort(err)
		}
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- t.b.commitBatch(w, what) }()
	t.committing = done
	return nil
}

// commitBatch sends w as one transaction and empties it for reuse.
func (b *Backend) commitBatch(w *batch, what string) error {
	defer w.reset()
	if err := b.elems.send(w); err != nil {
		return fmt.Errorf("nft: commit %s in table %s: %w", what, b.table.Name, err)
	}
	return nil
}

// wait returns the result of the commit running in the background.
func (t *txn) wait() error {
	if t.committing == nil {
		return nil
	}
	err := <-t.committing
	t.committing = nil
	if err != nil {
		return t.abort(err)
	}
	return nil
}

// finish commits what is queued and waits for every commit.
func (t *txn) finish(what string) error {
	if err := t.commit(what, true); err != nil {
		return err
	}
	return t.wait()
}

// abort drops the sockets and the batches, with whatever they still had
// queued.
func (t *txn) abort(err error) error {
	if t.committing != nil {
		<-t.committing
		t.committing = nil
	}
	if !t.aborted {
		t.aborted = true
		t.b.reconnect()
	}
	return err
}

// Apply implements enforce.Backend. Single addresses are added to ban4/ban6
// with a timeout of expiry-now; a changed expiry deletes and re-adds the
// element in one transaction so the kernel really takes the new timeout;
// deletes first re-add the element so a delete of something the kernel
// already expired cannot fail the transaction. Ranges are normalised into
// disjoint segments and only the segment difference against what the kernel
// holds is committed, in one transaction.
func (b *Backend) Apply(ctx context.Context, d enforce.Diff) (err error) {
	// classify notes each change in b.known before it is sent: after a
	// failure, known is only a guess.
	defer func() {
		if err != nil {
			b.knownComplete = false
		}
	}()
	t := b.newTxn(ctx)
	now := b.now()
	// Single addresses go out a chunk at a time while the diff is still
	// being read, so the kernel commits one transaction while the next is
	// classified and encoded.
	parts := &b.parts
	for f := range parts {
		parts[f].reset()
	}
	single := func(p netip.Prefix, ps pending, del bool) error {
		f := familyOf(p.Addr())
		return b.sendSingles(t, b.single[f], parts[f].classify(b, ps, del), false)
	}
	var rangeTouched [2]bool
	for _, e := range d.Set {
		p := model.Canonical(e.Prefix)
		if !p.IsValid() {
			return t.abort(fmt.Errorf("nft: invalid prefix %v", e.Prefix))
		}
		if isSingle(p) {
			_, live := timeoutFor(e.Expiry, now)
			if err := single(p, pending{addr: p.Addr(), expiry: e.Expiry}, !live); err != nil {
				return t.abort(err)
			}
			continue
		}
		f := familyOf(p.Addr())
		b.ranges[f][p] = e.Expiry
		rangeTouched[f] = true
	}
	for _, p := range d.Delete {
		p = model.Canonical(p)
		if !p.IsValid() {
			return t.abort(fmt.Errorf("nft: invalid prefix %v", p))
		}
		if isSingle(p) {
			if err := single(p, pending{addr: p.Addr()}, true); err != nil {
				return t.abort(err)
			}
			continue
		}
		f := familyOf(p.Addr())
		delete(b.ranges[f], p)
		rangeTouched[f] = true
	}
	for f := range parts {
		if err := b.sendSingles(t, b.single[f], &parts[f], true); err != nil {
			return t.abort(err)
		}
	}
	if err := b.applyRanges(t, rangeTouched); err != nil {
		return t.abort(err)
	}
	return t.finish("set elements")
}

// singleOps are the single-address changes of one family waiting to be
// sent, by how they are sent: fresh elements are added, refreshed ones
// re-added with their new timeout, deleted ones removed. Each list holds at
// most one chunk.
type singleOps struct{ fresh, refresh, del []pending }

func (o *singleOps) reset() {
	o.fresh, o.refresh, o.del = o.fresh[:0], o.refresh[:0], o.del[:0]
}

// classify files one single-address change and notes it in b.known at once
// (see Apply). The diff holds each prefix at most once.
func (o *singleOps) classify(b *Backend, p pending, del bool) *singleOps {
	switch {
	case del:
		b.known.del(p.addr)
		o.del = append(o.del, p)
	case b.known.add(p.addr) || !b.knownComplete:
		o.refresh = append(o.refresh, p)
	default:
		o.fresh = append(o.fresh, p)
	}
	return o
}

func chunkSize(s *nftables.Set) int {
	if s.KeyType.Bytes == 16 {
		return chunk6
	}
	return chunk4
}

// pending is a single element to send, with its absolute expiry.
type pending struct {
	addr   netip.Addr
	expiry time.Time
}

// elemTimeout is the timeout to send for an element. It is taken right
// before the message is encoded, because the kernel starts the clock when it
// commits: an Apply of many transactions must not stretch the last ones.
// fixed, when not zero, replaces it; noTimeout sends none (deletes).
func elemTimeout(expiry time.Time, fixed time.Duration, now time.Time) time.Duration {
	switch fixed {
	case noTimeout:
		return 0
	case 0:
		to, live := timeoutFor(expiry, now)
		if !live {
			// Passed while earlier transactions committed: the kernel's
			// smallest timeout lets it go at once.
			return time.Millisecond
		}
		return to
	}
	return fixed
}

// queueSingles encodes one message of single-address elements.
func (b *Backend) queueSingles(t *txn, add bool, s *nftables.Set, ps []pending, fixed time.Duration) {
	now := b.now()
	w := t.open(add, s)
	for _, p := range ps {
		w.elem(p.addr, elemTimeout(p.expiry, fixed, now), false)
	}
	w.closeList()
}

// sendSingles queues the lists of ops that hold a full chunk, or with all
// whatever they hold, and empties them for reuse.
func (b *Backend) sendSingles(t *txn, s *nftables.Set, ops *singleOps, all bool) error {
	n := chunkSize(s)
	due := func(l []pending) bool { return len(l) > 0 && (all || len(l) >= n) }
	if due(ops.fresh) {
		b.queueSingles(t, true, s, ops.fresh, 0)
		ops.fresh = ops.fresh[:0]
	}
	// add (no-op if present) + delete + add: the element ends with the new
	// timeout whether or not the kernel still had it.
	if due(ops.refresh) {
		b.queueSingles(t, true, s, ops.refresh, ensureTimeout)
		b.queueSingles(t, false, s, ops.refresh, noTimeout)
		b.queueSingles(t, true, s, ops.refresh, 0)
		ops.refresh = ops.refresh[:0]
	}
	if due(ops.del) {
		b.queueSingles(t, true, s, ops.del, ensureTimeout)
		b.queueSingles(t, false, s, ops.del, noTimeout)
		ops.del = ops.del[:0]
	}
	return t.boundary(s.Name + " elements")
}

// queueSegments encodes segments as interval elements: a start element
// with the timeout and an end element one past the last address (omitted
// when the segment reaches the top of the address space).
func queueSegments(t *txn, add bool, s *nftables.Set, segs []segment, now time.Time, fixed time.Duration) {
	w := t.open(add, s)
	for _, sg := range segs {
		w.elem(sg.start, elemTimeout(sg.expiry, fixed, now), false)
		if n := sg.end.Next(); n.IsValid() {
			w.elem(n, 0, true)
		}
	}
	w.closeList()
}

// applyRanges queues and commits, in one transaction, the segment changes
// that bring the kernel's interval sets to the desired ranges.
func (b *Backend) applyRanges(t *txn, touched [2]bool) error {
	queued := false
	now := b.now()
	for f := range b.ranged {
		if !touched[f] {
			continue
		}
		s := b.ranged[f]
		// The kernel is the truth for what to remove: segments expire and
		// people flush sets by hand.
		have, err := b.readSegments(s)
		if err != nil {
			return err
		}
		b.pruneRanges(family(f), now)
		want := normalize(b.ranges[f], now)
		del, add := diffSegments(have, want, expiryTolerance)
		// have holds no expired segments (the kernel drops those itself),
		// so each removal first re-adds the segment only to make the
		// delete safe against one that timed out since the read.
		n := chunkSize(s) / 2
		for c := range slices.Chunk(del, n) {
			queueSegments(t, true, s, c, now, ensureTimeout)
			queueSegments(t, false, s, c, now, noTimeout)
			queued = true
		}
		for c := range slices.Chunk(add, n) {
			queueSegments(t, true, s, c, now, 0)
			queued = true
		}
	}
	if !queued {
		return nil
	}
	return t.commit("range elements", false)
}

// pruneRanges forgets desired ranges whose expiry has passed: the kernel has
// dropped them, and the reconciler does not delete what expires on its own.
func (b *Backend) pruneRanges(f family, now time.Time) {
	for p, exp := range b.ranges[f] {
		if !exp.IsZero() && !exp.After(now) {
			delete(b.ranges[f], p)
		}
	}
}

// readSegments reads an interval set and pairs its start and end elements
// back into segments, sorted.
func (b *Backend) readSegments(s *nftables.Set) ([]segment, error) {
	els, err := b.readElements(s)
	if err != nil {
		return nil, err
	}
	type point struct {
		addr    netip.Addr
		end     bool
		expiry  time.Time
		expired bool
	}
	pts := make([]point, 0, len(els))
	for _, e := range els {
		// An expired start waits for the set's garbage collection: it no
		// longer matches packets and does not block new elements.
		pts = append(pts, point{addr: e.addr, end: e.end, expiry: e.expiry, expired: e.expired && !e.end})
	}
	// An end and the next start may share an address; the end goes first.
	slices.SortFunc(pts, func(x, y point) int {
		if c := x.addr.Compare(y.addr); c != 0 {
			return c
		}
		switch {
		case x.end == y.end:
			return 0
		case x.end:
			return -1
		default:
			return 1
		}
	})
	var segs []segment
	var open *point
	emit := func(end netip.Addr) {
		if !open.expired {
			segs = append(segs, segment{start: open.addr, end: end, expiry: open.expiry})
		}
		open = nil
	}
	for i := range pts {
		p := &pts[i]
		if p.end {
			if open != nil {
				emit(p.addr.Prev())
			}
			continue
		}
		if open != nil {
			emit(p.addr.Prev())
		}
		open = p
	}
	if open != nil {
		top := netip.IPv4Unspecified()
		if open.addr.Is6() {
			top = netip.IPv6Unspecified()
		}
		emit(lastAddr(netip.PrefixFrom(top, 0)))
	}
	return segs, nil
}

// List implements enforce.Backend: it reads every element over netlink.
// Ranges are reported as the prefixes Apply was given when the kernel holds
// them in full; segments nothing explains (added by hand, or left from
// before) are reported as the CIDR prefixes that make them up.
func (b *Backend) List(ctx context.Context) ([]enforce.Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []enforce.Entry
	known := newAddrSet(len(b.known.v4), len(b.known.v6))
	for _, s := range b.single {
		els, err := b.readElements(s)
		if err != nil {
			return nil, err
		}
		for _, e := range els {
			known.add(e.addr)
			out = append(out, enforce.Entry{Prefix: netip.PrefixFrom(e.addr, e.addr.BitLen()), Expiry: e.expiry})
		}
	}
	b.known, b.knownComplete = known, true
	for f, s := range b.ranged {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		now := b.now()
		have, err := b.readSegments(s)
		if err != nil {
			return nil, err
		}
		b.pruneRanges(family(f), now)
		reported := map[netip.Prefix]bool{}
		for p, exp := range b.ranges[f] {
			if covered(have, p, exp, expiryTolerance) {
				out = append(out, enforce.Entry{Prefix: p, Expiry: exp})
				reported[p] = true
			}
		}
		want := normalize(b.ranges[f], now)
		del, _ := diffSegments(have, want, expiryTolerance)
		for _, sg := range del {
			for _, p := range rangePrefixes(sg.start, sg.end) {
				if !reported[p] {
					out = append(out, enforce.Entry{Prefix: p, Expiry: sg.expiry})
					reported[p] = true
				}
			}
		}
	}
	return out, nil
}
