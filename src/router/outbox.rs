//! The frames one `process` call makes besides the one it returns: the later
//! fragments of a packet fragmented for its egress MTU, the fragments held
//! until their first came, and an ICMP error bigger than the frame it
//! answers. The I/O layer takes them with [`Lane::drain`]
//! after each call and sends them out their ports, in order; and the held
//! fragments of a packet whose first fragment went to the kernel, which it
//! takes with [`Lane::drain_kernel`] and hands the kernel (where the kernel
//! did not see them itself).

use super::{Lane, Port};

#[derive(Default)]
pub(super) struct Outbox {
    frames: Vec<(Port, Vec<u8>)>,
    /// Frames for the kernel.
    kernel: Vec<Vec<u8>>,
    /// Buffers of frames already sent, for reuse.
    spare: Vec<Vec<u8>>,
    /// Where a fragment is made before it is copied in.
    pub(super) scratch: Vec<u8>,
}

impl Outbox {
    pub(super) fn clear(&mut self) {
        let Outbox {
            frames,
            kernel,
            spare,
            ..
        } = self;
        spare.extend(frames.drain(..).map(|(_, frame)| frame));
        if !kernel.is_empty() {
            spare.append(kernel);
        }
    }

    fn copy(&mut self, frame: &[u8]) -> Vec<u8> {
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(frame);
        buf
    }

    pub(super) fn push(&mut self, port: Port, frame: &[u8]) {
        let buf = self.copy(frame);
        self.frames.push((port, buf));
    }

    pub(super) fn push_kernel(&mut self, frame: &[u8]) {
        let buf = self.copy(frame);
        self.kernel.push(buf);
    }
}

impl Lane {
    /// Hands every frame the last `process` call made besides the one it
    /// returned to `send`, with the port it goes out by, in order. They are
    /// counted as forwarded already.
    pub fn drain(&mut self, send: &mut dyn FnMut(Port, &[u8])) {
        let outbox = self.outbox.get_mut();
        for (port, frame) in outbox.frames.drain(..) {
            send(port, &frame);
            outbox.spare.push(frame);
        }
    }

    /// Hands every frame the last `process` call left to the kernel besides
    /// the one it returned to `punt`, in order. They are counted as left to
    /// the kernel already; a backend whose kernel sees every frame itself
    /// need not take them.
    pub fn drain_kernel(&mut self, punt: &mut dyn FnMut(&mut [u8])) {
        let outbox = self.outbox.get_mut();
        for mut frame in outbox.kernel.drain(..) {
            punt(&mut frame);
            outbox.spare.push(frame);
        }
    }
}
