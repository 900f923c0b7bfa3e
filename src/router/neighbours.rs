//! Next hops: the MACs of the uplinks' gateways and of LAN hosts, as the I/O
//! layer learns them from the kernel's neighbour table, and the LAN
//! addresses the core needed and did not have (for the I/O layer to resolve).
//!
//! A LAN host's MAC comes from that table, never from the source MAC of a
//! frame, with one exception kept to the flow that frame opened: a flow
//! opened from the LAN before the host's address is in the table (asked for
//! at once) remembers the source MAC of its first frame, and its replies go
//! there only while the table still has no entry for the address. Nothing
//! learned from a frame is shared: port forwards, other flows and the RSTs
//! and ICMP errors of other flows see only the table. So a host sending with
//! another's address attracts none of that host's traffic: at most the
//! replies to its own packets, and only until the address resolves (the
//! neighbour thread asks within 50 ms, then an ARP exchange). Dropping or
//! holding those replies instead would lose or delay the first answer to
//! every host the table does not know yet (a first ping, a first DNS
//! answer).
//!
//! A flow with no MAC of its own waits for the table: a port forward's
//! (its target looked up in the table only) and a flow restored from a
//! saved state (it trusts no MAC saved with it; the restored hosts are
//! asked for at start). Its frames wait in `waiting.rs` until the host
//! resolves, as the kernel queues them.
//!
//! The established fast path reads a LAN host's MAC from its lane's
//! [`NeighbourCache`] (a few entries copied from the table, no lock and no
//! shared write per packet), which the lane empties whenever the table's
//! epoch moved (any MAC set or changed since), so a neighbour change reaches
//! the next packet of every lane.

use std::cell::Cell;
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;

use super::{lock, Router, MAX_UNRESOLVED};
use crate::config::UplinkId;
use crate::flow::FlowSpec;
use crate::verdict::{DropReason, Verdict};

impl Router {
    /// The MAC of a flow's inside host: the table's now, or while it has
    /// none, the one the flow opened with; a restored flow has none of its
    /// own ([`NO_MAC`]), so without the table's it gets the verdict (and
    /// the address noted for the I/O layer to resolve).
    pub(super) fn inside_mac(&self, spec: &FlowSpec) -> Result<[u8; 6], Verdict> {
        match self.lan_hosts.get(&spec.inside.addr) {
            Some(mac) => Ok(*mac),
            None => own_mac(spec).ok_or_else(|| self.unresolved(spec.inside.addr)),
        }
    }

    /// [`Router::inside_mac`] through a lane's cache.
    pub(super) fn inside_mac_cached(
        &self,
        spec: &FlowSpec,
        cache: &NeighbourCache,
    ) -> Result<[u8; 6], Verdict> {
        self.cached_lan_mac(spec.inside.addr, cache)
            .or_else(|| own_mac(spec))
            .ok_or_else(|| self.unresolved(spec.inside.addr))
    }

    /// Notes the inside hosts of restored flows for the I/O layer to
    /// resolve at once: their saved MACs are not used (see [`NO_MAC`]).
    pub(super) fn resolve_restored(&self, addr: [u8; 4]) {
        if self.lan_hosts.get(&addr).is_none() {
            self.unresolved(addr);
        }
    }

    /// The MAC of a LAN host, or the verdict when it is unknown (and the
    /// address noted for the I/O layer to resolve).
    pub(super) fn lan_host_mac(&self, addr: [u8; 4]) -> Result<[u8; 6], Verdict> {
        match self.lan_hosts.get(&addr) {
            Some(mac) => Ok(*mac),
            None => Err(self.unresolved(addr)),
        }
    }

    /// [`Router::lan_host_mac`] through a lane's cache.
    pub(super) fn lan_host_mac_cached(
        &self,
        addr: [u8; 4],
        cache: &NeighbourCache,
    ) -> Result<[u8; 6], Verdict> {
        self.cached_lan_mac(addr, cache)
            .ok_or_else(|| self.unresolved(addr))
    }

    /// The table's MAC for `addr` through a lane's cache (only the table's
    /// entries are cached: a flow's own MAC is its fallback, never shared).
    fn cached_lan_mac(&self, addr: [u8; 4], cache: &NeighbourCache) -> Option<[u8; 6]> {
        let epoch = self.neighbour_epoch.load(Ordering::Acquire);
        if cache.epoch.get() != epoch {
            cache.clear(epoch);
        }
        let entry = &cache.entries[NeighbourCache::index(addr)];
        match entry.get() {
            Some((cached, mac)) if cached == addr => Some(mac),
            _ => {
                let mac = *self.lan_hosts.get(&addr)?;
                entry.set(Some((addr, mac)));
                Some(mac)
            }
        }
    }

    /// Notes a LAN address whose MAC is unknown for the I/O layer to resolve.
    fn unresolved(&self, addr: [u8; 4]) -> Verdict {
        let mut unresolved = lock(&self.unresolved);
        if unresolved.len() < MAX_UNRESOLVED && unresolved.insert(addr) {
            self.unresolved_news.store(true, Ordering::Relaxed);
        }
        Verdict::Drop(DropReason::NeighbourUnresolved)
    }

    /// Sets the MAC of an uplink's gateway (from the kernel's neighbour table).
    pub fn set_gateway_mac(&self, uplink: UplinkId, mac: Option<[u8; 6]>) {
        self.uplinks[usize::from(uplink)]
            .gateway_mac
            .store(mac.map_or(0, pack_mac), Ordering::Relaxed);
    }

    /// Sets the MAC of a LAN host (from the kernel's neighbour table).
    pub fn set_lan_mac(&self, addr: Ipv4Addr, mac: [u8; 6]) {
        if self.lan_hosts.insert(addr.octets(), mac) != Some(mac) {
            // After the table's write: a lane that sees the new epoch reads
            // the new MAC (or a newer one).
            self.neighbour_epoch.fetch_add(1, Ordering::AcqRel);
        }
        lock(&self.unresolved).remove(&addr.octets());
    }

    /// Whether an address joined [`Router::unresolved_lan_hosts`] since the
    /// last call.
    pub fn unresolved_news(&self) -> bool {
        self.unresolved_news.swap(false, Ordering::Relaxed)
    }

    /// LAN addresses whose MAC the core needed and did not have.
    pub fn unresolved_lan_hosts(&self) -> Vec<Ipv4Addr> {
        lock(&self.unresolved)
            .iter()
            .map(|a| Ipv4Addr::from(*a))
            .collect()
    }
}

/// A flow's own MAC when it has none: a flow restored from a saved state.
/// The MAC saved with it may belong to nobody now (the LAN's hosts changed
/// while xwan was not running), so a restored flow's inside host is reached
/// through the neighbour table only, as a port forward's target is.
pub const NO_MAC: [u8; 6] = [0; 6];

/// The MAC a flow opened with, unless it has none ([`NO_MAC`]).
fn own_mac(spec: &FlowSpec) -> Option<[u8; 6]> {
    (spec.lan_mac != NO_MAC).then_some(spec.lan_mac)
}

/// One lane's copy of some of the LAN hosts' MACs (direct-mapped by the
/// address's low ten bits: every host of a /22 has a slot of its own),
/// valid for the table's epoch it holds.
pub(super) struct NeighbourCache {
    epoch: Cell<u64>,
    entries: Box<[Cell<Option<CachedMac>>]>,
}

/// A LAN host's address and the MAC the table had for it.
type CachedMac = ([u8; 4], [u8; 6]);

impl NeighbourCache {
    const ENTRIES: usize = 1024;

    fn index(addr: [u8; 4]) -> usize {
        u32::from_be_bytes(addr) as usize % Self::ENTRIES
    }

    fn clear(&self, epoch: u64) {
        for entry in self.entries.iter() {
            entry.set(None);
        }
        self.epoch.set(epoch);
    }
}

impl Default for NeighbourCache {
    fn default() -> NeighbourCache {
        NeighbourCache {
            epoch: Cell::new(0),
            entries: (0..Self::ENTRIES).map(|_| Cell::new(None)).collect(),
        }
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
