//! What the core learns from the interfaces rather than from the
//! configuration: each port's MTU when its `mtu` key is not set, and the LAN
//! address when `[lan] address` is not set. The I/O layer reads them at start
//! and whenever they may have changed, and tells the core.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};

use super::Router;
use crate::config::DEFAULT_MTU;
use crate::verdict::Port;

/// One port's MTU: the configured one if any, else the interface's.
pub(super) struct Mtu {
    /// The `mtu` key; 0: not set.
    configured: AtomicU16,
    /// The interface's, as last reported; [`DEFAULT_MTU`] until then.
    interface: AtomicU16,
}

impl Mtu {
    pub(super) fn new(configured: Option<u16>) -> Mtu {
        Mtu {
            configured: AtomicU16::new(configured.unwrap_or(0)),
            interface: AtomicU16::new(DEFAULT_MTU),
        }
    }

    /// The MTU in force.
    pub(super) fn get(&self) -> u16 {
        match self.configured.load(Ordering::Relaxed) {
            0 => self.interface.load(Ordering::Relaxed),
            configured => configured,
        }
    }

    pub(super) fn configure(&self, configured: Option<u16>) {
        self.configured
            .store(configured.unwrap_or(0), Ordering::Relaxed);
    }
}

/// The LAN interface's address, as last reported; 0: none.
#[derive(Default)]
pub(super) struct LanAddress(AtomicU32);

impl LanAddress {
    pub(super) fn get(&self) -> Option<[u8; 4]> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            addr => Some(addr.to_be_bytes()),
        }
    }
}

impl Router {
    /// The MTU of `port`'s interface: in force unless its `mtu` key is set.
    /// An uplink the router does not have is ignored.
    pub fn set_interface_mtu(&self, port: Port, mtu: u16) {
        let cell = match port {
            Port::Lan => &self.lan_mtu,
            Port::Wan(uplink) => match self.uplinks.get(usize::from(uplink)) {
                Some(uplink) => &uplink.mtu,
                None => return,
            },
        };
        cell.interface.store(mtu, Ordering::Relaxed);
    }

    /// The LAN interface's address (inside a LAN network), the source of the
    /// ICMP errors the core sends to LAN hosts unless `[lan] address` is set.
    pub fn set_lan_interface_address(&self, addr: Option<Ipv4Addr>) {
        self.lan_interface_address
            .0
            .store(addr.map_or(0, u32::from), Ordering::Relaxed);
    }

    /// The source of the ICMP errors the core sends to LAN hosts.
    pub(super) fn lan_address(&self) -> Option<[u8; 4]> {
        self.live
            .load()
            .lan_address
            .or_else(|| self.lan_interface_address.get())
    }
}
