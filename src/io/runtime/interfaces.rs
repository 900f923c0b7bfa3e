//! What the router learns from its interfaces and keeps current: their MTUs
//! (for the core, where no `mtu` key overrides them), the LAN interface's
//! address (the core's `[lan] address` when the key is not set) and, with
//! IPv6 LAN prefixes, its IPv6 address inside them (the core's `[lan]
//! address6` when that key is not set: a usable global or unique local
//! address, a preferred one before a deprecated one), and every
//! address of the router (the kernel side of the data path leaves traffic to
//! them to the kernel: the XDP program's `local_addrs` map, or the packet
//! backend's nftables set).
//!
//! [`InterfaceWatch::refresh`] reads them all and applies what changed. The
//! runtime calls it at start, and the uplink monitor (`uplink_monitor.rs`)
//! on every rtnetlink link, address or route event.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex, OnceLock};

use tracing::{info, warn};

use super::data_path::KernelUpdate;
use super::discovery::LocalAddresses;
use super::loaded_config::LoadedConfig;
use crate::config::UplinkId;
use crate::io::sync;
use crate::io::system::{self, SystemError};
use crate::router::{Port, Router};

/// The router's interfaces and what was last read from them.
pub(super) struct InterfaceWatch {
    router: Arc<Router>,
    config: Arc<LoadedConfig>,
    /// Set once the data path runs; until then only the core is updated.
    kernel: OnceLock<KernelUpdate>,
    local: LocalAddresses,
    /// The LAN interface first, then one per uplink.
    ports: Vec<(Port, String)>,
    last: Mutex<Seen>,
    last_error: Mutex<Option<String>>,
}

/// What the last refresh found.
#[derive(Default, PartialEq)]
struct Seen {
    mtus: Vec<u32>,
    lan_address: Option<Ipv4Addr>,
    lan_address6: Option<Ipv6Addr>,
}

impl InterfaceWatch {
    pub(super) fn new(
        router: Arc<Router>,
        config: Arc<LoadedConfig>,
        local: LocalAddresses,
    ) -> InterfaceWatch {
        let running = config.running();
        let ports = std::iter::once((Port::Lan, running.config.lan.interface.clone()))
            .chain(
                running
                    .config
                    .wans
                    .iter()
                    .enumerate()
                    .map(|(id, wan)| (Port::Wan(id as UplinkId), wan.interface.clone())),
            )
            .collect();
        InterfaceWatch {
            router,
            config,
            kernel: OnceLock::new(),
            local,
            ports,
            last: Mutex::new(Seen::default()),
            last_error: Mutex::new(None),
        }
    }

    /// From now on, a change of the router's addresses lays out the kernel
    /// side of the data path with `kernel`.
    pub(super) fn follow_with(&self, kernel: KernelUpdate) {
        // Set once, by the start-up; a second call changes nothing.
        let _ = self.kernel.set(kernel);
    }

    /// [`InterfaceWatch::refresh`] for the event monitor: an error is logged
    /// once until it changes.
    pub(super) fn tick(&self) {
        let outcome = self.refresh().err();
        let mut last = sync::lock(&self.last_error);
        if let Some(err) = &outcome {
            if last.as_ref() != Some(err) {
                warn!("reading the interfaces: {err}");
            }
        }
        *last = outcome;
    }

    /// Reads every interface's MTU and every address, hands the MTUs and the
    /// LAN interface's addresses (IPv4, and IPv6 with IPv6 LAN prefixes) to
    /// the core, and when the router's addresses
    /// changed, lays out the kernel side of the data path again. Changes are
    /// logged.
    pub(super) fn refresh(&self) -> Result<(), String> {
        let links = self
            .ports
            .iter()
            .map(|(_, name)| system::index_and_mtu(name))
            .collect::<Result<Vec<(u32, u32)>, SystemError>>()
            .map_err(|e| e.to_string())?;
        let mtus: Vec<u32> = links.iter().map(|(_, mtu)| *mtu).collect();
        let addresses = system::ipv4_addresses().map_err(|e| e.to_string())?;
        let running = self.config.running();
        let lan = &running.config.lan;
        let lan_address = addresses
            .iter()
            .find(|a| {
                a.interface == lan.interface
                    && lan.networks.iter().any(|n| n.contains(&a.net.addr()))
            })
            .map(|a| a.net.addr());
        // The LAN is the first port.
        let lan_address6 = match (lan.networks6.is_empty(), links.first()) {
            (false, Some((ifindex, _))) => {
                let addresses = system::ipv6_addresses().map_err(|e| e.to_string())?;
                system::preferred_address6(&addresses, *ifindex, |a| {
                    lan.networks6.iter().any(|n| n.contains(&a))
                })
            }
            _ => None,
        };
        let mut local: Vec<Ipv4Addr> = addresses.iter().map(|a| a.net.addr()).collect();
        local.sort();
        local.dedup();

        for ((port, _), &mtu) in self.ports.iter().zip(&mtus) {
            self.router
                .set_interface_mtu(*port, u16::try_from(mtu).unwrap_or(u16::MAX));
        }
        self.router.set_lan_interface_address(lan_address);
        if !lan.networks6.is_empty() {
            self.router.set_lan_interface_address6(lan_address6);
        }
        let seen = Seen {
            mtus,
            lan_address,
            lan_address6,
        };
        let mut last = sync::lock(&self.last);
        if *last != seen {
            let mtus: Vec<String> = self
                .ports
                .iter()
                .zip(&seen.mtus)
                .map(|((_, name), mtu)| format!("{name} {mtu}"))
                .collect();
            let v6 = match (lan.networks6.is_empty(), seen.lan_address6) {
                (true, _) => String::new(),
                (false, None) => "; LAN interface IPv6 address: none".to_owned(),
                (false, Some(a)) => format!("; LAN interface IPv6 address: {a}"),
            };
            info!(
                "interface MTUs: {}; LAN interface address: {}{v6}",
                mtus.join(", "),
                seen.lan_address
                    .map_or_else(|| "none".to_owned(), |a| a.to_string())
            );
            *last = seen;
        }
        drop(last);

        if *sync::read(&self.local) != local {
            info!("the router's addresses: {local:?}");
            *sync::write(&self.local) = local;
            if let Some(kernel) = self.kernel.get() {
                kernel(&running.config)?;
            }
        }
        Ok(())
    }
}
