//! Packet formats: parsing a frame into a plain [`Frame`] (in general, or at
//! fixed offsets for the established fast path) and rewriting it in place;
//! for IPv6, [`Frame6`] from [`parse6`] (or [`parse_plain6`] at fixed
//! offsets), rewritten by [`apply6`] (or [`apply_established6`]), with its
//! ICMPv6 errors in [`icmp6`].

#![forbid(unsafe_code)]

pub mod checksum;
mod family;
mod fast;
mod fast6;
mod fragment;
pub mod icmp;
pub mod icmp6;
mod ipv6;
mod parse;
mod rewrite;
mod rewrite6;
mod tcp;
#[cfg(test)]
mod test6;
pub mod wire;
pub mod wire6;

pub use family::{Family, HashWords};
pub use fast::parse_plain;
pub use fast6::parse_plain6;
pub use fragment::fragment;
pub use icmp6::{
    make_error6, may_answer6, quoted6, translate_error6, Error6, ErrorRewrite6, Quoted6,
};
pub use ipv6::{
    is_multicast6, parse6, Fragment6, Frame6, ICMP6_DEST_UNREACHABLE, ICMP6_ECHO_REPLY,
    ICMP6_ECHO_REQUEST, ICMP6_PACKET_TOO_BIG, ICMP6_PARAMETER_PROBLEM, ICMP6_TIME_EXCEEDED,
    MAX_EXTENSIONS, NEXT_AH, NEXT_DEST_OPTS, NEXT_ESP, NEXT_FRAGMENT, NEXT_HOP_BY_HOP, NEXT_NONE,
    NEXT_ROUTING, PROTO_ICMPV6,
};
pub use parse::{
    parse, Fragmentation, Frame, ParseOutcome, Parsed, TcpFlags, Transport, ICMP_DEST_UNREACHABLE,
    ICMP_PARAMETER_PROBLEM, ICMP_TIME_EXCEEDED, L3_OFFSET, PROTO_ICMP, PROTO_TCP, PROTO_UDP,
};
pub use rewrite::{
    apply, apply_established, apply_partial, carries_partial_checksum, complete_partial_checksum,
    Addr4, Addr6, ChecksumDeltas, Endpoint, Endpoint6, Rewrite,
};
pub use rewrite6::{
    apply6, apply_established6, carries_partial_checksum6, complete_partial_checksum6, Deltas6,
    Rewrite6,
};
pub use tcp::{clamp_mss, mss_option};
pub use wire6::carries_ipv6;
