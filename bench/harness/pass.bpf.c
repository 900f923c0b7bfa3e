// SPDX-License-Identifier: GPL-2.0
// scripts/bench: an XDP program that passes every frame. Attached to the
// router's veths in kernel mode it changes nothing but one thing: the veths'
// peers lose TSO/GSO (the program does not handle frags), as they do under xwan.
#include <linux/bpf.h>

__attribute__((section("xdp"), used)) int pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char _license[] __attribute__((section("license"), used)) = "GPL";
