//! Steering rules: the first rule that matches a new connection decides.

use ipnet::{Ipv4Net, Ipv6Net};

use crate::config::{Action, PortRange, Proto, Rule};
use crate::packet::{Addr4, Family, PROTO_TCP, PROTO_UDP};

/// What a new connection looks like to the rules (IPv4 unless said otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewConnection<A = Addr4> {
    pub protocol: u8,
    pub src: A,
    pub dst: A,
    /// None for ICMP: a rule with a port condition never matches it.
    pub ports: Option<(u16, u16)>,
}

/// A rule's prefixes of both families as (network, mask) pairs. None of
/// either: any address; some of one family only: no address of the other.
#[derive(Debug, Clone, Default)]
struct Prefixes {
    v4: Vec<(u128, u128)>,
    v6: Vec<(u128, u128)>,
}

impl Prefixes {
    fn new(v4: &[Ipv4Net], v6: &[Ipv6Net]) -> Prefixes {
        Prefixes {
            v4: v4
                .iter()
                .map(|n| (n.network().to_bits().into(), n.netmask().to_bits().into()))
                .collect(),
            v6: v6
                .iter()
                .map(|n| (n.network().to_bits(), n.netmask().to_bits()))
                .collect(),
        }
    }

    fn matches<A: Family>(&self, addr: A) -> bool {
        let own = if A::IS_V6 { &self.v6 } else { &self.v4 };
        let bits = addr.bits();
        (self.v4.is_empty() && self.v6.is_empty())
            || own.iter().any(|(net, mask)| bits & mask == *net)
    }
}

/// A rule with its prefixes as (network, mask) pairs.
#[derive(Debug, Clone)]
struct CompiledRule {
    proto: Proto,
    src: Prefixes,
    dst: Prefixes,
    src_port: Vec<PortRange>,
    dst_port: Vec<PortRange>,
    action: Action,
    strict: bool,
}

fn proto_matches<A: Family>(proto: Proto, protocol: u8) -> bool {
    match proto {
        Proto::Tcp => protocol == PROTO_TCP,
        Proto::Udp => protocol == PROTO_UDP,
        Proto::Icmp => protocol == A::ICMP,
        Proto::Any => true,
    }
}

fn port_matches(ranges: &[PortRange], port: Option<u16>) -> bool {
    ranges.is_empty() || port.is_some_and(|p| ranges.iter().any(|r| r.contains(p)))
}

/// The decision of the rules for one new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleDecision {
    pub action: Action,
    /// With an uplink action: drop rather than balance when it is down.
    pub strict: bool,
}

/// The configured rules, ready to match.
#[derive(Debug, Clone)]
pub struct Rules {
    rules: Vec<CompiledRule>,
}

impl Rules {
    pub fn new(rules: &[Rule]) -> Rules {
        Rules {
            rules: rules
                .iter()
                .map(|rule| CompiledRule {
                    proto: rule.proto,
                    src: Prefixes::new(&rule.src, &rule.src6),
                    dst: Prefixes::new(&rule.dst, &rule.dst6),
                    src_port: rule.src_port.clone(),
                    dst_port: rule.dst_port.clone(),
                    action: rule.action,
                    strict: rule.strict,
                })
                .collect(),
        }
    }

    /// The first matching rule's action; `balance` when none matches.
    pub fn decide<A: Family>(&self, conn: &NewConnection<A>) -> RuleDecision {
        self.rules
            .iter()
            .find(|rule| {
                proto_matches::<A>(rule.proto, conn.protocol)
                    && rule.src.matches(conn.src)
                    && rule.dst.matches(conn.dst)
                    && port_matches(&rule.src_port, conn.ports.map(|p| p.0))
                    && port_matches(&rule.dst_port, conn.ports.map(|p| p.1))
            })
            .map_or(
                RuleDecision {
                    action: Action::Balance,
                    strict: false,
                },
                |rule| RuleDecision {
                    action: rule.action,
                    strict: rule.strict,
                },
            )
    }
}
