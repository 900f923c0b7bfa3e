//! The one-screen summary of a valid configuration (`xwan check`).

use std::fmt::{self, Display, Formatter};

use super::model::*;

impl Display for Config {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let networks: Vec<String> = (self.lan.networks.iter().map(ToString::to_string))
            .chain(self.lan.networks6.iter().map(ToString::to_string))
            .collect();
        write!(
            f,
            "LAN       {}  {}",
            self.lan.interface,
            networks.join(", ")
        )?;
        if let Some(address) = self.lan.address {
            write!(f, "  address {address}")?;
        }
        if let Some(address) = self.lan.address6 {
            write!(f, "  address6 {address}")?;
        }
        writeln!(f, "  mtu {}", mtu_text(self.lan.mtu))?;
        writeln!(f, "Uplinks   {}", self.wans.len())?;
        let width = self.wans.iter().map(|w| w.name.len()).max().unwrap_or(0);
        for w in &self.wans {
            write!(
                f,
                "  {:width$}  {}  {} via {}  weight {}  priority {}  mtu {}",
                w.name,
                w.interface,
                w.address_text(),
                w.gateway_text(),
                w.weight,
                w.priority,
                mtu_text(w.mtu)
            )?;
            if w.probe.is_empty() {
                writeln!(f, "  no probes")?;
            } else {
                writeln!(f, "  probes {}", list(&w.probe))?;
            }
            if let Some(v6) = &w.ipv6 {
                writeln!(f, "  {:width$}  {}", "", Ipv6Line(v6, &w.interface))?;
            }
            if w.health != self.health {
                writeln!(f, "  {:width$}  health: {}", "", health_line(&w.health))?;
            }
        }
        let b = &self.balance;
        match b.sticky {
            Sticky::None => writeln!(f, "Balance   {}, sticky none", b.mode)?,
            sticky => writeln!(
                f,
                "Balance   {}, sticky {} for {} s",
                b.mode, sticky, b.sticky_timeout_s
            )?,
        }
        if self.rules.is_empty() {
            writeln!(f, "Rules     none")?;
        } else {
            writeln!(f, "Rules     {} (first match wins)", self.rules.len())?;
            for (i, r) in self.rules.iter().enumerate() {
                writeln!(
                    f,
                    "  {:>2} {}: {} -> {}",
                    i + 1,
                    r.name,
                    RuleMatch(r),
                    self.action_text(r)
                )?;
            }
        }
        if self.forwards.is_empty() {
            writeln!(f, "Forwards  none")?;
        } else {
            writeln!(f, "Forwards  {}", self.forwards.len())?;
            for fw in &self.forwards {
                let on: Vec<&str> = fw.wans.iter().map(|id| self.uplink_name(*id)).collect();
                writeln!(
                    f,
                    "  {} {} -> {}:{} on {}",
                    fw.proto,
                    fw.port,
                    fw.to_addr,
                    fw.to_port,
                    on.join(", ")
                )?;
            }
        }
        write!(
            f,
            "NAT       ports {} ({} ports)",
            self.nat.ports,
            self.nat.ports.len()
        )?;
        match self.nat.mss_clamp {
            MssClamp::Off => writeln!(f)?,
            MssClamp::Fixed(mss) => writeln!(f, ", MSS clamped to {mss}")?,
            MssClamp::Auto => writeln!(f, ", MSS clamped to the MTU")?,
        }
        writeln!(f, "Health    {}", health_line(&self.health))?;
        let t = &self.timeouts;
        writeln!(
            f,
            "Timeouts  tcp established {} s, tcp transitory {} s, udp {} s, icmp {} s",
            t.tcp_established_s, t.tcp_transitory_s, t.udp_s, t.icmp_s
        )?;
        match self.limits.max_flows_per_host {
            0 => writeln!(f, "Limits    {} flows", self.limits.max_flows)?,
            per_host => writeln!(
                f,
                "Limits    {} flows, {} per LAN host",
                self.limits.max_flows, per_host
            )?,
        }
        writeln!(
            f,
            "Offload   {}",
            match self.dataplane.offload {
                Offload::Auto => "auto (established flows forwarded in the kernel)",
                Offload::Tc => "tc (established flows forwarded in the kernel, by TC only)",
                Offload::Off => "off",
            }
        )?;
        write!(f, "Control   {}", self.control.socket.display())?;
        if let Some(group) = &self.control.group {
            write!(f, " (group {} may read)", group.name)?;
        }
        match self.control.metrics {
            Some(addr) if self.control.page.on => writeln!(
                f,
                ", metrics on http://{addr}/metrics, status page on http://{addr}/{}",
                if self.control.page.token.is_some() {
                    " (token)"
                } else {
                    ""
                }
            ),
            Some(addr) => writeln!(f, ", metrics on http://{addr}/metrics"),
            None => writeln!(f),
        }
    }
}

impl Config {
    fn uplink_name(&self, id: UplinkId) -> &str {
        self.wans
            .get(usize::from(id))
            .map_or("?", |w| w.name.as_str())
    }

    fn action_text(&self, rule: &Rule) -> String {
        match rule.action {
            Action::Uplink(id) if rule.strict => {
                format!("{} (strict: drop while it is down)", self.uplink_name(id))
            }
            Action::Uplink(id) => self.uplink_name(id).to_string(),
            Action::Balance => "balance".to_string(),
            Action::Bypass => "bypass".to_string(),
            Action::Drop => "drop".to_string(),
        }
    }
}

/// An uplink's IPv6 side, e.g. `ipv6 auto (unresolved) via fe80::1  prefix
/// 2001:db8:100::/56  nat6 prefix`.
struct Ipv6Line<'a>(&'a Wan6, &'a str);

impl Display for Ipv6Line<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let (v6, interface) = (self.0, self.1);
        let address = match (v6.address_auto, v6.address.is_unspecified()) {
            (false, true) => "no address".to_string(),
            (false, false) => v6.address.to_string(),
            (true, true) => "auto (unresolved)".to_string(),
            (true, false) => format!("auto (now {} on {interface})", v6.address),
        };
        let gateway = auto_text(v6.gateway, v6.gateway_auto, interface);
        write!(f, "ipv6 {address} via {gateway}")?;
        match (v6.prefix, v6.prefix_auto) {
            (Some(prefix), false) => write!(f, "  prefix {prefix}")?,
            (Some(prefix), true) => write!(f, "  prefix auto (now {prefix})")?,
            (None, true) => write!(f, "  prefix auto (unresolved)")?,
            (None, false) => {}
        }
        write!(f, "  nat6 {}", v6.nat.name())
    }
}

/// A rule's match, e.g. `tcp from 192.168.50.0/25 to any port 443`.
struct RuleMatch<'a>(&'a Rule);

impl Display for RuleMatch<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let r = self.0;
        write!(f, "{}", r.proto)?;
        if !r.src.is_empty() || !r.src6.is_empty() || !r.src_port.is_empty() {
            write!(f, " from {}", nets(&r.src, &r.src6))?;
            if !r.src_port.is_empty() {
                write!(f, " port {}", ports(&r.src_port))?;
            }
        }
        if !r.dst.is_empty() || !r.dst6.is_empty() || !r.dst_port.is_empty() {
            write!(f, " to {}", nets(&r.dst, &r.dst6))?;
            if !r.dst_port.is_empty() {
                write!(f, " port {}", ports(&r.dst_port))?;
            }
        }
        Ok(())
    }
}

fn list<T: Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn nets<T: Display, U: Display>(v4: &[T], v6: &[U]) -> String {
    match (v4.is_empty(), v6.is_empty()) {
        (true, true) => "any".to_string(),
        (false, true) => list(v4),
        (true, false) => list(v6),
        (false, false) => format!("{}, {}", list(v4), list(v6)),
    }
}

fn ports(ranges: &[PortRange]) -> String {
    ranges
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// `tcp`, `udp`, `icmp` or `any`, as in the file.
impl Display for Proto {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
            Proto::Any => "any",
        })
    }
}

/// `443` or `8000-8100`, as in the file.
impl Display for PortRange {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

/// `nth`, `hash` or `random`, as in the file.
impl Display for BalanceMode {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BalanceMode::Nth => "nth",
            BalanceMode::Hash => "hash",
            BalanceMode::Random => "random",
        })
    }
}

/// `none`, `src` or `src-dst`, as in the file.
impl Display for Sticky {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Sticky::None => "none",
            Sticky::Src => "src",
            Sticky::SrcDst => "src-dst",
        })
    }
}

/// An MTU key as the summary and reload messages show it.
pub(crate) fn mtu_text(mtu: Option<u16>) -> String {
    mtu.map_or_else(|| "of the interface".to_owned(), |m| m.to_string())
}

/// One line of health settings: probing, thresholds, triggers, start state, hook.
fn health_line(h: &Health) -> String {
    let mut line = format!(
        "probe every {} ms, timeout {} ms, down after {}, up after {}, {} target(s) must answer",
        h.interval_ms, h.timeout_ms, h.down_after, h.up_after, h.reliability
    );
    if let Some(t) = h.loss {
        line += &format!(", down at {}% loss (back at {}%)", t.failure, t.recovery);
    }
    if let Some(t) = h.latency_ms {
        line += &format!(", down at {} ms (back at {} ms)", t.failure, t.recovery);
    }
    if !h.initial_up {
        line += ", starts down";
    }
    if let Some(hook) = &h.hook {
        line += &format!(", hook `{hook}`");
    }
    line
}
