//! The neighbour thread: gateway and LAN host MACs from the kernel's
//! neighbour table; and the frames that waited in the core for a LAN host's
//! MAC, sent out the LAN once it comes (or counted when they waited too
//! long: [`Router::expire_waiting`]).

use super::discovery::Discovered;
use super::loaded_config::LoadedConfig;
use super::options::RunError;
use crate::config::UplinkId;
use crate::io::probe::FrameSocket;
use crate::io::system::{self, format_mac, NeighbourProber, SystemError};
use crate::router::Router;
use ipnet::Ipv4Net;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;
use tracing::{debug, info, warn};

/// Keeps the core's neighbour MACs in step with the kernel's neighbour table.
pub(super) struct NeighbourThread {
    pub(super) router: Arc<Router>,
    pub(super) config: Arc<LoadedConfig>,
    /// The configuration generation `gateways` was taken from.
    pub(super) generation: u64,
    pub(super) prober: NeighbourProber,
    pub(super) lan_interface: String,
    pub(super) lan_ifindex: u32,
    pub(super) lan_networks: Vec<Ipv4Net>,
    /// Per uplink: interface, ifindex, gateway.
    pub(super) gateways: Vec<(String, u32, Ipv4Addr)>,
    pub(super) gateway_macs: Vec<Option<[u8; 6]>>,
    pub(super) lan_macs: HashMap<Ipv4Addr, [u8; 6]>,
    pub(super) last_error: Option<String>,
    /// Sends the frames that waited for a LAN host's MAC; None if it could
    /// not be opened (they are then dropped when they have waited too long).
    pub(super) lan: Option<FrameSocket>,
    /// The router's clock.
    pub(super) epoch: Instant,
}

/// At most this many LAN hosts are probed per refresh (a scan of the LAN from
/// outside must not turn into a flood of ARP requests).
pub(super) const MAX_LAN_PROBES: usize = 64;

impl NeighbourThread {
    pub(super) fn new(
        router: Arc<Router>,
        loaded: Arc<LoadedConfig>,
        found: &Discovered,
        epoch: Instant,
    ) -> Result<NeighbourThread, RunError> {
        let (running, generation) = loaded.current();
        let config = &running.config;
        let lan = FrameSocket::open(found.lan.ifindex)
            .inspect_err(|e| {
                warn!(interface = %found.lan.name, error = %e, "cannot open a socket to send the frames that waited for a LAN host's MAC");
            })
            .ok();
        Ok(NeighbourThread {
            router,
            config: loaded,
            generation,
            prober: NeighbourProber::open()?,
            lan_interface: found.lan.name.clone(),
            lan_ifindex: found.lan.ifindex,
            lan_networks: config.lan.networks.clone(),
            gateways: config
                .wans
                .iter()
                .zip(&found.wans)
                .map(|(wan, link)| (link.name.clone(), link.ifindex, wan.gateway))
                .collect(),
            gateway_macs: vec![None; config.wans.len()],
            lan_macs: HashMap::new(),
            last_error: None,
            lan,
            epoch,
        })
    }

    /// One round; errors are logged (once until they change) and the round ends.
    pub(super) fn refresh(&mut self) {
        match self.try_refresh() {
            Ok(()) => self.last_error = None,
            Err(err) => {
                let text = err.to_string();
                if self.last_error.as_deref() != Some(text.as_str()) {
                    warn!("neighbour refresh: {text}");
                    self.last_error = Some(text);
                }
            }
        }
    }

    /// After a reload: a changed gateway is resolved afresh (the core keeps
    /// the old one's MAC until the new one's is known).
    pub(super) fn follow_config(&mut self) {
        let (running, generation) = self.config.current();
        if generation == self.generation {
            return;
        }
        self.generation = generation;
        for (id, wan) in running.config.wans.iter().enumerate() {
            let Some(entry) = self.gateways.get_mut(id) else {
                continue;
            };
            if entry.2 != wan.gateway {
                info!(
                    "uplink {}: gateway {} replaces {}",
                    wan.name, wan.gateway, entry.2
                );
                entry.2 = wan.gateway;
                self.gateway_macs[id] = None;
            }
        }
    }

    /// Sends the frames that waited for `addr`'s MAC, which the core has now.
    fn send_waiting(&self, addr: Ipv4Addr) {
        let frames = self.router.release_waiting(addr, self.epoch.elapsed());
        let sent = |frame: &Vec<u8>| {
            let lan = self.lan.as_ref()?;
            lan.send(frame)
                .inspect_err(
                    |e| debug!(%addr, error = %e, "a frame that waited for its MAC was not sent"),
                )
                .ok()
        };
        let unsent = frames.iter().filter(|f| sent(f).is_none()).count();
        self.router.count_waiting_unsent(unsent as u64);
    }

    pub(super) fn try_refresh(&mut self) -> Result<(), SystemError> {
        self.follow_config();
        let table = system::neighbours()?;
        for (id, (interface, ifindex, gateway)) in self.gateways.iter().enumerate() {
            if gateway.is_unspecified() {
                // An "auto" gateway the kernel has no default route for yet.
                continue;
            }
            let entry = table
                .iter()
                .find(|n| n.addr == *gateway && n.interface == *interface);
            let known = self.gateway_macs[id];
            match entry.map(|n| n.mac) {
                Some(Some(mac)) if known != Some(mac) => {
                    match known {
                        Some(old) => warn!(
                            "gateway {gateway} on {interface} moved from {} to {}",
                            format_mac(&old),
                            format_mac(&mac)
                        ),
                        None => info!(
                            "gateway {gateway} on {interface} is at {}",
                            format_mac(&mac)
                        ),
                    }
                    self.router.set_gateway_mac(id as UplinkId, Some(mac));
                    self.gateway_macs[id] = Some(mac);
                }
                Some(None) if known.is_some() => {
                    warn!("gateway {gateway} on {interface} stopped answering ARP");
                    self.router.set_gateway_mac(id as UplinkId, None);
                    self.gateway_macs[id] = None;
                }
                _ => {}
            }
            // Keeps the entry confirmed (a stale entry gets a unicast probe, a
            // missing or failed one a new resolution); a reachable one is untouched.
            self.prober.probe(*ifindex, *gateway)?;
        }
        for n in &table {
            let Some(mac) = n.mac else { continue };
            if n.interface == self.lan_interface
                && self.lan_networks.iter().any(|net| net.contains(&n.addr))
                && self.lan_macs.get(&n.addr) != Some(&mac)
            {
                self.router.set_lan_mac(n.addr, mac);
                self.lan_macs.insert(n.addr, mac);
                self.send_waiting(n.addr);
            }
        }
        self.router.expire_waiting(self.epoch.elapsed());
        let missing = self.router.unresolved_lan_hosts();
        for addr in missing.into_iter().take(MAX_LAN_PROBES) {
            if !self.lan_macs.contains_key(&addr) {
                self.prober.probe(self.lan_ifindex, addr)?;
            }
        }
        Ok(())
    }
}
