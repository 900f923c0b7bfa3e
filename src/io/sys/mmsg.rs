//! Batched receive and send (`recvmmsg`, `sendmmsg`) on a packet socket, with the
//! buffers and `mmsghdr`s they need, so that callers never handle the raw
//! pointers those headers hold.

use std::io;
use std::mem::size_of;
use std::os::fd::AsRawFd;

use super::socket::{recvmmsg, sendmmsg};
use super::zeroed;

/// Control-message space for one message (CMSG_SPACE of a `tpacket_auxdata` is 40
/// on 64-bit).
pub const CMSG_BYTES: usize = 64;

#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct CmsgBuf([u8; CMSG_BYTES]);

/// Receive buffers for `count` messages. Each message is read into two iovecs:
/// a head of `head_len` bytes (a `virtio_net_hdr`, say) and a slot of the frame
/// buffer, behind `headroom` bytes kept free in front of it; with the sender's
/// link-layer address and up to [`CMSG_BYTES`] of control messages.
///
/// The pointers are set once in [`RecvBatch::new`]; the vectors are never resized
/// afterwards, so their heap storage (and every pointer into it) stays valid for as
/// long as the batch lives, wherever the batch itself is moved.
pub struct RecvBatch {
    slot: usize,
    headroom: usize,
    head_len: usize,
    buf: Vec<u8>,
    heads: Vec<u8>,
    /// Only referenced through `hdrs`; kept here so it lives as long as they do.
    _iov: Vec<[libc::iovec; 2]>,
    names: Vec<libc::sockaddr_ll>,
    cmsgs: Vec<CmsgBuf>,
    hdrs: Vec<libc::mmsghdr>,
    count: usize,
}

// SAFETY: the raw pointers in the iovecs and headers point only into the batch's own
// heap buffers, so moving the batch to another thread moves everything they point at.
unsafe impl Send for RecvBatch {}

/// What the kernel said about one received message.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    /// Bytes received into the slot (the head not counted), at most the slot's room.
    pub len: usize,
    /// Longer than head and slot: only the start was received (`MSG_TRUNC`).
    pub truncated: bool,
    /// `sll_pkttype` of the sender's address: host, broadcast, multicast, other host.
    pub pkttype: u8,
    /// The head iovec.
    pub head: &'a [u8],
    /// The control messages.
    pub control: &'a [u8],
}

impl RecvBatch {
    /// `count` messages of a `head_len`-byte head and up to `frame_room` bytes
    /// (longer ones come truncated); slots are rounded up to 64 bytes.
    pub fn new(count: usize, head_len: usize, headroom: usize, frame_room: usize) -> RecvBatch {
        let slot = (headroom + frame_room).next_multiple_of(64);
        let mut buf = vec![0u8; count * slot];
        let mut heads = vec![0u8; count * head_len.max(1)];
        let mut names = vec![zeroed::<libc::sockaddr_ll>(); count];
        let mut cmsgs = vec![CmsgBuf([0; CMSG_BYTES]); count];
        let mut iov: Vec<[libc::iovec; 2]> = buf
            .chunks_exact_mut(slot)
            .zip(heads.chunks_exact_mut(head_len.max(1)))
            .map(|(chunk, head)| {
                [
                    libc::iovec {
                        iov_base: head.as_mut_ptr().cast(),
                        iov_len: head_len,
                    },
                    libc::iovec {
                        iov_base: chunk[headroom..].as_mut_ptr().cast(),
                        iov_len: slot - headroom,
                    },
                ]
            })
            .collect();
        let hdrs = (0..count)
            .map(|i| {
                let mut msg: libc::msghdr = zeroed();
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
        let mut batch = RecvBatch {
            slot,
            headroom,
            head_len,
            buf,
            heads,
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

    /// Receives up to a batch of messages (`recvmmsg`); errors as the kernel gives them
    /// (`EAGAIN` when nothing is queued on a non-blocking socket).
    pub fn recv(&mut self, fd: &impl AsRawFd, flags: libc::c_int) -> io::Result<usize> {
        self.reset();
        // SAFETY: every header points into the batch's own buffers, which live as
        // long as the batch, were sized once in new() and never move; the lengths
        // the headers give are those buffers' sizes.
        let count = unsafe { recvmmsg(fd, &mut self.hdrs, flags) }?;
        self.count = count;
        Ok(count)
    }

    /// Messages received by the last [`RecvBatch::recv`].
    pub fn len(&self) -> usize {
        self.count
    }

    /// Bytes per slot, headroom included.
    pub fn slot_len(&self) -> usize {
        self.slot
    }

    /// What the kernel said about message `i` of the last receive.
    pub fn received(&self, i: usize) -> Received<'_> {
        let hdr = &self.hdrs[i];
        let controllen = hdr.msg_hdr.msg_controllen.min(CMSG_BYTES);
        Received {
            len: (hdr.msg_len as usize)
                .saturating_sub(self.head_len)
                .min(self.slot - self.headroom),
            truncated: hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            pkttype: self.names[i].sll_pkttype,
            head: &self.heads[i * self.head_len..(i + 1) * self.head_len],
            control: &self.cmsgs[i].0[..controllen],
        }
    }

    /// The whole frame buffer: slot `i` starts at `i * slot_len()`, its frame
    /// `headroom` bytes later.
    pub fn buffer(&self) -> &[u8] {
        &self.buf
    }

    pub fn buffer_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }
}

/// What became of a [`SendBatch::send`].
#[derive(Debug, Default)]
pub struct SendOutcome {
    pub sent: usize,
    pub failed: usize,
    /// Why the first refused frame was refused.
    pub error: Option<io::Error>,
}

/// Reusable `mmsghdr`s and iovecs for [`SendBatch::send`].
pub struct SendBatch {
    max: usize,
    iov: Vec<[libc::iovec; 2]>,
    hdrs: Vec<libc::mmsghdr>,
}

// SAFETY: between calls the pointers are stale and never read: every send
// rewrites them before the kernel sees them.
unsafe impl Send for SendBatch {}

impl SendBatch {
    /// Up to `max` frames per `sendmmsg`.
    pub fn new(max: usize) -> SendBatch {
        SendBatch {
            max,
            iov: Vec::with_capacity(max),
            hdrs: Vec::with_capacity(max),
        }
    }

    /// Sends `frames` in order, each behind `head`, up to `max` per call. A frame
    /// the kernel refuses (full queue, link down, too long) is skipped and
    /// counted, and the rest still go.
    pub fn send<'a>(
        &mut self,
        fd: &impl AsRawFd,
        head: &[u8],
        mut frames: impl Iterator<Item = &'a [u8]>,
        flags: libc::c_int,
    ) -> SendOutcome {
        let mut outcome = SendOutcome::default();
        loop {
            self.fill(head, &mut frames);
            let count = self.hdrs.len();
            if count == 0 {
                return outcome;
            }
            let mut next = 0;
            while next < count {
                // SAFETY: hdrs[next..count] point at this batch's iovecs, which point
                // at `head` and at frames borrowed for this call; the kernel only
                // reads them.
                let sent = match unsafe { sendmmsg(fd, &mut self.hdrs[next..count], flags) } {
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

    /// Takes up to `max` frames from `frames` and points the headers at them.
    fn fill<'a>(&mut self, head: &[u8], frames: &mut impl Iterator<Item = &'a [u8]>) {
        self.iov.clear();
        self.hdrs.clear();
        self.iov.extend(frames.take(self.max).map(|frame| {
            [
                libc::iovec {
                    iov_base: head.as_ptr() as *mut libc::c_void,
                    iov_len: head.len(),
                },
                libc::iovec {
                    iov_base: frame.as_ptr() as *mut libc::c_void,
                    iov_len: frame.len(),
                },
            ]
        }));
        for iov in &mut self.iov {
            let mut msg: libc::msghdr = zeroed();
            msg.msg_iov = iov.as_mut_ptr();
            msg.msg_iovlen = 2;
            self.hdrs.push(libc::mmsghdr {
                msg_hdr: msg,
                msg_len: 0,
            });
        }
    }
}
