//! What the core decides for one frame: the port it goes out by, or why the
//! kernel gets it, or why it is dropped. The bottom of the core: every core
//! module may use these, and they use nothing of the core.

#![forbid(unsafe_code)]

use crate::config::UplinkId;

/// Where a frame came in, or where it goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Port {
    Lan,
    Wan(UplinkId),
}

/// The core's decision for one frame. On `Forward`, the frame has been
/// rewritten in place and its first `len` bytes (never more than the frame
/// had) are what goes on the wire (Ethernet padding after the IP packet is
/// cut off). `port` may be the port the frame came in by: a hairpinned packet
/// goes back out the LAN, and an ICMP error the core made of the frame (time
/// exceeded, fragmentation needed) goes back to its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Forward {
        port: Port,
        len: usize,
    },
    /// The core is done with the frame's buffer without sending it: it kept
    /// a copy (a later fragment that came before its first, sent when that
    /// comes), or made what it sends for it in the lane's outbox (an ICMP
    /// error bigger than the frame). The buffer is free again.
    Taken,
    Kernel(KernelReason),
    Drop(DropReason),
}

macro_rules! reasons {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $label:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// A stable snake_case name, used in counters and metrics.
            pub fn label(self) -> &'static str {
                match self {
                    $($name::$variant => $label,)*
                }
            }
        }
    };
}

reasons! {
    /// Why a frame is left to the kernel.
    KernelReason {
        /// Not IPv4 (ARP, IPv6, LLDP...).
        NotIpv4 => "not_ipv4",
        /// 802.1Q / 802.1ad tagged frames are left to the kernel.
        Vlan => "vlan",
        /// Broadcast or multicast destination.
        Multicast => "multicast",
        /// Addressed to the LAN side itself (router address, another LAN host).
        LocalDestination => "local_destination",
        /// Source outside the configured LAN networks.
        NotInside => "not_inside",
        /// A steering rule said bypass.
        Bypass => "bypass",
        /// TTL would expire here: the kernel sends time-exceeded (unless the
        /// core is set to send it itself, and the frame can hold it).
        TtlExpired => "ttl_expired",
        /// Too big for the egress MTU with DF set, and the core cannot send
        /// the fragmentation-needed error itself (no `[lan] address` for an
        /// error to a LAN host).
        FragNeeded => "frag_needed",
        /// To a WAN address but outside the NAT range and no forward: the router's own traffic.
        RouterTraffic => "router_traffic",
        /// An ICMP message other than echo, left to the kernel.
        IcmpOther => "icmp_other",
        /// An IPv6 packet that must not leave its link, or cannot: a
        /// link-local (fe80::/10) source or destination, an unspecified or
        /// loopback source or destination. The kernel answers what is for
        /// the router (Neighbour Discovery, DHCPv6) and drops the rest.
        LinkLocal => "link_local",
        /// An IPv6 packet with a Hop-by-Hop Options header: routers may
        /// leave it to the slow path (RFC 8200 4.3), and the kernel knows its
        /// options (router alert for MLD, jumbograms).
        Ipv6HopByHop => "ipv6_hop_by_hop",
        /// An IPv6 packet with a Routing header that has segments left: its
        /// destination address is only the next waypoint, which the kernel
        /// processes (or refuses) by type.
        Ipv6Routing => "ipv6_routing",
    }
}

reasons! {
    /// Why a frame is dropped. Every drop is counted under its reason.
    DropReason {
        /// Shorter than its headers claim, or a header field out of range.
        Malformed => "malformed",
        /// IPv4 header checksum wrong.
        BadIpChecksum => "bad_ip_checksum",
        /// A fragmented ICMP error (not translated).
        Fragment => "fragment",
        /// A later fragment that came before its first while as many
        /// fragments as the core holds are held already.
        FragmentHoldFull => "fragment_hold_full",
        /// A held later fragment whose first fragment did not come in time.
        FragmentTimeout => "fragment_timeout",
        /// A later fragment whose TTL expires here (only a first fragment
        /// is answered with time-exceeded, RFC 1812 4.3.2.7).
        FragmentTtlExpired => "fragment_ttl_expired",
        /// A later fragment bigger than the egress MTU with DF set, or a
        /// packet that cannot be fragmented for it (the MTU holds not even
        /// its header and 8 bytes).
        TooBig => "too_big",
        /// A protocol xwan does not translate (GRE, ESP, SCTP...).
        UnsupportedProtocol => "unsupported_protocol",
        /// A steering rule said drop.
        Rule => "rule",
        /// No uplink is up (or a strict rule's uplink is down).
        NoUplink => "no_uplink",
        /// The flow table is at `limits.max_flows`.
        TableFull => "table_full",
        /// The uplink's NAT port pool is exhausted.
        PortsExhausted => "ports_exhausted",
        /// A TCP packet other than a SYN with no flow.
        TcpNoFlow => "tcp_no_flow",
        /// To a NAT port of a WAN address with no mapping for that sender.
        NoMapping => "no_mapping",
        /// The next hop's MAC is not known yet (and the frame could not
        /// wait for it: see `router/waiting.rs`).
        NeighbourUnresolved => "neighbour_unresolved",
        /// A frame that waited for its LAN host's MAC longer than the
        /// host took to resolve (`router/waiting.rs`).
        NeighbourTimeout => "neighbour_timeout",
        /// A frame that waited for its LAN host's MAC, released, and refused
        /// by the LAN interface's socket.
        NeighbourSendFailed => "neighbour_send_failed",
        /// The 5-tuple clashes with an existing flow's.
        TupleClash => "tuple_clash",
        /// The LAN host has `limits.max_flows_per_host` flows already.
        HostLimit => "host_limit",
        /// The port forward's target has `limits.max_flows_per_forward`
        /// flows from the Internet already.
        ForwardLimit => "forward_limit",
        /// The Internet source has `limits.max_flows_per_source` flows
        /// through port forwards already.
        SourceLimit => "source_limit",
        /// An ICMP error about a packet of no live flow (on a NAT port or a
        /// forwarded one).
        IcmpNoFlow => "icmp_no_flow",
        /// An ICMP error quoting less than an IPv4 header and 8 bytes.
        IcmpTruncated => "icmp_truncated",
        /// An ICMP error about a flow's packet whose own TTL expires here:
        /// never answered with another error (RFC 1122 3.2.2), dropped as
        /// the kernel drops it.
        IcmpErrorTtlExpired => "icmp_error_ttl_expired",
        /// From a WAN with a source address inside the LAN networks.
        SpoofedSource => "spoofed_source",
        /// A GSO super-frame the core cannot pass whole (not a whole TCP
        /// segment with its checksum partial where the TCP header starts, or
        /// segments too big for the egress MTU), left unchanged: the I/O
        /// layer cuts it and sends its segments through the core instead.
        GsoNotWhole => "gso_not_whole",
        /// An IPv6 packet with more extension headers than the core walks
        /// (8): no legitimate sender needs that many, and a longer chain
        /// only costs the parser (RFC 9098, RFC 9288).
        Ipv6Extensions => "ipv6_extensions",
        /// A UDP datagram over IPv6 without a checksum (0): the checksum is
        /// mandatory in IPv6 (RFC 8200 8.1), and a receiver drops it anyway.
        UdpZeroChecksum6 => "udp_zero_checksum6",
        /// A later IPv6 fragment whose first fragment did not go through
        /// (it came first, or belonged to no flow), or whose datagram the
        /// core stopped following (after 60 s, or 4096 at once).
        Ipv6Fragment => "ipv6_fragment",
        /// A LAN address RFC 6296 NPTv6 cannot map (the word it adjusts is
        /// 0xFFFF, or the interface identifier would be all zero).
        Untranslatable6 => "untranslatable6",
        /// An IPv6 packet whose hop limit expires here, with no address to
        /// send the time-exceeded error from (`[lan] address6` and the LAN
        /// interface have none), or about a packet no error may answer.
        HopLimitExpired6 => "hop_limit_expired6",
    }
}
