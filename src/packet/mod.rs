//! Packet formats: parsing a frame into a plain [`Frame`] (in general, or at
//! fixed offsets for the established fast path) and rewriting it in place.

#![forbid(unsafe_code)]

pub mod checksum;
mod family;
mod fast;
mod fragment;
pub mod icmp;
mod parse;
mod rewrite;
mod tcp;
pub mod wire;

pub use family::{Family, HashWords};
pub use fast::parse_plain;
pub use fragment::fragment;
pub use parse::{
    parse, Fragmentation, Frame, ParseOutcome, TcpFlags, Transport, ICMP_DEST_UNREACHABLE,
    ICMP_PARAMETER_PROBLEM, ICMP_TIME_EXCEEDED, L3_OFFSET, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP,
    PROTO_UDP,
};
pub use rewrite::{
    apply, apply_established, apply_partial, carries_partial_checksum, complete_partial_checksum,
    Addr4, Addr6, ChecksumDeltas, Endpoint, Endpoint6, Rewrite,
};
pub use tcp::{clamp_mss, mss_option};
