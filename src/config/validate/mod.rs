//! From the raw layer to the model: every semantic check, each error naming
//! the key and the place in the file. Checks run in file-section order and
//! the first problem found is reported.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::path::PathBuf;

use ipnet::{Ipv4Net, Ipv6Net};
use serde_spanned::Spanned;

use super::error::{ConfigError, Source};
use super::model::*;
use super::raw::*;

mod forwards;
mod interfaces;
mod ipv6;
mod rules;
mod settings;

/// The first of xwan's routing tables, `[local] table`.
const DEFAULT_LOCAL_TABLE: u32 = 7800;

/// The most `[[local.rule]]` sections.
const MAX_LOCAL_RULES: usize = 64;

/// Default control socket path, `[control] socket`.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/xwan/xwan.sock";

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

/// `[health]` when the file leaves a key out.
pub const DEFAULT_HEALTH: Health = Health {
    interval_ms: 500,
    timeout_ms: 1000,
    down_after: 3,
    up_after: 3,
    reliability: 1,
    hook: None,
    loss: None,
    latency_ms: None,
    initial_up: true,
};

/// Default `[limits] max_flows_per_forward`: flows from the Internet to one
/// port forward's target.
pub const DEFAULT_MAX_FLOWS_PER_FORWARD: u32 = 65536;

/// Default `[limits] max_flows_per_source`: flows one Internet address opens
/// through port forwards.
pub const DEFAULT_MAX_FLOWS_PER_SOURCE: u32 = 4096;

/// Default state file, `[control] state`.
pub const DEFAULT_STATE_FILE: &str = "/var/lib/xwan/state";

/// Default seconds between checkpoints, `[control] checkpoint_s`.
pub const DEFAULT_CHECKPOINT_S: u32 = 30;

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
    let health = v.health(raw.health.as_ref(), "health", &DEFAULT_HEALTH)?;
    let wans = v.wans(&raw.wan, &lan, &health)?;
    v.wans6(&raw.wan, &wans, &lan, raw.lan.get_ref().networks.span())?;
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
    let (forwards, forwards6) = v.forwards(&raw.forward, &lan, &wans, &nat)?;
    let timeouts = v.timeouts(raw.timeouts.as_ref())?;
    let limits = v.limits(raw.limits.as_ref())?;
    let control = v.control(raw.control.as_ref())?;
    let local = v.local(raw.local.as_ref(), &names)?;
    let dataplane = v.dataplane(raw.dataplane.as_ref())?;
    Ok(Config {
        lan,
        wans,
        balance,
        rules,
        forwards,
        forwards6,
        nat,
        health,
        timeouts,
        limits,
        control,
        local,
        dataplane,
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

    /// A probe target: an address of either family (ICMP echo),
    /// `tcp://ADDR:PORT` (`tcp://[V6]:PORT`) or `dns://ADDR/NAME`
    /// (`dns://[V6]/NAME`).
    fn probe_target(&self, item: &Item<'_>) -> Result<ProbeTarget> {
        let Scalar::Str(s) = item.value else {
            return self.addr_item(item).map(|a| ProbeTarget::Icmp(a.into()));
        };
        let err = |msg: String| self.err(item.span.clone(), &item.key, msg);
        if let Some(rest) = s.strip_prefix("tcp://") {
            return match rest.parse::<SocketAddr>() {
                Ok(addr) if addr.port() != 0 => Ok(ProbeTarget::Tcp(addr)),
                _ => Err(err(format!(
                    "{s:?} is not a TCP probe (\"tcp://ADDRESS:PORT\", like \"tcp://198.18.11.2:443\")"
                ))),
            };
        }
        if let Some(rest) = s.strip_prefix("dns://") {
            let parsed = rest.split_once('/').and_then(|(server, name)| {
                let name = name.trim_end_matches('.');
                let labels_ok = !name.is_empty()
                    && name.len() <= 253
                    && name.split('.').all(|l| {
                        !l.is_empty()
                            && l.len() <= 63
                            && l.bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    });
                let server = match server.strip_prefix('[') {
                    Some(v6) => IpAddr::V6(v6.strip_suffix(']')?.parse().ok()?),
                    None => IpAddr::V4(server.parse().ok()?),
                };
                Some((server, name.to_string())).filter(|_| labels_ok)
            });
            return match parsed {
                Some((server, name)) => Ok(ProbeTarget::Dns { server, name }),
                None => Err(err(format!(
                    "{s:?} is not a DNS probe (\"dns://SERVER/NAME\", like \"dns://198.18.11.2/example.com\")"
                ))),
            };
        }
        match s.parse::<std::net::Ipv6Addr>() {
            Ok(v6) => Ok(ProbeTarget::Icmp(v6.into())),
            Err(_) => self.addr_item(item).map(|a| ProbeTarget::Icmp(a.into())),
        }
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
fn parse_target(s: &str, port: PortRange) -> std::result::Result<(IpAddr, u16), String> {
    if let Ok(addr) = s.parse::<IpAddr>() {
        return Ok((addr, port.lo));
    }
    let bare = s.strip_prefix('[').and_then(|s| s.strip_suffix(']'));
    if let Some(addr) = bare.and_then(|b| b.parse::<Ipv6Addr>().ok()) {
        return Ok((addr.into(), port.lo));
    }
    match s.parse::<SocketAddr>() {
        Ok(sa) if sa.port() != 0 => Ok((sa.ip(), sa.port())),
        Ok(_) => Err("port 0 cannot be a forward target".to_string()),
        Err(_) => Err(format!(
            "{s:?} is not an inside address, like \"192.168.50.10:80\", \"192.168.50.10\" \
             or \"[fd00:50::10]:80\""
        )),
    }
}
