//! ICMP errors (RFC 792, RFC 5508): reading the packet an error quotes,
//! translating the error together with that packet, and turning a received
//! frame into an error about itself.

use super::checksum::{self, update16, update32};
use super::parse::{Fragmentation, Frame, Transport, L3_OFFSET, PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use super::rewrite::{read16, rewrite_ip, rewrite_transport, write16, Endpoint, Words, L4};
use super::wire::{field, IcmpMessage};

/// ICMP echo request and reply types.
const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP_ECHO_REPLY: u8 = 0;

/// The quoted packet as the router needs it: where its headers are and its
/// tuple (for ICMP echo the identifier, as in [`Frame::ports`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quoted {
    /// Offset of the quoted IPv4 header.
    pub ip: usize,
    /// Offset of its transport header.
    pub l4: usize,
    pub protocol: u8,
    pub src: Endpoint,
    pub dst: Endpoint,
    kind: L4,
}

/// Why the quoted packet cannot be translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuoteError {
    /// Shorter than an IPv4 header and 8 bytes of its transport header, or
    /// not an IPv4 header.
    Truncated,
    /// Not TCP, UDP or ICMP echo, or a later fragment (no ports).
    Untranslatable,
}

/// The packet quoted by the ICMP error `frame` (parsed from `buf`).
pub fn quoted(buf: &[u8], frame: &Frame) -> Result<Quoted, QuoteError> {
    let message = buf
        .get(frame.l4..frame.end)
        .and_then(IcmpMessage::new_checked)
        .ok_or(QuoteError::Truncated)?;
    let ip = frame.l4 + field::ICMP_HEADER_LEN;
    let bytes = message.body();
    if bytes.len() < 20 || bytes[0] >> 4 != 4 {
        return Err(QuoteError::Truncated);
    }
    let header_len = usize::from(bytes[0] & 0x0f) * 4;
    if header_len < 20 || bytes.len() < header_len + 8 {
        return Err(QuoteError::Truncated);
    }
    if u16::from_be_bytes([bytes[6], bytes[7]]) & 0x1fff != 0 {
        return Err(QuoteError::Untranslatable);
    }
    let protocol = bytes[9];
    let addr = |at: usize| -> [u8; 4] { [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]] };
    let t = &bytes[header_len..];
    let word = |at: usize| u16::from_be_bytes([t[at], t[at + 1]]);
    let (ports, kind) = match protocol {
        PROTO_TCP => ((word(0), word(2)), L4::Tcp),
        PROTO_UDP => ((word(0), word(2)), L4::Udp),
        PROTO_ICMP => {
            // The quote holds at least 8 bytes after its IP header.
            let echo = IcmpMessage::new_checked(t).ok_or(QuoteError::Truncated)?;
            let request = match (echo.msg_type(), echo.code()) {
                (ICMP_ECHO_REQUEST, 0) => true,
                (ICMP_ECHO_REPLY, 0) => false,
                _ => return Err(QuoteError::Untranslatable),
            };
            let id = echo.echo_id();
            let ports = if request { (id, 0) } else { (0, id) };
            (ports, L4::Echo { request })
        }
        _ => return Err(QuoteError::Untranslatable),
    };
    Ok(Quoted {
        ip,
        l4: ip + header_len,
        protocol,
        src: Endpoint::new(addr(12), ports.0),
        dst: Endpoint::new(addr(16), ports.1),
        kind,
    })
}

/// What an ICMP error and the packet it quotes become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorRewrite {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// The error's own addresses.
    pub src: [u8; 4],
    pub dst: [u8; 4],
    /// The quoted packet's endpoints.
    pub quoted_src: Endpoint,
    pub quoted_dst: Endpoint,
}

/// The ICMP checksum, followed through every 16-bit word changed in the
/// message (all fields changed sit at even offsets of it).
struct IcmpSum(u16);

impl Words for IcmpSum {
    fn set16(&mut self, buf: &mut [u8], at: usize, value: u16) {
        let old = read16(buf, at);
        if old != value {
            self.0 = update16(self.0, old, value);
            write16(buf, at, value);
        }
    }
}

impl IcmpSum {
    fn set32(&mut self, buf: &mut [u8], at: usize, value: [u8; 4]) {
        self.set16(buf, at, u16::from_be_bytes([value[0], value[1]]));
        self.set16(buf, at + 2, u16::from_be_bytes([value[2], value[3]]));
    }
}

/// Translates the ICMP error `frame` (parsed from `buf`) quoting `quoted`:
/// the quoted addresses and ports (or echo identifier) with the quoted IP
/// header checksum and, where the quote holds it, the quoted transport
/// checksum; the ICMP checksum for every word changed; the outer addresses,
/// TTL, IP checksum and MACs. Every update is incremental.
pub fn translate_error(buf: &mut [u8], frame: &Frame, quoted: &Quoted, rewrite: &ErrorRewrite) {
    let Some(message) = buf
        .get(frame.l4..frame.end)
        .and_then(IcmpMessage::new_checked)
    else {
        // A parsed ICMP error always holds its header.
        return;
    };
    let mut icmp = IcmpSum(message.checksum());
    let ip = quoted.ip;
    let mut ip_check = read16(buf, ip + 10);
    if rewrite.quoted_src.addr != quoted.src.addr {
        ip_check = update32(ip_check, quoted.src.addr, rewrite.quoted_src.addr);
        icmp.set32(buf, ip + 12, rewrite.quoted_src.addr);
    }
    if rewrite.quoted_dst.addr != quoted.dst.addr {
        ip_check = update32(ip_check, quoted.dst.addr, rewrite.quoted_dst.addr);
        icmp.set32(buf, ip + 16, rewrite.quoted_dst.addr);
    }
    icmp.set16(buf, ip + 10, ip_check);

    let l4 = quoted.l4;
    let old = (quoted.src, quoted.dst);
    let new = (rewrite.quoted_src, rewrite.quoted_dst);
    // The TCP checksum, at offset 16, is only in a quote that long.
    rewrite_transport(&mut icmp, buf, l4, frame.end, quoted.kind, old, new);
    if let Some(mut message) = buf
        .get_mut(frame.l4..frame.end)
        .and_then(IcmpMessage::new_checked)
    {
        message.set_checksum(icmp.0);
    }
    rewrite_ip(
        buf,
        frame,
        (rewrite.src_mac, rewrite.dst_mac),
        rewrite.src,
        rewrite.dst,
    );
}

/// An ICMP error the router sends about a packet it received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Time exceeded in transit (type 11, code 0).
    TimeExceeded,
    /// Fragmentation needed and DF set (type 3, code 4), with the next-hop MTU.
    FragmentationNeeded { mtu: u16 },
}

/// The longest ICMP error sent, IP header included (RFC 1812 4.3.2.3).
const MAX_ERROR_LEN: usize = 576;

/// IP + ICMP header of an error.
pub const ERROR_HEADERS: usize = 28;

/// Whether the router may answer `frame` with an ICMP error (RFC 1122
/// 3.2.2, RFC 1812 4.3.2.7): not about an ICMP error or other non-echo ICMP
/// message, not about a later fragment, not to a source that is not a
/// unicast host.
pub fn may_answer(frame: &Frame) -> bool {
    let src = frame.src;
    let unicast_source = src[0] != 0 && src[0] != 127 && src[0] < 224;
    let quotable = match frame.transport {
        Transport::Tcp { .. } | Transport::Udp { .. } | Transport::IcmpEcho { .. } => true,
        Transport::Other { .. } => true,
        Transport::IcmpError { .. } | Transport::IcmpOther { .. } | Transport::Fragment => false,
    };
    unicast_source && quotable && frame.fragmentation != Fragmentation::Later
}

/// Turns the frame in `buf` (which `frame` was parsed from) into `error`
/// about the packet it holds, sent from `from` (the router's address and MAC
/// on the port it came in by) back to its sender. The error quotes as much of
/// the packet as fits in `buf` and in 576 bytes, and at least its IP header
/// and 8 bytes of payload (or the whole packet if shorter). Returns the
/// length of the error frame, or None when `buf` is too short to hold it.
pub fn make_error(
    buf: &mut [u8],
    frame: &Frame,
    error: Error,
    from: ([u8; 4], [u8; 6]),
) -> Option<usize> {
    let packet_len = frame.end - L3_OFFSET;
    let header_len = frame.l4 - L3_OFFSET;
    let room = buf.len().checked_sub(L3_OFFSET + ERROR_HEADERS)?;
    let quote = packet_len.min(MAX_ERROR_LEN - ERROR_HEADERS).min(room);
    if quote < packet_len.min(header_len + 8) {
        return None;
    }
    buf.copy_within(L3_OFFSET..L3_OFFSET + quote, L3_OFFSET + ERROR_HEADERS);
    let (from_addr, from_mac) = from;
    let to_mac: [u8; 6] = buf[6..12].try_into().ok()?;
    buf[0..6].copy_from_slice(&to_mac);
    buf[6..12].copy_from_slice(&from_mac);

    let total = ERROR_HEADERS + quote;
    let ip = L3_OFFSET;
    // The length is at most 576.
    let total16 = total as u16;
    buf[ip..ip + 12].copy_from_slice(&[
        0x45,
        0xc0, // precedence: internetwork control, as for every ICMP error
        (total16 >> 8) as u8,
        total16 as u8,
        0,
        0,
        0,
        0,
        64,
        PROTO_ICMP,
        0,
        0,
    ]);
    buf[ip + 12..ip + 16].copy_from_slice(&from_addr);
    buf[ip + 16..ip + 20].copy_from_slice(&frame.src);
    let ip_check = checksum::checksum(&buf[ip..ip + 20]);
    write16(buf, ip + 10, ip_check);

    let icmp = ip + 20;
    let (icmp_type, code, rest) = match error {
        Error::TimeExceeded => (11, 0, [0; 4]),
        Error::FragmentationNeeded { mtu } => {
            let [hi, lo] = mtu.to_be_bytes();
            (3, 4, [0, 0, hi, lo])
        }
    };
    buf[icmp..icmp + 8]
        .copy_from_slice(&[icmp_type, code, 0, 0, rest[0], rest[1], rest[2], rest[3]]);
    let icmp_check = checksum::checksum(&buf[icmp..L3_OFFSET + total]);
    write16(buf, icmp + 2, icmp_check);
    Some(L3_OFFSET + total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::parse;
    use crate::testing::{self, Addressing};
    use std::net::Ipv4Addr;

    fn addressing(src: [u8; 4], dst: [u8; 4]) -> Addressing {
        Addressing {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src: Ipv4Addr::from(src),
            dst: Ipv4Addr::from(dst),
            ttl: 64,
        }
    }

    #[test]
    fn reads_the_quoted_tuple_through_ip_options() {
        let inner = testing::udp(
            &addressing([198, 18, 1, 2], [203, 0, 113, 10]),
            40000,
            53,
            b"q",
        );
        let inner = testing::with_ip_options(&inner, &[1, 1, 1, 0]);
        let error = testing::icmp_error(
            &addressing([198, 18, 1, 1], [198, 18, 1, 2]),
            3,
            3,
            [0; 4],
            &inner[14..],
        );
        let frame = parse(&error).unwrap();
        let q = quoted(&error, &frame).unwrap();
        assert_eq!(q.protocol, PROTO_UDP);
        assert_eq!(q.src, Endpoint::new([198, 18, 1, 2], 40000));
        assert_eq!(q.dst, Endpoint::new([203, 0, 113, 10], 53));
        assert_eq!(q.ip, 14 + 20 + 8);
        assert_eq!(q.l4, q.ip + 24, "the quoted header's options are skipped");
    }

    #[test]
    fn short_quotes_are_truncated_and_later_fragments_untranslatable() {
        let inner = testing::udp(
            &addressing([198, 18, 1, 2], [203, 0, 113, 10]),
            40000,
            53,
            b"q",
        );
        for cut in [0, 19, 20, 27] {
            let error = testing::icmp_error(
                &addressing([198, 18, 1, 1], [198, 18, 1, 2]),
                11,
                0,
                [0; 4],
                &inner[14..14 + cut],
            );
            let frame = parse(&error).unwrap();
            assert_eq!(quoted(&error, &frame), Err(QuoteError::Truncated), "{cut}");
        }
        let mut later = inner[14..].to_vec();
        later[6] = 0;
        later[7] = 10;
        let error = testing::icmp_error(
            &addressing([198, 18, 1, 1], [198, 18, 1, 2]),
            11,
            0,
            [0; 4],
            &later,
        );
        let frame = parse(&error).unwrap();
        assert_eq!(quoted(&error, &frame), Err(QuoteError::Untranslatable));
    }

    #[test]
    fn an_error_about_a_short_frame_that_does_not_fit_is_refused() {
        let mut frame = testing::udp(
            &addressing([192, 168, 50, 10], [203, 0, 113, 10]),
            1,
            2,
            b"",
        );
        let parsed = parse(&frame).unwrap();
        // 42 bytes: an error needs 14 + 28 + 28.
        assert_eq!(
            make_error(
                &mut frame,
                &parsed,
                Error::TimeExceeded,
                ([192, 168, 50, 1], [2; 6])
            ),
            None
        );
    }
}
