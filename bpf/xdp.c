//go:build ignore

// moat's XDP ban filter. The source address of every IPv4 and IPv6 packet is
// looked up first in a hash map of single addresses, then in an LPM trie of
// ranges, per family. A hit whose expiry (CLOCK_BOOTTIME ns, 0 = never) has
// not passed drops the packet; an expired hit is ignored, so a ban ends on
// time even if userspace never removes it.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char __license[] SEC("license") = "GPL";

struct ban {
	__u64 expires_ns;
};

struct lpm4 {
	__u32 prefixlen;
	__u8 addr[4];
};

struct lpm6 {
	__u32 prefixlen;
	__u8 addr[16];
};

struct addr6 {
	__u8 addr[16];
};

// max_entries are placeholders: the Go loader sets them before load.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ban);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} moat_single4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1);
	__type(key, struct addr6);
	__type(value, struct ban);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} moat_single6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1);
	__type(key, struct lpm4);
	__type(value, struct ban);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} moat_range4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1);
	__type(key, struct lpm6);
	__type(value, struct ban);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} moat_range6 SEC(".maps");

// Destination ports no ban may close (enforce.never_block). Not pinned: it
// belongs to one loaded program, and the loader fills it before attaching,
// so a restart with another list swaps both at once.
struct open_port {
	__u8 proto;
	__u8 pad;
	__be16 port;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct open_port);
	__type(value, __u8);
} moat_open SEC(".maps");

// All counters share one per-CPU slot, so a packet costs one lookup.
struct stats {
	__u64 drop_packets;
	__u64 drop_bytes;
	__u64 pass_packets;
	__u64 expired_hits;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} moat_stats SEC(".maps");

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

// verdict returns 1 for an active ban, 0 for none. *expired is set when a
// ban was found whose time has passed.
static __always_inline int verdict(struct ban *b, __u64 *now, int *expired)
{
	if (!b)
		return 0;
	if (b->expires_ns == 0)
		return 1;
	if (*now == 0)
		*now = bpf_ktime_get_boot_ns();
	if (b->expires_ns > *now)
		return 1;
	*expired = 1;
	return 0;
}

// Set by the loader when never_block lists ports. A constant: with none,
// the verifier removes the port check, so a ban's drop costs what it did
// before never_block existed.
volatile const __u8 check_open_ports = 0;

// never_blocked reports whether the TCP or UDP packet whose L4 header
// starts at l4 goes to an open port. It runs only for a banned source, so
// traffic from everyone else pays nothing for it. Both headers start with
// the source port then the destination port.
static __always_inline int never_blocked(__u8 proto, void *l4, void *data_end)
{
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return 0;
	__be16 *ports = l4;
	if ((void *)(ports + 2) > data_end)
		return 0;
	struct open_port k = {.proto = proto, .port = ports[1]};
	return bpf_map_lookup_elem(&moat_open, &k) != NULL;
}

SEC("xdp")
int moat_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u64 now = 0;
	int expired = 0;
	int hit = 0;

	__u16 proto = 0;
	void *cur = eth + 1;

	if (cur > data_end)
		goto out;
	proto = eth->h_proto;

#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		struct vlan_hdr *vh = cur;
		if ((void *)(vh + 1) > data_end)
			goto out;
		proto = vh->proto;
		cur = vh + 1;
	}

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = cur;
		if ((void *)(ip + 1) > data_end)
			goto out;
		__u32 src = ip->saddr;
		hit = verdict(bpf_map_lookup_elem(&moat_single4, &src), &now, &expired);
		if (!hit) {
			struct lpm4 k = {.prefixlen = 32};
			__builtin_memcpy(k.addr, &src, 4);
			hit = verdict(bpf_map_lookup_elem(&moat_range4, &k), &now, &expired);
		}
		// A fragment past the first has no ports: it stays dropped.
		if (hit && check_open_ports && ip->ihl >= 5 && !(ip->frag_off & bpf_htons(0x1fff)) &&
		    never_blocked(ip->protocol, (void *)ip + ip->ihl * 4, data_end))
			hit = 0;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = cur;
		if ((void *)(ip6 + 1) > data_end)
			goto out;
		struct addr6 a;
		__builtin_memcpy(a.addr, &ip6->saddr, 16);
		hit = verdict(bpf_map_lookup_elem(&moat_single6, &a), &now, &expired);
		if (!hit) {
			struct lpm6 k = {.prefixlen = 128};
			__builtin_memcpy(k.addr, a.addr, 16);
			hit = verdict(bpf_map_lookup_elem(&moat_range6, &k), &now, &expired);
		}
		// Only a TCP or UDP header right after the fixed header is
		// looked at: behind extension headers the packet stays dropped.
		if (hit && check_open_ports && never_blocked(ip6->nexthdr, ip6 + 1, data_end))
			hit = 0;
	}

out:;
	// Malformed frames end up here too, so passed counts every frame that
	// was not dropped.
	__u32 zero = 0;
	struct stats *st = bpf_map_lookup_elem(&moat_stats, &zero);
	if (st) {
		st->expired_hits += expired;
		if (hit) {
			st->drop_packets++;
			st->drop_bytes += data_end - data;
		} else {
			st->pass_packets++;
		}
	}
	return hit ? XDP_DROP : XDP_PASS;
}
