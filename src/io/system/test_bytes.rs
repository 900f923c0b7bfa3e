//! Test support: netlink messages as the kernel writes them, byte by byte,
//! so the decoding of dumps is tested on the wire format rather than on
//! structures the decoder itself would build.

/// `RTM_NEWADDR`, `RTM_NEWROUTE`, `RTM_NEWNEIGH` (linux/rtnetlink.h).
pub(crate) const RTM_NEWADDR: u16 = 20;
pub(crate) const RTM_NEWROUTE: u16 = 24;
pub(crate) const RTM_NEWNEIGH: u16 = 28;

/// One netlink message: the 16-byte header (multi-part, sequence 1), then
/// `payload`, padded to 4 bytes.
pub(crate) fn nlmsg(kind: u16, payload: &[u8]) -> Vec<u8> {
    let len = 16 + payload.len();
    let mut msg = Vec::with_capacity(len + 3);
    msg.extend_from_slice(&(len as u32).to_ne_bytes());
    msg.extend_from_slice(&kind.to_ne_bytes());
    msg.extend_from_slice(&(libc::NLM_F_MULTI as u16).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(payload);
    pad(&mut msg);
    msg
}

/// The `NLMSG_DONE` that ends a dump.
pub(crate) fn done() -> Vec<u8> {
    nlmsg(libc::NLMSG_DONE as u16, &0i32.to_ne_bytes())
}

/// One route attribute, padded to 4 bytes.
pub(crate) fn rta(kind: u16, data: &[u8]) -> Vec<u8> {
    let mut attr = Vec::with_capacity(4 + data.len() + 3);
    attr.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
    attr.extend_from_slice(&kind.to_ne_bytes());
    attr.extend_from_slice(data);
    pad(&mut attr);
    attr
}

fn pad(bytes: &mut Vec<u8>) {
    while bytes.len() % 4 != 0 {
        bytes.push(0);
    }
}
