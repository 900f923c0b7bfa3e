//! The router's own traffic (`[local]`): per-uplink routing tables and
//! `ip rule`s, the way the seeds' recipe does it, so that
//! - a service on the router reached through any WAN address answers
//!   through that WAN (a reply's source is that address: `from ADDR lookup
//!   TABLE+id`, whose default route is that uplink's gateway), even with one
//!   default route in the main table;
//! - the router's own new connections (`iif lo`, the packets it originates)
//!   leave by the uplink of the first `[[local.rule]]` they match (by
//!   destination prefix, protocol and port), else by `[local] uplink`
//!   (another one while it is down), or are balanced over the best tier that
//!   is up (a multipath route, weighted);
//! - the router still reaches its directly connected networks and the
//!   main table's specific routes first (`lookup main suppress_prefixlength 0`).
//!
//! Why routes and rules rather than steering the router's packets through
//! the userspace path: the kernel's sockets choose their source address
//! from the route, so a route per uplink gives every connection the address
//! of the uplink it leaves by, and the kernel's own NAT-free path stays as
//! fast and as correct (PMTU, TCP) as it is.
//!
//! Every rule and route carries routing protocol [`XWAN_PROTOCOL`] (88):
//! they are written at start, kept up to date as addresses, gateways and
//! health change, and removed at exit; a start also removes whatever a
//! crashed xwan left (`ip rule show proto 88`, `ip route show table all proto 88`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tracing::{info, warn};

use crate::config::{Config, LocalRule, LocalUplink, Proto, MAX_UPLINKS};
use crate::io::system::rtnetlink::{self, LocalMatch, RuleMatch};
use crate::io::system::SystemError;
use crate::policy::best_tier;

/// `ip rule` priorities: ahead of the main table's 32766, after `local`'s 0:
/// the main table without its default, `from` each uplink's address, each
/// `[[local.rule]]`, then the router's other connections.
const PREF_MAIN: u32 = 1000;
const PREF_FROM: u32 = 1001;
const PREF_RULES: u32 = 1100;
const PREF_LOCAL: u32 = 1200;

/// What xwan's routing tables and rules say for one family, to rewrite only
/// what changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Wanted {
    /// Per uplink: its address, if it has one.
    addresses: Vec<Option<IpAddr>>,
    /// Per uplink: (gateway, ifindex) of its table's default route.
    tables: Vec<Option<(IpAddr, u32)>>,
    /// The next hops of the router's own connections: (gateway, ifindex, weight).
    local: Vec<Hop>,
    /// The same for each `[[local.rule]]` (for IPv6, those without a
    /// destination prefix: the others match IPv4 alone).
    rules: Vec<Vec<Hop>>,
}

/// A next hop: (gateway, ifindex, weight).
type Hop = (IpAddr, u32, u32);

/// One uplink as the routes of one family see it: its address, its gateway
/// (both known), its weight and priority, in service or not.
struct UplinkRoute {
    address: Option<IpAddr>,
    gateway: Option<IpAddr>,
    weight: u32,
    priority: u32,
    up: bool,
}

/// xwan's routing tables and rules; removed when dropped.
pub(super) struct LocalRoutes {
    table: u32,
    uplinks: usize,
    /// `[[local.rule]]`s: their kernel selectors (one per prefix and port range).
    rules: Vec<Vec<LocalMatch>>,
    ifindexes: Vec<u32>,
    /// IPv4, then IPv6 (empty without IPv6 in the configuration).
    written: [Wanted; 2],
}

impl LocalRoutes {
    /// Removes what a crashed xwan left, and writes nothing yet (see
    /// [`LocalRoutes::update`]). None when `[local] routes = false`.
    pub(super) fn start(
        config: &Config,
        ifindexes: Vec<u32>,
    ) -> Result<Option<LocalRoutes>, SystemError> {
        if !config.local.routes {
            return Ok(None);
        }
        let routes = LocalRoutes {
            table: config.local.table,
            uplinks: config.wans.len(),
            rules: config.local.rules.iter().map(selectors).collect(),
            ifindexes,
            written: Default::default(),
        };
        let (rules, tables) = routes.clear()?;
        if rules + tables > 0 {
            info!("removed {rules} rule(s) and {tables} route(s) a previous xwan left");
        }
        Ok(Some(routes))
    }

    fn local_table(&self) -> u32 {
        self.table + MAX_UPLINKS as u32
    }

    fn rule_table(&self, rule: usize) -> u32 {
        self.local_table() + 1 + rule as u32
    }

    /// Removes every rule and route of xwan's; how many of each.
    fn clear(&self) -> Result<(usize, usize), SystemError> {
        let rules = rtnetlink::remove_rules()?;
        let mut routes = 0;
        for table in (0..self.uplinks as u32)
            .map(|id| self.table + id)
            .chain([self.local_table()])
            .chain((0..self.rules.len()).map(|i| self.rule_table(i)))
        {
            routes += rtnetlink::remove_routes(table)?;
        }
        Ok((rules, routes))
    }

    /// Brings the tables and rules to `config` (addresses and gateways as
    /// resolved now), `up` and `up6` (per uplink id: in service for IPv4,
    /// for IPv6).
    pub(super) fn update(&mut self, config: &Config, up: &[bool], up6: &[bool]) {
        let v4 = config.wans.iter().enumerate().map(|(id, w)| UplinkRoute {
            address: (!w.address.is_unspecified()).then_some(w.address.into()),
            gateway: w.resolved().then_some(w.gateway.into()),
            weight: w.weight,
            priority: w.priority,
            up: up.get(id).copied().unwrap_or(false),
        });
        let v6 = config.wans.iter().enumerate().map(|(id, w)| {
            let known = |a: Ipv6Addr| (!a.is_unspecified()).then_some(IpAddr::V6(a));
            let v6 = w.ipv6.as_ref();
            UplinkRoute {
                address: v6.and_then(|v6| known(v6.address)),
                gateway: v6.and_then(|v6| known(v6.gateway)),
                weight: w.weight,
                priority: w.priority,
                up: up6.get(id).copied().unwrap_or(false),
            }
        });
        let has6 = !config.lan.networks6.is_empty() || config.wans.iter().any(|w| w.ipv6.is_some());
        let wanted = [
            self.wanted(config, &v4.collect::<Vec<_>>(), false),
            if has6 {
                self.wanted(config, &v6.collect::<Vec<_>>(), true)
            } else {
                Wanted::default()
            },
        ];
        if wanted == self.written {
            return;
        }
        match self.write(&wanted) {
            Ok(()) => self.written = wanted,
            Err(e) => {
                warn!(error = %e, "routes of the router's own traffic not updated");
                self.written = Default::default();
            }
        }
    }

    fn wanted(&self, config: &Config, sides: &[UplinkRoute], v6: bool) -> Wanted {
        let usable = |id: usize| sides[id].gateway.is_some() && sides[id].up;
        let hop = |id: usize| {
            let side = &sides[id];
            (
                side.gateway.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                self.ifindexes[id],
                side.weight,
            )
        };
        let priorities: Vec<u32> = sides.iter().map(|s| s.priority).collect();
        let tier = best_tier(&priorities, usable);
        let hops = |choice: LocalUplink| -> Vec<Hop> {
            match choice {
                LocalUplink::Uplink(id) if usable(usize::from(id)) => vec![hop(usize::from(id))],
                LocalUplink::Uplink(_) => tier.first().map(|&id| hop(id)).into_iter().collect(),
                LocalUplink::Balance => tier.iter().map(|&id| hop(id)).collect(),
            }
        };
        Wanted {
            addresses: sides.iter().map(|s| s.address).collect(),
            tables: sides
                .iter()
                .zip(&self.ifindexes)
                .map(|(s, &ifindex)| s.gateway.map(|gw| (gw, ifindex)))
                .collect(),
            local: hops(config.local.uplink),
            rules: (config.local.rules.iter())
                .map(|r| {
                    if v6 && !r.dst.is_empty() {
                        Vec::new()
                    } else {
                        hops(r.uplink)
                    }
                })
                .collect(),
        }
    }

    fn write(&self, wanted: &[Wanted; 2]) -> Result<(), SystemError> {
        for (family, (wanted, written)) in wanted.iter().zip(&self.written).enumerate() {
            let v6 = family == 1;
            for (id, table) in wanted.tables.iter().enumerate() {
                if written.tables.get(id) != Some(table) {
                    let hops: Vec<_> = table
                        .iter()
                        .map(|&(gw, ifindex)| (gw, ifindex, 1))
                        .collect();
                    rtnetlink::replace_default(self.table + id as u32, v6, &hops)?;
                }
            }
            if written.local != wanted.local {
                rtnetlink::replace_default(self.local_table(), v6, &wanted.local)?;
                info!(next_hops = ?wanted.local, ipv6 = v6, "the router's own connections: new route");
            }
            for (i, hops) in wanted.rules.iter().enumerate() {
                if written.rules.get(i) != Some(hops) {
                    rtnetlink::replace_default(self.rule_table(i), v6, hops)?;
                }
            }
        }
        let addresses = |w: &[Wanted; 2]| [w[0].addresses.clone(), w[1].addresses.clone()];
        if addresses(&self.written) != addresses(wanted) || self.written == <[Wanted; 2]>::default()
        {
            rtnetlink::remove_rules()?;
            self.add_rules(&wanted[0], false)?;
            if wanted[1] != Wanted::default() {
                self.add_rules(&wanted[1], true)?;
            }
        }
        Ok(())
    }

    /// One family's rules: the main table without its default, `from` each
    /// uplink's address, the `[[local.rule]]`s (for IPv6, those without a
    /// destination prefix), then the router's other connections.
    fn add_rules(&self, wanted: &Wanted, v6: bool) -> Result<(), SystemError> {
        rtnetlink::add_rule(PREF_MAIN, &RuleMatch::MainWithoutDefault, 0, v6)?;
        for (id, address) in wanted.addresses.iter().enumerate() {
            if let Some(address) = address {
                let rule = RuleMatch::From(*address);
                rtnetlink::add_rule(PREF_FROM + id as u32, &rule, self.table + id as u32, v6)?;
            }
        }
        for (i, selectors) in self.rules.iter().enumerate() {
            for only in selectors.iter().filter(|only| !v6 || only.dst.is_none()) {
                let rule = RuleMatch::Local(only.clone());
                rtnetlink::add_rule(PREF_RULES + i as u32, &rule, self.rule_table(i), v6)?;
            }
        }
        let everything = RuleMatch::Local(LocalMatch::default());
        rtnetlink::add_rule(PREF_LOCAL, &everything, self.local_table(), v6)
    }
}

/// A `[[local.rule]]` as kernel rules: one per destination prefix and port
/// range (a kernel rule has one of each).
fn selectors(rule: &LocalRule) -> Vec<LocalMatch> {
    let dsts: Vec<_> = if rule.dst.is_empty() {
        vec![None]
    } else {
        rule.dst.iter().copied().map(Some).collect()
    };
    let ports: Vec<_> = if rule.dst_port.is_empty() {
        vec![None]
    } else {
        rule.dst_port.iter().copied().map(Some).collect()
    };
    let proto = (rule.proto != Proto::Any).then_some(rule.proto);
    dsts.iter()
        .flat_map(|dst| {
            ports.iter().map(move |dst_port| LocalMatch {
                dst: *dst,
                proto,
                dst_port: *dst_port,
            })
        })
        .collect()
}

impl Drop for LocalRoutes {
    fn drop(&mut self) {
        match self.clear() {
            Ok(_) => info!("removed the routes and rules of the router's own traffic"),
            Err(e) => warn!(error = %e, "routes and rules of the router's own traffic not removed"),
        }
    }
}
