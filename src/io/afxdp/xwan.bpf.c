// SPDX-License-Identifier: MIT OR Apache-2.0
//
// xwan's XDP program: it hands to the AF_XDP socket of the receiving
// (interface, queue) only the frames xwan owns, and returns XDP_PASS for
// everything else, so the kernel keeps ARP, IPv6, the router's own traffic
// and bypassed prefixes. A frame redirected here that the core still leaves
// to the kernel is not lost: the workers punt it to the kernel (punt.rs).
//
// One program is loaded once and attached to the LAN and to every WAN
// interface; the `ifaces` map tells it which interface it runs on.
//
// What is xwan's:
// - on the LAN: untagged IPv4 from a LAN prefix, not to a LAN prefix, not to
//   a bypass prefix, not to a broadcast or multicast address (MAC or IP), and
//   not to one of the router's own addresses unless it is a WAN address and
//   the TCP or UDP destination port is forwarded on it or in the NAT range
//   (hairpinning, both ways: the core's), or a TCP or UDP fragment (below);
// - on a WAN: IPv4 addressed to that WAN's own address, and
//   - TCP or UDP whose destination port is in the NAT range or is a port
//     forwarded on that address;
//   - ICMP echo replies whose identifier is in the NAT range (the core maps
//     echo identifiers into the NAT range like ports);
//   - ICMP errors (destination unreachable, time exceeded, parameter
//     problem) that quote a packet xwan sent from this address: the quoted
//     IPv4 header must be complete, its source must be this WAN's address,
//     and the first 8 bytes of its L4 header must be present, with
//       TCP/UDP: a source port in the NAT range or forwarded on this
//                address for that protocol,
//       ICMP:    an echo request whose identifier is in the NAT range.
//     Quoted packets that are non-first fragments carry no ports and are
//     left to the kernel.
//   - every fragment, first or later, whatever it carries: the core
//     translates those of its flows, holds a later one that comes before its
//     first, and punts to the kernel those of a packet whose first fragment
//     is the kernel's (a later fragment has no ports to look at, and may
//     come first).
// - on the LAN, every TCP or UDP fragment, first or later, to a WAN address
//   (`local_addrs` value WAN_ADDR): the core hairpins those of forwarded or
//   NAT ports, holds a later one that comes before its first, and punts the
//   router's own. (Fragments to a non-local destination are the core's
//   anyway.)
// TTL is not looked at: a frame xwan owns whose TTL expires here is the
// core's, which answers ICMP time exceeded itself.
// Frames of flows on the in-kernel fast path (offload.bpf.h), looked up first,
// before the rules above (an entry exists only for a flow xwan took), are
// rewritten and redirected here when their egress interface accepts XDP frames and their
// checksum is complete; otherwise they are XDP_PASS, marked in their source
// MAC (TC drops, counted, a marked frame it cannot forward), for its TC program.
// Everything else is XDP_PASS. When the XSKMAP has no socket for the
// (interface, queue) slot, bpf_redirect_map falls back to XDP_PASS too.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

// Must match MAX_INTERFACES and MAX_QUEUES in program.rs.
#define MAX_INTERFACES 65
#define MAX_QUEUES 64
#define MAX_PREFIXES 1024
#define MAX_ADDRESSES 256
#define MAX_FORWARDS 4096

#define ROLE_LAN 0
#define ROLE_WAN 1

// The local_addrs value of a WAN address (program.rs; the router's other
// addresses have 1).
#define WAN_ADDR 2

#define ICMP_ECHOREPLY 0
#define ICMP_DEST_UNREACH 3
#define ICMP_ECHO 8
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12

#define IP_OFFSET 0x1fff
#define IP_MF 0x2000

#include "offload.bpf.h"

// Per attached interface, keyed by ifindex.
struct iface {
	__u32 slot; // index of the interface in xwan's list: XSKMAP key = slot * MAX_QUEUES + queue
	__u32 role; // ROLE_LAN or ROLE_WAN
	__be32 wan_addr; // a WAN's own (SNAT) address, network order; 0 on the LAN
};

struct prefix_key {
	__u32 prefixlen;
	__be32 addr;
};

struct forward_key {
	__be32 addr;
	__be16 port;
	__u8 proto;
	__u8 pad;
};

struct settings {
	__u16 nat_lo; // host order
	__u16 nat_hi;
};

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, MAX_INTERFACES * MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_INTERFACES);
	__type(key, __u32);
	__type(value, struct iface);
} ifaces SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_PREFIXES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct prefix_key);
	__type(value, __u8);
} lan_nets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_PREFIXES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct prefix_key);
	__type(value, __u8);
} bypass_nets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_ADDRESSES);
	__type(key, __be32);
	__type(value, __u8);
} local_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_FORWARDS);
	__type(key, struct forward_key);
	__type(value, __u8);
} forwards SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct settings);
} settings SEC(".maps");

static __always_inline int in_prefixes(void *map, __be32 addr)
{
	struct prefix_key key = { .prefixlen = 32, .addr = addr };

	return bpf_map_lookup_elem(map, &key) != NULL;
}

static __always_inline int in_nat_range(const struct settings *s, __be16 port)
{
	__u16 p = bpf_ntohs(port);

	return p >= s->nat_lo && p <= s->nat_hi;
}

static __always_inline int is_forward(__be32 addr, __u8 proto, __be16 port)
{
	struct forward_key key = { .addr = addr, .port = port, .proto = proto, .pad = 0 };

	return bpf_map_lookup_elem(&forwards, &key) != NULL;
}

// Multicast 224.0.0.0/4, and 240.0.0.0/4 with the limited broadcast
// 255.255.255.255 in it.
static __always_inline int is_multicast_or_broadcast(__be32 addr)
{
	return (bpf_ntohl(addr) & 0xe0000000) == 0xe0000000;
}

static __always_inline int is_fragment(const struct iphdr *ip)
{
	return (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)) != 0;
}

// To one of the router's own addresses (`local`, its local_addrs value)
// from the LAN: the core's only when it may hairpin it: a TCP or UDP port
// forwarded on that WAN address, or the target's answer to a NAT port; a
// fragment to a WAN address, which may be a later one with no ports.
static __always_inline int lan_hairpin(const struct settings *s, const struct iphdr *ip,
				       __u8 local, __u8 *l4, void *data_end)
{
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return 0;
	if (local != WAN_ADDR)
		return 0;
	if (is_fragment(ip))
		return 1;
	if ((void *)(l4 + 4) > data_end)
		return 0;

	__be16 dport = *(__be16 *)(l4 + 2);

	return in_nat_range(s, dport) || is_forward(ip->daddr, ip->protocol, dport);
}

static __always_inline int lan_owns(const struct settings *s, const struct iphdr *ip, __u8 *l4,
				    void *data_end)
{
	if (!in_prefixes(&lan_nets, ip->saddr))
		return 0;
	if (in_prefixes(&lan_nets, ip->daddr))
		return 0;
	if (is_multicast_or_broadcast(ip->daddr))
		return 0;
	__u8 *local = bpf_map_lookup_elem(&local_addrs, &ip->daddr);

	if (local)
		return lan_hairpin(s, ip, *local, l4, data_end);
	if (in_prefixes(&bypass_nets, ip->daddr))
		return 0;
	return 1;
}

// An ICMP error quoting a packet xwan sent from `wan_addr`.
static __always_inline int wan_owns_icmp_error(const struct settings *s, __be32 wan_addr,
					       void *inner, void *data_end)
{
	struct iphdr *qip = inner;

	if ((void *)(qip + 1) > data_end)
		return 0;
	if (qip->version != 4 || qip->ihl < 5 || qip->saddr != wan_addr)
		return 0;
	if (qip->frag_off & bpf_htons(IP_OFFSET))
		return 0;

	__u32 qlen = (qip->ihl & 0xf) * 4;
	__u8 *ql4 = (__u8 *)qip + qlen;

	if ((void *)(ql4 + 8) > data_end)
		return 0;

	switch (qip->protocol) {
	case IPPROTO_TCP:
	case IPPROTO_UDP: {
		__be16 sport = *(__be16 *)ql4;

		return in_nat_range(s, sport) || is_forward(wan_addr, qip->protocol, sport);
	}
	case IPPROTO_ICMP:
		// Quoted echo request: type, code, checksum, identifier.
		return ql4[0] == ICMP_ECHO && in_nat_range(s, *(__be16 *)(ql4 + 4));
	default:
		return 0;
	}
}

static __always_inline int wan_owns(const struct settings *s, __be32 wan_addr,
				    const struct iphdr *ip, __u8 *l4, void *data_end)
{
	if (ip->daddr != wan_addr)
		return 0;
	if (is_fragment(ip))
		return 1;
	if ((void *)(l4 + 8) > data_end)
		return 0;

	switch (ip->protocol) {
	case IPPROTO_TCP:
	case IPPROTO_UDP: {
		__be16 dport = *(__be16 *)(l4 + 2);

		return in_nat_range(s, dport) || is_forward(wan_addr, ip->protocol, dport);
	}
	case IPPROTO_ICMP:
		switch (l4[0]) {
		case ICMP_ECHOREPLY:
			return in_nat_range(s, *(__be16 *)(l4 + 4));
		case ICMP_DEST_UNREACH:
		case ICMP_TIME_EXCEEDED:
		case ICMP_PARAMETERPROB:
			return wan_owns_icmp_error(s, wan_addr, l4 + 8, data_end);
		default:
			return 0;
		}
	default:
		return 0;
	}
}

SEC("xdp")
int xwan_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 ifindex = ctx->ingress_ifindex;
	__u32 zero = 0;

	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	// IPv6: the fast path's frames (offload.bpf.h); the rest is the kernel's.
	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		int verdict = offload6_xdp(eth, data_end, ifindex);

		return verdict >= 0 ? verdict : XDP_PASS;
	}
	// Tagged frames (EtherType 802.1Q / 802.1ad) and anything but IPv4
	// stay with the kernel, and so do broadcast and multicast frames.
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	if (eth->h_dest[0] & 1)
		return XDP_PASS;

	struct iphdr *ip = (void *)(eth + 1);

	if ((void *)(ip + 1) > data_end)
		return XDP_PASS;
	if (ip->version != 4 || ip->ihl < 5)
		return XDP_PASS;

	__u32 hlen = (ip->ihl & 0xf) * 4;
	__u8 *l4 = (__u8 *)ip + hlen;

	if ((void *)l4 > data_end)
		return XDP_PASS;

	// The in-kernel fast path's (offload.bpf.h) first, before the ownership
	// lookups: an entry exists only for a flow the core took, keyed by the
	// interface its frames arrive on, and TC would take its frames anyway.
	struct offload_key offload_key;
	struct offload_entry *entry = offload_eligible(ifindex, ip, data_end, 0,
						       (__u32)(data_end - (void *)ip), &offload_key);

	if (entry) {
		int verdict = offload_xdp_forward(eth, ip, data_end, &offload_key, entry);

		if (verdict >= 0)
			return verdict;
		offload_mark(eth);
		return XDP_PASS;
	}

	struct iface *iface = bpf_map_lookup_elem(&ifaces, &ifindex);
	struct settings *s = bpf_map_lookup_elem(&settings, &zero);

	if (!iface || !s)
		return XDP_PASS;

	int owned;

	if (iface->role == ROLE_LAN)
		owned = lan_owns(s, ip, l4, data_end);
	else
		owned = wan_owns(s, iface->wan_addr, ip, l4, data_end);
	if (!owned)
		return XDP_PASS;
	if (ctx->rx_queue_index >= MAX_QUEUES)
		return XDP_PASS;

	__u32 key = iface->slot * MAX_QUEUES + ctx->rx_queue_index;

	return bpf_redirect_map(&xsks, key, XDP_PASS);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
