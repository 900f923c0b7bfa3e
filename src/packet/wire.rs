//! Typed views over a frame's bytes: each header's fields are named byte
//! ranges ([`field`]); a view is made only over a buffer long enough for it
//! (`new_checked`, one `check_len`), and after that its accessors and setters
//! cannot panic. Reading a frame is `parse.rs`'s (etherparse's borrowed
//! slices); these views are what the rewrite writes through.

use super::parse::L3_OFFSET;

/// Where each field sits: Ethernet from the frame's start, IPv4 from its
/// header's start, TCP, UDP and ICMP from theirs.
pub mod field {
    use std::ops::Range;

    pub const ETH_DST: Range<usize> = 0..6;
    pub const ETH_SRC: Range<usize> = 6..12;

    pub const IP_TTL: usize = 8;
    pub const IP_CHECKSUM: Range<usize> = 10..12;
    pub const IP_SRC: Range<usize> = 12..16;
    pub const IP_DST: Range<usize> = 16..20;
    /// The shortest IPv4 header.
    pub const IP_MIN_LEN: usize = 20;

    /// TCP and UDP.
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const UDP_CHECKSUM: Range<usize> = 6..8;
    pub const TCP_DATA_OFFSET: usize = 12;
    pub const TCP_CHECKSUM: Range<usize> = 16..18;
    /// Where TCP options start.
    pub const TCP_OPTIONS: usize = 20;

    pub const ICMP_CHECKSUM: Range<usize> = 2..4;
    /// The identifier of an ICMP echo request or reply.
    pub const ECHO_ID: Range<usize> = 4..6;
}

/// An Ethernet frame carrying an IPv4 header: its MACs and the IPv4 fields
/// a router rewrites.
#[derive(Debug)]
pub struct Ipv4Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Frame<T> {
    /// A view over `buffer`, when it holds an Ethernet header and the
    /// shortest IPv4 header.
    #[inline]
    pub fn new_checked(buffer: T) -> Option<Ipv4Frame<T>> {
        let view = Ipv4Frame { buffer };
        view.check_len().then_some(view)
    }

    #[inline]
    fn check_len(&self) -> bool {
        self.buffer.as_ref().len() >= L3_OFFSET + field::IP_MIN_LEN
    }

    #[inline]
    fn ip(&self) -> &[u8] {
        &self.buffer.as_ref()[L3_OFFSET..L3_OFFSET + field::IP_MIN_LEN]
    }

    #[inline]
    pub fn ttl(&self) -> u8 {
        self.ip()[field::IP_TTL]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        let b = &self.ip()[field::IP_CHECKSUM];
        u16::from_be_bytes([b[0], b[1]])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Frame<T> {
    #[inline]
    fn ip_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[L3_OFFSET..L3_OFFSET + field::IP_MIN_LEN]
    }

    #[inline]
    pub fn set_macs(&mut self, src: [u8; 6], dst: [u8; 6]) {
        let frame = self.buffer.as_mut();
        frame[field::ETH_DST].copy_from_slice(&dst);
        frame[field::ETH_SRC].copy_from_slice(&src);
    }

    #[inline]
    pub fn set_ttl(&mut self, ttl: u8) {
        self.ip_mut()[field::IP_TTL] = ttl;
    }

    #[inline]
    pub fn set_checksum(&mut self, checksum: u16) {
        self.ip_mut()[field::IP_CHECKSUM].copy_from_slice(&checksum.to_be_bytes());
    }

    #[inline]
    pub fn set_src(&mut self, addr: [u8; 4]) {
        self.ip_mut()[field::IP_SRC].copy_from_slice(&addr);
    }

    #[inline]
    pub fn set_dst(&mut self, addr: [u8; 4]) {
        self.ip_mut()[field::IP_DST].copy_from_slice(&addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_short_for_an_ipv4_header_gets_no_view() {
        assert!(Ipv4Frame::new_checked(&[0u8; 33][..]).is_none());
        assert!(Ipv4Frame::new_checked(&[0u8; 34][..]).is_some());
    }

    #[test]
    fn setters_write_the_named_fields() {
        let mut bytes = [0u8; 34];
        let mut view = Ipv4Frame::new_checked(&mut bytes[..]).expect("long enough");
        view.set_macs([1; 6], [2; 6]);
        view.set_ttl(63);
        view.set_checksum(0xabcd);
        view.set_src([10, 0, 0, 1]);
        view.set_dst([10, 0, 0, 2]);
        assert_eq!((view.ttl(), view.checksum()), (63, 0xabcd));
        assert_eq!(&bytes[0..12], &[2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1]);
        assert_eq!(&bytes[26..34], &[10, 0, 0, 1, 10, 0, 0, 2]);
    }
}
