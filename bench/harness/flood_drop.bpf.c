// SPDX-License-Identifier: GPL-2.0
// scripts/bench: counts and drops the benchmark's flood, passes everything else.
//
// The flood is UDP, IPv4 to 203.0.113.192/26 (scripts/bench sends to
// .200-.202) from SRC_NET/SRC_MASK, or IPv6 to 2001:db8:ffff::200/120
// (scripts/bench sends to ::200-::202) from a source whose upper 64 bits
// match SRC6_NET/SRC6_MASK (all given with -D when compiling). scripts/bench
// attaches it to the router's LAN veth with no router, for the generator's
// ceiling: 192.168.50.0/24 and fd00:50::/64. The count is the veth's
// rx_queue_N_xdp_drops in `ethtool -S`. ARP, Neighbour Discovery, ICMP and
// every other packet are passed to the kernel.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>

#define FLOOD_NET 0xcb0071c0u  /* 203.0.113.192 */
#define FLOOD_MASK 0xffffffc0u /* /26 */
/* 2001:db8:ffff::200/120, as its upper and lower 64 bits (host byte order). */
#define FLOOD6_HI 0x20010db8ffff0000ull
#define FLOOD6_LO 0x0000000000000200ull
#define FLOOD6_LO_MASK 0xffffffffffffff00ull
#if !defined(SRC_NET) || !defined(SRC_MASK) || !defined(SRC6_NET) || !defined(SRC6_MASK)
#error "compile with -DSRC_NET=0x... -DSRC_MASK=0x... -DSRC6_NET=0x...ull -DSRC6_MASK=0x...ull (host byte order)"
#endif

/* 64 bits of an IPv6 address, from its network byte order words. */
static __always_inline unsigned long long half(const __be32 *w)
{
	return ((unsigned long long)__builtin_bswap32(w[0]) << 32) | __builtin_bswap32(w[1]);
}

static __always_inline int flood4(struct iphdr *ip)
{
	return ip->protocol == IPPROTO_UDP &&
	       (__builtin_bswap32(ip->daddr) & FLOOD_MASK) == FLOOD_NET &&
	       (__builtin_bswap32(ip->saddr) & SRC_MASK) == SRC_NET;
}

static __always_inline int flood6(struct ipv6hdr *ip6)
{
	return ip6->nexthdr == IPPROTO_UDP && half(&ip6->daddr.in6_u.u6_addr32[0]) == FLOOD6_HI &&
	       (half(&ip6->daddr.in6_u.u6_addr32[2]) & FLOOD6_LO_MASK) == FLOOD6_LO &&
	       (half(&ip6->saddr.in6_u.u6_addr32[0]) & SRC6_MASK) == SRC6_NET;
}

__attribute__((section("xdp"), used)) int flood_drop(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	if (eth->h_proto == __builtin_bswap16(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) <= end && flood4(ip))
			return XDP_DROP;
	} else if (eth->h_proto == __builtin_bswap16(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) <= end && flood6(ip6))
			return XDP_DROP;
	}
	return XDP_PASS;
}

char _license[] __attribute__((section("license"), used)) = "GPL";
