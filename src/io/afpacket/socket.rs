//! One AF_PACKET socket bound to one interface, with batched receive (`recvmmsg`)
//! and send (`sendmmsg`).

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::gso::{parse_vnet, Gso, VNET_HDR_LEN};
use crate::io::sys;
use crate::io::sys::socket::{getsockopt, setsockopt};

/// Frames per `recvmmsg` / `sendmmsg` call.
pub(crate) const BATCH: usize = 64;

/// Room kept in front of every received frame, to put back a VLAN tag the kernel
/// took out of the frame (and reported in the auxiliary data).
pub(crate) const HEADROOM: usize = 4;

/// Requested socket receive buffer, so a burst doesn't overflow while a worker sleeps.
const RCVBUF_BYTES: libc::c_int = 4 << 20;

/// Control-message space for one `tpacket_auxdata` (CMSG_SPACE(20) is 40 on 64-bit).
const CMSG_BYTES: usize = 64;

#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct CmsgBuf([u8; CMSG_BYTES]);

/// A raw AF_PACKET socket on one interface (all protocols), which:
/// - reports auxiliary data (`PACKET_AUXDATA`: checksum state, stripped VLAN tags);
/// - puts a `virtio_net_hdr` in front of every frame, received or sent
///   (`PACKET_VNET_HDR`), which says how to cut a super-frame (see [`super::gso`]);
/// - does not see frames sent on the interface (`PACKET_IGNORE_OUTGOING`), neither
///   the kernel's nor xwan's own;
/// - sends straight to the driver (`PACKET_QDISC_BYPASS`).
pub(crate) struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    pub(crate) fn open(ifindex: u32) -> io::Result<PacketSocket> {
        // Protocol 0: no frame is queued before bind() picks the interface.
        let fd = sys::socket::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )?;
        let one: libc::c_int = 1;
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_AUXDATA, &one)?;
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_VNET_HDR, &one)?;
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &one)?;
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, &one)?;
        if setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &RCVBUF_BYTES).is_err() {
            setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &RCVBUF_BYTES)?;
        }
        sys::socket::bind_link(&fd, ifindex, libc::ETH_P_ALL as u16)?;
        Ok(PacketSocket { fd })
    }

    /// Joins a `PACKET_FANOUT_HASH` group: the kernel spreads the interface's frames
    /// over the group's sockets by flow hash, each frame to one socket. With `None`
    /// the kernel creates a group with an id of its own choosing, returned here.
    ///
    /// A group has its own `ignore_outgoing`: `flags` carries
    /// `PACKET_FANOUT_FLAG_IGNORE_OUTGOING` (Linux 6.7+) or not, and every member
    /// must pass the same flags.
    pub(crate) fn join_fanout(&self, group: Option<u16>, flags: u32) -> io::Result<u16> {
        let fd = &self.fd;
        let arg: u32 = match group {
            Some(id) => u32::from(id) | ((libc::PACKET_FANOUT_HASH | flags) << 16),
            None => (libc::PACKET_FANOUT_HASH | flags | libc::PACKET_FANOUT_FLAG_UNIQUEID) << 16,
        };
        setsockopt(fd, libc::SOL_PACKET, libc::PACKET_FANOUT, &arg)?;
        let joined: u32 = getsockopt(fd, libc::SOL_PACKET, libc::PACKET_FANOUT)?;
        Ok((joined & 0xffff) as u16)
    }

    /// Receives and discards whatever is queued.
    pub(crate) fn drain(&self, batch: &mut RxBatch) -> io::Result<()> {
        while self.recv(batch)? > 0 {}
        Ok(())
    }

    /// Receives up to [`BATCH`] frames without blocking; 0 when none is queued.
    pub(crate) fn recv(&self, batch: &mut RxBatch) -> io::Result<usize> {
        batch.reset();
        loop {
            // SAFETY: every header points into batch's own buffers, which live as
            // long as batch, were sized once at construction and never move (see
            // RxBatch); the kernel writes at most the lengths they give.
            let received =
                unsafe { sys::socket::recvmmsg(&self.fd, &mut batch.hdrs, libc::MSG_DONTWAIT) };
            let err = match received {
                Ok(count) => {
                    batch.count = count;
                    return Ok(count);
                }
                Err(err) => err,
            };
            match err.raw_os_error() {
                Some(libc::EAGAIN) => return Ok(0),
                Some(libc::EINTR) => continue,
                _ => return Err(err),
            }
        }
    }

    /// Sends `frames` in order, up to [`BATCH`] per call. A frame the kernel refuses
    /// (full queue, link down, too long) is skipped and counted, and the rest still go.
    pub(crate) fn send<'a>(
        &self,
        mut frames: impl Iterator<Item = &'a [u8]>,
        scratch: &mut TxScratch,
    ) -> SendOutcome {
        let mut outcome = SendOutcome::default();
        loop {
            scratch.fill(&mut frames);
            let count = scratch.hdrs.len();
            if count == 0 {
                return outcome;
            }
            let mut next = 0;
            while next < count {
                // SAFETY: hdrs[next..count] point at scratch's iovecs, which point at
                // frames borrowed for this call and at a static header; the kernel
                // only reads them.
                let sent = unsafe {
                    sys::socket::sendmmsg(
                        &self.fd,
                        &mut scratch.hdrs[next..count],
                        libc::MSG_DONTWAIT,
                    )
                };
                let sent = match sent {
                    Ok(sent) => sent,
                    Err(err) if err.raw_os_error() == Some(libc::EINTR) => continue,
                    Err(err) => {
                        outcome.failed += 1;
                        outcome.error.get_or_insert(err);
                        next += 1;
                        continue;
                    }
                };
                outcome.sent += sent;
                next += sent;
                if next < count {
                    // sendmmsg stops at the first frame the kernel refused.
                    outcome.failed += 1;
                    next += 1;
                }
            }
        }
    }

    /// The kernel's counters since the last call: frames queued to this socket, and
    /// frames dropped because its receive queue was full.
    pub(crate) fn kernel_stats(&self) -> io::Result<(u64, u64)> {
        let stats: libc::tpacket_stats =
            getsockopt(&self.fd, libc::SOL_PACKET, libc::PACKET_STATISTICS)?;
        Ok((u64::from(stats.tp_packets), u64::from(stats.tp_drops)))
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// What became of a [`PacketSocket::send`].
#[derive(Debug, Default)]
pub(crate) struct SendOutcome {
    pub(crate) sent: usize,
    pub(crate) failed: usize,
    /// Why the first refused frame was refused.
    pub(crate) error: Option<io::Error>,
}

/// What the kernel said about one received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RxInfo {
    /// Longer than the slot: only the start was received.
    pub(crate) truncated: bool,
    /// `sll_pkttype`: host, broadcast, multicast, other host.
    pub(crate) pkttype: u8,
    /// The L4 checksum is partial (`TP_STATUS_CSUMNOTREADY`).
    pub(crate) checksum_partial: bool,
    /// A VLAN tag (TPID, TCI) the kernel took out of the frame.
    pub(crate) vlan: Option<(u16, u16)>,
    /// A super-frame (GSO or GRO) and how to cut it.
    pub(crate) gso: Option<Gso>,
}

/// Receive buffers for one socket: [`BATCH`] slots of `HEADROOM + frame_room` bytes
/// and as many `virtio_net_hdr`s, with the iovecs (header, frame), addresses,
/// control buffers and `mmsghdr`s pointing into them.
///
/// The pointers are set once in [`RxBatch::new`]; the vectors are never resized
/// afterwards, so their heap storage (and every pointer into it) stays valid for as
/// long as the batch lives, wherever the batch itself is moved.
pub(crate) struct RxBatch {
    slot: usize,
    buf: Vec<u8>,
    vnet: Vec<[u8; VNET_HDR_LEN]>,
    /// Only referenced through `hdrs`; kept here so it lives as long as they do.
    _iov: Vec<[libc::iovec; 2]>,
    names: Vec<libc::sockaddr_ll>,
    cmsgs: Vec<CmsgBuf>,
    hdrs: Vec<libc::mmsghdr>,
    count: usize,
}

// SAFETY: the raw pointers in the iovecs and headers point only into the batch's own
// heap buffers, so moving the batch to another thread moves everything they point at.
unsafe impl Send for RxBatch {}

impl RxBatch {
    /// Slots for frames of up to `frame_room` bytes (longer ones come truncated).
    pub(crate) fn new(frame_room: usize) -> RxBatch {
        let slot = (HEADROOM + frame_room).next_multiple_of(64);
        let mut buf = vec![0u8; BATCH * slot];
        let mut names = vec![sys::zeroed::<libc::sockaddr_ll>(); BATCH];
        let mut cmsgs = vec![CmsgBuf([0; CMSG_BYTES]); BATCH];
        let mut vnet = vec![[0u8; VNET_HDR_LEN]; BATCH];
        let mut iov: Vec<[libc::iovec; 2]> = buf
            .chunks_exact_mut(slot)
            .zip(&mut vnet)
            .map(|(chunk, hdr)| {
                [
                    libc::iovec {
                        iov_base: hdr.as_mut_ptr().cast(),
                        iov_len: VNET_HDR_LEN,
                    },
                    libc::iovec {
                        iov_base: chunk[HEADROOM..].as_mut_ptr().cast(),
                        iov_len: slot - HEADROOM,
                    },
                ]
            })
            .collect();
        let hdrs = (0..BATCH)
            .map(|i| {
                let mut msg: libc::msghdr = sys::zeroed();
                msg.msg_name = (&mut names[i] as *mut libc::sockaddr_ll).cast();
                msg.msg_iov = iov[i].as_mut_ptr();
                msg.msg_iovlen = 2;
                msg.msg_control = cmsgs[i].0.as_mut_ptr().cast();
                libc::mmsghdr {
                    msg_hdr: msg,
                    msg_len: 0,
                }
            })
            .collect();
        let mut batch = RxBatch {
            slot,
            buf,
            vnet,
            _iov: iov,
            names,
            cmsgs,
            hdrs,
            count: 0,
        };
        batch.reset();
        batch
    }

    /// Restores the lengths the kernel overwrites on every receive.
    fn reset(&mut self) {
        self.count = 0;
        for hdr in &mut self.hdrs {
            hdr.msg_hdr.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            hdr.msg_hdr.msg_controllen = CMSG_BYTES;
            hdr.msg_hdr.msg_flags = 0;
            hdr.msg_len = 0;
        }
    }

    /// Frames received by the last [`PacketSocket::recv`].
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Frame `i` of the last receive, with any VLAN tag the kernel stripped put back
    /// in front of the EtherType, and where in the batch's buffer it now starts.
    pub(crate) fn frame(&mut self, i: usize) -> (&mut [u8], usize, RxInfo) {
        let hdr = &self.hdrs[i];
        let truncated = hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        let controllen = hdr.msg_hdr.msg_controllen.min(CMSG_BYTES);
        // The length counts the virtio_net_hdr in front of the frame.
        let received = (hdr.msg_len as usize)
            .saturating_sub(VNET_HDR_LEN)
            .min(self.slot - HEADROOM);
        let gso = parse_vnet(&self.vnet[i]);
        let aux = parse_auxdata(&self.cmsgs[i].0[..controllen]);
        let pkttype = self.names[i].sll_pkttype;
        let status = aux.map_or(0, |a| a.tp_status);
        let vlan = aux
            .filter(|a| a.tp_status & libc::TP_STATUS_VLAN_VALID != 0)
            .map(|a| {
                let tpid = if a.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                    a.tp_vlan_tpid
                } else {
                    0x8100
                };
                (tpid, a.tp_vlan_tci)
            });
        let base = i * self.slot;
        let (start, len) = match vlan {
            Some((tpid, tci)) if received >= 12 => {
                let slot = &mut self.buf[base..base + HEADROOM + received];
                slot.copy_within(HEADROOM..HEADROOM + 12, HEADROOM - 4);
                slot[HEADROOM + 8..HEADROOM + 10].copy_from_slice(&tpid.to_be_bytes());
                slot[HEADROOM + 10..HEADROOM + 12].copy_from_slice(&tci.to_be_bytes());
                (base + HEADROOM - 4, received + 4)
            }
            _ => (base + HEADROOM, received),
        };
        let info = RxInfo {
            truncated,
            pkttype,
            checksum_partial: status & libc::TP_STATUS_CSUMNOTREADY != 0,
            vlan,
            gso,
        };
        (&mut self.buf[start..start + len], start, info)
    }

    /// Bytes of the batch's buffer, for sending frames found by [`RxBatch::frame`].
    pub(crate) fn bytes(&self, start: usize, len: usize) -> &[u8] {
        &self.buf[start..start + len]
    }
}

/// Reads the `PACKET_AUXDATA` control message out of a control buffer.
fn parse_auxdata(control: &[u8]) -> Option<libc::tpacket_auxdata> {
    const WORD: usize = size_of::<usize>();
    let header = size_of::<libc::cmsghdr>();
    let align = |n: usize| n.next_multiple_of(WORD);
    let mut rest = control;
    while rest.len() >= header {
        let len = usize::from_ne_bytes(rest[..WORD].try_into().ok()?);
        let level = i32::from_ne_bytes(rest[WORD..WORD + 4].try_into().ok()?);
        let kind = i32::from_ne_bytes(rest[WORD + 4..WORD + 8].try_into().ok()?);
        if len < header || len > rest.len() {
            return None;
        }
        let data = &rest[align(header)..len];
        if level == libc::SOL_PACKET && kind == libc::PACKET_AUXDATA && data.len() >= 20 {
            let word = |at: usize| {
                u32::from_ne_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
            };
            let half = |at: usize| u16::from_ne_bytes([data[at], data[at + 1]]);
            return Some(libc::tpacket_auxdata {
                tp_status: word(0),
                tp_len: word(4),
                tp_snaplen: word(8),
                tp_mac: half(12),
                tp_net: half(14),
                tp_vlan_tci: half(16),
                tp_vlan_tpid: half(18),
            });
        }
        rest = rest.get(align(len)..)?;
    }
    None
}

/// The `virtio_net_hdr` in front of every sent frame: no offload asked for.
static PLAIN_VNET_HDR: [u8; VNET_HDR_LEN] = [0; VNET_HDR_LEN];

/// Reusable `mmsghdr`s and iovecs for [`PacketSocket::send`].
pub(crate) struct TxScratch {
    iov: Vec<[libc::iovec; 2]>,
    hdrs: Vec<libc::mmsghdr>,
}

// SAFETY: between calls the pointers are stale and never read: every send
// rewrites them (fill) before the kernel sees them.
unsafe impl Send for TxScratch {}

impl TxScratch {
    pub(crate) fn new() -> TxScratch {
        TxScratch {
            iov: Vec::with_capacity(BATCH),
            hdrs: Vec::with_capacity(BATCH),
        }
    }

    /// Takes up to [`BATCH`] frames from `frames` and points the headers at them,
    /// each behind a plain `virtio_net_hdr`.
    fn fill<'a>(&mut self, frames: &mut impl Iterator<Item = &'a [u8]>) {
        self.iov.clear();
        self.hdrs.clear();
        self.iov.extend(frames.take(BATCH).map(|frame| {
            [
                libc::iovec {
                    iov_base: PLAIN_VNET_HDR.as_ptr() as *mut libc::c_void,
                    iov_len: VNET_HDR_LEN,
                },
                libc::iovec {
                    iov_base: frame.as_ptr() as *mut libc::c_void,
                    iov_len: frame.len(),
                },
            ]
        }));
        for iov in &mut self.iov {
            let mut msg: libc::msghdr = sys::zeroed();
            msg.msg_iov = iov.as_mut_ptr();
            msg.msg_iovlen = 2;
            self.hdrs.push(libc::mmsghdr {
                msg_hdr: msg,
                msg_len: 0,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control(level: i32, kind: i32, data: &[u8]) -> Vec<u8> {
        const WORD: usize = size_of::<usize>();
        let header = size_of::<libc::cmsghdr>();
        let mut buf = vec![0u8; (header + data.len()).next_multiple_of(8)];
        buf[..WORD].copy_from_slice(&(header + data.len()).to_ne_bytes());
        buf[WORD..WORD + 4].copy_from_slice(&level.to_ne_bytes());
        buf[WORD + 4..WORD + 8].copy_from_slice(&kind.to_ne_bytes());
        buf[header..header + data.len()].copy_from_slice(data);
        buf
    }

    #[test]
    fn auxdata_is_found_after_other_messages() {
        let mut aux = Vec::new();
        aux.extend_from_slice(
            &(libc::TP_STATUS_CSUMNOTREADY | libc::TP_STATUS_VLAN_VALID).to_ne_bytes(),
        );
        aux.extend_from_slice(&100u32.to_ne_bytes());
        aux.extend_from_slice(&100u32.to_ne_bytes());
        aux.extend_from_slice(&0u16.to_ne_bytes());
        aux.extend_from_slice(&14u16.to_ne_bytes());
        aux.extend_from_slice(&0x0064u16.to_ne_bytes());
        aux.extend_from_slice(&0x88a8u16.to_ne_bytes());
        let mut buf = control(libc::SOL_SOCKET, 1, &[1, 2, 3]);
        buf.extend(control(libc::SOL_PACKET, libc::PACKET_AUXDATA, &aux));
        let found = parse_auxdata(&buf).expect("auxdata present");
        assert_eq!(
            found.tp_status,
            libc::TP_STATUS_CSUMNOTREADY | libc::TP_STATUS_VLAN_VALID
        );
        assert_eq!(found.tp_len, 100);
        assert_eq!(found.tp_vlan_tci, 0x64);
        assert_eq!(found.tp_vlan_tpid, 0x88a8);
    }

    #[test]
    fn auxdata_parsing_survives_garbage() {
        assert!(parse_auxdata(&[]).is_none());
        assert!(parse_auxdata(&[0xff; 40]).is_none());
        let mut short = control(libc::SOL_PACKET, libc::PACKET_AUXDATA, &[0; 8]);
        assert!(parse_auxdata(&short).is_none());
        short.truncate(10);
        assert!(parse_auxdata(&short).is_none());
    }

    #[test]
    fn batch_slots_leave_headroom() {
        let batch = RxBatch::new(1518);
        assert_eq!(batch.slot % 64, 0);
        assert!(batch.slot >= HEADROOM + 1518);
        assert_eq!(batch.buf.len(), BATCH * batch.slot);
        assert_eq!(batch.len(), 0);
    }
}
