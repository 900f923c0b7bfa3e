//! Next hops: the MACs of the uplinks' gateways and of LAN hosts, as the I/O
//! layer learns them from the kernel's neighbour table, and the LAN
//! addresses the core needed and did not have (for the I/O layer to resolve).
//!
//! A LAN host's MAC comes only from that table, never from the source MAC of
//! a frame: a host sending with another's address must not attract that
//! host's replies or port-forwarded traffic. A flow opened from the LAN
//! before the host's address is resolved is opened anyway (its outbound
//! packets need no LAN MAC) and the address asked for; its replies look the
//! MAC up again and are dropped (`neighbour_unresolved`) until the neighbour
//! thread (every 500 ms) has published it. Holding them instead would keep
//! the core's buffers for a peer's retransmission to recover just as well,
//! and the window is short: a host that sends through the router has just
//! resolved the router's address, and the kernel learns the host's MAC from
//! that ARP request.

use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;

use super::{lock, Router, MAX_UNRESOLVED};
use crate::config::UplinkId;
use crate::flow::FlowSpec;
use crate::verdict::{DropReason, Verdict};

/// A flow's `lan_mac` while its LAN host's MAC was not resolved when the
/// flow opened: its replies look the MAC up again ([`Router::inside_mac`]).
pub(super) const UNRESOLVED_MAC: [u8; 6] = [0; 6];

impl Router {
    /// The MAC of a flow's inside host: the one the neighbour table gave when
    /// the flow opened, or, when it had none then, the one it gives now.
    pub(super) fn inside_mac(&self, spec: &FlowSpec) -> Result<[u8; 6], Verdict> {
        if spec.lan_mac != UNRESOLVED_MAC {
            return Ok(spec.lan_mac);
        }
        self.lan_host_mac(spec.inside.addr)
    }

    /// The MAC of a LAN host, or the verdict when it is unknown (and the
    /// address noted for the I/O layer to resolve).
    pub(super) fn lan_host_mac(&self, addr: [u8; 4]) -> Result<[u8; 6], Verdict> {
        if let Some(mac) = self.lan_hosts.get(&addr) {
            return Ok(*mac);
        }
        let mut unresolved = lock(&self.unresolved);
        if unresolved.len() < MAX_UNRESOLVED {
            unresolved.insert(addr);
        }
        Err(Verdict::Drop(DropReason::NeighbourUnresolved))
    }

    /// Sets the MAC of an uplink's gateway (from the kernel's neighbour table).
    pub fn set_gateway_mac(&self, uplink: UplinkId, mac: Option<[u8; 6]>) {
        self.uplinks[usize::from(uplink)]
            .gateway_mac
            .store(mac.map_or(0, pack_mac), Ordering::Relaxed);
    }

    /// Sets the MAC of a LAN host (from the kernel's neighbour table).
    pub fn set_lan_mac(&self, addr: Ipv4Addr, mac: [u8; 6]) {
        self.lan_hosts.insert(addr.octets(), mac);
        lock(&self.unresolved).remove(&addr.octets());
    }

    /// LAN addresses whose MAC the core needed and did not have.
    pub fn unresolved_lan_hosts(&self) -> Vec<Ipv4Addr> {
        lock(&self.unresolved)
            .iter()
            .map(|a| Ipv4Addr::from(*a))
            .collect()
    }
}

const MAC_PRESENT: u64 = 1 << 48;

pub(super) fn pack_mac(mac: [u8; 6]) -> u64 {
    let mut bytes = [0u8; 8];
    bytes[2..].copy_from_slice(&mac);
    u64::from_be_bytes(bytes) | MAC_PRESENT
}

pub(super) fn unpack_mac(packed: u64) -> Option<[u8; 6]> {
    if packed & MAC_PRESENT == 0 {
        return None;
    }
    let bytes = packed.to_be_bytes();
    bytes[2..].try_into().ok()
}
