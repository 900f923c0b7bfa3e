// SPDX-License-Identifier: MIT OR Apache-2.0
//
// xwan's in-kernel fast path for established flows (included by xwan.bpf.c,
// so both programs share its maps). The userspace core decides which flows
// take it and what their packets become (src/router/offload.rs); the I/O
// layer (src/io/offload) keeps the `offload` map equal to the core's set and
// reads `offload_stats` back into the flow table.
//
// xwan_offload runs at TC ingress (TCX, through a BPF link) on the LAN and
// WAN interfaces. A packet goes the fast way when its (ingress interface,
// 5-tuple) is in `offload` (IPv4) or `offload6` (IPv6) and it is whole (no
// fragment, no IP options, no IPv6 extension header), its TTL or hop limit
// is above 1, it is TCP without SYN, FIN or RST, UDP (IPv6: with a
// checksum, which IPv6 requires), or an ICMP or ICMPv6 echo request or
// reply, and it fits the egress MTU (a GSO super-frame: its segments do, so
// it stays whole). It is then rewritten (MACs, addresses, ports, TTL or hop
// limit, checksums by the precomputed deltas), counted per CPU and
// redirected to the egress interface. Anything else goes on as if the
// program were not there. IPv4 and IPv6 have maps of their own, so IPv4's
// keys and entries keep their size.
//
// With --io xdp, the XDP program runs first and takes the fast path's frames
// (same checks, offload_eligible or offload6_eligible) from the workers: a frame whose egress
// interface accepts XDP frames (`xdp_egress`, kept by xwan from the device's
// NETDEV_XDP_ACT_NDO_XMIT feature) and whose checksum is complete is rewritten
// and redirected right there (offload_xdp_forward, offload6_xdp_forward); any other it passes to the
// kernel, marked (its source MAC), for TC. With --io packet, the workers' AF_PACKET sockets
// see every frame before TC ingress: xwan_offload_tap, their socket filter,
// keeps those frames from them (same checks) and leaves its decision in the
// skb for TC to follow, so none is forwarded twice or lost uncounted.

#define MAX_OFFLOAD 65536

#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04

#define ICMPV6_ECHO_REQUEST 128
#define ICMPV6_ECHO_REPLY 129

#define TCX_NEXT -1
#define TCX_DROP 2
#define TCX_REDIRECT 7

// Matches EntryKey in src/io/offload/map.rs.
struct offload_key {
	__u32 ifindex;
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

// Matches EntryValue in src/io/offload/map.rs. The deltas are folded
// one's-complement sums as the checksum fields hold them (network order);
// the IP one covers the TTL's decrement too.
struct offload_entry {
	__u32 egress_ifindex;
	__u8 src_mac[6];
	__u8 dst_mac[6];
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u16 ip_delta;
	__u16 pseudo_delta;
	__u16 port_delta;
	__u16 mtu; // host order
	__u32 track_seq; // TCP towards the LAN: note the sequence the host expects
};

// Per CPU, per entry. Matches Totals in src/io/offload/map.rs.
struct offload_stats {
	__u64 packets;
	__u64 bytes;
	__u32 next_seq; // host order; 0: none seen
	__u32 seq_stamp; // when this CPU noted next_seq (bpf_ktime_get_ns() >> 20)
};

// A CPU's noted sequence older than this (in 2^20 ns, about a second) is
// replaced, not compared: the flow may have moved on by more than 2^31 bytes
// on other CPUs since.
#define SEQ_STALE 1024

// Allocated entry by entry (BPF_F_NO_PREALLOC): the per-CPU counters of a
// full map would take MAX_OFFLOAD x 24 bytes per possible CPU from the start.
// Entries are added and removed by xwan only, not by the programs.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_OFFLOAD);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct offload_key);
	__type(value, struct offload_entry);
} offload SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, MAX_OFFLOAD);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct offload_key);
	__type(value, struct offload_stats);
} offload_stats SEC(".maps");

// IPv6's key and entry (RFC 8200 addresses, no header checksum), in maps of
// their own. Matches EntryKey6 in src/io/offload/map.rs.
struct offload6_key {
	__u32 ifindex;
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

// Matches EntryValue6 in src/io/offload/map.rs: offload_entry without the IP
// header's delta. The pseudo-header's delta applies to ICMPv6 too, whose
// checksum covers one (unlike ICMP's). A delta is 0 when nothing it covers
// changes (nat6 = "off": no address, no port), so no checksum is touched.
struct offload6_entry {
	__u32 egress_ifindex;
	__u8 src_mac[6];
	__u8 dst_mac[6];
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u16 pseudo_delta;
	__u16 port_delta;
	__u16 mtu; // host order
	__u16 pad;
	__u32 track_seq;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_OFFLOAD);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct offload6_key);
	__type(value, struct offload6_entry);
} offload6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, MAX_OFFLOAD);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct offload6_key);
	__type(value, struct offload_stats);
} offload6_stats SEC(".maps");

// Frames the XDP program passed for the fast path (marked), or the workers'
// socket filter kept from them for it, that TC could not forward after all
// (their entry removed in between): dropped, as the workers would not see
// them and the kernel must not forward them un-NATed.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} offload_lost SEC(".maps");

// Packets the XDP program forwarded itself, per CPU (the rest of the fast
// path's: TC).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} offload_by_xdp SEC(".maps");

// The interfaces the XDP program may redirect rewritten frames to (their
// driver accepts XDP frames: NETDEV_XDP_ACT_NDO_XMIT; a veth only while its
// peer runs an XDP program or has GRO on), keyed by ifindex. Kept by xwan.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65);
	__type(key, __u32);
	__type(value, __u8);
} xdp_egress SEC(".maps");

// In cb[0] of a frame xwan_offload_tap gave the workers (--io packet): TC
// leaves it to them even if its entry appeared in between.
#define WORKERS_MARK 0x7877726bu
// In cb[0] of a frame xwan_offload_tap kept from the workers for the fast
// path (--io packet): TC drops it, counted, if its entry vanished in between,
// as it does a frame the XDP program marked.
#define FAST_MARK 0x78776670u

// The Ethernet source address the XDP program writes into a frame it passes
// to TC for the fast path: "zwanfp", locally administered and unicast. TC
// rewrites both MACs of every frame it forwards and drops, counted, a marked
// frame it cannot forward, so the mark never leaves the box. A plain store
// into a header XDP owns, where XDP metadata (bpf_xdp_adjust_meta) would need
// a helper some kernels refuse (kernel-features.md), and costs less: no
// helper call, no headroom move.
#define OFFLOAD_MARK_MAC { 0x7a, 0x77, 0x61, 0x6e, 0x66, 0x70 }

// Set (before load, in the read-only data the verifier reads as constants)
// when the XDP program is loaded with TC, which marks frames: only then does
// TC look for the mark, so with --io packet a frame's source MAC, whatever a
// host put there, never overrules its socket filter's cb[0] decision.
const volatile __u8 xdp_marks SEC(".rodata.xwan") = 0;

static __always_inline void offload_mark(struct ethhdr *eth)
{
	__u8 mark[6] = OFFLOAD_MARK_MAC;

	__builtin_memcpy(eth->h_source, mark, 6);
}

// The ports of the L4 header at `l4` (bounds-checked up to `data_end`) of a
// `protocol` packet as the keys hold them, if the fast path may take it: TCP
// without SYN, FIN or RST, UDP, or an echo of `icmp` (ICMP or ICMPv6, its
// types `request` and `reply`) whose identifier stands for the source port
// of a request and the destination port of a reply, the other port 0, as in
// the core's keys. Its header's length in `l4_header`. 0: not the fast path's.
static __always_inline int l4_ports(__u8 *l4, void *data_end, __u8 protocol, __u8 icmp,
				    __u8 request, __u8 reply, __be16 *sport, __be16 *dport,
				    __u32 *l4_header)
{
	*l4_header = 8;
	if (protocol == IPPROTO_TCP) {
		if ((void *)(l4 + 20) > data_end)
			return 0;
		if (l4[13] & (TCP_FLAG_SYN | TCP_FLAG_FIN | TCP_FLAG_RST))
			return 0;
		*l4_header = (l4[12] >> 4) * 4;
	} else if (protocol != IPPROTO_UDP && protocol != icmp) {
		return 0;
	}
	if ((void *)(l4 + 8) > data_end)
		return 0;
	if (protocol != icmp) {
		*sport = *(__be16 *)l4;
		*dport = *(__be16 *)(l4 + 2);
	} else if (l4[1] != 0) {
		return 0;
	} else if (l4[0] == request) {
		*sport = *(__be16 *)(l4 + 4);
		*dport = 0;
	} else if (l4[0] == reply) {
		*sport = 0;
		*dport = *(__be16 *)(l4 + 4);
	} else {
		return 0;
	}
	return 1;
}

// Whether a packet of `total` bytes from its IP header fits the egress
// `mtu`; a GSO super-frame (`gso_size`, its payload per segment): whether
// each segment, `headers` bytes of IP and L4 headers and that payload, does.
static __always_inline int fits_mtu(__u16 mtu, __u32 gso_size, __u32 headers, __u32 total)
{
	return gso_size ? headers + gso_size <= mtu : total <= mtu;
}

// The entry for the IPv4 packet at `ip` (headers bounds-checked up to
// `data_end`) arriving on `ifindex`, if the fast path may take it, and its
// key in `key`: `gso_size` is the payload per segment of a GSO super-frame
// (0: a plain packet), `len` the bytes from `ip` to the end of the packet.
static __always_inline struct offload_entry *offload_eligible(__u32 ifindex, struct iphdr *ip,
							      void *data_end, __u32 gso_size,
							      __u32 len, struct offload_key *key)
{
	if ((void *)(ip + 1) > data_end)
		return NULL;
	if (ip->version != 4 || ip->ihl != 5 || ip->ttl <= 1)
		return NULL;
	if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return NULL;
	if (bpf_ntohs(ip->tot_len) > len)
		return NULL;

	__u8 *l4 = (__u8 *)(ip + 1);
	__u32 l4_header;
	__be16 sport, dport;

	if (!l4_ports(l4, data_end, ip->protocol, IPPROTO_ICMP, ICMP_ECHO, ICMP_ECHOREPLY, &sport,
		      &dport, &l4_header))
		return NULL;

	// Headers past the packet's own length (a BIG TCP super-frame's length
	// field is 0, for one) stay with the kernel.
	if (bpf_ntohs(ip->tot_len) < sizeof(struct iphdr) + l4_header)
		return NULL;

	key->ifindex = ifindex;
	key->saddr = ip->saddr;
	key->daddr = ip->daddr;
	key->sport = sport;
	key->dport = dport;
	key->proto = ip->protocol;
	key->pad[0] = 0;
	key->pad[1] = 0;
	key->pad[2] = 0;

	struct offload_entry *e = bpf_map_lookup_elem(&offload, key);

	if (!e || !fits_mtu(e->mtu, gso_size, sizeof(struct iphdr) + l4_header,
			    bpf_ntohs(ip->tot_len)))
		return NULL;
	return e;
}

// The entry for the IPv6 packet at `ip6` (as offload_eligible for IPv4):
// the fast path takes an IPv6 packet whose next header is TCP, UDP or
// ICMPv6 itself (any extension header: the workers'), with a payload length
// the packet holds (a BIG TCP super-frame's is 0: the kernel's), and a UDP
// checksum (a datagram without one, which IPv6 forbids, goes to the core,
// which drops it, counted).
static __always_inline struct offload6_entry *offload6_eligible(__u32 ifindex,
								struct ipv6hdr *ip6,
								void *data_end, __u32 gso_size,
								__u32 len,
								struct offload6_key *key)
{
	if ((void *)(ip6 + 1) > data_end)
		return NULL;
	if (ip6->version != 6 || ip6->hop_limit <= 1)
		return NULL;

	__u32 payload = bpf_ntohs(ip6->payload_len);

	if (!payload || sizeof(struct ipv6hdr) + payload > len)
		return NULL;

	__u8 *l4 = (__u8 *)(ip6 + 1);
	__u32 l4_header;
	__be16 sport, dport;

	if (!l4_ports(l4, data_end, ip6->nexthdr, IPPROTO_ICMPV6, ICMPV6_ECHO_REQUEST,
		      ICMPV6_ECHO_REPLY, &sport, &dport, &l4_header))
		return NULL;
	if ((void *)(l4 + 8) > data_end)
		return NULL;
	if (payload < l4_header || (ip6->nexthdr == IPPROTO_UDP && !*(__u16 *)(l4 + 6)))
		return NULL;

	key->ifindex = ifindex;
	__builtin_memcpy(key->saddr, &ip6->saddr, 16);
	__builtin_memcpy(key->daddr, &ip6->daddr, 16);
	key->sport = sport;
	key->dport = dport;
	key->proto = ip6->nexthdr;
	key->pad[0] = 0;
	key->pad[1] = 0;
	key->pad[2] = 0;

	struct offload6_entry *e = bpf_map_lookup_elem(&offload6, key);

	if (!e || !fits_mtu(e->mtu, gso_size, sizeof(struct ipv6hdr) + l4_header,
			    sizeof(struct ipv6hdr) + payload))
		return NULL;
	return e;
}

// ~(~check + add), folded.
static __always_inline __u16 csum_add_fold(__u16 check, __u32 add)
{
	__u32 sum = (__u16)~check + add;

	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

// Counts `packets` packets of `bytes` bytes (as on the wire: Ethernet
// header included) for `key` in `stats` (offload_stats or offload6_stats),
// and the TCP sequence the host expects next (0: none). Whether the entry's
// counters were there.
static __always_inline int count(void *stats, void *key, __u64 packets, __u64 bytes,
				 __u32 next_seq)
{
	struct offload_stats *st = bpf_map_lookup_elem(stats, key);

	if (!st)
		return 0;
	st->packets += packets;
	st->bytes += bytes;
	if (!next_seq)
		return 1;
	__u32 now = bpf_ktime_get_ns() >> 20;

	// Serial-number comparison (RFC 1982): keep the furthest, of recent
	// packets; userspace takes the sequence of the CPU that noted one last.
	if (!st->next_seq || now - st->seq_stamp > SEQ_STALE ||
	    (__s32)(next_seq - st->next_seq) > 0)
		st->next_seq = next_seq;
	st->seq_stamp = now;
	return 1;
}

// The ports of the TCP or UDP header at `l4`, or with `echo` the identifier
// of an ICMP or ICMPv6 echo message (a `request`'s stands for its source
// port, a reply's for its destination port).
static __always_inline void rewrite_ports(__u8 *l4, int echo, int request, __be16 sport,
					  __be16 dport)
{
	if (echo) {
		*(__be16 *)(l4 + 4) = request ? sport : dport;
	} else {
		*(__be16 *)l4 = sport;
		*(__be16 *)(l4 + 2) = dport;
	}
}

// The rewrite both hooks make of a whole packet of entry `e`, but the L4
// checksum (each hook patches that its own way): MACs, TTL and the IP
// checksum (its delta covers the TTL's decrement too), addresses, and the
// ports, or an ICMP echo's identifier (a request's stands for its source
// port). The headers up to 8 bytes of L4 are bounds-checked by the caller.
static __always_inline void rewrite_headers(struct ethhdr *eth, struct iphdr *ip, __u8 *l4,
					    const struct offload_entry *e)
{
	__builtin_memcpy(eth->h_dest, e->dst_mac, 6);
	__builtin_memcpy(eth->h_source, e->src_mac, 6);
	ip->ttl--;
	ip->check = csum_add_fold(ip->check, e->ip_delta);
	ip->saddr = e->saddr;
	ip->daddr = e->daddr;
	rewrite_ports(l4, ip->protocol == IPPROTO_ICMP, l4[0] == ICMP_ECHO, e->sport, e->dport);
}

// The sequence number that follows the TCP segment at `l4`, `l4_len` bytes
// with its header (bounds-checked up to `data_end`; 0 if it is not there).
static __always_inline __u32 tcp_next_seq(const __u8 *l4, void *data_end, __u32 l4_len)
{
	if ((void *)(l4 + 20) > data_end)
		return 0;
	return bpf_ntohl(*(__be32 *)(l4 + 4)) + l4_len - (l4[12] >> 4) * 4;
}

// Where the L4 checksum of a `protocol` packet at `l4` is, from `l4`: TCP's,
// UDP's or `icmp`'s (ICMP or ICMPv6), its header bounds-checked up to
// `data_end`; 0 for anything else or a header cut short.
static __always_inline __u32 l4_checksum_at(__u8 *l4, void *data_end, __u8 protocol, __u8 icmp)
{
	if (protocol == IPPROTO_TCP)
		return (void *)(l4 + 20) <= data_end ? 16 : 0;
	if ((void *)(l4 + 8) > data_end)
		return 0;
	if (protocol == IPPROTO_UDP)
		return 6;
	return protocol == icmp ? 2 : 0;
}

// Whether a TCP or UDP packet's checksum is a partial one: the pseudo-header's
// sum alone, as a sender on this machine leaves it for the device to finish
// (CHECKSUM_PARTIAL, e.g. across a veth). Only its skb says so, and only TC's
// rewrite (bpf_l4_csum_replace) knows what to do with it: such a frame is not
// redirected from XDP. A complete checksum that happens to look partial (one
// in 65536) merely takes TC.
static __always_inline int partial_checksum(const struct iphdr *ip, void *data_end)
{
	__u8 *l4 = (__u8 *)(ip + 1);
	__u16 *check;

	if (ip->protocol == IPPROTO_TCP)
		check = (void *)(l4 + 16);
	else if (ip->protocol == IPPROTO_UDP)
		check = (void *)(l4 + 6);
	else
		return 0;
	if ((void *)(check + 1) > data_end)
		return 1;

	// In the byte order of the packet's 16-bit words, as the field holds it.
	__u32 sum = (ip->saddr & 0xffff) + (ip->saddr >> 16) + (ip->daddr & 0xffff) +
		    (ip->daddr >> 16) + bpf_htons(ip->protocol) +
		    bpf_htons(bpf_ntohs(ip->tot_len) - sizeof(struct iphdr));

	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum == *check;
}

// A packet the XDP program forwards itself: counted for its entry (`key` in
// `stats`) and in offload_by_xdp.
static __always_inline void count_by_xdp(void *stats, void *key, __u64 bytes, __u32 next_seq)
{
	if (count(stats, key, 1, bytes, next_seq)) {
		__u32 zero = 0;
		__u64 *by_xdp = bpf_map_lookup_elem(&offload_by_xdp, &zero);

		if (by_xdp)
			*by_xdp += 1;
	}
}

// A complete TCP, UDP or ICMPv6 checksum `check` after the changes whose
// deltas sum to `delta`; a UDP one (`udp`) that comes to 0 carries 0xffff
// (RFC 768).
static __always_inline __u16 l4_check(__u16 check, int udp, __u32 delta)
{
	__u16 sum = csum_add_fold(check, delta);

	return (udp && !sum) ? 0xffff : sum;
}

// The fast path in the XDP program, for the frame of `ip` (whole, checked by
// offload_eligible, up to `data_end`) and its entry `e`: rewritten, counted
// and redirected to the egress interface when that accepts XDP frames and the
// checksum is complete; -1 (pass it to TC) otherwise.
static __always_inline int offload_xdp_forward(struct ethhdr *eth, struct iphdr *ip,
					       void *data_end, struct offload_key *key,
					       struct offload_entry *e)
{
	__u32 egress = e->egress_ifindex;

	if (!bpf_map_lookup_elem(&xdp_egress, &egress) || partial_checksum(ip, data_end))
		return -1;
	if ((void *)(eth + 1) > data_end || (void *)(ip + 1) > data_end)
		return -1;

	__u8 *l4 = (__u8 *)(ip + 1);
	__u8 protocol = ip->protocol;
	__u32 at = l4_checksum_at(l4, data_end, protocol, IPPROTO_ICMP);
	__u16 *check = (void *)(l4 + at);
	__u32 next_seq = 0;

	if (!at || (void *)(check + 1) > data_end)
		return -1;
	if (protocol == IPPROTO_TCP && e->track_seq)
		next_seq = tcp_next_seq(l4, data_end, bpf_ntohs(ip->tot_len) - sizeof(*ip));
	count_by_xdp(&offload_stats, key, (void *)data_end - (void *)eth, next_seq);
	rewrite_headers(eth, ip, l4, e);
	if (protocol == IPPROTO_ICMP) {
		*check = csum_add_fold(*check, e->port_delta);
	} else if (protocol != IPPROTO_UDP || *check) {
		// A UDP datagram without a checksum (0) keeps none.
		*check = l4_check(*check, protocol == IPPROTO_UDP,
				  (__u32)e->pseudo_delta + e->port_delta);
	}
	return bpf_redirect(egress, 0);
}

// The rewrite both hooks make of a whole IPv6 packet of entry `e`, but the
// L4 checksum: MACs, hop limit (no header checksum to follow it), addresses,
// and the ports or an ICMPv6 echo's identifier. The headers up to 8 bytes of
// L4 are bounds-checked by the caller.
static __always_inline void rewrite6_headers(struct ethhdr *eth, struct ipv6hdr *ip6, __u8 *l4,
					     const struct offload6_entry *e)
{
	__builtin_memcpy(eth->h_dest, e->dst_mac, 6);
	__builtin_memcpy(eth->h_source, e->src_mac, 6);
	ip6->hop_limit--;
	__builtin_memcpy(&ip6->saddr, e->saddr, 16);
	__builtin_memcpy(&ip6->daddr, e->daddr, 16);
	rewrite_ports(l4, ip6->nexthdr == IPPROTO_ICMPV6, l4[0] == ICMPV6_ECHO_REQUEST, e->sport,
		      e->dport);
}

// partial_checksum for IPv6: whether the TCP or UDP checksum is the
// pseudo-header's sum alone (RFC 8200 8.1: both addresses, the upper-layer
// length and the next header).
static __always_inline int partial_checksum6(const struct ipv6hdr *ip6, void *data_end)
{
	__u8 *l4 = (__u8 *)(ip6 + 1);
	__u16 *check;

	if (ip6->nexthdr == IPPROTO_TCP)
		check = (void *)(l4 + 16);
	else if (ip6->nexthdr == IPPROTO_UDP)
		check = (void *)(l4 + 6);
	else
		return 0;
	if ((void *)(check + 1) > data_end)
		return 1;

	// In the byte order of the packet's 16-bit words, as the field holds it.
	const __u16 *words = (const __u16 *)&ip6->saddr;
	__u32 sum = bpf_htons(ip6->nexthdr) + ip6->payload_len;

	for (int i = 0; i < 16; i++)
		sum += words[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum == *check;
}

// offload_xdp_forward for IPv6: the frame of `ip6` (checked by
// offload6_eligible) rewritten, counted and redirected when its egress
// accepts XDP frames and its checksum is complete; -1 (pass it to TC)
// otherwise.
static __always_inline int offload6_xdp_forward(struct ethhdr *eth, struct ipv6hdr *ip6,
						void *data_end, struct offload6_key *key,
						struct offload6_entry *e)
{
	__u32 egress = e->egress_ifindex;

	if (!bpf_map_lookup_elem(&xdp_egress, &egress) || partial_checksum6(ip6, data_end))
		return -1;
	if ((void *)(eth + 1) > data_end || (void *)(ip6 + 1) > data_end)
		return -1;

	__u8 *l4 = (__u8 *)(ip6 + 1);
	__u8 protocol = ip6->nexthdr;
	__u32 at = l4_checksum_at(l4, data_end, protocol, IPPROTO_ICMPV6);
	__u16 *check = (void *)(l4 + at);
	__u32 next_seq = 0;

	if (!at || (void *)(check + 1) > data_end)
		return -1;
	if (protocol == IPPROTO_TCP && e->track_seq)
		next_seq = tcp_next_seq(l4, data_end, bpf_ntohs(ip6->payload_len));
	count_by_xdp(&offload6_stats, key, (void *)data_end - (void *)eth, next_seq);
	rewrite6_headers(eth, ip6, l4, e);
	// Eligible UDP has a checksum (IPv6 requires one); ICMPv6's covers
	// the pseudo-header too.
	*check = l4_check(*check, protocol == IPPROTO_UDP, (__u32)e->pseudo_delta + e->port_delta);
	return bpf_redirect(egress, 0);
}

// The XDP program's fast path for the IPv6 frame at `eth` (its Ethernet
// header bounds-checked) arriving on `ifindex`: the frame forwarded, or
// XDP_PASS with the mark for TC; -1 when it is not the fast path's.
static __always_inline int offload6_xdp(struct ethhdr *eth, void *data_end, __u32 ifindex)
{
	struct ipv6hdr *ip6 = (void *)(eth + 1);
	struct offload6_key key;
	struct offload6_entry *e = offload6_eligible(ifindex, ip6, data_end, 0,
						     (__u32)(data_end - (void *)ip6), &key);

	if (!e)
		return -1;

	int verdict = offload6_xdp_forward(eth, ip6, data_end, &key, e);

	if (verdict >= 0)
		return verdict;
	offload_mark(eth);
	return XDP_PASS;
}

// Whether the XDP program passed this frame for the fast path (its source
// MAC is the mark).
static __always_inline int offload_marked(struct __sk_buff *skb)
{
	__u8 mark[6] = OFFLOAD_MARK_MAC;
	void *data = (void *)(long)skb->data;
	struct ethhdr *eth = data;

	if (!xdp_marks)
		return 0;
	if ((void *)(eth + 1) > (void *)(long)skb->data_end)
		return 0;
	for (int i = 0; i < 6; i++)
		if (eth->h_source[i] != mark[i])
			return 0;
	return 1;
}

// TC's count of a frame of `key` in `stats` (the L4 header of `protocol` at
// `l4`, after `l3_len` bytes of IP header, up to `data_end`): a GSO
// super-frame counts its segments, each with its own headers.
static __always_inline void tc_count(struct __sk_buff *skb, void *stats, void *key, __u32 l3_len,
				     const __u8 *l4, void *data_end, __u8 protocol, __u32 next_seq)
{
	__u32 segs = skb->gso_segs ? skb->gso_segs : 1;
	__u32 l4_header = 8;

	if (protocol == IPPROTO_TCP && (void *)(l4 + 20) <= data_end)
		l4_header = (l4[12] >> 4) * 4;
	__u32 headers = ETH_HLEN + l3_len + l4_header;

	count(stats, key, segs, skb->len + (__u64)(segs - 1) * headers, next_seq);
}

// TC's end of the fast path for a rewritten frame: its L4 checksum (at
// `csum_off`; `udp`: one that comes to 0 carries 0xffff) patched by the
// addresses' delta `pseudo` (as a pseudo-header change, which keeps a
// partial checksum partial) and the ports' `ports`, then the redirect to
// `egress`. A delta of 0 (nothing it covers changed, or ICMP's
// pseudo-header, which it has none of) costs no call.
static __always_inline int tc_finish(struct __sk_buff *skb, __u32 csum_off, int udp, __u32 pseudo,
				     __u32 ports, __u32 egress)
{
	__u64 flags = udp ? BPF_F_MARK_MANGLED_0 : 0;

	if (pseudo)
		bpf_l4_csum_replace(skb, csum_off, 0, pseudo, BPF_F_PSEUDO_HDR | flags);
	if (ports)
		bpf_l4_csum_replace(skb, csum_off, 0, ports, flags);
	return bpf_redirect(egress, 0);
}

// Makes the first `want` bytes of the packet linear (the headers the fast
// path reads), or all of it when it is shorter: a packet shorter than
// `want` (a UDP datagram with a few bytes of payload, sent from a packet
// socket's ring as page fragments) would otherwise fail the pull and keep
// its headers out of reach.
static __always_inline void pull_headers(struct __sk_buff *skb, __u32 want)
{
	__u32 len = skb->len < want ? skb->len : want;

	if (skb->data_end - skb->data < len)
		bpf_skb_pull_data(skb, len);
}

// offload_forward for an IPv6 frame: its redirect, or TCX_NEXT.
static __always_inline int offload_forward6(struct __sk_buff *skb)
{
	// Ethernet, the IPv6 header and the TCP header in the linear part.
	pull_headers(skb, ETH_HLEN + 40 + 20);

	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return TCX_NEXT;

	struct ipv6hdr *ip6 = (void *)(eth + 1);
	struct offload6_key key;
	struct offload6_entry *e = offload6_eligible(skb->ingress_ifindex, ip6, data_end,
						     skb->gso_size, skb->len - ETH_HLEN, &key);

	if (!e)
		return TCX_NEXT;
	if ((void *)(ip6 + 1) > data_end)
		return TCX_NEXT;

	__u8 *l4 = (__u8 *)(ip6 + 1);
	__u8 protocol = ip6->nexthdr;
	__u32 at = l4_checksum_at(l4, data_end, protocol, IPPROTO_ICMPV6);
	__u32 next_seq = 0;

	if (!at || (void *)(l4 + 8) > data_end)
		return TCX_NEXT;
	if (protocol == IPPROTO_TCP && e->track_seq)
		next_seq = tcp_next_seq(l4, data_end, bpf_ntohs(ip6->payload_len));
	tc_count(skb, &offload6_stats, &key, sizeof(*ip6), l4, data_end, protocol, next_seq);
	rewrite6_headers(eth, ip6, l4, e);
	// ICMPv6's checksum covers the pseudo-header too.
	return tc_finish(skb, ETH_HLEN + sizeof(*ip6) + at, protocol == IPPROTO_UDP,
			 e->pseudo_delta, e->port_delta, e->egress_ifindex);
}

// The fast path for one frame: its redirect, or TCX_NEXT.
static __always_inline int offload_forward(struct __sk_buff *skb)
{
	// Ethernet, IPv4 without options and the TCP header in the linear part.
	pull_headers(skb, ETH_HLEN + 20 + 20);

	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return TCX_NEXT;
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return offload_forward6(skb);
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return TCX_NEXT;

	struct iphdr *ip = (void *)(eth + 1);
	struct offload_key key;
	struct offload_entry *e = offload_eligible(skb->ingress_ifindex, ip, data_end,
						   skb->gso_size, skb->len - ETH_HLEN, &key);

	if (!e)
		return TCX_NEXT;
	// offload_eligible checked the IP header and the L4 header's start.
	if ((void *)(ip + 1) > data_end)
		return TCX_NEXT;

	__u8 *l4 = (__u8 *)(ip + 1);
	__u8 protocol = ip->protocol;
	__u32 at = l4_checksum_at(l4, data_end, protocol, IPPROTO_ICMP);
	__u32 next_seq = 0;

	if (!at || (void *)(l4 + 8) > data_end)
		return TCX_NEXT;
	if (protocol == IPPROTO_TCP && e->track_seq)
		next_seq = tcp_next_seq(l4, data_end, bpf_ntohs(ip->tot_len) - sizeof(*ip));
	tc_count(skb, &offload_stats, &key, sizeof(*ip), l4, data_end, protocol, next_seq);
	rewrite_headers(eth, ip, l4, e);
	// ICMP has no pseudo-header: its pseudo_delta is 0.
	return tc_finish(skb, ETH_HLEN + sizeof(*ip) + at, protocol == IPPROTO_UDP,
			 e->pseudo_delta, e->port_delta, e->egress_ifindex);
}

SEC("tcx/ingress")
int xwan_offload(struct __sk_buff *skb)
{
	// --io xdp: the XDP program passed it for the fast path (source MAC).
	int marked = offload_marked(skb);
	// --io packet: the workers' socket filter decided, just before (cb[0];
	// looked at only when the XDP program did not mark the frame, so a
	// value something else left there cannot overrule that): the workers
	// have it when it found no entry, the fast path otherwise.
	__u32 tap = skb->cb[0];

	if (!marked && (tap == WORKERS_MARK || tap == FAST_MARK)) {
		skb->cb[0] = 0;
		if (tap == WORKERS_MARK)
			return TCX_NEXT;
		marked = 1;
	}
	// A VLAN tag the device took off stays with the kernel, as tagged
	// frames do (a marked one is dropped below, counted).
	int verdict = skb->vlan_present ? TCX_NEXT : offload_forward(skb);

	if (verdict == TCX_NEXT && marked) {
		__u32 zero = 0;
		__u64 *lost = bpf_map_lookup_elem(&offload_lost, &zero);

		if (lost)
			*lost += 1;
		return TCX_DROP;
	}
	return verdict;
}

// offload_tap_verdict for an IPv6 frame.
static __always_inline int offload6_tap_verdict(struct __sk_buff *skb)
{
	// The IPv6 header and up to a TCP header.
	__u32 l3[15] = {};

	if (bpf_skb_load_bytes(skb, ETH_HLEN, l3, sizeof(l3)) < 0 &&
	    bpf_skb_load_bytes(skb, ETH_HLEN, l3, 40 + 8) < 0)
		return skb->len;

	struct offload6_key key;
	struct offload6_entry *e = offload6_eligible(skb->ingress_ifindex, (struct ipv6hdr *)l3,
						     (void *)l3 + sizeof(l3), skb->gso_size,
						     skb->len - ETH_HLEN, &key);

	return e ? 0 : skb->len;
}

// xwan_offload_tap's verdict on a frame: 0 when xwan_offload will forward
// it, its whole length otherwise. The socket sees the frame from its
// Ethernet header.
static __always_inline int offload_tap_verdict(struct __sk_buff *skb)
{
	__be16 proto;
	// The IPv4 header and up to a TCP header, 4-byte aligned as the
	// verifier wants the stack read.
	__u32 l3[10] = {};

	if (skb->vlan_present)
		return skb->len;
	if (bpf_skb_load_bytes(skb, 12, &proto, sizeof(proto)) < 0)
		return skb->len;
	if (proto == bpf_htons(ETH_P_IPV6))
		return offload6_tap_verdict(skb);
	if (proto != bpf_htons(ETH_P_IP))
		return skb->len;
	// A short UDP datagram has only its own 8-byte header (a failed load
	// clears the buffer, so the shorter one comes second).
	if (bpf_skb_load_bytes(skb, ETH_HLEN, l3, sizeof(l3)) < 0 &&
	    bpf_skb_load_bytes(skb, ETH_HLEN, l3, 20 + 8) < 0)
		return skb->len;

	struct offload_key key;
	struct offload_entry *e = offload_eligible(skb->ingress_ifindex, (struct iphdr *)l3,
						   (void *)l3 + sizeof(l3), skb->gso_size,
						   skb->len - ETH_HLEN, &key);

	return e ? 0 : skb->len;
}

// The socket filter of the workers' AF_PACKET sockets (--io packet): 0 (not
// for this socket) for a frame xwan_offload will forward, its whole length
// otherwise. Either way it leaves its decision in cb[0] (which the kernel
// keeps from the taps to TC ingress), so TC follows it even if the entry
// comes or goes in the moment between: a frame given to the workers is not
// forwarded by TC too, and one kept from them whose entry vanished is
// dropped, counted `lost`, not left to the stack.
SEC("socket")
int xwan_offload_tap(struct __sk_buff *skb)
{
	int verdict = offload_tap_verdict(skb);

	skb->cb[0] = verdict ? WORKERS_MARK : FAST_MARK;
	return verdict;
}
