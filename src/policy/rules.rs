//! Steering rules: the first rule that matches a new connection decides.

use ipnet::Ipv4Net;

use crate::config::{Action, PortRange, Proto, Rule};
use crate::packet::{PROTO_ICMP, PROTO_TCP, PROTO_UDP};

/// What a new connection looks like to the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewConnection {
    pub protocol: u8,
    pub src: [u8; 4],
    pub dst: [u8; 4],
    /// None for ICMP: a rule with a port condition never matches it.
    pub ports: Option<(u16, u16)>,
}

/// A rule with its prefixes as (network, mask) pairs.
#[derive(Debug, Clone)]
struct CompiledRule {
    protocol: Option<u8>,
    src: Vec<(u32, u32)>,
    dst: Vec<(u32, u32)>,
    src_port: Vec<PortRange>,
    dst_port: Vec<PortRange>,
    action: Action,
    strict: bool,
}

fn prefixes(nets: &[Ipv4Net]) -> Vec<(u32, u32)> {
    nets.iter()
        .map(|net| (u32::from(net.network()), u32::from(net.netmask())))
        .collect()
}

fn addr_matches(prefixes: &[(u32, u32)], addr: [u8; 4]) -> bool {
    let addr = u32::from_be_bytes(addr);
    prefixes.is_empty() || prefixes.iter().any(|(net, mask)| addr & mask == *net)
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
                    protocol: match rule.proto {
                        Proto::Tcp => Some(PROTO_TCP),
                        Proto::Udp => Some(PROTO_UDP),
                        Proto::Icmp => Some(PROTO_ICMP),
                        Proto::Any => None,
                    },
                    src: prefixes(&rule.src),
                    dst: prefixes(&rule.dst),
                    src_port: rule.src_port.clone(),
                    dst_port: rule.dst_port.clone(),
                    action: rule.action,
                    strict: rule.strict,
                })
                .collect(),
        }
    }

    /// The first matching rule's action; `balance` when none matches.
    pub fn decide(&self, conn: &NewConnection) -> RuleDecision {
        self.rules
            .iter()
            .find(|rule| {
                rule.protocol.is_none_or(|p| p == conn.protocol)
                    && addr_matches(&rule.src, conn.src)
                    && addr_matches(&rule.dst, conn.dst)
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
