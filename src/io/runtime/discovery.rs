//! Start-up checks and discovery: privileges, the interfaces and addresses of a
//! configuration, the kernel's port range, the traffic xwan owns, the summary logged.

use super::options::RunError;
use crate::config::{Action, Config, Nat6, PortRange, Proto, Rule, UplinkId};
use crate::io::features::ProbedInterface;
use crate::io::system::{self, format_mac, Link, SystemError};
use crate::io::{DataPathSetup, Interface, OwnedTraffic, OwnedTraffic6, OwnedUplink6};
use crate::nat::prefix::outside_prefix;
use crate::router::Port;
use ipnet::IpNet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use tracing::{info, warn};

/// The interfaces and addresses found for a configuration.
pub(super) struct Discovered {
    pub(super) lan: Link,
    /// One per uplink, in config order.
    pub(super) wans: Vec<Link>,
    pub(super) local_addresses: Vec<Ipv4Addr>,
}

/// CAP_NET_ADMIN and CAP_NET_RAW, from `/proc/self/status`.
pub(super) fn check_privileges() -> Result<(), RunError> {
    const NEEDED: [(u32, &str); 2] = [(12, "CAP_NET_ADMIN"), (13, "CAP_NET_RAW")];
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|err| SystemError::io("/proc/self/status", err))?;
    let effective = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    let missing: Vec<&str> = NEEDED
        .iter()
        .filter(|(bit, _)| effective & (1 << bit) == 0)
        .map(|(_, name)| *name)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(RunError::NotPrivileged(missing.join(" and ")))
    }
}

/// Finds every configured interface (the config guarantees each is used once) and
/// checks that each WAN address written in the file is configured on its
/// interface ("auto" ones are what the interface has).
pub(super) fn discover(config: &Config) -> Result<Discovered, RunError> {
    let lan = system::link(&config.lan.interface)?;
    let wans = config
        .wans
        .iter()
        .map(|wan| system::link(&wan.interface))
        .collect::<Result<Vec<_>, _>>()?;
    let addresses = system::ipv4_addresses()?;
    for wan in config.wans.iter().filter(|w| !w.address_auto) {
        system::check_address(&addresses, &wan.interface, wan.address)?;
    }
    check_addresses6(config, &wans);
    Ok(Discovered {
        lan,
        wans,
        local_addresses: sorted_addresses(&addresses),
    })
}

/// Warns of each uplink's written `address6` that is not on its interface:
/// nothing would answer the ISP router's neighbour solicitations for it, so
/// replies to it (NAT66) would not come back. A warning rather than a
/// refusal: IPv4 does not need it, and the address may be on its way (DHCPv6).
fn check_addresses6(config: &Config, wans: &[Link]) {
    let written: Vec<(&crate::config::Wan, &Link, std::net::Ipv6Addr)> = config
        .wans
        .iter()
        .zip(wans)
        .filter_map(|(wan, link)| {
            let v6 = wan.ipv6.as_ref()?;
            (!v6.address_auto && !v6.address.is_unspecified()).then_some((wan, link, v6.address))
        })
        .collect();
    if written.is_empty() {
        return;
    }
    let addresses = match system::ipv6_addresses() {
        Ok(addresses) => addresses,
        Err(e) => {
            warn!(error = %e, "cannot read the IPv6 addresses to check each uplink's address6");
            return;
        }
    };
    for (wan, link, address) in written {
        if !addresses
            .iter()
            .any(|a| a.ifindex == link.ifindex && a.address == address)
        {
            warn!(
                uplink = %wan.name,
                "address6 {address} is not configured on {}: replies to it will not reach xwan \
                 unless something answers neighbour solicitations for it",
                link.name
            );
        }
    }
}

fn sorted_addresses(addresses: &[system::InterfaceAddress]) -> Vec<Ipv4Addr> {
    let mut local: Vec<Ipv4Addr> = addresses.iter().map(|a| a.net.addr()).collect();
    local.sort();
    local.dedup();
    local
}

/// The configuration with the NAT range it runs with: a default range
/// (no `[nat] ports` in the file) less the kernel's ephemeral ports, read now;
/// refused when the range still overlaps them. Start and reload both use it.
pub(super) fn fit_nat_ports(config: &Config) -> Result<Config, RunError> {
    let kernel = system::local_port_range()?;
    let mut config = config.clone();
    if let Some(default) = config.nat.avoid_kernel_ports(kernel) {
        info!(
            "nat ports {}-{}: the default {}-{} less the kernel's ephemeral ports \
             (net.ipv4.ip_local_port_range {} {}); set [nat] ports or move the kernel's range to use more",
            config.nat.ports.lo, config.nat.ports.hi, default.lo, default.hi, kernel.lo, kernel.hi
        );
    }
    check_port_ranges(kernel, config.nat.ports)?;
    Ok(config)
}

/// Refuses to start when the kernel's ephemeral ports overlap the NAT range.
fn check_port_ranges(kernel: PortRange, nat: PortRange) -> Result<(), RunError> {
    if !kernel.overlaps(&nat) {
        return Ok(());
    }
    Err(RunError::PortRangeOverlap {
        kernel,
        nat,
        advice: port_range_advice(nat),
    })
}

/// What to set `ip_local_port_range` to: the ports above the NAT range if they are
/// at least 1000, else those between 1024 and the NAT range.
pub(super) fn port_range_advice(nat: PortRange) -> String {
    let above = (nat.hi < u16::MAX).then(|| PortRange {
        lo: nat.hi.max(1023) + 1,
        hi: u16::MAX,
    });
    let below = (nat.lo > 1024).then(|| PortRange {
        lo: 1024,
        hi: nat.lo - 1,
    });
    match [above, below].into_iter().flatten().find(|r| r.len() >= 1000) {
        Some(r) => format!(
            "move the kernel's range out of it, e.g. `sysctl -w net.ipv4.ip_local_port_range=\"{} {}\"` \
             (and in /etc/sysctl.d to keep it)",
            r.lo, r.hi
        ),
        None => "narrow [nat] ports to leave the kernel at least 1000 ports above 1024, then set \
                 net.ipv4.ip_local_port_range to them"
            .to_owned(),
    }
}

pub(super) fn interfaces(found: &Discovered) -> Vec<Interface> {
    let one = |link: &Link, port: Port| Interface {
        name: link.name.clone(),
        ifindex: link.ifindex,
        mac: link.mac,
        port,
        rx_queues: link.rx_queues,
    };
    std::iter::once(one(&found.lan, Port::Lan))
        .chain(
            found
                .wans
                .iter()
                .enumerate()
                .map(|(id, link)| one(link, Port::Wan(id as UplinkId))),
        )
        .collect()
}

pub(super) fn owned_traffic(config: &Config, local_addresses: &[Ipv4Addr]) -> OwnedTraffic {
    let forwards = |proto: Proto| -> Vec<(Ipv4Addr, u16)> {
        config
            .forwards
            .iter()
            .filter(|f| f.proto == proto)
            .flat_map(|f| {
                f.wans
                    .iter()
                    .filter_map(|&id| config.wans.get(usize::from(id)))
                    .filter(|wan| !wan.address.is_unspecified())
                    .map(move |wan| (wan.address, f.port))
            })
            .collect()
    };
    OwnedTraffic {
        lan_networks: config.lan.networks.clone(),
        bypass: bypass(&config.rules, |rule| &rule.dst),
        local_addresses: local_addresses.to_vec(),
        wan_addresses: config.wans.iter().map(|w| w.address).collect(),
        nat_ports: config.nat.ports,
        tcp_forwards: forwards(Proto::Tcp),
        udp_forwards: forwards(Proto::Udp),
        v6: owned6(config),
    }
}

/// The prefixes of destination-only bypass rules that no earlier rule of
/// another action can match, of the family whose destination prefixes
/// `dst` gives: whatever goes there is the kernel's whatever else the packet
/// holds (an earlier bypass rule only bypasses it sooner), so the XDP
/// program passes it and it reaches the kernel on its own interface rather
/// than through the punt device.
fn bypass<N>(rules: &[Rule], dst: impl Fn(&Rule) -> &[N]) -> Vec<N>
where
    N: Copy + Into<IpNet>,
{
    let mut bypass: Vec<N> = Vec::new();
    let mut earlier: Vec<&[N]> = Vec::new();
    for rule in rules {
        if rule.action != Action::Bypass {
            earlier.push(dst(rule));
            continue;
        }
        if rule.proto != Proto::Any
            || !rule.src.is_empty()
            || !rule.src6.is_empty()
            || !rule.src_port.is_empty()
            || !rule.dst_port.is_empty()
        {
            continue;
        }
        let overlap = |a: &N, b: &N| {
            let (a, b): (IpNet, IpNet) = ((*a).into(), (*b).into());
            a.contains(&b) || b.contains(&a)
        };
        bypass.extend(dst(rule).iter().filter(|net| {
            !earlier
                .iter()
                .any(|dst| dst.is_empty() || dst.iter().any(|d| overlap(d, net)))
        }));
    }
    bypass
}

/// The IPv6 traffic of `config` (its "auto" values as the kernel has them
/// now): the LAN's prefixes; per uplink, the outside prefixes the LAN's are
/// mapped onto (prefix, npt) or the LAN prefixes it routes (off), and its
/// NAT66 address (masquerade).
pub(super) fn owned6(config: &Config) -> OwnedTraffic6 {
    let lan = &config.lan.networks6;
    if lan.is_empty() {
        return OwnedTraffic6::default();
    }
    let known = |a: Ipv6Addr| (!a.is_unspecified()).then_some(a);
    let uplinks = config
        .wans
        .iter()
        .enumerate()
        .map(|(id, wan)| {
            let Some(v6) = &wan.ipv6 else {
                return OwnedUplink6::default();
            };
            let prefixes = match (v6.nat, v6.prefix) {
                (Nat6::Prefix | Nat6::Npt, Some(prefix)) => lan
                    .iter()
                    .filter_map(|net| outside_prefix(*net, prefix).ok())
                    .collect(),
                (Nat6::Off, Some(prefix)) => lan
                    .iter()
                    .filter(|net| prefix.contains(*net))
                    .copied()
                    .collect(),
                _ => Vec::new(),
            };
            let address = (v6.nat == Nat6::Masquerade)
                .then(|| known(v6.address))
                .flatten();
            let forwards = (config.forwards6.iter())
                .filter(|f| address.is_some() && f.wans.contains(&(id as UplinkId)))
                .map(|f| (if f.proto == Proto::Udp { "udp" } else { "tcp" }, f.port))
                .collect();
            OwnedUplink6 {
                prefixes,
                address,
                forwards,
            }
        })
        .collect();
    let mut local_addresses: Vec<Ipv6Addr> = (config.lan.address6.into_iter())
        .chain(
            config
                .wans
                .iter()
                .filter_map(|w| known(w.ipv6.as_ref()?.address)),
        )
        .collect();
    local_addresses.sort();
    local_addresses.dedup();
    OwnedTraffic6 {
        lan_networks: lan.clone(),
        bypass: bypass(&config.rules, |rule| &rule.dst6),
        local_addresses,
        uplinks,
    }
}

/// The interfaces the per-interface feature probes look at: the LAN's and
/// every uplink's.
pub(super) fn probed_interfaces(found: &Discovered) -> Vec<ProbedInterface> {
    std::iter::once(&found.lan)
        .chain(&found.wans)
        .map(|link| ProbedInterface {
            name: link.name.clone(),
            ifindex: link.ifindex,
        })
        .collect()
}

pub(super) fn log_summary(
    config: &Config,
    config_path: &Path,
    found: &Discovered,
    setup: &DataPathSetup,
    gateway_macs: &[Option<[u8; 6]>],
) {
    info!(
        "xwan {} starting: config {}, {} worker(s), cpus {:?}",
        crate::VERSION,
        config_path.display(),
        setup.queues,
        setup.cpus
    );
    let nets: Vec<String> = config
        .lan
        .networks
        .iter()
        .map(ToString::to_string)
        .chain(config.lan.networks6.iter().map(ToString::to_string))
        .collect();
    info!(
        "lan on {}: ifindex {}, mac {}, mtu {}, {} rx queue(s), networks {}",
        found.lan.name,
        found.lan.ifindex,
        format_mac(&found.lan.mac),
        found.lan.mtu,
        found.lan.rx_queues,
        nets.join(", ")
    );
    for ((wan, link), gateway) in config.wans.iter().zip(&found.wans).zip(gateway_macs) {
        info!(
            "uplink {} on {}: ifindex {}, mac {}, mtu {}, {} rx queue(s), address {}, gateway {} ({})",
            wan.name,
            link.name,
            link.ifindex,
            format_mac(&link.mac),
            link.mtu,
            link.rx_queues,
            wan.address_text(),
            wan.gateway_text(),
            gateway.map_or_else(|| "resolving".to_owned(), |mac| format!("at {}", format_mac(&mac)))
        );
    }
    for wan in &config.wans {
        let Some(v6) = &wan.ipv6 else { continue };
        let text = |addr: std::net::Ipv6Addr, auto: bool| match (auto, addr.is_unspecified()) {
            (false, true) => "none".to_owned(),
            (false, false) => addr.to_string(),
            (true, true) => "auto (unresolved)".to_owned(),
            (true, false) => format!("auto (now {addr})"),
        };
        let prefix = match (v6.prefix, v6.prefix_auto) {
            (Some(prefix), false) => prefix.to_string(),
            (Some(prefix), true) => format!("auto (now {prefix})"),
            (None, true) => "auto (unresolved)".to_owned(),
            (None, false) => "none".to_owned(),
        };
        info!(
            "uplink {} IPv6: address {}, gateway {}, prefix {prefix}, nat6 {}",
            wan.name,
            text(v6.address, v6.address_auto),
            text(v6.gateway, v6.gateway_auto),
            v6.nat.name()
        );
    }
    info!(
        "nat ports {}-{}, {} port forward(s), {} rule(s)",
        config.nat.ports.lo,
        config.nat.ports.hi,
        config.forwards.len(),
        config.rules.len()
    );
    for link in std::iter::once(&found.lan).chain(&found.wans) {
        if !link.up {
            warn!("interface {} is down", link.name);
        }
    }
}

/// The router's own IPv4 addresses as last read, shared with the kernel-side
/// updates (a reload lays out the kernel side with them too).
pub(super) type LocalAddresses = std::sync::Arc<std::sync::RwLock<Vec<std::net::Ipv4Addr>>>;
