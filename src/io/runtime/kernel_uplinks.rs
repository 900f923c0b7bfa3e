//! What the kernel says of each uplink, as the event monitor last read it:
//! whether its link can carry traffic (up, with a carrier, with an address
//! and a gateway), whether its IPv6 side resolves, and the addresses and
//! gateways of both families an uplink configured "auto" has now. Shared by
//! the monitor (which writes it and takes an uplink whose IPv6 does not
//! resolve out of IPv6 service), the health thread (which judges the
//! uplinks by it) and reloads (which fill a new file's "auto" values from
//! it).
//!
//! How each "auto" resolves, on the uplink's interface:
//! - `address`: its first primary IPv4 address;
//! - `gateway`: the gateway of its IPv4 default route (lowest metric, the
//!   main table first, xwan's own routes aside);
//! - `address6`: its global IPv6 address (SLAAC or DHCPv6): scope universe,
//!   not tentative nor failed, a preferred one before a deprecated one, a
//!   global one before a unique local one, a stable one before a temporary
//!   one;
//! - `gateway6`: the gateway of its IPv6 default route, by the IPv4 rule
//!   (usually the ISP router's link-local address, from its advertisements);
//! - `prefix6`: what `xwan prefix6 NAME PREFIX` said last (the DHCPv6-PD
//!   client's hook runs it: the kernel's unreachable route for a delegated
//!   prefix names no uplink); until then unresolved, and an uplink that needs
//!   it stays out of IPv6 service.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use ipnet::Ipv6Net;

use crate::config::{Config, Wan, Wan6};
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
    /// The interface's global IPv6 address (None: it has none).
    pub address6: Option<Ipv6Addr>,
    /// The gateway of its IPv6 default route (None: there is none).
    pub gateway6: Option<Ipv6Addr>,
}

impl Seen {
    /// What the kernel shows for `wan` on its interface.
    pub fn of(state: &KernelState, wan: &Wan) -> Seen {
        match state.link(&wan.interface) {
            None => Seen {
                link: false,
                address: None,
                gateway: None,
                address6: None,
                gateway6: None,
            },
            Some(link) => Seen {
                link: link.up && link.carrier,
                address: state.address_of(link.ifindex),
                gateway: state.gateway_of(link.ifindex),
                address6: state.address6_of(link.ifindex),
                gateway6: state.gateway6_of(link.ifindex),
            },
        }
    }
}

/// Fills the "auto" values of an uplink's IPv6 side with `seen`
/// (unspecified, or no prefix, where it shows none).
fn fill6(v6: &mut Wan6, seen: Option<&Seen>, delegated: Option<Ipv6Net>) {
    if v6.address_auto {
        v6.address = seen
            .and_then(|s| s.address6)
            .unwrap_or(Ipv6Addr::UNSPECIFIED);
    }
    if v6.gateway_auto {
        v6.gateway = seen
            .and_then(|s| s.gateway6)
            .unwrap_or(Ipv6Addr::UNSPECIFIED);
    }
    if v6.prefix_auto {
        v6.prefix = delegated;
    }
}

/// Per uplink id: whether its link is usable and whether its IPv6 side
/// resolves; per interface: what "auto" resolves to.
pub struct KernelUplinks {
    usable: Vec<AtomicBool>,
    usable6: Vec<AtomicBool>,
    seen: Mutex<HashMap<String, Seen>>,
    /// Per interface: the prefix `xwan prefix6` gave its uplink last.
    delegated: Mutex<HashMap<String, Ipv6Net>>,
}

impl KernelUplinks {
    pub fn new(uplinks: usize) -> KernelUplinks {
        KernelUplinks {
            usable: (0..uplinks).map(|_| AtomicBool::new(false)).collect(),
            usable6: (0..uplinks).map(|_| AtomicBool::new(false)).collect(),
            seen: Mutex::new(HashMap::new()),
            delegated: Mutex::new(HashMap::new()),
        }
    }

    /// The prefix the ISP of the uplink on `interface` delegates now (None:
    /// none), for its `prefix6 = "auto"`; `wans` (by id) to judge its IPv6
    /// side again at once.
    pub fn delegate6(&self, wans: &[Wan], interface: &str, prefix: Option<Ipv6Net>) {
        {
            let mut delegated = sync::lock(&self.delegated);
            match prefix {
                Some(prefix) => delegated.insert(interface.to_string(), prefix),
                None => delegated.remove(interface),
            };
        }
        let seen = sync::lock(&self.seen);
        for (wan, usable6) in wans.iter().zip(&self.usable6) {
            if wan.interface == interface {
                let ok6 = self.resolves6(wan, seen.get(interface));
                usable6.store(ok6, Ordering::Relaxed);
            }
        }
    }

    /// Whether `wan` carries IPv6 and its IPv6 side resolves with `seen`.
    fn resolves6(&self, wan: &Wan, seen: Option<&Seen>) -> bool {
        let delegated = sync::lock(&self.delegated).get(&wan.interface).copied();
        wan.ipv6.clone().is_some_and(|mut v6| {
            fill6(&mut v6, seen, delegated);
            v6.resolved()
        })
    }

    /// Records what the kernel shows for every uplink (`wans`, by id);
    /// returns whether any uplink's usability (of either family) changed.
    pub fn update(&self, state: &KernelState, wans: &[Wan]) -> bool {
        let mut seen = sync::lock(&self.seen);
        let mut changed = false;
        for ((wan, usable), usable6) in wans.iter().zip(&self.usable).zip(&self.usable6) {
            let now = Seen::of(state, wan);
            seen.insert(wan.interface.clone(), now);
            let ok = now.link
                && (!wan.address_auto || now.address.is_some())
                && (!wan.gateway_auto || now.gateway.is_some());
            changed |= usable.swap(ok, Ordering::Relaxed) != ok;
            // IPv6 resolves on its own: an uplink without it stays up for IPv4.
            let ok6 = self.resolves6(wan, Some(&now));
            changed |= usable6.swap(ok6, Ordering::Relaxed) != ok6;
        }
        changed
    }

    /// Fills the "auto" addresses and gateways of `config`, of both
    /// families, with what the kernel showed last (unspecified where it
    /// showed none).
    pub fn fill(&self, config: &mut Config) {
        let seen = sync::lock(&self.seen);
        let delegated = sync::lock(&self.delegated);
        for wan in &mut config.wans {
            let now = seen.get(&wan.interface);
            if wan.address_auto {
                wan.address = now.and_then(|s| s.address).unwrap_or(Ipv4Addr::UNSPECIFIED);
            }
            if wan.gateway_auto {
                wan.gateway = now.and_then(|s| s.gateway).unwrap_or(Ipv4Addr::UNSPECIFIED);
            }
            if let Some(v6) = &mut wan.ipv6 {
                fill6(v6, now, delegated.get(&wan.interface).copied());
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

    /// Whether the uplink carries IPv6 and its IPv6 side resolves: a
    /// gateway, and the address or prefix its `nat6` translates to
    /// ([`Wan6::resolved`]). Its link is [`KernelUplinks::usable`]'s.
    pub fn usable6(&self, uplink: usize) -> bool {
        self.usable6
            .get(uplink)
            .is_some_and(|u| u.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Nat6;
    use crate::io::system::rtnetlink::{Address6, DefaultRoute, LinkState};
    use std::path::Path;

    /// isp1: every IPv6 value "auto" with masquerade; isp2: a written
    /// gateway and a prefix "auto" (which does not resolve yet).
    const AUTO6: &str = r#"
[lan]
interface = "lan0"
networks = ["192.168.50.0/24", "fd00:50::/64"]

[[wan]]
name = "isp1"
interface = "wan1"
address = "auto"
gateway = "auto"
address6 = "auto"
gateway6 = "auto"

[[wan]]
name = "isp2"
interface = "wan2"
address = "198.18.2.2"
gateway = "198.18.2.1"
gateway6 = "fe80::2"
prefix6 = "auto"
"#;

    fn v6(text: &str) -> Ipv6Addr {
        text.parse().unwrap()
    }

    fn link(ifindex: u32, name: &str) -> LinkState {
        LinkState {
            ifindex,
            name: name.into(),
            up: true,
            carrier: true,
        }
    }

    fn global(ifindex: u32, address: &str) -> Address6 {
        Address6 {
            ifindex,
            address: v6(address),
            prefix_len: 64,
            global: true,
            tentative: false,
            deprecated: false,
            temporary: false,
        }
    }

    fn default6(ifindex: u32, gateway: &str) -> DefaultRoute<Ipv6Addr> {
        DefaultRoute {
            ifindex,
            gateway: v6(gateway),
            table: 254,
            metric: 1024,
            protocol: 9,
        }
    }

    fn state() -> KernelState {
        KernelState {
            links: vec![link(3, "wan1"), link(4, "wan2")],
            addresses: vec![(3, "198.18.1.2".parse().unwrap())],
            defaults: vec![DefaultRoute {
                ifindex: 3,
                gateway: "198.18.1.1".parse().unwrap(),
                table: 254,
                metric: 100,
                protocol: 16,
            }],
            addresses6: vec![global(3, "2001:db8:1::2"), global(4, "2001:db8:2::2")],
            defaults6: vec![default6(3, "fe80::1"), default6(4, "fe80::99")],
        }
    }

    fn config() -> Config {
        Config::from_toml(AUTO6, Path::new("test.toml")).expect("valid test config")
    }

    #[test]
    fn fills_ipv6_auto_values_from_the_kernel() {
        let mut config = config();
        let uplinks = KernelUplinks::new(2);
        uplinks.update(&state(), &config.wans);
        uplinks.fill(&mut config);
        let isp1 = config.wans[0].ipv6.as_ref().unwrap();
        assert_eq!(
            (isp1.address, isp1.gateway),
            (v6("2001:db8:1::2"), v6("fe80::1"))
        );
        assert_eq!(isp1.nat, Nat6::Masquerade);
        // Written values stay; a prefix "auto" stays unresolved until
        // `xwan prefix6` says.
        let isp2 = config.wans[1].ipv6.as_ref().unwrap();
        assert_eq!(isp2.gateway, v6("fe80::2"));
        assert_eq!(isp2.address, Ipv6Addr::UNSPECIFIED);
        assert_eq!(isp2.prefix, None);
        assert!(uplinks.usable(0) && uplinks.usable6(0));
        // isp2 is up for IPv4, not for IPv6.
        assert!(uplinks.usable(1) && !uplinks.usable6(1));
        let delegated: ipnet::Ipv6Net = "2001:db8:100::/56".parse().unwrap();
        uplinks.delegate6(
            &config.wans,
            &config.wans[1].interface.clone(),
            Some(delegated),
        );
        assert!(uplinks.usable6(1), "told its prefix, isp2 carries IPv6");
        uplinks.fill(&mut config);
        assert_eq!(
            config.wans[1].ipv6.as_ref().unwrap().prefix,
            Some(delegated)
        );
        uplinks.delegate6(&config.wans, &config.wans[1].interface.clone(), None);
        assert!(!uplinks.usable6(1));
    }

    #[test]
    fn an_unresolved_ipv6_side_leaves_ipv4_alone() {
        let config = config();
        let uplinks = KernelUplinks::new(2);
        let mut kernel = state();
        kernel.defaults6.retain(|r| r.ifindex != 3);
        assert!(uplinks.update(&kernel, &config.wans));
        assert!(uplinks.usable(0) && !uplinks.usable6(0));
        let mut filled = config.clone();
        uplinks.fill(&mut filled);
        let isp1 = filled.wans[0].ipv6.as_ref().unwrap();
        assert_eq!(isp1.gateway, Ipv6Addr::UNSPECIFIED);
        assert_eq!(isp1.address, v6("2001:db8:1::2"));

        // The gateway comes back: IPv6 resolves again (a change); the
        // address goes: masquerade has nothing to translate to.
        assert!(uplinks.update(&state(), &config.wans));
        assert!(uplinks.usable6(0));
        let mut kernel = state();
        kernel.addresses6.retain(|a| a.ifindex != 3);
        assert!(uplinks.update(&kernel, &config.wans));
        assert!(uplinks.usable(0) && !uplinks.usable6(0));
        assert!(!uplinks.update(&kernel, &config.wans), "no change");
    }
}
