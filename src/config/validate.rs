//! From the raw layer to the model: every semantic check, each error naming
//! the key and the place in the file. Checks run in file-section order and
//! the first problem found is reported.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::ops::Range;
use std::path::PathBuf;

use ipnet::Ipv4Net;
use serde_spanned::Spanned;

use super::error::{ConfigError, Source};
use super::model::*;
use super::raw::*;

/// Default control socket path, `[control] socket`.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/xwan.sock";

/// Default SNAT port range, `[nat] ports`.
pub const DEFAULT_NAT_PORTS: PortRange = PortRange {
    lo: 20000,
    hi: 59999,
};

/// The smallest SNAT port range accepted.
pub const MIN_NAT_PORTS: u32 = 64;

/// Default MTU of the LAN and of every uplink, `[lan] mtu` and `[[wan]] mtu`.
pub const DEFAULT_MTU: u16 = 1500;

/// MTUs accepted: from the size every IPv4 host must take (RFC 791) to a
/// common jumbo frame.
const MTU_RANGE: (u16, u16) = (576, 9216);

/// MSS clamp values accepted: what the MTU range leaves after 40 bytes of
/// IPv4 and TCP header.
const MSS_RANGE: (u16, u16) = (536, 9176);

/// Default `[limits] max_flows_per_host`: a sixteenth of the default table,
/// so one host's SYN flood cannot fill it.
pub const DEFAULT_MAX_FLOWS_PER_HOST: u32 = 65536;

/// Longest interface name Linux accepts (IFNAMSIZ - 1).
const MAX_IFNAME: usize = 15;

/// Longest uplink name.
const MAX_UPLINK_NAME: usize = 32;

/// Words that mean something else as a rule action, so no uplink may use them.
const RESERVED_NAMES: [&str; 3] = ["balance", "bypass", "drop"];

type Result<T> = std::result::Result<T, ConfigError>;

pub(super) fn validate(src: Source<'_>, raw: RawConfig) -> Result<Config> {
    let v = Validator { src };
    let lan = v.lan(&raw.lan)?;
    let wans = v.wans(&raw.wan, &lan)?;
    let balance = v.balance(raw.balance.as_ref())?;
    let names: Vec<&str> = wans.iter().map(|w| w.name.as_str()).collect();
    let rules = raw
        .rule
        .iter()
        .enumerate()
        .map(|(i, rule)| v.rule(i, rule, &names))
        .collect::<Result<Vec<_>>>()?;
    v.unique_rule_names(&raw.rule, &rules)?;
    let nat = v.nat(raw.nat.as_ref())?;
    let forwards = v.forwards(&raw.forward, &lan, &names, &nat)?;
    let health = v.health(raw.health.as_ref())?;
    let timeouts = v.timeouts(raw.timeouts.as_ref())?;
    let limits = v.limits(raw.limits.as_ref())?;
    let control = v.control(raw.control.as_ref())?;
    Ok(Config {
        lan,
        wans,
        balance,
        rules,
        forwards,
        nat,
        health,
        timeouts,
        limits,
        control,
    })
}

struct Validator<'a> {
    src: Source<'a>,
}

impl Validator<'_> {
    fn err(
        &self,
        span: Range<usize>,
        key: impl Into<String>,
        msg: impl Into<String>,
    ) -> ConfigError {
        self.src.invalid(span, key, msg)
    }

    fn lan(&self, raw: &Spanned<RawLan>) -> Result<Lan> {
        let lan = raw.get_ref();
        let interface = self.interface_name(&lan.interface, "lan.interface")?;
        let networks = self.nets(&lan.networks, "lan.networks")?;
        if networks.is_empty() {
            return Err(self.err(
                lan.networks.span(),
                "lan.networks",
                "no networks: list at least one inside prefix, like \"192.168.50.0/24\"",
            ));
        }
        let address = match &lan.address {
            None => None,
            Some(raw) => {
                let address = self.addr(raw, "lan.address")?;
                // A host of a LAN network: not its network or broadcast address
                // (a /31 or /32 has neither).
                let inside = networks.iter().any(|n| {
                    n.contains(&address)
                        && (n.prefix_len() >= 31
                            || (address != n.network() && address != n.broadcast()))
                });
                if !usable_host(address) || !inside {
                    return Err(self.err(
                        raw.span(),
                        "lan.address",
                        format!(
                            "{address} is not a host address inside a LAN network ({})",
                            join_display(&networks)
                        ),
                    ));
                }
                Some(address)
            }
        };
        let mtu = self.mtu(lan.mtu.as_ref(), "lan.mtu")?;
        Ok(Lan {
            interface,
            networks,
            address,
            mtu,
        })
    }

    fn mtu(&self, raw: Option<&Spanned<i64>>, key: &str) -> Result<u16> {
        self.int(raw, key, DEFAULT_MTU, MTU_RANGE.0, MTU_RANGE.1)
    }

    fn wans(&self, raw: &[Spanned<RawWan>], lan: &Lan) -> Result<Vec<Wan>> {
        if raw.len() < 2 {
            let (span, found) = match raw.first() {
                None => (0..0, "no [[wan]] section"),
                Some(first) => (first.span(), "only one [[wan]] section"),
            };
            return Err(self.err(
                span,
                "wan",
                format!("{found}; xwan needs at least two uplinks"),
            ));
        }
        if raw.len() > MAX_UPLINKS {
            return Err(self.err(
                raw[MAX_UPLINKS].span(),
                "wan",
                format!(
                    "{} uplinks configured; at most {MAX_UPLINKS} are supported",
                    raw.len()
                ),
            ));
        }
        let mut wans: Vec<Wan> = Vec::with_capacity(raw.len());
        for (i, table) in raw.iter().enumerate() {
            let w = table.get_ref();
            let key = |k: &str| format!("wan[{}].{k}", i + 1);
            let name = self.uplink_name(&w.name, &key("name"))?;
            let interface = self.interface_name(&w.interface, &key("interface"))?;
            let address = self.addr(&w.address, &key("address"))?;
            let gateway = self.addr(&w.gateway, &key("gateway"))?;
            let weight = self.int(w.weight.as_ref(), &key("weight"), 1, 1, 1000)?;
            let priority = self.int(w.priority.as_ref(), &key("priority"), 1, 0, u32::MAX)?;
            let mtu = self.mtu(w.mtu.as_ref(), &key("mtu"))?;
            let probe = match &w.probe {
                None => Vec::new(),
                Some(p) => OneOrList::items(p, &key("probe"))
                    .into_iter()
                    .map(|item| self.addr_item(&item))
                    .collect::<Result<_>>()?,
            };
            if let Some(other) = wans.iter().position(|o| o.name == name) {
                return Err(self.err(
                    w.name.span(),
                    key("name"),
                    format!("duplicate uplink name {name:?} (also wan[{}])", other + 1),
                ));
            }
            if interface == lan.interface {
                return Err(self.err(
                    w.interface.span(),
                    key("interface"),
                    format!("interface {interface:?} is already the LAN interface"),
                ));
            }
            if let Some(other) = wans.iter().position(|o| o.interface == interface) {
                return Err(self.err(
                    w.interface.span(),
                    key("interface"),
                    format!(
                        "duplicate interface {interface:?} (also wan[{}])",
                        other + 1
                    ),
                ));
            }
            if !usable_host(address) {
                return Err(self.err(
                    w.address.span(),
                    key("address"),
                    format!("{address} cannot be an uplink address"),
                ));
            }
            if let Some(other) = wans.iter().position(|o| o.address == address) {
                return Err(self.err(
                    w.address.span(),
                    key("address"),
                    format!(
                        "duplicate uplink address {address} (also wan[{}])",
                        other + 1
                    ),
                ));
            }
            if let Some(net) = lan.networks.iter().find(|n| n.contains(&address)) {
                return Err(self.err(
                    w.address.span(),
                    key("address"),
                    format!("{address} is inside the LAN network {net}"),
                ));
            }
            if !usable_host(gateway) || gateway == address {
                return Err(self.err(
                    w.gateway.span(),
                    key("gateway"),
                    format!("{gateway} cannot be the gateway of an uplink with address {address}"),
                ));
            }
            wans.push(Wan {
                name,
                interface,
                address,
                gateway,
                weight,
                priority,
                probe,
                mtu,
            });
        }
        Ok(wans)
    }

    fn balance(&self, raw: Option<&RawBalance>) -> Result<Balance> {
        let mode = match raw.and_then(|b| b.mode.as_ref()) {
            None => BalanceMode::Nth,
            Some(mode) => match mode.get_ref().as_str() {
                "nth" => BalanceMode::Nth,
                "hash" => BalanceMode::Hash,
                "random" => BalanceMode::Random,
                other => {
                    return Err(self.err(
                        mode.span(),
                        "balance.mode",
                        format!("{other:?} is not a balance mode (expected nth, hash or random)"),
                    ))
                }
            },
        };
        let sticky = match raw.and_then(|b| b.sticky.as_ref()) {
            None => Sticky::None,
            Some(sticky) => match sticky.get_ref().as_str() {
                "none" => Sticky::None,
                "src" => Sticky::Src,
                "src-dst" => Sticky::SrcDst,
                other => {
                    return Err(self.err(
                        sticky.span(),
                        "balance.sticky",
                        format!("{other:?} is not a sticky mode (expected none, src or src-dst)"),
                    ))
                }
            },
        };
        let sticky_timeout_s = self.int(
            raw.and_then(|b| b.sticky_timeout_s.as_ref()),
            "balance.sticky_timeout_s",
            600,
            1,
            u32::MAX,
        )?;
        Ok(Balance {
            mode,
            sticky,
            sticky_timeout_s,
        })
    }

    fn rule(&self, i: usize, raw: &Spanned<RawRule>, uplinks: &[&str]) -> Result<Rule> {
        let r = raw.get_ref();
        let key = |k: &str| format!("rule[{}].{k}", i + 1);
        let name = match &r.name {
            None => format!("rule-{}", i + 1),
            Some(name) if name.get_ref().trim().is_empty() => {
                return Err(self.err(name.span(), key("name"), "empty name"));
            }
            Some(name) => name.get_ref().clone(),
        };
        let proto = match &r.proto {
            None => Proto::Any,
            Some(p) => match p.get_ref().as_str() {
                "tcp" => Proto::Tcp,
                "udp" => Proto::Udp,
                "icmp" => Proto::Icmp,
                "any" => Proto::Any,
                other => {
                    return Err(self.err(
                        p.span(),
                        key("proto"),
                        format!("{other:?} is not a protocol (expected tcp, udp, icmp or any)"),
                    ))
                }
            },
        };
        let src = self.rule_nets(r.src.as_ref(), &key("src"))?;
        let dst = self.rule_nets(r.dst.as_ref(), &key("dst"))?;
        let src_port = self.rule_ports(r.src_port.as_ref(), &key("src_port"), proto)?;
        let dst_port = self.rule_ports(r.dst_port.as_ref(), &key("dst_port"), proto)?;
        let action = match r.action.get_ref().as_str() {
            "balance" => Action::Balance,
            "bypass" => Action::Bypass,
            "drop" => Action::Drop,
            name => match uplinks.iter().position(|u| *u == name) {
                Some(id) => Action::Uplink(uplink_id(id)),
                None => {
                    return Err(self.err(
                        r.action.span(),
                        key("action"),
                        format!(
                            "{name:?} names no uplink (uplinks: {}; or balance, bypass, drop)",
                            uplinks.join(", ")
                        ),
                    ))
                }
            },
        };
        let strict = match &r.strict {
            None => false,
            Some(s) => {
                if *s.get_ref() && !matches!(action, Action::Uplink(_)) {
                    return Err(self.err(
                        s.span(),
                        key("strict"),
                        "strict only applies to a rule whose action is an uplink",
                    ));
                }
                *s.get_ref()
            }
        };
        Ok(Rule {
            name,
            proto,
            src,
            dst,
            src_port,
            dst_port,
            action,
            strict,
        })
    }

    fn unique_rule_names(&self, raw: &[Spanned<RawRule>], rules: &[Rule]) -> Result<()> {
        for (i, rule) in rules.iter().enumerate() {
            if let Some(first) = rules[..i].iter().position(|r| r.name == rule.name) {
                let span = raw[i]
                    .get_ref()
                    .name
                    .as_ref()
                    .map_or(raw[i].span(), Spanned::span);
                return Err(self.err(
                    span,
                    format!("rule[{}].name", i + 1),
                    format!(
                        "duplicate rule name {:?} (also rule[{}])",
                        rule.name,
                        first + 1
                    ),
                ));
            }
        }
        Ok(())
    }

    fn rule_nets(&self, raw: Option<&Spanned<OneOrList>>, key: &str) -> Result<Vec<Ipv4Net>> {
        let Some(raw) = raw else {
            return Ok(Vec::new());
        };
        let nets = self.nets(raw, key)?;
        if nets.is_empty() {
            return Err(self.err(
                raw.span(),
                key,
                "empty list; leave the key out to match any address",
            ));
        }
        Ok(nets)
    }

    fn rule_ports(
        &self,
        raw: Option<&Spanned<OneOrList>>,
        key: &str,
        proto: Proto,
    ) -> Result<Vec<PortRange>> {
        let Some(raw) = raw else {
            return Ok(Vec::new());
        };
        if !matches!(proto, Proto::Tcp | Proto::Udp) {
            return Err(self.err(
                raw.span(),
                key,
                "ports need proto = \"tcp\" or proto = \"udp\" in the same rule",
            ));
        }
        let mut ports = Vec::new();
        for item in OneOrList::items(raw, key) {
            match item.value {
                Scalar::Int(p) => ports.push(self.port_int(*p, item.span, &item.key, 0)?),
                Scalar::Str(s) => ports.extend(
                    parse_port_list(s, 0).map_err(|msg| self.err(item.span, &item.key, msg))?,
                ),
            }
        }
        if ports.is_empty() {
            return Err(self.err(
                raw.span(),
                key,
                "empty list; leave the key out to match any port",
            ));
        }
        Ok(ports)
    }

    fn nat(&self, raw: Option<&RawNat>) -> Result<Nat> {
        let mss_clamp = self.mss_clamp(raw.and_then(|n| n.mss_clamp.as_ref()))?;
        let Some(ports) = raw.and_then(|n| n.ports.as_ref()) else {
            return Ok(Nat {
                ports: DEFAULT_NAT_PORTS,
                mss_clamp,
            });
        };
        let range = parse_range(ports.get_ref(), 1)
            .map_err(|msg| self.err(ports.span(), "nat.ports", msg))?;
        if range.len() < MIN_NAT_PORTS {
            return Err(self.err(
                ports.span(),
                "nat.ports",
                format!(
                    "range {range} has {} ports; at least {MIN_NAT_PORTS} are needed",
                    range.len()
                ),
            ));
        }
        Ok(Nat {
            ports: range,
            mss_clamp,
        })
    }

    fn mss_clamp(&self, raw: Option<&Spanned<Scalar>>) -> Result<MssClamp> {
        let Some(raw) = raw else {
            return Ok(MssClamp::Off);
        };
        let (lo, hi) = MSS_RANGE;
        match raw.get_ref() {
            Scalar::Str(s) if s == "auto" => Ok(MssClamp::Auto),
            Scalar::Str(s) if s == "off" => Ok(MssClamp::Off),
            Scalar::Int(n) => match u16::try_from(*n) {
                Ok(mss) if (lo..=hi).contains(&mss) => Ok(MssClamp::Fixed(mss)),
                _ => Err(self.err(
                    raw.span(),
                    "nat.mss_clamp",
                    format!("{n} is out of range (must be from {lo} to {hi})"),
                )),
            },
            Scalar::Str(s) => Err(self.err(
                raw.span(),
                "nat.mss_clamp",
                format!("{s:?} is not an MSS (expected a number from {lo} to {hi}, \"auto\" or \"off\")"),
            )),
        }
    }

    fn forwards(
        &self,
        raw: &[Spanned<RawForward>],
        lan: &Lan,
        uplinks: &[&str],
        nat: &Nat,
    ) -> Result<Vec<Forward>> {
        let mut forwards: Vec<Forward> = Vec::with_capacity(raw.len());
        for (i, table) in raw.iter().enumerate() {
            let f = table.get_ref();
            let key = |k: &str| format!("forward[{}].{k}", i + 1);
            let proto = match f.proto.get_ref().as_str() {
                "tcp" => Proto::Tcp,
                "udp" => Proto::Udp,
                other => {
                    return Err(self.err(
                        f.proto.span(),
                        key("proto"),
                        format!("{other:?} cannot be forwarded (expected tcp or udp)"),
                    ))
                }
            };
            let port = self.port_int(*f.port.get_ref(), f.port.span(), &key("port"), 1)?;
            let (to_addr, to_port) = parse_target(f.to.get_ref(), port)
                .map_err(|msg| self.err(f.to.span(), key("to"), msg))?;
            if !lan.networks.iter().any(|n| n.contains(&to_addr)) {
                return Err(self.err(
                    f.to.span(),
                    key("to"),
                    format!(
                        "{to_addr} is not inside a LAN network ({})",
                        join_display(&lan.networks)
                    ),
                ));
            }
            let wans = match &f.wan {
                None => (0..uplinks.len()).map(uplink_id).collect(),
                Some(list) => self.forward_wans(list, &key("wan"), uplinks)?,
            };
            if nat.ports.contains(port.lo) {
                return Err(self.err(
                    f.port.span(),
                    key("port"),
                    format!(
                        "port {} is inside the NAT port range {} (nat.ports); \
                         pick a port outside it or move the range",
                        port.lo, nat.ports
                    ),
                ));
            }
            let clash = forwards.iter().position(|o| {
                o.proto == proto && o.port == port.lo && o.wans.iter().any(|w| wans.contains(w))
            });
            if let Some(other) = clash {
                let shared: Vec<&str> = forwards[other]
                    .wans
                    .iter()
                    .filter(|w| wans.contains(w))
                    .map(|w| uplinks[usize::from(*w)])
                    .collect();
                return Err(self.err(
                    f.port.span(),
                    key("port"),
                    format!(
                        "{} port {} on {} is already forwarded by forward[{}]",
                        proto,
                        port.lo,
                        shared.join(", "),
                        other + 1
                    ),
                ));
            }
            forwards.push(Forward {
                proto,
                port: port.lo,
                to_addr,
                to_port,
                wans,
            });
        }
        Ok(forwards)
    }

    fn forward_wans(
        &self,
        raw: &Spanned<OneOrList>,
        key: &str,
        uplinks: &[&str],
    ) -> Result<Vec<UplinkId>> {
        let mut ids = Vec::new();
        for item in OneOrList::items(raw, key) {
            let Scalar::Str(name) = item.value else {
                return Err(self.err(
                    item.span,
                    &item.key,
                    format!("expected an uplink name, found {}", item.value),
                ));
            };
            let Some(id) = uplinks.iter().position(|u| u == name) else {
                return Err(self.err(
                    item.span,
                    &item.key,
                    format!("{name:?} names no uplink (uplinks: {})", uplinks.join(", ")),
                ));
            };
            let id = uplink_id(id);
            if ids.contains(&id) {
                return Err(self.err(item.span, &item.key, format!("{name:?} is listed twice")));
            }
            ids.push(id);
        }
        if ids.is_empty() {
            return Err(self.err(
                raw.span(),
                key,
                "empty list; leave the key out to forward on every uplink",
            ));
        }
        Ok(ids)
    }

    fn health(&self, raw: Option<&RawHealth>) -> Result<Health> {
        Ok(Health {
            interval_ms: self.int(
                raw.and_then(|h| h.interval_ms.as_ref()),
                "health.interval_ms",
                500,
                1,
                u64::MAX,
            )?,
            timeout_ms: self.int(
                raw.and_then(|h| h.timeout_ms.as_ref()),
                "health.timeout_ms",
                1000,
                1,
                u64::MAX,
            )?,
            down_after: self.int(
                raw.and_then(|h| h.down_after.as_ref()),
                "health.down_after",
                3,
                1,
                u32::MAX,
            )?,
            up_after: self.int(
                raw.and_then(|h| h.up_after.as_ref()),
                "health.up_after",
                3,
                1,
                u32::MAX,
            )?,
            reliability: self.int(
                raw.and_then(|h| h.reliability.as_ref()),
                "health.reliability",
                1,
                1,
                u32::MAX,
            )?,
            hook: match raw.and_then(|h| h.hook.as_ref()) {
                Some(hook) if hook.get_ref().trim().is_empty() => {
                    return Err(self.err(
                        hook.span(),
                        "health.hook",
                        "empty command; leave the key out for no hook",
                    ))
                }
                Some(hook) => Some(hook.get_ref().clone()),
                None => None,
            },
        })
    }

    fn timeouts(&self, raw: Option<&RawTimeouts>) -> Result<Timeouts> {
        let get = |value: Option<&Spanned<i64>>, key: &str, default: u32| {
            self.int(value, key, default, 1, u32::MAX)
        };
        Ok(Timeouts {
            tcp_established_s: get(
                raw.and_then(|t| t.tcp_established_s.as_ref()),
                "timeouts.tcp_established_s",
                7440,
            )?,
            tcp_transitory_s: get(
                raw.and_then(|t| t.tcp_transitory_s.as_ref()),
                "timeouts.tcp_transitory_s",
                240,
            )?,
            udp_s: get(raw.and_then(|t| t.udp_s.as_ref()), "timeouts.udp_s", 300)?,
            icmp_s: get(raw.and_then(|t| t.icmp_s.as_ref()), "timeouts.icmp_s", 60)?,
        })
    }

    fn limits(&self, raw: Option<&RawLimits>) -> Result<Limits> {
        Ok(Limits {
            max_flows: self.int(
                raw.and_then(|l| l.max_flows.as_ref()),
                "limits.max_flows",
                1 << 20,
                1,
                u32::MAX,
            )?,
            max_flows_per_host: self.int(
                raw.and_then(|l| l.max_flows_per_host.as_ref()),
                "limits.max_flows_per_host",
                DEFAULT_MAX_FLOWS_PER_HOST,
                0,
                u32::MAX,
            )?,
        })
    }

    fn control(&self, raw: Option<&RawControl>) -> Result<Control> {
        let socket = match raw.and_then(|c| c.socket.as_ref()) {
            None => PathBuf::from(DEFAULT_CONTROL_SOCKET),
            Some(s) if s.get_ref().is_empty() => {
                return Err(self.err(s.span(), "control.socket", "empty path"));
            }
            Some(s) => PathBuf::from(s.get_ref()),
        };
        let metrics = match raw.and_then(|c| c.metrics.as_ref()) {
            None => None,
            Some(m) => match m.get_ref().parse::<SocketAddr>() {
                Ok(addr) if addr.port() != 0 => Some(addr),
                Ok(_) => {
                    return Err(self.err(
                        m.span(),
                        "control.metrics",
                        "port 0 is not a port to listen on",
                    ));
                }
                Err(_) => {
                    return Err(self.err(
                        m.span(),
                        "control.metrics",
                        format!(
                            "{:?} is not an address and port (e.g. \"127.0.0.1:9847\")",
                            m.get_ref()
                        ),
                    ));
                }
            },
        };
        let group = match raw.and_then(|c| c.group.as_ref()) {
            None => None,
            Some(g) => Some(
                control_group(g.get_ref())
                    .map_err(|msg| self.err(g.span(), "control.group", msg))?,
            ),
        };
        Ok(Control {
            socket,
            metrics,
            group,
        })
    }

    /// An integer key in `lo..=hi`, or `default` when absent.
    fn int<T>(&self, value: Option<&Spanned<i64>>, key: &str, default: T, lo: T, hi: T) -> Result<T>
    where
        T: TryFrom<i64> + Into<i128> + Copy + std::fmt::Display,
    {
        let Some(value) = value else {
            return Ok(default);
        };
        let v = *value.get_ref();
        match T::try_from(v) {
            Ok(t) if lo.into() <= t.into() && t.into() <= hi.into() => Ok(t),
            _ => Err(self.err(
                value.span(),
                key,
                format!("{v} is out of range (must be from {lo} to {hi})"),
            )),
        }
    }

    fn port_int(&self, p: i64, span: Range<usize>, key: &str, min: u16) -> Result<PortRange> {
        match u16::try_from(p) {
            Ok(port) if port >= min => Ok(PortRange { lo: port, hi: port }),
            _ => Err(self.err(
                span,
                key,
                format!("port {p} is out of range (must be from {min} to 65535)"),
            )),
        }
    }

    fn interface_name(&self, raw: &Spanned<String>, key: &str) -> Result<String> {
        let name = raw.get_ref();
        let ok = !name.is_empty()
            && name.len() <= MAX_IFNAME
            && name != "."
            && name != ".."
            && name
                .chars()
                .all(|c| c.is_ascii_graphic() && c != '/' && c != ':');
        if !ok {
            return Err(self.err(
                raw.span(),
                key,
                format!(
                    "{name:?} is not a valid interface name (1 to {MAX_IFNAME} characters, \
                     no spaces, '/' or ':')"
                ),
            ));
        }
        Ok(name.clone())
    }

    fn uplink_name(&self, raw: &Spanned<String>, key: &str) -> Result<String> {
        let name = raw.get_ref();
        let ok = !name.is_empty()
            && name.len() <= MAX_UPLINK_NAME
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(self.err(
                raw.span(),
                key,
                format!(
                    "{name:?} is not a valid uplink name (1 to {MAX_UPLINK_NAME} letters, \
                     digits, '-' or '_')"
                ),
            ));
        }
        if RESERVED_NAMES.contains(&name.as_str()) {
            return Err(self.err(
                raw.span(),
                key,
                format!("{name:?} is reserved (it is a rule action); choose another name"),
            ));
        }
        Ok(name.clone())
    }

    fn addr(&self, raw: &Spanned<String>, key: &str) -> Result<Ipv4Addr> {
        raw.get_ref()
            .parse()
            .map_err(|_| self.err(raw.span(), key, not_an_address(raw.get_ref())))
    }

    fn addr_item(&self, item: &Item<'_>) -> Result<Ipv4Addr> {
        match item.value {
            Scalar::Str(s) => s
                .parse()
                .map_err(|_| self.err(item.span.clone(), &item.key, not_an_address(s))),
            Scalar::Int(_) => Err(self.err(
                item.span.clone(),
                &item.key,
                format!("expected an IPv4 address string, found {}", item.value),
            )),
        }
    }

    fn nets(&self, raw: &Spanned<OneOrList>, key: &str) -> Result<Vec<Ipv4Net>> {
        OneOrList::items(raw, key)
            .into_iter()
            .map(|item| match item.value {
                Scalar::Str(s) => {
                    parse_net(s).map_err(|msg| self.err(item.span.clone(), &item.key, msg))
                }
                Scalar::Int(_) => Err(self.err(
                    item.span.clone(),
                    &item.key,
                    format!(
                        "expected an address or CIDR prefix string like \"192.168.50.0/24\", \
                         found {}",
                        item.value
                    ),
                )),
            })
            .collect()
    }
}

fn uplink_id(index: usize) -> UplinkId {
    // Callers index a list of at most MAX_UPLINKS (64) uplinks, checked first.
    UplinkId::try_from(index).unwrap_or(UplinkId::MAX)
}

fn usable_host(addr: Ipv4Addr) -> bool {
    !(addr.is_unspecified() || addr.is_broadcast() || addr.is_multicast() || addr.is_loopback())
}

fn not_an_address(s: &str) -> String {
    format!("{s:?} is not an IPv4 address (like \"198.18.1.2\")")
}

fn join_display<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `"192.168.50.0/24"`, or a bare address meaning /32. Host bits are cleared.
fn parse_net(s: &str) -> std::result::Result<Ipv4Net, String> {
    let s = s.trim();
    let net = if s.contains('/') {
        s.parse::<Ipv4Net>().ok()
    } else {
        s.parse::<Ipv4Addr>().ok().map(Ipv4Net::from)
    };
    net.map(|n| n.trunc()).ok_or_else(|| {
        format!("{s:?} is not an IPv4 address or CIDR prefix (like \"192.168.50.0/24\")")
    })
}

/// One port or `lo-hi`, each at least `min`.
fn parse_range(s: &str, min: u16) -> std::result::Result<PortRange, String> {
    let port = |p: &str| -> std::result::Result<u16, String> {
        match p.trim().parse::<u32>() {
            Ok(n) => match u16::try_from(n) {
                Ok(port) if port >= min => Ok(port),
                _ => Err(format!(
                    "port {n} is out of range (must be from {min} to 65535)"
                )),
            },
            Err(_) => Err(format!(
                "{s:?} is not a port or port range (like \"443\" or \"8000-8100\")"
            )),
        }
    };
    let (lo, hi) = match s.split_once('-') {
        Some((lo, hi)) => (port(lo)?, port(hi)?),
        None => {
            let p = port(s)?;
            (p, p)
        }
    };
    if lo > hi {
        return Err(format!(
            "port range {lo}-{hi} is reversed (the low port comes first)"
        ));
    }
    Ok(PortRange { lo, hi })
}

/// `"443"`, `"80,443"`, `"8000-8100"`, or a comma list of those.
fn parse_port_list(s: &str, min: u16) -> std::result::Result<Vec<PortRange>, String> {
    if s.trim().is_empty() {
        return Err("empty port list".to_string());
    }
    s.split(',').map(|part| parse_range(part, min)).collect()
}

/// `"192.168.50.10:80"`, or `"192.168.50.10"` meaning the same port.
fn parse_target(s: &str, port: PortRange) -> std::result::Result<(Ipv4Addr, u16), String> {
    if let Ok(addr) = s.parse::<Ipv4Addr>() {
        return Ok((addr, port.lo));
    }
    match s.parse::<SocketAddrV4>() {
        Ok(sa) if sa.port() != 0 => Ok((*sa.ip(), sa.port())),
        Ok(_) => Err("port 0 cannot be a forward target".to_string()),
        Err(_) => Err(format!(
            "{s:?} is not an inside address, like \"192.168.50.10:80\" or \"192.168.50.10\""
        )),
    }
}

/// `[control] group`: a group name known to this system (its group database,
/// through NSS), or a numeric group id.
fn control_group(name: &str) -> std::result::Result<ControlGroup, String> {
    if name.is_empty() {
        return Err("empty group name".into());
    }
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(ControlGroup {
            name: name.to_string(),
            gid,
        });
    }
    match nix::unistd::Group::from_name(name) {
        Ok(Some(group)) => Ok(ControlGroup {
            name: name.to_string(),
            gid: group.gid.as_raw(),
        }),
        Ok(None) => Err(format!(
            "no group {name:?} on this system (create it with `groupadd {name}`, or name another)"
        )),
        Err(err) => Err(format!("cannot look up group {name:?}: {err}")),
    }
}
