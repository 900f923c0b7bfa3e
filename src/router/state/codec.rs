//! The state file's bytes: a versioned, checksummed, little-endian format of
//! fixed-size records, hand-rolled because a flow is a fixed 74-byte record
//! (one million flows: 74 MB, encoded and decoded with no allocation per
//! flow):
//!
//! ```text
//! "XWANSTATE\0"  version: u16  body  crc32 (IEEE) of everything before it: u32
//! body: saved at (Unix seconds): u64, nat lo, hi: u16 u16
//!       uplinks: u8, each: name length u8, name, address [4]
//!       sticky mode: u8 (0 none, 1 src, 2 src-dst), clients: u32,
//!         each: key u64, uplink u8, idle seconds u32
//!       flows: u32, each: protocol u8, kind u8 (0 snat, 1 dnat, 2 hairpin),
//!         hairpin port u16, uplink u8, inside, outside, remote ([4] + u16
//!         each), LAN MAC [6], TCP flags u8, next seq to LAN u32, age u32,
//!         idle u32, packets u64 u64, bytes u64 u64
//!       (version 2) IPv6 flows: u32, each as a flow with [16]-byte
//!         addresses (110 bytes)
//! ```
//!
//! Version 1 (before IPv6) is still read: it has no IPv6 flows.
//!
//! Anything else (another program's file, a truncated write, a later
//! version, a flipped bit) is a [`StateError`], never a panic.

use super::Snapshot;
use crate::config::{PortRange, Sticky};
use crate::flow::{FlowKind, FlowSpec, SavedFlow};
use crate::packet::{Endpoint, Family};

const MAGIC: &[u8; 10] = b"XWANSTATE\0";

/// The format version this build writes (and reads, with every older one).
pub const STATE_VERSION: u16 = 2;

/// The first version with IPv6 flows.
const IPV6_VERSION: u16 = 2;

const FLOW_BYTES: usize = 74;
const FLOW6_BYTES: usize = 110;

/// Why bytes are not a state this build can restore.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("not an xwan state file")]
    Foreign,
    #[error("state format version {0}, this xwan reads versions 1 to {STATE_VERSION}")]
    Version(u16),
    #[error("truncated or corrupt (checksum mismatch)")]
    Checksum,
    #[error("corrupt: {0}")]
    Corrupt(&'static str),
}

impl Snapshot {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.flows.len() * FLOW_BYTES);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&STATE_VERSION.to_le_bytes());
        out.extend_from_slice(&self.saved_at.to_le_bytes());
        out.extend_from_slice(&self.nat_ports.lo.to_le_bytes());
        out.extend_from_slice(&self.nat_ports.hi.to_le_bytes());
        out.push(self.uplinks.len() as u8);
        for (name, address) in &self.uplinks {
            let name = &name.as_bytes()[..name.len().min(255)];
            out.push(name.len() as u8);
            out.extend_from_slice(name);
            out.extend_from_slice(address);
        }
        out.push(match self.sticky {
            Sticky::None => 0,
            Sticky::Src => 1,
            Sticky::SrcDst => 2,
        });
        out.extend_from_slice(&(self.sticky_clients.len() as u32).to_le_bytes());
        for (key, uplink, idle) in &self.sticky_clients {
            out.extend_from_slice(&key.to_le_bytes());
            out.push(*uplink);
            out.extend_from_slice(&idle.to_le_bytes());
        }
        out.extend_from_slice(&(self.flows.len() as u32).to_le_bytes());
        for flow in &self.flows {
            encode_flow(&mut out, flow);
        }
        out.extend_from_slice(&(self.flows6.len() as u32).to_le_bytes());
        for flow in &self.flows6 {
            encode_flow(&mut out, flow);
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Snapshot, StateError> {
        if bytes.len() < MAGIC.len() + 2 || &bytes[..MAGIC.len()] != MAGIC {
            return Err(StateError::Foreign);
        }
        let version = u16::from_le_bytes([bytes[MAGIC.len()], bytes[MAGIC.len() + 1]]);
        if !(1..=STATE_VERSION).contains(&version) {
            return Err(StateError::Version(version));
        }
        let Some((body, crc)) = bytes.split_last_chunk::<4>() else {
            return Err(StateError::Checksum);
        };
        if body.len() < MAGIC.len() + 2 || crc32fast::hash(body) != u32::from_le_bytes(*crc) {
            return Err(StateError::Checksum);
        }
        let mut r = Reader(&body[MAGIC.len() + 2..]);
        let saved_at = r.u64()?;
        let nat_ports = PortRange {
            lo: r.u16()?,
            hi: r.u16()?,
        };
        let uplinks = (0..r.u8()?)
            .map(|_| {
                let len = r.u8()?;
                let name = String::from_utf8(r.take(usize::from(len))?.to_vec())
                    .map_err(|_| StateError::Corrupt("uplink name"))?;
                Ok((name, r.array()?))
            })
            .collect::<Result<Vec<_>, StateError>>()?;
        let sticky = match r.u8()? {
            0 => Sticky::None,
            1 => Sticky::Src,
            2 => Sticky::SrcDst,
            _ => return Err(StateError::Corrupt("sticky mode")),
        };
        let clients = r.count(13)?;
        let sticky_clients = (0..clients)
            .map(|_| Ok((r.u64()?, r.u8()?, r.u32()?)))
            .collect::<Result<Vec<_>, StateError>>()?;
        let flows = decode_flows(&mut r, FLOW_BYTES, uplinks.len())?;
        let flows6 = if version >= IPV6_VERSION {
            decode_flows(&mut r, FLOW6_BYTES, uplinks.len())?
        } else {
            Vec::new()
        };
        if !r.0.is_empty() {
            return Err(StateError::Corrupt("bytes after the flows"));
        }
        Ok(Snapshot {
            saved_at,
            uplinks,
            nat_ports,
            sticky,
            sticky_clients,
            flows,
            flows6,
        })
    }
}

/// A count of flows of `size` bytes, then the flows, each of an uplink the
/// file names.
fn decode_flows<A: Family + AsMut<[u8]>>(
    r: &mut Reader,
    size: usize,
    uplinks: usize,
) -> Result<Vec<SavedFlow<A>>, StateError> {
    let count = r.count(size)?;
    let mut flows = Vec::with_capacity(count);
    for _ in 0..count {
        let flow = decode_flow(r)?;
        if usize::from(flow.spec.uplink) >= uplinks {
            return Err(StateError::Corrupt("a flow's uplink"));
        }
        flows.push(flow);
    }
    Ok(flows)
}

fn encode_flow<A: Family + AsRef<[u8]>>(out: &mut Vec<u8>, flow: &SavedFlow<A>) {
    let spec = &flow.spec;
    let (kind, port) = match spec.kind {
        FlowKind::Snat => (0, 0),
        FlowKind::Dnat => (1, 0),
        FlowKind::Hairpin { port } => (2, port),
    };
    out.push(spec.protocol);
    out.push(kind);
    out.extend_from_slice(&port.to_le_bytes());
    out.push(spec.uplink);
    for endpoint in [spec.inside, spec.outside, spec.remote] {
        out.extend_from_slice(endpoint.addr.as_ref());
        out.extend_from_slice(&endpoint.port.to_le_bytes());
    }
    out.extend_from_slice(&spec.lan_mac);
    out.push(flow.tcp);
    for word in [flow.next_seq_to_lan, flow.age_s, flow.idle_s] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    for word in flow.packets.iter().chain(&flow.bytes) {
        out.extend_from_slice(&word.to_le_bytes());
    }
}

fn decode_flow<A: Family + AsMut<[u8]>>(r: &mut Reader) -> Result<SavedFlow<A>, StateError> {
    let protocol = r.u8()?;
    let kind = r.u8()?;
    let port = r.u16()?;
    let kind = match kind {
        0 => FlowKind::Snat,
        1 => FlowKind::Dnat,
        2 => FlowKind::Hairpin { port },
        _ => return Err(StateError::Corrupt("a flow's kind")),
    };
    let uplink = r.u8()?;
    let mut endpoint = || {
        let mut addr = A::default();
        let len = addr.as_mut().len();
        addr.as_mut().copy_from_slice(r.take(len)?);
        Ok::<_, StateError>(Endpoint::new(addr, r.u16()?))
    };
    let (inside, outside, remote) = (endpoint()?, endpoint()?, endpoint()?);
    Ok(SavedFlow {
        spec: FlowSpec {
            protocol,
            inside,
            outside,
            remote,
            uplink,
            kind,
            lan_mac: r.array()?,
        },
        tcp: r.u8()?,
        next_seq_to_lan: r.u32()?,
        age_s: r.u32()?,
        idle_s: r.u32()?,
        packets: [r.u64()?, r.u64()?],
        bytes: [r.u64()?, r.u64()?],
    })
}

/// Bytes read from the front; running out is [`StateError::Corrupt`].
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StateError> {
        if self.0.len() < n {
            return Err(StateError::Corrupt("ends early"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], StateError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, StateError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, StateError> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, StateError> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, StateError> {
        self.array().map(u64::from_le_bytes)
    }

    /// A u32 count of records of `size` bytes, no more than the bytes left
    /// can hold (so a corrupt count cannot make a huge allocation).
    fn count(&mut self, size: usize) -> Result<usize, StateError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(size) > self.0.len() {
            return Err(StateError::Corrupt("a count larger than the file"));
        }
        Ok(n)
    }
}
