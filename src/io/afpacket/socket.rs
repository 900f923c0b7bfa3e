//! One AF_PACKET socket bound to one interface, with batched receive (`recvmmsg`)
//! and send (`sendmmsg`).

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::gso::{Vnet, VNET_HDR_LEN};
use crate::io::sys;
pub(crate) use crate::io::sys::mmsg::SendOutcome;
use crate::io::sys::mmsg::{RecvBatch, SendBatch};
use crate::io::sys::socket::{getsockopt, setsockopt};

/// Frames per `recvmmsg` / `sendmmsg` call.
pub(crate) const BATCH: usize = 64;

/// Room kept in front of every received frame, to put back a VLAN tag the kernel
/// took out of the frame (and reported in the auxiliary data).
pub(crate) const HEADROOM: usize = 4;

/// Requested socket receive buffer, so a burst doesn't overflow while a worker
/// sleeps or waits for a CPU: room for about 250 super-frames of 64 KiB (the
/// kernel doubles the figure for its bookkeeping).
const RCVBUF_BYTES: libc::c_int = 16 << 20;

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

    /// Another descriptor of the same socket (for [`attach_filter`], from
    /// outside the worker that owns it).
    pub(crate) fn dup(&self) -> io::Result<OwnedFd> {
        self.fd.try_clone()
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
        loop {
            match batch.messages.recv(&self.fd, libc::MSG_DONTWAIT) {
                Ok(count) => return Ok(count),
                Err(err) => match err.raw_os_error() {
                    Some(libc::EAGAIN) => return Ok(0),
                    Some(libc::EINTR) => continue,
                    _ => return Err(err),
                },
            }
        }
    }

    /// Sends `frames` in order, each behind a plain `virtio_net_hdr` (no offload
    /// asked for), up to [`BATCH`] per call. A frame the kernel refuses (full
    /// queue, link down, too long) is skipped and counted, and the rest still go.
    pub(crate) fn send<'a>(
        &self,
        frames: impl Iterator<Item = &'a [u8]>,
        scratch: &mut TxScratch,
    ) -> SendOutcome {
        scratch.send(&self.fd, &PLAIN_VNET_HDR, frames, libc::MSG_DONTWAIT)
    }

    /// Sends one frame behind `vnet` (a super-frame passed through whole, for
    /// the egress device or the kernel to cut).
    pub(crate) fn send_with(
        &self,
        vnet: &Vnet,
        frame: &[u8],
        scratch: &mut TxScratch,
    ) -> SendOutcome {
        let head = vnet.bytes();
        scratch.send(&self.fd, &head, std::iter::once(frame), libc::MSG_DONTWAIT)
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
    /// The `virtio_net_hdr` of a super-frame (GSO or GRO): how to cut it, and
    /// where its checksum is; None for an ordinary frame.
    pub(crate) gso: Option<Vnet>,
}

/// Receive buffers for one socket: [`BATCH`] slots of `HEADROOM + frame_room` bytes,
/// each behind a `virtio_net_hdr`.
pub(crate) struct RxBatch {
    messages: RecvBatch,
}

impl RxBatch {
    /// Slots for frames of up to `frame_room` bytes (longer ones come truncated).
    pub(crate) fn new(frame_room: usize) -> RxBatch {
        RxBatch {
            messages: RecvBatch::new(BATCH, VNET_HDR_LEN, HEADROOM, frame_room),
        }
    }

    /// Frames received by the last [`PacketSocket::recv`].
    pub(crate) fn len(&self) -> usize {
        self.messages.len()
    }

    /// Frame `i` of the last receive, with any VLAN tag the kernel stripped put back
    /// in front of the EtherType, and where in the batch's buffer it now starts.
    pub(crate) fn frame(&mut self, i: usize) -> (&mut [u8], usize, RxInfo) {
        let message = self.messages.received(i);
        let (truncated, received, pkttype) = (message.truncated, message.len, message.pkttype);
        let gso = message
            .head
            .try_into()
            .ok()
            .map(Vnet::parse)
            .filter(|vnet| vnet.gso().is_some());
        let aux = parse_auxdata(message.control);
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
        let base = i * self.messages.slot_len();
        let buf = self.messages.buffer_mut();
        let (start, len) = match vlan {
            Some((tpid, tci)) if received >= 12 => {
                let slot = &mut buf[base..base + HEADROOM + received];
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
        (&mut buf[start..start + len], start, info)
    }

    /// Bytes of the batch's buffer, for sending frames found by [`RxBatch::frame`].
    pub(crate) fn bytes(&self, start: usize, len: usize) -> &[u8] {
        &self.messages.buffer()[start..start + len]
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

/// Reusable headers for [`PacketSocket::send`]: make one with `TxScratch::new(BATCH)`.
pub(crate) type TxScratch = SendBatch;

/// Attaches the socket filter program `prog` (`SO_ATTACH_BPF`) to the socket
/// `fd`: frames it returns 0 for are not queued to the socket.
pub(crate) fn attach_filter(fd: &OwnedFd, prog: RawFd) -> io::Result<()> {
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_BPF, &prog)
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
        let slot = batch.messages.slot_len();
        assert_eq!(slot % 64, 0);
        assert!(slot >= HEADROOM + 1518);
        assert_eq!(batch.messages.buffer().len(), BATCH * slot);
        assert_eq!(batch.len(), 0);
    }
}
