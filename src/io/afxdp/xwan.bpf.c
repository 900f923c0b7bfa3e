// SPDX-License-Identifier: MIT OR Apache-2.0
//
// xwan's XDP program: it hands to the AF_XDP socket of the receiving
// (interface, queue) only the frames xwan owns, and returns XDP_PASS for
// everything else, so the kernel keeps ARP, Neighbour Discovery, the router's
// own traffic and bypassed prefixes. A frame redirected here that the core
// still leaves to the kernel is not lost: the workers punt it to the kernel
// (punt.rs).
//
// One program is loaded once and attached to the LAN and to every WAN
// interface; the `ifaces` map tells it which interface it runs on. Tagged
// frames (EtherType 802.1Q / 802.1ad), broadcast and multicast frames, and
// anything but IPv4 and IPv6 stay with the kernel.
//
// What of IPv4 is xwan's:
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
//
// What of IPv6 is xwan's (xdp_ipv6; the core's rules, src/router/ipv6, as
// --io packet's `table ip6 xwan` mirrors them). The extension headers are
// walked (at most MAX_EXTENSIONS6) to the upper layer; a Hop-by-Hop header,
// or a routing header with segments left, leaves the packet to the kernel.
// - on the LAN: IPv6 from a LAN prefix, not to a LAN prefix, not to a
//   multicast (ff00::/8), link-local (fe80::/10), unspecified or loopback
//   address, not from a link-local one, not to one of the router's own
//   addresses (`local_addrs6`: the core hairpins no IPv6), not to a bypass
//   prefix, and not ICMPv6 other than echo and errors (Neighbour Discovery,
//   MLD and router advertisements are the kernel's whatever their
//   addresses); a later fragment, whose upper layer is not there, is the
//   core's;
// - on a WAN, by that uplink's `nat6`:
//   - masquerade: to its NAT66 address (`wan_addrs6`), TCP or UDP to a port
//     in the NAT range or forwarded on the uplink (`forwards6`), ICMPv6 echo
//     replies whose identifier is in the NAT range, ICMPv6 errors (unreachable,
//     packet too big, time exceeded, parameter problem) quoting a packet xwan
//     sent from that address (as IPv4's: TCP/UDP from a NAT or forwarded
//     port, an echo request with a NAT identifier; a quoted later fragment is
//     the kernel's), and every fragment, as IPv4's;
//   - prefix and npt: to its mapped (outside) prefixes (`wan_prefixes6`),
//     but the router's own addresses in them, and not ICMPv6 other than
//     echo and errors; off: the same with the LAN prefixes it routes.
// The hop limit is not looked at, as IPv4's TTL.
//
// Frames of flows on the in-kernel fast path (offload.bpf.h), looked up first,
// before the rules above (an entry exists only for a flow xwan took), are
// rewritten and redirected here when their egress interface accepts XDP frames and their
// checksum is complete; otherwise they are XDP_PASS, marked in their source
// MAC (TC drops, counted, a marked frame it cannot forward), for its TC program.
// IPv6 the same way: xdp_ipv6 looks its fast path up first.
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

// IPv6 next headers (RFC 8200, 4302) and ICMPv6 types (RFC 4443).
#define NEXT_HOP_BY_HOP 0
#define NEXT_ROUTING 43
#define NEXT_FRAGMENT 44
#define NEXT_AH 51
#define NEXT_ICMPV6 58
#define NEXT_DEST_OPTS 60

#define ICMPV6_DEST_UNREACH 1
#define ICMPV6_PKT_TOOBIG 2
#define ICMPV6_TIME_EXCEED 3
#define ICMPV6_PARAMPROB 4
#define ICMPV6_ECHO_REQUEST 128
#define ICMPV6_ECHO_REPLY 129

// The extension headers walked, as the core's MAX_EXTENSIONS (packet/ipv6.rs).
#define MAX_EXTENSIONS6 8

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

struct prefix6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

// An uplink's outside prefix: the ifindex of its interface first, all of it
// matched (prefixlen = 32 + the prefix's length).
struct wan_prefix6_key {
	__u32 prefixlen;
	__u32 ifindex;
	__u8 addr[16];
};

struct addr6 {
	__u8 bytes[16];
};

// A port forwarded on the NAT66 address of the uplink on `ifindex`.
struct forward6_key {
	__u32 ifindex;
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

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_PREFIXES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct prefix6_key);
	__type(value, __u8);
} lan_nets6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_PREFIXES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct prefix6_key);
	__type(value, __u8);
} bypass_nets6 SEC(".maps");

// The router's own global IPv6 addresses.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_ADDRESSES);
	__type(key, struct addr6);
	__type(value, __u8);
} local_addrs6 SEC(".maps");

// Per WAN interface (ifindex) whose uplink masquerades: its NAT66 address.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_INTERFACES);
	__type(key, __u32);
	__type(value, struct addr6);
} wan_addrs6 SEC(".maps");

// Per WAN interface: the outside prefixes xwan maps the LAN's onto (prefix,
// npt) or the LAN prefixes the uplink routes (off).
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_PREFIXES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct wan_prefix6_key);
	__type(value, __u8);
} wan_prefixes6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_FORWARDS);
	__type(key, struct forward6_key);
	__type(value, __u8);
} forwards6 SEC(".maps");

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

// The frame goes to the AF_XDP socket of its (interface, queue).
static __always_inline int redirect_owned(struct xdp_md *ctx, const struct iface *iface)
{
	if (ctx->rx_queue_index >= MAX_QUEUES)
		return XDP_PASS;

	__u32 key = iface->slot * MAX_QUEUES + ctx->rx_queue_index;

	return bpf_redirect_map(&xsks, key, XDP_PASS);
}

// What the walk of an IPv6 header chain found.
struct chain6 {
	__u8 *l4; // the upper-layer header; NULL when there is none to read
	__u8 proto; // its protocol
	__u8 fragment; // a Fragment header was walked
	__u8 kernel; // a Hop-by-Hop header (but in a quote) or a routing header with segments left
};

// Walks the extension headers from `hdr`, named `next` by the header before
// it, up to the upper layer (as the core's packet/ipv6.rs walk does). A
// later fragment, an ESP or No Next Header payload, a chain cut short or
// longer than MAX_EXTENSIONS6 leave `l4` NULL. In a `quote` (an ICMPv6
// error's) a Hop-by-Hop header is passed over, as the core does.
static __always_inline void walk6(struct chain6 *c, __u8 *hdr, __u8 next, void *data_end,
				  int quote)
{
	c->l4 = NULL;
	c->fragment = 0;
	c->kernel = 0;
	for (int i = 0; i < MAX_EXTENSIONS6; i++) {
		__u32 len;

		c->proto = next;
		switch (next) {
		case NEXT_HOP_BY_HOP:
			if (!quote) {
				c->kernel = 1;
				return;
			}
			break;
		case NEXT_ROUTING:
		case NEXT_FRAGMENT:
		case NEXT_AH:
		case NEXT_DEST_OPTS:
			break;
		default:
			c->l4 = hdr;
			return;
		}
		if ((void *)(hdr + 8) > data_end)
			return;
		if (next == NEXT_FRAGMENT) {
			c->fragment = 1;
			// A later fragment: data, no header.
			if (*(__be16 *)(hdr + 2) & bpf_htons(0xfff8)) {
				c->proto = hdr[0];
				return;
			}
			len = 8;
		} else if (next == NEXT_AH) {
			len = ((__u32)hdr[1] + 2) * 4;
		} else {
			if (next == NEXT_ROUTING && hdr[3] != 0) {
				c->kernel = 1;
				return;
			}
			len = ((__u32)hdr[1] + 1) * 8;
		}
		next = hdr[0];
		hdr += len;
	}
}

static __always_inline int in_prefixes6(void *map, const struct in6_addr *addr)
{
	struct prefix6_key key = { .prefixlen = 128 };

	__builtin_memcpy(key.addr, addr, 16);
	return bpf_map_lookup_elem(map, &key) != NULL;
}

static __always_inline int is_local6(const struct in6_addr *addr)
{
	struct addr6 key;

	__builtin_memcpy(key.bytes, addr, 16);
	return bpf_map_lookup_elem(&local_addrs6, &key) != NULL;
}

static __always_inline int same6(const struct in6_addr *a, const struct addr6 *b)
{
	const __u32 *x = a->in6_u.u6_addr32;
	const __u32 *y = (const __u32 *)b->bytes;

	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}

// fe80::/10, and :: and ::1: never forwarded past the link (RFC 4291).
static __always_inline int link_scope6(const struct in6_addr *addr)
{
	const __u32 *w = addr->in6_u.u6_addr32;

	if ((bpf_ntohl(w[0]) & 0xffc00000) == 0xfe800000)
		return 1;
	return w[0] == 0 && w[1] == 0 && w[2] == 0 && bpf_ntohl(w[3]) <= 1;
}

static __always_inline int is_forward6(__u32 ifindex, __u8 proto, __be16 port)
{
	struct forward6_key key = { .ifindex = ifindex, .port = port, .proto = proto, .pad = 0 };

	return bpf_map_lookup_elem(&forwards6, &key) != NULL;
}

// ICMPv6 the core forwards: echo and the four errors; the rest (Neighbour
// Discovery, MLD, router advertisements) is the kernel's.
static __always_inline int icmp6_forwarded(const struct chain6 *c, void *data_end)
{
	if (c->proto != NEXT_ICMPV6 || !c->l4)
		return 1;
	// Cut short: the core's to count.
	if ((void *)(c->l4 + 1) > data_end)
		return 1;

	__u8 type = c->l4[0];

	return (type >= ICMPV6_DEST_UNREACH && type <= ICMPV6_PARAMPROB) ||
	       type == ICMPV6_ECHO_REQUEST || type == ICMPV6_ECHO_REPLY;
}

static __always_inline int lan_owns6(const struct ipv6hdr *ip6, const struct chain6 *c,
				     void *data_end)
{
	if (!in_prefixes6(&lan_nets6, &ip6->saddr))
		return 0;
	if (link_scope6(&ip6->saddr) || link_scope6(&ip6->daddr))
		return 0;
	if (ip6->daddr.in6_u.u6_addr8[0] == 0xff)
		return 0;
	if (is_local6(&ip6->daddr))
		return 0;
	if (in_prefixes6(&lan_nets6, &ip6->daddr))
		return 0;
	if (in_prefixes6(&bypass_nets6, &ip6->daddr))
		return 0;
	if (c->kernel)
		return 0;
	return icmp6_forwarded(c, data_end);
}

// An ICMPv6 error quoting a packet xwan sent from `wan_addr`, the NAT66
// address of the uplink on `ifindex`.
static __always_inline int wan_owns_icmp6_error(const struct settings *s, __u32 ifindex,
						const struct addr6 *wan_addr, void *inner,
						void *data_end)
{
	struct ipv6hdr *qip = inner;

	if ((void *)(qip + 1) > data_end)
		return 0;
	if (qip->version != 6 || !same6(&qip->saddr, wan_addr))
		return 0;

	struct chain6 q;

	walk6(&q, (__u8 *)(qip + 1), qip->nexthdr, data_end, 1);
	if (q.kernel || !q.l4 || (void *)(q.l4 + 8) > data_end)
		return 0;

	switch (q.proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP: {
		__be16 sport = *(__be16 *)q.l4;

		return in_nat_range(s, sport) || is_forward6(ifindex, q.proto, sport);
	}
	case NEXT_ICMPV6:
		return q.l4[0] == ICMPV6_ECHO_REQUEST && in_nat_range(s, *(__be16 *)(q.l4 + 4));
	default:
		return 0;
	}
}

// To the NAT66 address of the uplink on `ifindex` (masquerade).
static __always_inline int wan_owns_nat66(const struct settings *s, __u32 ifindex,
					  const struct addr6 *wan_addr, const struct chain6 *c,
					  void *data_end)
{
	if (c->kernel)
		return 0;
	if (c->fragment)
		return 1;
	if (!c->l4 || (void *)(c->l4 + 8) > data_end)
		return 0;

	switch (c->proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP: {
		__be16 dport = *(__be16 *)(c->l4 + 2);

		return in_nat_range(s, dport) || is_forward6(ifindex, c->proto, dport);
	}
	case NEXT_ICMPV6:
		switch (c->l4[0]) {
		case ICMPV6_ECHO_REPLY:
			return in_nat_range(s, *(__be16 *)(c->l4 + 4));
		case ICMPV6_DEST_UNREACH:
		case ICMPV6_PKT_TOOBIG:
		case ICMPV6_TIME_EXCEED:
		case ICMPV6_PARAMPROB:
			return wan_owns_icmp6_error(s, ifindex, wan_addr, c->l4 + 8, data_end);
		default:
			return 0;
		}
	default:
		return 0;
	}
}

static __always_inline int wan_owns6(const struct settings *s, __u32 ifindex,
				     const struct ipv6hdr *ip6, const struct chain6 *c,
				     void *data_end)
{
	struct addr6 *wan_addr = bpf_map_lookup_elem(&wan_addrs6, &ifindex);

	if (wan_addr && same6(&ip6->daddr, wan_addr))
		return wan_owns_nat66(s, ifindex, wan_addr, c, data_end);
	if (is_local6(&ip6->daddr))
		return 0;

	struct wan_prefix6_key key = { .prefixlen = 32 + 128, .ifindex = ifindex };

	__builtin_memcpy(key.addr, &ip6->daddr, 16);
	if (!bpf_map_lookup_elem(&wan_prefixes6, &key))
		return 0;
	if (c->kernel)
		return 0;
	return icmp6_forwarded(c, data_end);
}

// An IPv6 frame (its Ethernet header checked, unicast): redirected when the
// rules above make it xwan's.
static __always_inline int xdp_ipv6(struct xdp_md *ctx, struct ethhdr *eth, void *data_end)
{
	__u32 ifindex = ctx->ingress_ifindex;
	__u32 zero = 0;
	struct ipv6hdr *ip6 = (void *)(eth + 1);

	if ((void *)(ip6 + 1) > data_end)
		return XDP_PASS;
	if (ip6->version != 6)
		return XDP_PASS;

	// The in-kernel fast path's (offload.bpf.h) first, as in xwan_xdp.
	int offloaded = offload6_xdp(eth, data_end, ifindex);

	if (offloaded >= 0)
		return offloaded;

	struct iface *iface = bpf_map_lookup_elem(&ifaces, &ifindex);
	struct settings *s = bpf_map_lookup_elem(&settings, &zero);

	if (!iface || !s)
		return XDP_PASS;

	struct chain6 c;

	walk6(&c, (__u8 *)(ip6 + 1), ip6->nexthdr, data_end, 0);

	int owned;

	if (iface->role == ROLE_LAN)
		owned = lan_owns6(ip6, &c, data_end);
	else
		owned = wan_owns6(s, ifindex, ip6, &c, data_end);
	if (!owned)
		return XDP_PASS;
	return redirect_owned(ctx, iface);
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
	// Broadcast and multicast frames, tagged frames (EtherType 802.1Q /
	// 802.1ad) and anything but IPv4 and IPv6 stay with the kernel.
	if (eth->h_dest[0] & 1)
		return XDP_PASS;
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return xdp_ipv6(ctx, eth, data_end);
	if (eth->h_proto != bpf_htons(ETH_P_IP))
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
	return redirect_owned(ctx, iface);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
