// SPDX-License-Identifier: GPL-2.0
// scripts/bench: counts and drops the benchmark's flood, passes everything else.
//
// The flood is IPv4 UDP to 203.0.113.192/26 (scripts/bench sends to .200-.202)
// from SRC_NET/SRC_MASK (given with -D when compiling): 198.18.0.0/16 on the
// ISPs' customer-facing veths, so that only frames the router really
// translated to an uplink address count, and the ISPs' own forwarding costs
// nothing; 192.168.50.0/24 on the router's LAN veth with no router, for the
// generator's ceiling. The count is the veth's rx_queue_N_xdp_drops in
// `ethtool -S`. ARP, ICMP and every other packet are passed to the kernel.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>

#define FLOOD_NET 0xcb0071c0u  /* 203.0.113.192 */
#define FLOOD_MASK 0xffffffc0u /* /26 */
#if !defined(SRC_NET) || !defined(SRC_MASK)
#error "compile with -DSRC_NET=0x... -DSRC_MASK=0x... (host byte order)"
#endif

__attribute__((section("xdp"), used)) int flood_drop(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);

	if ((void *)(ip + 1) > end || eth->h_proto != __builtin_bswap16(ETH_P_IP))
		return XDP_PASS;
	if (ip->protocol == IPPROTO_UDP &&
	    (__builtin_bswap32(ip->daddr) & FLOOD_MASK) == FLOOD_NET &&
	    (__builtin_bswap32(ip->saddr) & SRC_MASK) == SRC_NET)
		return XDP_DROP;
	return XDP_PASS;
}

char _license[] __attribute__((section("license"), used)) = "GPL";
