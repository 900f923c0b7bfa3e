//! The neighbour thread: gateway and LAN host MACs, of both families, from
//! the kernel's neighbour tables; and the frames that waited in the core for
//! a LAN host's MAC, sent out the LAN once it comes (or counted when they
//! waited too long: [`Router::expire_waiting`]).
//!
//! IPv6 goes the IPv4 way: each uplink's `gateway6` (usually the ISP
//! router's link-local address) is looked up on its interface and kept
//! confirmed with the same `NTF_USE` request (the kernel runs Neighbour
//! Discovery), and the LAN hosts' IPv6 neighbours inside the LAN's IPv6
//! prefixes are handed to the core. IPv6 comes after IPv4 in each round, so
//! an error of its own (IPv6 disabled on an interface) leaves IPv4 whole.

use super::discovery::Discovered;
use super::loaded_config::LoadedConfig;
use super::options::RunError;
use crate::config::{Config, UplinkId};
use crate::io::probe::FrameSocket;
use crate::io::system::{self, format_mac, Neighbour, NeighbourProber, SystemError};
use crate::router::Router;
use ipnet::{Ipv4Net, Ipv6Net};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
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
    pub(super) lan_ifindex: u32,
    pub(super) lan_networks: Vec<Ipv4Net>,
    pub(super) lan_networks6: Vec<Ipv6Net>,
    /// Per uplink: interface, ifindex, gateway.
    pub(super) gateways: Vec<(String, u32, Ipv4Addr)>,
    pub(super) gateway_macs: Vec<Option<[u8; 6]>>,
    /// Per uplink: its IPv6 gateway (None: it carries no IPv6; unspecified:
    /// "auto" and the kernel has no IPv6 default route through it yet).
    pub(super) gateways6: Vec<Option<Ipv6Addr>>,
    pub(super) gateway_macs6: Vec<Option<[u8; 6]>>,
    /// Per uplink: whether the core has a MAC for its IPv6 gateway (the old
    /// gateway's counts while a new one resolves, as for IPv4).
    pub(super) core_has_mac6: Vec<bool>,
    pub(super) lan_macs: HashMap<Ipv4Addr, [u8; 6]>,
    /// The LAN hosts' IPv6 MACs the core was given, as long as the kernel
    /// lists them (privacy addresses come and go).
    pub(super) lan_macs6: HashMap<Ipv6Addr, [u8; 6]>,
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

/// Each uplink's IPv6 gateway in `config`; none without IPv6 LAN prefixes
/// (the core then leaves IPv6 to the kernel).
fn gateways6(config: &Config) -> Vec<Option<Ipv6Addr>> {
    let forwarded = !config.lan.networks6.is_empty();
    config
        .wans
        .iter()
        .map(|wan| wan.ipv6.as_ref().filter(|_| forwarded).map(|v6| v6.gateway))
        .collect()
}

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
            lan_ifindex: found.lan.ifindex,
            lan_networks: config.lan.networks.clone(),
            lan_networks6: config.lan.networks6.clone(),
            gateways: config
                .wans
                .iter()
                .zip(&found.wans)
                .map(|(wan, link)| (link.name.clone(), link.ifindex, wan.gateway))
                .collect(),
            gateway_macs: vec![None; config.wans.len()],
            gateways6: gateways6(config),
            gateway_macs6: vec![None; config.wans.len()],
            core_has_mac6: vec![false; config.wans.len()],
            lan_macs: HashMap::new(),
            lan_macs6: HashMap::new(),
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
        for (id, now) in gateways6(&running.config).into_iter().enumerate() {
            let Some(entry) = self.gateways6.get_mut(id) else {
                continue;
            };
            if let (Some(was), Some(now)) = (*entry, now) {
                if was != now {
                    let name = &running.config.wans[id].name;
                    info!("uplink {name}: IPv6 gateway {now} replaces {was}");
                    *entry = Some(now);
                    self.gateway_macs6[id] = None;
                }
            }
        }
    }

    /// Whether the core has a MAC for uplink `id`'s IPv6 gateway.
    pub(super) fn gateway6_resolved(&self, id: usize) -> bool {
        self.core_has_mac6.get(id).copied().unwrap_or(false)
    }

    /// Sends the frames that waited for `addr`'s MAC, which the core has now.
    fn send_waiting(&self, addr: IpAddr) {
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
            let known = self.gateway_macs[id];
            if let Some(mac) = gateway_news(&table, *ifindex, interface, (*gateway).into(), known) {
                self.router.set_gateway_mac(id as UplinkId, mac);
                self.gateway_macs[id] = mac;
            }
            // Keeps the entry confirmed (a stale entry gets a unicast probe, a
            // missing or failed one a new resolution); a reachable one is untouched.
            self.prober.probe(*ifindex, *gateway)?;
        }
        for n in &table {
            let (Some(mac), IpAddr::V4(addr)) = (n.mac, n.addr) else {
                continue;
            };
            if n.ifindex == self.lan_ifindex
                && self.lan_networks.iter().any(|net| net.contains(&addr))
                && self.lan_macs.get(&addr) != Some(&mac)
            {
                self.router.set_lan_mac(addr, mac);
                self.lan_macs.insert(addr, mac);
                self.send_waiting(addr.into());
            }
        }
        self.router.expire_waiting(self.epoch.elapsed());
        let missing = self.router.unresolved_lan_hosts();
        for addr in missing.into_iter().take(MAX_LAN_PROBES) {
            if !self.lan_macs.contains_key(&addr) {
                self.prober.probe(self.lan_ifindex, addr)?;
            }
        }
        self.refresh6(&table)
    }

    /// The IPv6 half of a round: the uplinks' IPv6 gateways, then the LAN
    /// hosts' IPv6 MACs. A probe the kernel refuses (IPv6 off on that
    /// interface) is the round's error, after the rest is done.
    fn refresh6(&mut self, table: &[Neighbour]) -> Result<(), SystemError> {
        let mut first_error = None;
        for (id, gateway) in self.gateways6.iter().enumerate() {
            let Some(gateway) = gateway.filter(|g| !g.is_unspecified()) else {
                continue;
            };
            let (interface, ifindex, _) = &self.gateways[id];
            let known = self.gateway_macs6[id];
            if let Some(mac) = gateway_news(table, *ifindex, interface, gateway.into(), known) {
                self.router.set_gateway_mac6(id as UplinkId, mac);
                self.gateway_macs6[id] = mac;
                self.core_has_mac6[id] = mac.is_some();
            }
            if let Err(e) = self.prober.probe(*ifindex, gateway) {
                first_error.get_or_insert(e);
            }
        }
        if !self.lan_networks6.is_empty() {
            let hosts = lan_hosts6(table, self.lan_ifindex, &self.lan_networks6);
            for (addr, mac) in &hosts {
                if self.lan_macs6.get(addr) != Some(mac) {
                    self.router.set_lan_mac6(*addr, *mac);
                    self.send_waiting((*addr).into());
                }
            }
            self.lan_macs6 = hosts;
            // The LAN hosts a frame needed and the core did not have.
            let missing = self.router.unresolved_lan_hosts6();
            for addr in missing.into_iter().take(MAX_LAN_PROBES) {
                if self.lan_macs6.contains_key(&addr) {
                    continue;
                }
                if let Err(e) = self.prober.probe(self.lan_ifindex, addr) {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// What the kernel's table says of a gateway (`gateway` on `ifindex`)
/// against the MAC the core has (`known`): Some(Some(mac)) when it found a
/// new MAC, Some(None) when the gateway stopped answering, None when
/// nothing changed. The change is logged.
fn gateway_news(
    table: &[Neighbour],
    ifindex: u32,
    interface: &str,
    gateway: IpAddr,
    known: Option<[u8; 6]>,
) -> Option<Option<[u8; 6]>> {
    let entry = table
        .iter()
        .find(|n| n.addr == gateway && n.ifindex == ifindex);
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
            Some(Some(mac))
        }
        Some(None) if known.is_some() => {
            let asked = match gateway {
                IpAddr::V4(_) => "ARP",
                IpAddr::V6(_) => "neighbour solicitations",
            };
            warn!("gateway {gateway} on {interface} stopped answering {asked}");
            Some(None)
        }
        _ => None,
    }
}

/// The LAN hosts' IPv6 addresses with a MAC in the kernel's table: on the
/// LAN interface and inside the LAN's IPv6 prefixes (not its link-local
/// neighbours).
fn lan_hosts6(
    table: &[Neighbour],
    lan_ifindex: u32,
    networks: &[Ipv6Net],
) -> HashMap<Ipv6Addr, [u8; 6]> {
    table
        .iter()
        .filter(|n| n.ifindex == lan_ifindex)
        .filter_map(|n| match (n.addr, n.mac) {
            (IpAddr::V6(addr), Some(mac)) if networks.iter().any(|net| net.contains(&addr)) => {
                Some((addr, mac))
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(addr: &str, ifindex: u32, mac: Option<[u8; 6]>) -> Neighbour {
        Neighbour {
            addr: addr.parse().unwrap(),
            ifindex,
            mac,
        }
    }

    const MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
    const OTHER: [u8; 6] = [2, 0, 0, 0, 1, 9];

    #[test]
    fn a_gateway_is_found_on_its_own_interface() {
        let gw: IpAddr = "fe80::1".parse().unwrap();
        // The same link-local address on two links: each is its own.
        let table = [n("fe80::1", 4, Some(OTHER)), n("fe80::1", 3, Some(MAC))];
        assert_eq!(gateway_news(&table, 3, "wan1", gw, None), Some(Some(MAC)));
        assert_eq!(gateway_news(&table, 3, "wan1", gw, Some(MAC)), None);
        assert_eq!(
            gateway_news(&table, 3, "wan1", gw, Some(OTHER)),
            Some(Some(MAC))
        );
        // Failed or incomplete: cleared once, then nothing new.
        let failed = [n("fe80::1", 3, None)];
        assert_eq!(gateway_news(&failed, 3, "wan1", gw, Some(MAC)), Some(None));
        assert_eq!(gateway_news(&failed, 3, "wan1", gw, None), None);
        // Not in the table at all (yet): the core keeps what it has.
        assert_eq!(gateway_news(&[], 3, "wan1", gw, Some(MAC)), None);
    }

    #[test]
    fn lan_hosts6_are_those_inside_the_lan_prefixes() {
        let networks: Vec<Ipv6Net> = vec!["fd00:50::/64".parse().unwrap()];
        let table = [
            n("fd00:50::10", 2, Some(MAC)),
            n("fd00:50::11", 2, None),
            n("fe80::10", 2, Some(MAC)),
            n("fd00:51::10", 2, Some(MAC)),
            n("fd00:50::12", 3, Some(MAC)),
            n("192.168.50.10", 2, Some(MAC)),
        ];
        let hosts = lan_hosts6(&table, 2, &networks);
        assert_eq!(
            hosts,
            HashMap::from([("fd00:50::10".parse().unwrap(), MAC)])
        );
    }
}
