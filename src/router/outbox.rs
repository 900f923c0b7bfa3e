//! The frames one `process` call makes besides the one it returns: the later
//! fragments of a packet fragmented for its egress MTU, the fragments held
//! until their first came, and an ICMP error bigger than the frame it
//! answers. The I/O layer takes them with [`Lane::drain`]
//! after each call and sends them out their ports, in order.

use super::{Lane, Port};

#[derive(Default)]
pub(super) struct Outbox {
    frames: Vec<(Port, Vec<u8>)>,
    /// Buffers of frames already sent, for reuse.
    spare: Vec<Vec<u8>>,
    /// Where a fragment is made before it is copied in.
    pub(super) scratch: Vec<u8>,
}

impl Outbox {
    pub(super) fn clear(&mut self) {
        let Outbox { frames, spare, .. } = self;
        spare.extend(frames.drain(..).map(|(_, frame)| frame));
    }

    pub(super) fn push(&mut self, port: Port, frame: &[u8]) {
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(frame);
        self.frames.push((port, buf));
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
}
