//! What the kernel says of each uplink, as the event monitor last read it:
//! whether its link can carry traffic (up, with a carrier, with an address
//! and a gateway), and the address and gateway an uplink configured "auto"
//! has now. Shared by the monitor (which writes it), the health thread
//! (which judges the uplinks by it) and reloads (which fill a new file's
//! "auto" values from it).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::config::{Config, Wan};
use crate::io::sync;
use crate::io::system::{KernelState, SystemError};

/// Fills the "auto" addresses and gateways of `config` with what the
/// kernel of the calling thread's namespace has now (for `xwan check` and
/// `xwan kernel-script`); those it has none for stay unspecified.
pub fn resolve_auto(config: &mut Config) -> Result<(), SystemError> {
    let uplinks = KernelUplinks::new(config.wans.len());
    uplinks.update(&KernelState::read()?, &config.wans);
    uplinks.fill(config);
    Ok(())
}

/// One uplink as the kernel has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// Administratively up and with a carrier.
    pub link: bool,
    /// The interface's address (None: it has none).
    pub address: Option<Ipv4Addr>,
    /// The gateway of its default route (None: there is none).
    pub gateway: Option<Ipv4Addr>,
}

impl Seen {
    /// What the kernel shows for `wan` on its interface.
    pub fn of(state: &KernelState, wan: &Wan) -> Seen {
        match state.link(&wan.interface) {
            None => Seen {
                link: false,
                address: None,
                gateway: None,
            },
            Some(link) => Seen {
                link: link.up && link.carrier,
                address: state.address_of(link.ifindex),
                gateway: state.gateway_of(link.ifindex),
            },
        }
    }
}

/// Per uplink id: whether its link is usable; per interface: what "auto" resolves to.
pub struct KernelUplinks {
    usable: Vec<AtomicBool>,
    seen: Mutex<HashMap<String, Seen>>,
}

impl KernelUplinks {
    pub fn new(uplinks: usize) -> KernelUplinks {
        KernelUplinks {
            usable: (0..uplinks).map(|_| AtomicBool::new(false)).collect(),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Records what the kernel shows for every uplink (`wans`, by id);
    /// returns whether any uplink's usability changed.
    pub fn update(&self, state: &KernelState, wans: &[Wan]) -> bool {
        let mut seen = sync::lock(&self.seen);
        let mut changed = false;
        for (wan, usable) in wans.iter().zip(&self.usable) {
            let now = Seen::of(state, wan);
            seen.insert(wan.interface.clone(), now);
            let ok = now.link
                && (!wan.address_auto || now.address.is_some())
                && (!wan.gateway_auto || now.gateway.is_some());
            changed |= usable.swap(ok, Ordering::Relaxed) != ok;
        }
        changed
    }

    /// Fills the "auto" addresses and gateways of `config` with what the
    /// kernel showed last (unspecified where it showed none).
    pub fn fill(&self, config: &mut Config) {
        let seen = sync::lock(&self.seen);
        for wan in &mut config.wans {
            let now = seen.get(&wan.interface);
            if wan.address_auto {
                wan.address = now.and_then(|s| s.address).unwrap_or(Ipv4Addr::UNSPECIFIED);
            }
            if wan.gateway_auto {
                wan.gateway = now.and_then(|s| s.gateway).unwrap_or(Ipv4Addr::UNSPECIFIED);
            }
        }
    }

    /// Whether the uplink's link is up with a carrier, and it has an
    /// address and a gateway.
    pub fn usable(&self, uplink: usize) -> bool {
        self.usable
            .get(uplink)
            .is_some_and(|u| u.load(Ordering::Relaxed))
    }
}
