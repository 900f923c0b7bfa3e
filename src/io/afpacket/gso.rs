//! Splitting super-frames. The kernel hands AF_PACKET sockets frames longer than
//! the MTU: TCP segments a local sender's TSO left unsplit (on veth they cross to
//! the peer whole) and packets GRO merged on receive. With `PACKET_VNET_HDR` each
//! frame comes with a `virtio_net_hdr` saying how it would be cut; this module cuts
//! it the same way (TCP and UDP, over IPv4 or over IPv6 without extension
//! headers), writing full IP and L4 checksums into every segment, so the core
//! sees ordinary frames.

use crate::packet::checksum::{
    checksum, fold, pseudo_header_sum, transport_checksum, transport_checksum6,
};

/// `sizeof(struct virtio_net_hdr)`.
pub(crate) const VNET_HDR_LEN: usize = 10;

/// `VIRTIO_NET_HDR_F_*` flags.
const F_NEEDS_CSUM: u8 = 1;
const F_DATA_VALID: u8 = 2;

/// `VIRTIO_NET_HDR_GSO_*` types (without the ECN bit).
const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;
const GSO_TCPV6: u8 = 4;
const GSO_UDP_L4: u8 = 5;
const GSO_ECN: u8 = 0x80;

/// The TCP checksum field, from the start of the TCP header.
const TCP_CHECK: usize = 16;

/// How the kernel would have cut a super-frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gso {
    /// `VIRTIO_NET_HDR_GSO_*`, ECN bit cleared.
    pub(crate) kind: u8,
    /// Payload bytes per segment.
    pub(crate) size: u16,
}

/// A `virtio_net_hdr` (its fields in host byte order, as packet sockets use it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Vnet {
    flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*`, ECN bit included.
    gso_type: u8,
    hdr_len: u16,
    gso_size: u16,
    csum_start: u16,
    csum_offset: u16,
}

impl Vnet {
    pub(crate) fn parse(hdr: &[u8; VNET_HDR_LEN]) -> Vnet {
        let half = |at: usize| u16::from_ne_bytes([hdr[at], hdr[at + 1]]);
        Vnet {
            flags: hdr[0],
            gso_type: hdr[1],
            hdr_len: half(2),
            gso_size: half(4),
            csum_start: half(6),
            csum_offset: half(8),
        }
    }

    pub(crate) fn bytes(&self) -> [u8; VNET_HDR_LEN] {
        let mut hdr = [0u8; VNET_HDR_LEN];
        hdr[0] = self.flags;
        hdr[1] = self.gso_type;
        for (at, value) in [
            (2, self.hdr_len),
            (4, self.gso_size),
            (6, self.csum_start),
            (8, self.csum_offset),
        ] {
            hdr[at..at + 2].copy_from_slice(&value.to_ne_bytes());
        }
        hdr
    }

    /// How to cut the frame; None for an ordinary frame.
    pub(crate) fn gso(&self) -> Option<Gso> {
        let kind = self.gso_type & !GSO_ECN;
        (kind != GSO_NONE).then_some(Gso {
            kind,
            size: self.gso_size,
        })
    }

    /// What the core needs to pass the TCP/IPv4 super-frame `frame` (as received,
    /// untagged) through whole: its segment size and where its partial checksum
    /// is. A super-frame whose checksum the kernel already verified (GRO) gets its
    /// pseudo-header sum written into the checksum field here, so it is partial
    /// like a local sender's. None for anything else (the caller cuts it).
    pub(crate) fn whole(&self, frame: &mut [u8]) -> Option<crate::router::Gso> {
        let gso = self.gso().filter(|g| g.kind == GSO_TCPV4)?;
        let layout = Layout::of(frame, gso)?;
        let (csum_start, csum_offset) = if self.flags & F_NEEDS_CSUM != 0 {
            (self.csum_start, self.csum_offset)
        } else if self.flags & F_DATA_VALID != 0 {
            let src: [u8; 4] = [frame[26], frame[27], frame[28], frame[29]];
            let dst: [u8; 4] = [frame[30], frame[31], frame[32], frame[33]];
            // At most 64 KiB: the IP total length bounds it.
            let l4_len = (layout.end - layout.l4) as u16;
            let sum = fold(pseudo_header_sum(src, dst, 6, l4_len));
            let at = layout.l4 + TCP_CHECK;
            frame[at..at + 2].copy_from_slice(&sum.to_be_bytes());
            (layout.l4 as u16, TCP_CHECK as u16)
        } else {
            return None;
        };
        Some(crate::router::Gso {
            size: gso.size,
            csum_start,
            csum_offset,
        })
    }

    /// The header to send `frame` with: the core passed it through whole from a
    /// super-frame received with `self`, so the egress device or the kernel cuts
    /// it into segments of the same size and completes their checksums. A plain
    /// header when the frame is no longer TCP/IPv4 (the core answered it with an
    /// ICMP error, say).
    pub(crate) fn passthrough(&self, frame: &[u8]) -> Vnet {
        let gso = Gso {
            kind: GSO_TCPV4,
            size: self.gso_size,
        };
        match Layout::of(frame, gso) {
            // Headers of at most 14 + 60 + 60 bytes.
            Some(layout) => Vnet {
                flags: F_NEEDS_CSUM,
                gso_type: GSO_TCPV4 | (self.gso_type & GSO_ECN),
                hdr_len: layout.headers as u16,
                gso_size: self.gso_size,
                csum_start: layout.l4 as u16,
                csum_offset: TCP_CHECK as u16,
            },
            None => Vnet::default(),
        }
    }
}

/// The segments of one super-frame, each an Ethernet frame of its own.
pub(crate) struct Segments {
    buf: Vec<u8>,
    spans: Vec<(usize, usize)>,
}

impl Segments {
    pub(crate) fn new() -> Segments {
        Segments {
            buf: Vec::with_capacity(1 << 17),
            spans: Vec::with_capacity(64),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }

    pub(crate) fn get_mut(&mut self, i: usize) -> &mut [u8] {
        let (start, len) = self.spans[i];
        &mut self.buf[start..start + len]
    }

    /// The first `len` bytes of segment `i`.
    pub(crate) fn bytes(&self, i: usize, len: usize) -> &[u8] {
        let (start, seg_len) = self.spans[i];
        &self.buf[start..start + len.min(seg_len)]
    }

    /// Cuts `frame` into segments of `gso.size` payload bytes, replacing the previous
    /// segments. False (and no segments) for a frame this cannot cut: not untagged
    /// IPv4 or IPv6 without extension headers, not TCP (TCPV4, TCPV6) or UDP
    /// (UDP_L4), headers out of range, size 0.
    pub(crate) fn split(&mut self, frame: &[u8], gso: Gso) -> bool {
        self.buf.clear();
        self.spans.clear();
        let Some(layout) = Layout::of(frame, gso) else {
            return false;
        };
        let payload = &frame[layout.headers..layout.end];
        // IPv6 has no identification: the bytes are its payload length,
        // which `finish` writes over.
        let id = u16::from_be_bytes([frame[18], frame[19]]);
        let seq = u32::from_be_bytes(
            frame[layout.l4 + 4..layout.l4 + 8]
                .try_into()
                .unwrap_or([0; 4]),
        );
        let count = payload.len().div_ceil(usize::from(gso.size)).max(1);
        for i in 0..count {
            let from = i * usize::from(gso.size);
            let chunk = &payload
                [from.min(payload.len())..(from + usize::from(gso.size)).min(payload.len())];
            let start = self.buf.len();
            self.buf.extend_from_slice(&frame[..layout.headers]);
            self.buf.extend_from_slice(chunk);
            let seg = &mut self.buf[start..];
            layout.finish(seg, i, count, id, seq.wrapping_add(from as u32));
            self.spans.push((start, seg.len()));
        }
        true
    }
}

/// Where the headers of a super-frame end.
struct Layout {
    kind: u8,
    /// IPv6 (a 40-byte fixed header, no extension headers), else IPv4.
    v6: bool,
    ihl: usize,
    /// Start of the L4 header.
    l4: usize,
    /// End of the L4 header: the payload starts here.
    headers: usize,
    /// End of the IP packet (Ethernet padding excluded).
    end: usize,
}

/// The IPv6 fixed header's length.
const IPV6_HEADER: usize = 40;

impl Layout {
    fn of(frame: &[u8], gso: Gso) -> Option<Layout> {
        if gso.size == 0 || frame.len() < 34 {
            return None;
        }
        let (v6, ihl, end, protocol) = match ([frame[12], frame[13]], frame[14] >> 4) {
            ([0x08, 0x00], 4) => (
                false,
                usize::from(frame[14] & 0x0f) * 4,
                14 + usize::from(u16::from_be_bytes([frame[16], frame[17]])),
                frame[23],
            ),
            ([0x86, 0xdd], 6) if frame.len() >= 14 + IPV6_HEADER => (
                true,
                IPV6_HEADER,
                14 + IPV6_HEADER + usize::from(u16::from_be_bytes([frame[18], frame[19]])),
                frame[20],
            ),
            _ => return None,
        };
        let l4 = 14 + ihl;
        if ihl < 20 || end > frame.len() || l4 > end {
            return None;
        }
        let headers = match (gso.kind, protocol, v6) {
            (GSO_TCPV4, 6, false) | (GSO_TCPV6, 6, true) if l4 + 20 <= end => {
                match usize::from(frame[l4 + 12] >> 4) * 4 {
                    doff if doff >= 20 => l4 + doff,
                    _ => return None,
                }
            }
            (GSO_UDP_L4, 17, _) => l4 + 8,
            _ => return None,
        };
        (headers <= end).then_some(Layout {
            kind: gso.kind,
            v6,
            ihl,
            l4,
            headers,
            end,
        })
    }

    /// Fixes the headers of segment `i` of `count`: lengths, IP id and
    /// checksum (IPv4), TCP sequence number and flags, and full checksums.
    fn finish(&self, seg: &mut [u8], i: usize, count: usize, id: u16, seq: u32) {
        let l4_len = (seg.len() - self.l4) as u16;
        if self.v6 {
            seg[18..20].copy_from_slice(&l4_len.to_be_bytes());
        } else {
            let ip_len = (seg.len() - 14) as u16;
            seg[16..18].copy_from_slice(&ip_len.to_be_bytes());
            seg[18..20].copy_from_slice(&id.wrapping_add(i as u16).to_be_bytes());
            seg[24..26].copy_from_slice(&[0, 0]);
            let ip_check = checksum(&seg[14..14 + self.ihl]);
            seg[24..26].copy_from_slice(&ip_check.to_be_bytes());
        }
        let l4 = self.l4;
        let (proto, check_at) = if self.kind == GSO_UDP_L4 {
            seg[l4 + 4..l4 + 6].copy_from_slice(&l4_len.to_be_bytes());
            (17, l4 + 6)
        } else {
            seg[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
            const FIN: u8 = 0x01;
            const PSH: u8 = 0x08;
            const CWR: u8 = 0x80;
            if i + 1 < count {
                seg[l4 + 13] &= !(FIN | PSH);
            }
            if i > 0 {
                seg[l4 + 13] &= !CWR;
            }
            (6, l4 + 16)
        };
        seg[check_at..check_at + 2].copy_from_slice(&[0, 0]);
        let check = if self.v6 {
            let addr = |at: usize| -> [u8; 16] { seg[at..at + 16].try_into().unwrap_or([0; 16]) };
            transport_checksum6(addr(22), addr(38), proto, &seg[l4..])
        } else {
            let src: [u8; 4] = [seg[26], seg[27], seg[28], seg[29]];
            let dst: [u8; 4] = [seg[30], seg[31], seg[32], seg[33]];
            transport_checksum(src, dst, proto, &seg[l4..])
        };
        seg[check_at..check_at + 2].copy_from_slice(&check.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::checksum::sum_bytes;
    use crate::packet::{apply, apply_partial, parse, Endpoint, Rewrite};
    use proptest::prelude::*;

    /// An Ethernet + IPv4 (+ options) + TCP super-frame with `payload` bytes.
    fn tcp_frame(payload: usize, flags: u8, options: usize) -> Vec<u8> {
        let ihl = 20 + options;
        let total = ihl + 20 + payload;
        let mut f = vec![0u8; 14 + total + 6]; // 6 bytes of Ethernet padding
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x40 | (ihl / 4) as u8;
        f[16..18].copy_from_slice(&(total as u16).to_be_bytes());
        f[18..20].copy_from_slice(&0xfff0u16.to_be_bytes());
        f[20] = 0x40;
        f[22] = 64;
        f[23] = 6;
        f[26..30].copy_from_slice(&[192, 168, 50, 10]);
        f[30..34].copy_from_slice(&[203, 0, 113, 10]);
        let l4 = 14 + ihl;
        f[l4..l4 + 2].copy_from_slice(&40000u16.to_be_bytes());
        f[l4 + 2..l4 + 4].copy_from_slice(&80u16.to_be_bytes());
        f[l4 + 4..l4 + 8].copy_from_slice(&0xffff_ff00u32.to_be_bytes());
        f[l4 + 12] = 5 << 4;
        f[l4 + 13] = flags;
        for (i, byte) in f[l4 + 20..14 + total].iter_mut().enumerate() {
            *byte = (i % 251) as u8;
        }
        f
    }

    fn verify(seg: &[u8], proto: u8) {
        let ihl = usize::from(seg[14] & 0x0f) * 4;
        assert_eq!(
            fold(sum_bytes(0, &seg[14..14 + ihl])),
            0xffff,
            "IP checksum"
        );
        let l4_len = (seg.len() - 14 - ihl) as u16;
        let src = [seg[26], seg[27], seg[28], seg[29]];
        let dst = [seg[30], seg[31], seg[32], seg[33]];
        let sum = sum_bytes(pseudo_header_sum(src, dst, proto, l4_len), &seg[14 + ihl..]);
        assert_eq!(fold(sum), 0xffff, "L4 checksum");
    }

    #[test]
    fn parses_virtio_headers() {
        let mut hdr = [0u8; VNET_HDR_LEN];
        assert_eq!(Vnet::parse(&hdr).gso(), None);
        hdr[1] = GSO_TCPV4 | GSO_ECN;
        hdr[4..6].copy_from_slice(&1448u16.to_ne_bytes());
        assert_eq!(
            Vnet::parse(&hdr).gso(),
            Some(Gso {
                kind: GSO_TCPV4,
                size: 1448
            })
        );
        hdr[0] = F_NEEDS_CSUM;
        hdr[2..4].copy_from_slice(&66u16.to_ne_bytes());
        hdr[6..8].copy_from_slice(&34u16.to_ne_bytes());
        hdr[8..10].copy_from_slice(&16u16.to_ne_bytes());
        assert_eq!(Vnet::parse(&hdr).bytes(), hdr, "parse and bytes round-trip");
    }

    #[test]
    fn splits_tcp_like_the_kernel() {
        let frame = tcp_frame(3000, 0x80 | 0x18 | 0x01, 4); // CWR, PSH, ACK, FIN
        let mut segments = Segments::new();
        assert!(segments.split(
            &frame,
            Gso {
                kind: GSO_TCPV4,
                size: 1400
            }
        ));
        assert_eq!(segments.len(), 3);
        let mut payload = Vec::new();
        for i in 0..3 {
            let seg = segments.get_mut(i).to_vec();
            verify(&seg, 6);
            let l4 = 14 + 24;
            let chunk = &seg[l4 + 20..];
            assert_eq!(chunk.len(), [1400, 1400, 200][i]);
            assert_eq!(
                u16::from_be_bytes([seg[18], seg[19]]),
                0xfff0u16.wrapping_add(i as u16)
            );
            let seq = u32::from_be_bytes(seg[l4 + 4..l4 + 8].try_into().unwrap());
            assert_eq!(seq, 0xffff_ff00u32.wrapping_add(1400 * i as u32));
            let flags = seg[l4 + 13];
            assert_eq!(flags & 0x80 != 0, i == 0, "CWR only on the first");
            assert_eq!(flags & 0x09 != 0, i == 2, "FIN and PSH only on the last");
            assert_eq!(flags & 0x10, 0x10, "ACK on all");
            assert_eq!(
                seg[14..14 + 24][20..],
                frame[14 + 20..14 + 24],
                "IP options kept"
            );
            payload.extend_from_slice(chunk);
        }
        assert_eq!(
            payload,
            frame[14 + 24 + 20..frame.len() - 6],
            "payload intact, padding dropped"
        );
    }

    #[test]
    fn splits_udp_datagrams() {
        // 20 + 2500 bytes after the IP header: an 8-byte UDP header and 2512 bytes.
        let mut frame = tcp_frame(2500, 0, 0);
        frame[23] = 17;
        let mut segments = Segments::new();
        assert!(segments.split(
            &frame,
            Gso {
                kind: GSO_UDP_L4,
                size: 1000
            }
        ));
        assert_eq!(segments.len(), 3);
        for i in 0..3 {
            let seg = segments.get_mut(i).to_vec();
            verify(&seg, 17);
            let udp_len = u16::from_be_bytes([seg[38], seg[39]]);
            assert_eq!(usize::from(udp_len), seg.len() - 34);
        }
        assert_eq!(segments.bytes(2, 10_000).len(), 34 + 8 + 512);
        assert_eq!(segments.bytes(2, 20).len(), 20);
    }

    #[test]
    fn refuses_what_it_cannot_cut() {
        let frame = tcp_frame(3000, 0, 0);
        let mut segments = Segments::new();
        let tcp = Gso {
            kind: GSO_TCPV4,
            size: 1400,
        };
        assert!(
            !segments.split(
                &frame,
                Gso {
                    kind: GSO_UDP_L4,
                    size: 1400
                }
            ),
            "TCP frame, UDP GSO"
        );
        assert!(
            !segments.split(
                &frame,
                Gso {
                    kind: 4,
                    size: 1400
                }
            ),
            "TCPV6"
        );
        assert!(
            !segments.split(
                &frame,
                Gso {
                    kind: GSO_TCPV4,
                    size: 0
                }
            ),
            "size 0"
        );
        for cut in [0, 13, 20, 33, 40, 60, 1000] {
            assert!(!segments.split(&frame[..cut], tcp), "truncated at {cut}");
            assert_eq!(segments.len(), 0);
        }
        let mut bad_doff = frame.clone();
        bad_doff[14 + 20 + 12] = 1 << 4;
        assert!(
            !segments.split(&bad_doff, tcp),
            "TCP header shorter than 20 bytes"
        );
        let mut vlan = frame.clone();
        vlan[12..14].copy_from_slice(&[0x81, 0x00]);
        assert!(!segments.split(&vlan, tcp), "tagged");
    }

    /// An Ethernet + IPv6 + TCP (or UDP) super-frame with `payload` bytes.
    fn frame6(protocol: u8, payload: usize) -> Vec<u8> {
        let l4_header = if protocol == 6 { 20 } else { 8 };
        let mut f = vec![0u8; 14 + 40 + l4_header + payload];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        f[14] = 0x60;
        let plen = (l4_header + payload) as u16;
        f[18..20].copy_from_slice(&plen.to_be_bytes());
        f[20] = protocol;
        f[21] = 64;
        f[22..38].copy_from_slice(&"fd00:50::a".parse::<std::net::Ipv6Addr>().unwrap().octets());
        f[38..54].copy_from_slice(
            &"2001:db8::10"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        let l4 = 54;
        f[l4..l4 + 4].copy_from_slice(&[0x9c, 0x40, 0, 80]);
        if protocol == 6 {
            f[l4 + 4..l4 + 8].copy_from_slice(&0xffff_ff00u32.to_be_bytes());
            f[l4 + 12] = 5 << 4;
            f[l4 + 13] = 0x18 | 0x01; // PSH, ACK, FIN
        }
        for (k, b) in f[l4 + l4_header..].iter_mut().enumerate() {
            *b = k as u8;
        }
        f
    }

    #[test]
    fn cuts_ipv6_tcp_and_udp_super_frames() {
        for (protocol, kind) in [(6u8, GSO_TCPV6), (17, GSO_UDP_L4)] {
            let frame = frame6(protocol, 3000);
            let mut segments = Segments::new();
            assert!(
                segments.split(&frame, Gso { kind, size: 1400 }),
                "{protocol}"
            );
            assert_eq!(segments.len(), 3);
            let header = if protocol == 6 { 20 } else { 8 };
            let mut payload = Vec::new();
            for i in 0..3 {
                let seg = segments.get_mut(i).to_vec();
                let plen = usize::from(u16::from_be_bytes([seg[18], seg[19]]));
                assert_eq!(plen, seg.len() - 54, "payload length");
                let src: [u8; 16] = seg[22..38].try_into().unwrap();
                let dst: [u8; 16] = seg[38..54].try_into().unwrap();
                let sum = sum_bytes(
                    crate::packet::checksum::pseudo_header_sum6(src, dst, protocol, plen as u32),
                    &seg[54..],
                );
                assert_eq!(fold(sum), 0xffff, "L4 checksum of segment {i}");
                if protocol == 6 {
                    let seq = u32::from_be_bytes(seg[58..62].try_into().unwrap());
                    assert_eq!(seq, 0xffff_ff00u32.wrapping_add(1400 * i as u32));
                    let fin_psh = seg[54 + 13] & 0x09;
                    assert_eq!(fin_psh != 0, i == 2, "FIN and PSH on the last only");
                } else {
                    let udp_len = usize::from(u16::from_be_bytes([seg[58], seg[59]]));
                    assert_eq!(udp_len, plen);
                }
                payload.extend_from_slice(&seg[54 + header..]);
            }
            assert_eq!(payload, frame[54 + header..], "the payload, in order");
        }
        // An IPv6 frame under an IPv4 kind, or the reverse, is not cut.
        let mut segments = Segments::new();
        assert!(!segments.split(
            &frame6(6, 3000),
            Gso {
                kind: GSO_TCPV4,
                size: 1400
            }
        ));
    }

    /// `tcp_frame` from `src` to `dst` with a valid IP checksum and the TCP
    /// checksum partial, as a local sender with offloads leaves it.
    fn partial_frame(payload: usize, options: usize, src: Endpoint, dst: Endpoint) -> Vec<u8> {
        let mut f = tcp_frame(payload, 0x18, options);
        let ihl = 20 + options;
        let l4 = 14 + ihl;
        f[26..30].copy_from_slice(&src.addr);
        f[30..34].copy_from_slice(&dst.addr);
        f[l4..l4 + 2].copy_from_slice(&src.port.to_be_bytes());
        f[l4 + 2..l4 + 4].copy_from_slice(&dst.port.to_be_bytes());
        let ip_check = checksum(&f[14..l4]);
        f[24..26].copy_from_slice(&ip_check.to_be_bytes());
        let l4_len = (f.len() - 6 - l4) as u16;
        let pseudo = fold(pseudo_header_sum(src.addr, dst.addr, 6, l4_len));
        f[l4 + TCP_CHECK..l4 + TCP_CHECK + 2].copy_from_slice(&pseudo.to_be_bytes());
        f
    }

    fn needs_csum(size: u16, l4: usize) -> Vnet {
        Vnet {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4 | GSO_ECN,
            hdr_len: (l4 + 20) as u16,
            gso_size: size,
            csum_start: l4 as u16,
            csum_offset: TCP_CHECK as u16,
        }
    }

    #[test]
    fn virtio_header_translation() {
        let src = Endpoint::new([192, 168, 50, 10], 40000);
        let dst = Endpoint::new([203, 0, 113, 10], 80);
        let frame = partial_frame(3000, 4, src, dst);
        let l4 = 14 + 24;
        let vnet = needs_csum(1400, l4);
        let mut received = frame.clone();
        assert_eq!(
            vnet.whole(&mut received),
            Some(crate::router::Gso {
                size: 1400,
                csum_start: l4 as u16,
                csum_offset: 16
            })
        );
        assert_eq!(received, frame, "a partial checksum is left as it is");
        let sent = vnet.passthrough(&frame);
        assert_eq!(sent, vnet, "sent as received: same cut, ECN kept");
        assert_eq!(sent.gso(), vnet.gso());

        // GRO's super-frames come with their checksum verified: made partial.
        let gro = Vnet {
            flags: F_DATA_VALID,
            ..vnet
        };
        let mut merged = frame.clone();
        merged[l4 + 16..l4 + 18].copy_from_slice(&[0x12, 0x34]);
        assert_eq!(
            gro.whole(&mut merged)
                .map(|g| (g.csum_start, g.csum_offset)),
            Some((l4 as u16, 16))
        );
        assert_eq!(merged, frame, "the pseudo-header sum written in");

        let unverified = Vnet { flags: 0, ..vnet };
        assert_eq!(unverified.whole(&mut frame.clone()), None);
        let udp = Vnet {
            gso_type: GSO_UDP_L4,
            ..vnet
        };
        assert_eq!(udp.whole(&mut frame.clone()), None, "TCP only");
        assert_eq!(vnet.whole(&mut frame[..40].to_vec()), None, "truncated");

        let mut icmp = frame.clone();
        icmp[23] = 1;
        assert_eq!(vnet.passthrough(&icmp), Vnet::default(), "not TCP: plain");
    }

    fn endpoint() -> impl Strategy<Value = Endpoint> {
        (any::<[u8; 4]>(), 1u16..).prop_map(|(addr, port)| Endpoint::new(addr, port))
    }

    proptest! {
        /// A super-frame translated once with its checksum left partial, then
        /// cut (as the egress device or the kernel cuts it, completing each
        /// segment's checksum), gives the segments that cutting it first and
        /// translating each segment with full checksums gives; and its partial
        /// checksum is the pseudo-header sum of the new addresses.
        #[test]
        fn translating_then_cutting_equals_cutting_then_translating(
            payload in 1usize..9000,
            size in 536u16..1500,
            options in 0usize..4,
            (src, dst, new_src, new_dst) in (endpoint(), endpoint(), endpoint(), endpoint()),
        ) {
            // Not multicast: the parser leaves those to the kernel.
            let (src, dst, new_src, new_dst) = [src, dst, new_src, new_dst]
                .map(|mut e| { e.addr[0] %= 224; e }).into();
            let frame = partial_frame(payload, options * 4, src, dst);
            let l4 = 14 + 20 + options * 4;
            let rewrite = Rewrite {
                src_mac: [2, 0, 0, 0, 0, 1],
                dst_mac: [2, 0, 0, 0, 0, 2],
                src: new_src,
                dst: new_dst,
            };
            let mut whole = frame.clone();
            let parsed = parse(&whole).expect("a valid frame");
            apply_partial(&mut whole, &parsed, &rewrite);
            let l4_len = (parsed.end - l4) as u16;
            let field = u16::from_be_bytes([whole[l4 + 16], whole[l4 + 17]]);
            prop_assert_eq!(field, fold(pseudo_header_sum(new_src.addr, new_dst.addr, 6, l4_len)));
            prop_assert_eq!(
                needs_csum(size, l4).passthrough(&whole[..parsed.end]),
                Vnet { hdr_len: (l4 + 20) as u16, ..needs_csum(size, l4) }
            );

            let gso = Gso { kind: GSO_TCPV4, size };
            let mut translated_then_cut = Segments::new();
            prop_assert!(translated_then_cut.split(&whole, gso));
            let mut cut = Segments::new();
            prop_assert!(cut.split(&frame, gso));
            prop_assert_eq!(cut.len(), translated_then_cut.len());
            for i in 0..cut.len() {
                let segment = cut.get_mut(i);
                let parsed = parse(segment).expect("a valid segment");
                apply(segment, &parsed, &rewrite, false);
                verify(segment, 6);
                prop_assert_eq!(translated_then_cut.bytes(i, usize::MAX), &*segment);
            }
        }
    }
}
