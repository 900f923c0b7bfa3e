//! Typed views over an IPv6 frame's bytes, as [`super::wire`] has for IPv4:
//! the fixed header's fields and those of the extension headers the parser
//! walks are named byte ranges ([`field6`]); [`Ipv6Frame`] is made only over a
//! buffer long enough for its fixed header, after which its accessors and
//! setters cannot panic. TCP, UDP and ICMPv6 headers are read and written
//! through the IPv4 module's views and offsets, which are the same.

use super::parse::L3_OFFSET;
use super::rewrite::Addr6;
use super::wire::field;

/// Where each field sits: the fixed IPv6 header from its start, each
/// extension header from its own start.
pub mod field6 {
    use std::ops::Range;

    /// Version (high nibble), then traffic class and flow label.
    pub const VERSION: usize = 0;
    /// The length of everything after the fixed header.
    pub const PAYLOAD_LEN: Range<usize> = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
    /// The fixed header: IPv6 has no options in it, only extension headers after.
    pub const HEADER_LEN: usize = 40;

    /// Every extension header the parser walks starts with its next header.
    pub const EXT_NEXT_HEADER: usize = 0;
    /// Its length, in units that depend on the header (see `ipv6::extension_len`).
    pub const EXT_LEN: usize = 1;
    /// The first two bytes: what an extension header's length is read from.
    pub const EXT_MIN_LEN: usize = 2;
    /// A Routing header's segments left.
    pub const ROUTING_SEGMENTS_LEFT: usize = 3;
    /// A Fragment header's offset (13 bits, in 8-byte units), two reserved
    /// bits and the more-fragments bit.
    pub const FRAGMENT_OFFSET: Range<usize> = 2..4;
    pub const FRAGMENT_ID: Range<usize> = 4..8;
    /// The Fragment header has a fixed length (its length byte is reserved).
    pub const FRAGMENT_LEN: usize = 8;

    /// The MTU of an ICMPv6 Packet Too Big, the pointer of a Parameter
    /// Problem: the 4 bytes after type, code and checksum.
    pub const ICMP6_REST: Range<usize> = 4..8;
}

/// The ethertype of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

/// Offset of the IPv6 payload (the first extension header, or the upper
/// layer) in an untagged Ethernet frame.
pub const L3_PAYLOAD_OFFSET: usize = L3_OFFSET + field6::HEADER_LEN;

/// Whether the Ethernet frame `frame` carries IPv6 (untagged: a tagged
/// one is the kernel's, whatever it carries).
#[inline]
pub fn carries_ipv6(frame: &[u8]) -> bool {
    get16(frame, field::ETH_TYPE.start) == Some(ETHERTYPE_IPV6)
}

/// The 16-bit word at `at`, if `bytes` holds it.
#[inline]
pub(super) fn get16(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// Writes the 16-bit word at `at` if `bytes` holds it (a frame parsed from
/// `bytes` always does).
#[inline]
pub(super) fn set16(bytes: &mut [u8], at: usize, value: u16) {
    if let Some(b) = at.checked_add(2).and_then(|end| bytes.get_mut(at..end)) {
        b.copy_from_slice(&value.to_be_bytes());
    }
}

/// An Ethernet frame carrying an IPv6 fixed header: its MACs and the
/// fields a router reads and rewrites.
#[derive(Debug)]
pub struct Ipv6Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Frame<T> {
    /// A view over `buffer`, when it holds an Ethernet header and the
    /// IPv6 fixed header.
    #[inline]
    pub fn new_checked(buffer: T) -> Option<Ipv6Frame<T>> {
        let view = Ipv6Frame { buffer };
        view.check_len().then_some(view)
    }

    #[inline]
    fn check_len(&self) -> bool {
        self.buffer.as_ref().len() >= L3_PAYLOAD_OFFSET
    }

    #[inline]
    fn ip(&self) -> &[u8] {
        &self.buffer.as_ref()[L3_OFFSET..L3_PAYLOAD_OFFSET]
    }

    #[inline]
    pub fn dst_mac(&self) -> [u8; 6] {
        let b = &self.buffer.as_ref()[field::ETH_DST];
        [b[0], b[1], b[2], b[3], b[4], b[5]]
    }

    #[inline]
    pub fn src_mac(&self) -> [u8; 6] {
        let b = &self.buffer.as_ref()[field::ETH_SRC];
        [b[0], b[1], b[2], b[3], b[4], b[5]]
    }

    #[inline]
    pub fn ether_type(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::ETH_TYPE];
        u16::from_be_bytes([b[0], b[1]])
    }

    #[inline]
    pub fn version(&self) -> u8 {
        self.ip()[field6::VERSION] >> 4
    }

    #[inline]
    pub fn payload_len(&self) -> u16 {
        let b = &self.ip()[field6::PAYLOAD_LEN];
        u16::from_be_bytes([b[0], b[1]])
    }

    #[inline]
    pub fn next_header(&self) -> u8 {
        self.ip()[field6::NEXT_HEADER]
    }

    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.ip()[field6::HOP_LIMIT]
    }

    #[inline]
    pub fn src(&self) -> Addr6 {
        let mut addr = [0; 16];
        addr.copy_from_slice(&self.ip()[field6::SRC]);
        addr
    }

    #[inline]
    pub fn dst(&self) -> Addr6 {
        let mut addr = [0; 16];
        addr.copy_from_slice(&self.ip()[field6::DST]);
        addr
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Frame<T> {
    #[inline]
    fn ip_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[L3_OFFSET..L3_PAYLOAD_OFFSET]
    }

    #[inline]
    pub fn set_macs(&mut self, src: [u8; 6], dst: [u8; 6]) {
        let frame = self.buffer.as_mut();
        frame[field::ETH_DST].copy_from_slice(&dst);
        frame[field::ETH_SRC].copy_from_slice(&src);
    }

    #[inline]
    pub fn set_ether_type(&mut self, ether_type: u16) {
        self.buffer.as_mut()[field::ETH_TYPE].copy_from_slice(&ether_type.to_be_bytes());
    }

    /// Version 6, traffic class 0 and flow label 0: the first word of a
    /// header the router makes itself.
    #[inline]
    pub fn set_version_class_label(&mut self) {
        self.ip_mut()[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
    }

    #[inline]
    pub fn set_payload_len(&mut self, len: u16) {
        self.ip_mut()[field6::PAYLOAD_LEN].copy_from_slice(&len.to_be_bytes());
    }

    #[inline]
    pub fn set_next_header(&mut self, next: u8) {
        self.ip_mut()[field6::NEXT_HEADER] = next;
    }

    #[inline]
    pub fn set_hop_limit(&mut self, hop_limit: u8) {
        self.ip_mut()[field6::HOP_LIMIT] = hop_limit;
    }

    #[inline]
    pub fn set_src(&mut self, addr: Addr6) {
        self.ip_mut()[field6::SRC].copy_from_slice(&addr);
    }

    #[inline]
    pub fn set_dst(&mut self, addr: Addr6) {
        self.ip_mut()[field6::DST].copy_from_slice(&addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_short_for_the_fixed_header_gets_no_view() {
        assert!(Ipv6Frame::new_checked(&[0u8; 53][..]).is_none());
        assert!(Ipv6Frame::new_checked(&[0u8; 54][..]).is_some());
    }

    #[test]
    fn setters_write_the_named_fields() {
        let mut bytes = [0u8; 54];
        let mut view = Ipv6Frame::new_checked(&mut bytes[..]).expect("long enough");
        view.set_macs([1; 6], [2; 6]);
        view.set_ether_type(ETHERTYPE_IPV6);
        view.set_version_class_label();
        view.set_payload_len(0x0102);
        view.set_next_header(58);
        view.set_hop_limit(255);
        view.set_src([3; 16]);
        view.set_dst([4; 16]);
        assert_eq!(
            (
                view.version(),
                view.payload_len(),
                view.next_header(),
                view.hop_limit()
            ),
            (6, 0x0102, 58, 255)
        );
        assert_eq!((view.src(), view.dst()), ([3; 16], [4; 16]));
        assert_eq!((view.src_mac(), view.dst_mac()), ([1; 6], [2; 6]));
        assert_eq!(view.ether_type(), 0x86dd);
        assert_eq!(&bytes[12..22], &[0x86, 0xdd, 0x60, 0, 0, 0, 1, 2, 58, 255]);
        assert_eq!(&bytes[22..38], &[3; 16]);
        assert_eq!(&bytes[38..54], &[4; 16]);
    }

    #[test]
    fn word_helpers_never_reach_past_the_buffer() {
        let mut bytes = [1u8, 2, 3];
        assert_eq!(get16(&bytes, 1), Some(0x0203));
        assert_eq!(get16(&bytes, 2), None);
        assert_eq!(get16(&bytes, usize::MAX), None);
        set16(&mut bytes, 2, 0xffff);
        set16(&mut bytes, usize::MAX, 0xffff);
        assert_eq!(bytes, [1, 2, 3]);
    }
}
