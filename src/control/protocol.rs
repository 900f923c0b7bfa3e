//! The control protocol: one JSON object per line each way.
//!
//! Requests: `{"cmd":"status"}`, `{"cmd":"flows","uplink":"isp1","host":"192.168.50.10","limit":100}`,
//! `{"cmd":"uplink","name":"isp1","state":"down"}` (`up`, `down`, `auto`), `{"cmd":"reload"}`,
//! `{"cmd":"events"}`.
//! Replies: `{"ok":true,...}` with the result, or `{"ok":false,"error":"..."}`.
//! `events` is answered with `{"ok":true,"message":...}`, then one [`Event`]
//! per line, one per change of an uplink's state, until the client goes.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::flow::{tcp_state, FlowInfo, FlowKind};
use crate::packet::{Endpoint, Family, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
use crate::router::Stats;

pub use crate::health::{AdminState, Cause};

/// The longest request line accepted.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Status,
    Flows {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uplink: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<Ipv4Addr>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
    Uplink {
        name: String,
        state: AdminState,
    },
    /// The prefix an uplink's ISP delegates now, for `prefix6 = "auto"`
    /// (from the DHCPv6-PD client's hook); None: it has none.
    Prefix6 {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefix: Option<String>,
    },
    Reload,
    Events,
}

/// A change of an uplink's state, as `xwan events` streams it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    pub uplink: String,
    pub interface: String,
    /// "up" or "down".
    pub state: String,
    pub cause: Cause,
    pub reason: String,
    /// "ipv4" or "ipv6" when the change is about one family alone (an
    /// uplink whose IPv6 side has probe targets of its own); absent when
    /// it holds for the whole uplink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
}

impl Request {
    /// Whether the request changes the router (and needs root).
    pub fn is_change(&self) -> bool {
        match self {
            Request::Status | Request::Flows { .. } | Request::Events => false,
            Request::Uplink { .. } | Request::Prefix6 { .. } | Request::Reload => true,
        }
    }

    /// The `xwan` command that sends it.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Flows { .. } => "flows",
            Request::Uplink { .. } => "uplink",
            Request::Prefix6 { .. } => "prefix6",
            Request::Reload => "reload",
            Request::Events => "events",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Reply {
    Status {
        ok: bool,
        status: Box<StatusReport>,
    },
    Flows {
        ok: bool,
        flows: Vec<FlowReport>,
        /// Flows that matched, `flows` holding the first `limit` of them.
        #[serde(default)]
        total: usize,
    },
    Done {
        ok: bool,
        message: String,
    },
    Error {
        ok: bool,
        error: String,
    },
}

impl Reply {
    pub fn error(message: impl Into<String>) -> Reply {
        Reply::Error {
            ok: false,
            error: message.into(),
        }
    }

    pub fn done(message: impl Into<String>) -> Reply {
        Reply::Done {
            ok: true,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub version: String,
    pub config_file: String,
    /// Seconds since the configuration was loaded.
    pub config_age_s: u64,
    pub uptime_s: u64,
    pub io: String,
    pub uplinks: Vec<UplinkReport>,
    pub flow_table: FlowTableReport,
    /// IPv6 flows have a table of their own.
    #[serde(default)]
    pub flow_table6: FlowTableReport,
    pub sticky_clients: usize,
    pub forwarded: u64,
    pub drops: BTreeMap<String, u64>,
    pub to_kernel: BTreeMap<String, u64>,
    pub workers: Vec<WorkerReport>,
    /// The in-kernel fast path (`[dataplane] offload`).
    #[serde(default)]
    pub offload: OffloadReport,
    /// The optional kernel features probed at start (`xwan check --kernel`
    /// prints the same lines).
    #[serde(default)]
    pub features: Vec<FeatureLine>,
}

/// The in-kernel fast path in `xwan status` and metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OffloadReport {
    /// "on", "off" (as configured) or "unavailable (why)".
    pub state: String,
    /// Per interface, the hook that forwards the fast path's frames leaving
    /// through it: "xdp" (the XDP program, for frames with a complete
    /// checksum; `--io xdp` and a driver that accepts XDP frames) or "tc".
    pub hooks: Vec<(String, String)>,
    /// Entries in the maps (two per flow), IPv4's and IPv6's, and their
    /// capacity (each family's map holds half).
    pub entries: u64,
    pub capacity: u64,
    /// Of the entries, IPv6's.
    #[serde(default)]
    pub entries6: u64,
    /// Flows the full map refused (each counted once): they stay with the workers.
    pub refused_full: u64,
    /// Entries that could not be written or removed for another reason.
    pub map_errors: u64,
    /// Frames passed for the fast path whose entry was gone when TC looked
    /// (removed in between): dropped rather than left to the kernel un-NATed.
    #[serde(default)]
    pub lost: u64,
    /// Packets and bytes forwarded in the kernel.
    pub packets: u64,
    pub bytes: u64,
    /// Of those packets, the ones the XDP program forwarded (the rest: TC).
    #[serde(default)]
    pub xdp_packets: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UplinkReport {
    pub name: String,
    pub interface: String,
    /// Unspecified (0.0.0.0) while an "auto" address is unresolved.
    pub address: Ipv4Addr,
    /// Unspecified while an "auto" gateway is unresolved.
    pub gateway: Ipv4Addr,
    /// `address = "auto"`: `address` is what the kernel has now.
    #[serde(default)]
    pub address_auto: bool,
    #[serde(default)]
    pub gateway_auto: bool,
    pub gateway_mac: Option<String>,
    pub weight: u32,
    pub priority: u32,
    /// Takes new flows.
    pub up: bool,
    pub admin: AdminState,
    /// Why it is down (probes, loss, latency, traffic, link, admin, initial, reload); None while up.
    #[serde(default)]
    pub down_cause: Option<Cause>,
    /// Seconds since `up` last changed.
    pub since_s: u64,
    /// Mean probe round-trip time over the recent rounds.
    pub probe_rtt_ms: Option<f64>,
    /// Share of probes lost over the recent rounds, 0 to 1.
    pub probe_loss: f64,
    pub flows: u32,
    pub nat_ports_in_use: NatPorts,
    pub packets_out: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub bytes_in: u64,
    /// Its IPv6 side; None where it carries no IPv6.
    #[serde(default)]
    pub ipv6: Option<Uplink6Report>,
}

/// An uplink's IPv6 side in `xwan status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uplink6Report {
    /// Takes new IPv6 connections (an uplink may be up for IPv4 alone).
    pub up: bool,
    /// `nat6`: prefix, npt, masquerade or off.
    pub nat6: String,
    /// None while unknown ("auto" and the kernel has none), or not given.
    pub address: Option<std::net::Ipv6Addr>,
    pub prefix: Option<String>,
    pub gateway_mac: Option<String>,
    pub flows: u32,
    pub nat_ports_in_use: NatPorts,
    /// Why it is down by its own probes (an uplink with IPv6 targets of
    /// its own: probes, loss, latency, link, admin, initial, reload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_cause: Option<Cause>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatPorts {
    pub tcp: usize,
    pub udp: usize,
    pub icmp: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FlowTableReport {
    pub flows: u32,
    pub max_flows: u32,
    pub inserts: u64,
    pub expiries: u64,
    pub refusals: u64,
    /// Unanswered flows evicted when the table was full (early drop).
    #[serde(default)]
    pub evictions: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerReport {
    pub queue: u32,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub batches: u64,
    /// Share of loop rounds that found nothing to do, 0 to 1.
    pub idle_ratio: f64,
    /// Frames the core left to the kernel that went to it through the punt device.
    #[serde(default)]
    pub punted: u64,
    /// Frames the core left to the kernel that the punt device refused: lost.
    #[serde(default)]
    pub punt_failed: u64,
    /// GSO super-frames passed through whole (`--io packet`), and their bytes.
    #[serde(default)]
    pub gso_passthrough: u64,
    #[serde(default)]
    pub gso_passthrough_bytes: u64,
}

/// Per-uplink facts the router core does not hold: health and overrides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UplinkControl {
    pub admin: AdminState,
    pub cause: Option<Cause>,
    /// Why its IPv6 side is down, where IPv6 targets of its own judge it.
    pub cause6: Option<Cause>,
    pub since_s: u64,
    pub rtt_ms: Option<f64>,
    pub loss: f64,
}

impl StatusReport {
    /// Builds the uplink, table and counter parts from the config and the
    /// router's stats; the caller fills in the rest.
    pub fn new(config: &Config, stats: &Stats, control: &[UplinkControl]) -> StatusReport {
        StatusReport {
            version: crate::VERSION.to_string(),
            config_file: String::new(),
            config_age_s: 0,
            uptime_s: 0,
            io: String::new(),
            uplinks: config
                .wans
                .iter()
                .zip(&stats.uplinks)
                .zip(control)
                .map(|((wan, s), c)| UplinkReport {
                    name: wan.name.clone(),
                    interface: wan.interface.clone(),
                    address: wan.address,
                    gateway: wan.gateway,
                    address_auto: wan.address_auto,
                    gateway_auto: wan.gateway_auto,
                    gateway_mac: s.gateway_mac.map(format_mac),
                    weight: wan.weight,
                    priority: wan.priority,
                    up: s.up,
                    admin: c.admin,
                    down_cause: c.cause,
                    since_s: c.since_s,
                    probe_rtt_ms: c.rtt_ms,
                    probe_loss: c.loss,
                    flows: s.flows,
                    nat_ports_in_use: NatPorts {
                        tcp: s.nat_in_use[0],
                        udp: s.nat_in_use[1],
                        icmp: s.nat_in_use[2],
                    },
                    packets_out: s.traffic.packets_out,
                    bytes_out: s.traffic.bytes_out,
                    packets_in: s.traffic.packets_in,
                    bytes_in: s.traffic.bytes_in,
                    ipv6: s.ipv6.as_ref().map(|v6| Uplink6Report {
                        up: v6.up,
                        nat6: v6.nat.name().to_string(),
                        address: v6.address,
                        prefix: v6.prefix.map(|p| p.to_string()),
                        gateway_mac: v6.gateway_mac.map(format_mac),
                        flows: v6.flows,
                        nat_ports_in_use: NatPorts {
                            tcp: v6.nat_in_use[0],
                            udp: v6.nat_in_use[1],
                            icmp: v6.nat_in_use[2],
                        },
                        down_cause: c.cause6,
                    }),
                })
                .collect(),
            flow_table: FlowTableReport::of(&stats.table),
            flow_table6: FlowTableReport::of(&stats.table6),
            sticky_clients: stats.sticky_clients,
            forwarded: stats.totals.forwarded,
            drops: stats
                .totals
                .drops
                .iter()
                .map(|(r, n)| (r.label().to_string(), *n))
                .collect(),
            to_kernel: stats
                .totals
                .kernel
                .iter()
                .map(|(r, n)| (r.label().to_string(), *n))
                .collect(),
            workers: Vec::new(),
            offload: OffloadReport::default(),
            features: Vec::new(),
        }
    }
}

impl FlowTableReport {
    fn of(table: &crate::flow::TableStats) -> FlowTableReport {
        FlowTableReport {
            flows: table.flows,
            max_flows: table.max_flows,
            inserts: table.inserts,
            expiries: table.expiries,
            refusals: table.refusals,
            evictions: table.evictions,
        }
    }
}

pub fn format_mac(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

/// One flow, as `xwan flows` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowReport {
    pub protocol: String,
    /// `snat` (opened from the LAN) or `dnat` (a port forward).
    pub kind: String,
    pub inside: String,
    pub outside: String,
    pub remote: String,
    pub uplink: String,
    pub state: String,
    pub age_s: u32,
    pub idle_s: u32,
    pub packets_out: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub bytes_in: u64,
    /// On the in-kernel fast path (`[dataplane] offload`) now.
    #[serde(default)]
    pub offloaded: bool,
}

/// `198.18.1.2:40000`, or for IPv6 `[2001:db8::1]:40000`.
fn endpoint<A: Family>(e: &Endpoint<A>) -> String {
    let bits = e.addr.bits();
    if A::IS_V6 {
        format!("[{}]:{}", std::net::Ipv6Addr::from(bits), e.port)
    } else {
        format!("{}:{}", Ipv4Addr::from(bits as u32), e.port)
    }
}

impl FlowReport {
    pub fn new<A: Family>(flow: &FlowInfo<A>, uplink_name: &str) -> FlowReport {
        let spec = &flow.spec;
        FlowReport {
            protocol: match spec.protocol {
                PROTO_TCP => "tcp",
                PROTO_UDP => "udp",
                PROTO_ICMP => "icmp",
                PROTO_ICMPV6 => "icmpv6",
                _ => "other",
            }
            .to_string(),
            kind: match spec.kind {
                FlowKind::Snat => "snat",
                FlowKind::Dnat => "dnat",
                FlowKind::Hairpin { .. } => "hairpin",
            }
            .to_string(),
            inside: endpoint(&spec.inside),
            outside: endpoint(&spec.outside),
            remote: endpoint(&spec.remote),
            uplink: uplink_name.to_string(),
            state: if spec.protocol == PROTO_TCP {
                tcp_state::name(flow.tcp).to_string()
            } else {
                "active".to_string()
            },
            age_s: flow.age_s,
            idle_s: flow.idle_s,
            packets_out: flow.packets[0],
            bytes_out: flow.bytes[0],
            packets_in: flow.packets[1],
            bytes_in: flow.bytes[1],
            offloaded: false,
        }
    }
}

/// What a probe of an optional kernel feature found (`crate::io::features`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FeatureState {
    Available,
    Unavailable,
    /// Refused with EPERM or EACCES: says nothing of what the kernel supports.
    NotPermitted,
    /// Made absent by the test switch, not probed.
    #[serde(rename = "forced-absent")]
    Forced,
}

impl FeatureState {
    pub fn name(self) -> &'static str {
        match self {
            FeatureState::Available => "available",
            FeatureState::Unavailable => "unavailable",
            FeatureState::NotPermitted => "not-permitted",
            FeatureState::Forced => "forced-absent",
        }
    }
}

/// One feature's line: its state, what the probe saw, and what xwan does
/// about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureLine {
    pub name: String,
    pub state: FeatureState,
    pub detail: String,
    /// Empty when available; what xwan does without it otherwise.
    pub effect: String,
}

impl std::fmt::Display for FeatureLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name, self.state.name())?;
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        if !self.effect.is_empty() {
            write!(f, "; {}", self.effect)?;
        }
        Ok(())
    }
}
