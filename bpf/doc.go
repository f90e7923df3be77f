// Package bpf loads moat's XDP ban filter (xdp.c), pins its maps and links
// under a bpffs directory so that bans and the attachment outlive the daemon,
// and hides the kernel key formats behind netip.Prefix.
//
// It is the only package of moat that imports github.com/cilium/ebpf.
// Expiries here are CLOCK_BOOTTIME nanoseconds, the clock the program reads;
// converting from wall-clock time is the caller's business.
//
// Pins in the pin directory (default /sys/fs/bpf/moat), all removed by
// Cleanup and nothing else:
//
//	moat_single4, moat_single6  HASH of single addresses, checked first
//	moat_range4, moat_range6    LPM_TRIE of ranges
//	moat_stats                  per-CPU counters
//	xdp_drv_<ifname>            link in native mode
//	xdp_skb_<ifname>            link in generic (skb) mode
//
// The program itself is not pinned: the links hold it, and a new Load swaps
// its own program into them. Nor is moat_open, the open ports
// (enforce.never_block) a banned source's TCP or UDP packets still reach:
// it belongs to one loaded program and Load fills it before any attach.
//
// Port-scoped bans are not enforced here. Honouring them would mean
// reading the L4 header of every packet and a second map keyed by address
// and port; they are a service's few bans, which nftables holds (see
// enforce/nft). The ports are read only once a source is found banned, so
// unbanned traffic pays nothing for never_block, and not at all when the
// program is loaded without open ports (a constant set at load).
package bpf
