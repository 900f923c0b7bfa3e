//! Packet formats: parsing a frame into a plain [`Frame`] and rewriting it in place.

pub mod checksum;
mod parse;
mod rewrite;

pub use parse::{
    parse, Frame, ParseOutcome, TcpFlags, Transport, L3_OFFSET, PROTO_ICMP, PROTO_TCP, PROTO_UDP,
};
pub use rewrite::{apply, Endpoint, Rewrite};
