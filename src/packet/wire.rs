//! Typed views over a frame's bytes: each header's fields are named byte
//! ranges ([`field`]); a view is made only over a buffer long enough for it
//! (`new_checked`, one `check_len`), and after that its accessors and setters
//! cannot panic. The general parser (`parse.rs`) reads with etherparse's
//! borrowed slices; the established fast path (`fast.rs`) reads through these
//! views at fixed offsets, and the rewrite writes through them.

use super::parse::L3_OFFSET;

/// Where each field sits: Ethernet from the frame's start, IPv4 from its
/// header's start, TCP, UDP and ICMP from theirs.
pub mod field {
    use std::ops::Range;

    pub const ETH_DST: Range<usize> = 0..6;
    pub const ETH_SRC: Range<usize> = 6..12;
    pub const ETH_TYPE: Range<usize> = 12..14;

    /// Version (high nibble) and header length in 32-bit words (low nibble).
    pub const IP_VERSION_IHL: usize = 0;
    pub const IP_TOTAL_LEN: Range<usize> = 2..4;
    pub const IP_ID: Range<usize> = 4..6;
    /// Flags (3 bits) and fragment offset (13 bits).
    pub const IP_FRAGMENT: Range<usize> = 6..8;

    pub const IP_TTL: usize = 8;
    pub const IP_PROTOCOL: usize = 9;
    pub const IP_CHECKSUM: Range<usize> = 10..12;
    pub const IP_SRC: Range<usize> = 12..16;
    pub const IP_DST: Range<usize> = 16..20;
    /// The shortest IPv4 header.
    pub const IP_MIN_LEN: usize = 20;

    /// TCP and UDP.
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const UDP_LENGTH: Range<usize> = 4..6;
    pub const UDP_CHECKSUM: Range<usize> = 6..8;
    /// The shortest UDP datagram: its header.
    pub const UDP_HEADER_LEN: usize = 8;
    pub const TCP_SEQ: Range<usize> = 4..8;
    /// Header length in 32-bit words (high nibble).
    pub const TCP_DATA_OFFSET: usize = 12;
    pub const TCP_FLAGS: usize = 13;
    pub const TCP_CHECKSUM: Range<usize> = 16..18;
    /// Where TCP options start.
    pub const TCP_OPTIONS: usize = 20;

    pub const ICMP_TYPE: usize = 0;
    pub const ICMP_CODE: usize = 1;
    pub const ICMP_CHECKSUM: Range<usize> = 2..4;
    /// The identifier of an ICMP echo request or reply.
    pub const ECHO_ID: Range<usize> = 4..6;
    /// The ICMP header (with the 4 bytes after type, code and checksum).
    pub const ICMP_HEADER_LEN: usize = 8;
}

/// TCP flag bits in [`field::TCP_FLAGS`].
pub mod tcp_flag {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}

#[inline]
fn get16(bytes: &[u8], at: std::ops::Range<usize>) -> u16 {
    let b = &bytes[at];
    u16::from_be_bytes([b[0], b[1]])
}

#[inline]
fn set16(bytes: &mut [u8], at: std::ops::Range<usize>, value: u16) {
    bytes[at].copy_from_slice(&value.to_be_bytes());
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
        get16(self.buffer.as_ref(), field::ETH_TYPE)
    }

    #[inline]
    pub fn version_ihl(&self) -> u8 {
        self.ip()[field::IP_VERSION_IHL]
    }

    #[inline]
    pub fn total_len(&self) -> u16 {
        get16(self.ip(), field::IP_TOTAL_LEN)
    }

    #[inline]
    pub fn ident(&self) -> u16 {
        get16(self.ip(), field::IP_ID)
    }

    /// Flags and fragment offset, as on the wire.
    #[inline]
    pub fn fragment_word(&self) -> u16 {
        get16(self.ip(), field::IP_FRAGMENT)
    }

    #[inline]
    pub fn ttl(&self) -> u8 {
        self.ip()[field::IP_TTL]
    }

    #[inline]
    pub fn protocol(&self) -> u8 {
        self.ip()[field::IP_PROTOCOL]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        get16(self.ip(), field::IP_CHECKSUM)
    }

    #[inline]
    pub fn src(&self) -> [u8; 4] {
        let b = &self.ip()[field::IP_SRC];
        [b[0], b[1], b[2], b[3]]
    }

    #[inline]
    pub fn dst(&self) -> [u8; 4] {
        let b = &self.ip()[field::IP_DST];
        [b[0], b[1], b[2], b[3]]
    }

    /// The shortest IPv4 header's 20 bytes (options, if any, follow).
    #[inline]
    pub fn header(&self) -> &[u8] {
        self.ip()
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
        set16(self.ip_mut(), field::IP_CHECKSUM, checksum);
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

/// A TCP segment: its header (options included) and payload, from the TCP
/// header's start to the end of the IP packet.
#[derive(Debug)]
pub struct TcpSegment<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpSegment<T> {
    /// A view over `buffer`, when it holds the whole TCP header its data
    /// offset announces (at least 20 bytes).
    #[inline]
    pub fn new_checked(buffer: T) -> Option<TcpSegment<T>> {
        let view = TcpSegment { buffer };
        view.check_len().then_some(view)
    }

    #[inline]
    fn check_len(&self) -> bool {
        let bytes = self.buffer.as_ref();
        bytes.len() >= field::TCP_OPTIONS && {
            let header = usize::from(bytes[field::TCP_DATA_OFFSET] >> 4) * 4;
            header >= field::TCP_OPTIONS && header <= bytes.len()
        }
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        get16(self.buffer.as_ref(), field::SRC_PORT)
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        get16(self.buffer.as_ref(), field::DST_PORT)
    }

    #[inline]
    pub fn seq(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::TCP_SEQ];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The [`tcp_flag`] bits.
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::TCP_FLAGS]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        get16(self.buffer.as_ref(), field::TCP_CHECKSUM)
    }

    /// The header's length, options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::TCP_DATA_OFFSET] >> 4) * 4
    }

    /// The option bytes, between the fixed header and the data offset.
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::TCP_OPTIONS..self.header_len()]
    }

    /// Payload bytes after the header.
    #[inline]
    pub fn payload_len(&self) -> usize {
        self.buffer.as_ref().len() - self.header_len()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpSegment<T> {
    #[inline]
    pub fn set_src_port(&mut self, port: u16) {
        set16(self.buffer.as_mut(), field::SRC_PORT, port);
    }

    #[inline]
    pub fn set_dst_port(&mut self, port: u16) {
        set16(self.buffer.as_mut(), field::DST_PORT, port);
    }

    #[inline]
    pub fn set_checksum(&mut self, checksum: u16) {
        set16(self.buffer.as_mut(), field::TCP_CHECKSUM, checksum);
    }
}

/// A UDP datagram: its 8-byte header and payload.
#[derive(Debug)]
pub struct UdpDatagram<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpDatagram<T> {
    /// A view over `buffer`, when it holds a UDP header.
    #[inline]
    pub fn new_checked(buffer: T) -> Option<UdpDatagram<T>> {
        let view = UdpDatagram { buffer };
        view.check_len().then_some(view)
    }

    #[inline]
    fn check_len(&self) -> bool {
        self.buffer.as_ref().len() >= field::UDP_HEADER_LEN
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        get16(self.buffer.as_ref(), field::SRC_PORT)
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        get16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The length field: header and payload, as the sender counted them.
    #[inline]
    pub fn length(&self) -> u16 {
        get16(self.buffer.as_ref(), field::UDP_LENGTH)
    }

    /// 0: the sender sent no checksum.
    #[inline]
    pub fn checksum(&self) -> u16 {
        get16(self.buffer.as_ref(), field::UDP_CHECKSUM)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpDatagram<T> {
    #[inline]
    pub fn set_src_port(&mut self, port: u16) {
        set16(self.buffer.as_mut(), field::SRC_PORT, port);
    }

    #[inline]
    pub fn set_dst_port(&mut self, port: u16) {
        set16(self.buffer.as_mut(), field::DST_PORT, port);
    }

    #[inline]
    pub fn set_checksum(&mut self, checksum: u16) {
        set16(self.buffer.as_mut(), field::UDP_CHECKSUM, checksum);
    }
}

/// An ICMP message: its 8-byte header and what follows (for an error, the
/// packet it quotes).
#[derive(Debug)]
pub struct IcmpMessage<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IcmpMessage<T> {
    /// A view over `buffer`, when it holds an ICMP header.
    #[inline]
    pub fn new_checked(buffer: T) -> Option<IcmpMessage<T>> {
        let view = IcmpMessage { buffer };
        view.check_len().then_some(view)
    }

    #[inline]
    fn check_len(&self) -> bool {
        self.buffer.as_ref().len() >= field::ICMP_HEADER_LEN
    }

    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::ICMP_TYPE]
    }

    #[inline]
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::ICMP_CODE]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        get16(self.buffer.as_ref(), field::ICMP_CHECKSUM)
    }

    /// The identifier of an echo request or reply.
    #[inline]
    pub fn echo_id(&self) -> u16 {
        get16(self.buffer.as_ref(), field::ECHO_ID)
    }

    /// What follows the header: for an error, the packet it quotes.
    #[inline]
    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[field::ICMP_HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpMessage<T> {
    #[inline]
    pub fn set_checksum(&mut self, checksum: u16) {
        set16(self.buffer.as_mut(), field::ICMP_CHECKSUM, checksum);
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

    #[test]
    fn transport_views_check_their_length_once() {
        assert!(UdpDatagram::new_checked(&[0u8; 7][..]).is_none());
        assert!(IcmpMessage::new_checked(&[0u8; 7][..]).is_none());
        assert!(TcpSegment::new_checked(&[0u8; 19][..]).is_none());
        let mut tcp = [0u8; 24];
        tcp[field::TCP_DATA_OFFSET] = 6 << 4;
        assert!(
            TcpSegment::new_checked(&tcp[..23]).is_none(),
            "options cut short"
        );
        tcp[field::TCP_DATA_OFFSET] = 4 << 4;
        assert!(
            TcpSegment::new_checked(&tcp[..]).is_none(),
            "data offset under 5"
        );
        tcp[field::TCP_DATA_OFFSET] = 6 << 4;
        let view = TcpSegment::new_checked(&tcp[..]).expect("a header with 4 option bytes");
        assert_eq!(
            (view.header_len(), view.options().len(), view.payload_len()),
            (24, 4, 0)
        );
    }

    #[test]
    fn transport_setters_write_the_named_fields() {
        let mut tcp = [0u8; 20];
        tcp[field::TCP_DATA_OFFSET] = 5 << 4;
        let mut view = TcpSegment::new_checked(&mut tcp[..]).expect("a bare header");
        view.set_src_port(0x1234);
        view.set_dst_port(0x5678);
        view.set_checksum(0x9abc);
        assert_eq!(
            (view.src_port(), view.dst_port(), view.checksum()),
            (0x1234, 0x5678, 0x9abc)
        );
        assert_eq!(&tcp[0..4], &[0x12, 0x34, 0x56, 0x78]);
        assert_eq!(&tcp[16..18], &[0x9a, 0xbc]);

        let mut udp = [0u8; 8];
        let mut view = UdpDatagram::new_checked(&mut udp[..]).expect("a header");
        view.set_src_port(1);
        view.set_dst_port(2);
        view.set_checksum(3);
        assert_eq!(udp, [0, 1, 0, 2, 0, 0, 0, 3]);

        let mut icmp = [8u8, 0, 0, 0, 1, 2, 0, 9];
        let mut view = IcmpMessage::new_checked(&mut icmp[..]).expect("a header");
        view.set_checksum(0x0304);
        assert_eq!(
            (view.msg_type(), view.code(), view.echo_id(), view.body()),
            (8, 0, 0x0102, &[][..])
        );
        assert_eq!(icmp, [8, 0, 3, 4, 1, 2, 0, 9]);
    }
}
