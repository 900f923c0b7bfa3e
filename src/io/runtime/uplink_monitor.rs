//! The event monitor: one thread on an rtnetlink socket subscribed to link,
//! address and route changes of both families, and to neighbour changes. A
//! link, address or route event reads the kernel's state again
//! ([`KernelState`]) and applies it:
//! - the interfaces' MTUs, the LAN interface's address and the router's
//!   addresses to the core and the kernel side ([`InterfaceWatch`]);
//! - each uplink's link (down or without carrier, or an "auto" address or
//!   gateway missing) to [`KernelUplinks`], which the health thread judges
//!   on its next tick, so a carrier loss fails the uplink over at once;
//! - the "auto" addresses and gateways of both families to the running
//!   configuration and the core ([`RuntimeControl::follow_kernel`]);
//! - xwan's routes and rules for the router's own traffic ([`LocalRoutes`]),
//!   which also follow the uplinks' health.
//!
//! On every wake it also keeps each uplink's IPv6 service in line: an uplink
//! is up for IPv6 while its IPv6 health says so (the IPv6 monitor's verdict
//! where the uplink has IPv6 probe targets of its own, else the uplink's
//! one verdict), its IPv6 side resolves ([`KernelUplinks::usable6`]: a
//! gateway, and the address or prefix its `nat6` needs) and, after
//! [`GATEWAY6_GRACE`] at start, the core has its IPv6 gateway's MAC;
//! otherwise it is taken out of IPv6 service alone
//! ([`Router::set_uplink_up6`]), IPv4 going on.
//!
//! A neighbour event, or [`NEIGHBOUR_ROUND`] without one, runs a round of
//! the neighbour table ([`NeighbourThread`]: gateway and LAN host MACs, and
//! the resolutions the core asks for).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::interfaces::InterfaceWatch;
use super::kernel_uplinks::KernelUplinks;
use super::local_routes::LocalRoutes;
use super::neighbours::NeighbourThread;
use super::runtime_control::RuntimeControl;
use crate::config::{Nat6, RunningConfig, UplinkId, Wan6};
use crate::io::system::{KernelState, RouteEvents};
use crate::router::Router;

/// The longest the neighbour table goes unread.
const NEIGHBOUR_ROUND: Duration = Duration::from_millis(500);

/// How often the thread looks at the uplinks' health for the router's own
/// routes and for IPv6 service.
const WAKE: Duration = Duration::from_millis(50);

/// How long an uplink's IPv6 gateway may go without a MAC at start (as the
/// health thread waits for IPv4 gateways).
const GATEWAY6_GRACE: Duration = Duration::from_secs(3);

pub(super) struct UplinkMonitor {
    pub(super) events: RouteEvents,
    pub(super) neighbours: NeighbourThread,
    pub(super) watch: Arc<InterfaceWatch>,
    pub(super) runtime: Arc<RuntimeControl>,
    pub(super) uplinks: Arc<KernelUplinks>,
    pub(super) router: Arc<Router>,
    pub(super) local: Option<LocalRoutes>,
    pub(super) last_error: Option<String>,
}

impl UplinkMonitor {
    pub(super) fn run(mut self, stop: &AtomicBool) {
        self.follow_kernel();
        // At once: the hosts of restored flows wait for their MACs.
        self.neighbours.refresh();
        let mut neighbours_at = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let changes = self.events.wait(WAKE);
            if changes.state {
                self.follow_kernel();
            }
            self.follow_health(&self.runtime.running());
            // A LAN host the core is missing (a frame waits for it) is
            // asked for within a wake, not a round.
            let missing = self.router.unresolved_news();
            if changes.neighbours || missing || neighbours_at.elapsed() >= NEIGHBOUR_ROUND {
                self.neighbours.refresh();
                neighbours_at = Instant::now();
            }
        }
    }

    /// Reads the kernel's links, addresses and routes and applies them.
    fn follow_kernel(&mut self) {
        self.watch.tick();
        match KernelState::read() {
            Ok(state) => {
                self.last_error = None;
                self.uplinks
                    .update(&state, &self.runtime.running().config.wans);
            }
            Err(e) => {
                let text = e.to_string();
                if self.last_error.as_deref() != Some(text.as_str()) {
                    warn!("reading the kernel's links, addresses and routes: {text}");
                    self.last_error = Some(text);
                }
            }
        }
        self.runtime.follow_kernel();
    }

    /// The router's own routes, after the uplinks' health; and each
    /// uplink's IPv6 service.
    fn follow_health(&mut self, running: &RunningConfig) {
        self.follow_ipv6(running);
        if let Some(local) = &mut self.local {
            let in_service = |up: &dyn Fn(UplinkId) -> bool| -> Vec<bool> {
                (0..running.config.wans.len())
                    .map(|id| !running.removed[id] && up(id as UplinkId))
                    .collect()
            };
            let up = in_service(&|id| self.router.uplink_up(id));
            let up6 = in_service(&|id| self.router.uplink_up6(id));
            local.update(&running.config, &up, &up6);
        }
    }

    /// Takes an uplink whose IPv6 side is unhealthy or does not resolve
    /// out of IPv6 service (and puts it back once it is well), without
    /// touching IPv4: the health thread's transitions set both families (or
    /// IPv6 alone, from its IPv6 monitor), this corrects IPv6 within a wake.
    fn follow_ipv6(&self, running: &RunningConfig) {
        if running.config.lan.networks6.is_empty() {
            // The core forwards no IPv6.
            return;
        }
        let grace = self.neighbours.epoch.elapsed() < GATEWAY6_GRACE;
        for (id, wan) in running.config.wans.iter().enumerate() {
            let Some(v6) = &wan.ipv6 else { continue };
            let uplink = id as UplinkId;
            let mac = grace || self.neighbours.gateway6_resolved(id);
            let verdict6 = self.runtime.verdict6(uplink);
            let healthy = verdict6.unwrap_or_else(|| self.router.uplink_up(uplink));
            let want = !running.removed[id] && healthy && self.uplinks.usable6(id) && mac;
            let was = self.router.uplink_up6(uplink);
            if want == was {
                continue;
            }
            // Up only where the core can translate (else this stays down).
            self.router.set_uplink_up6(uplink, want);
            match (was, self.router.uplink_up6(uplink)) {
                (false, true) => info!(uplink = %wan.name, "IPv6 up"),
                (true, false) => {
                    let (reset, sent, remapped) = self.runtime.fail_over6(uplink);
                    info!(
                        uplink = %wan.name,
                        reason = why_down6(v6, mac, verdict6),
                        tcp_reset = reset,
                        rst_sent = sent,
                        remapped,
                        "IPv6 down"
                    );
                }
                _ => {}
            }
        }
    }
}

/// Why an uplink whose IPv6 side was judged is out of IPv6 service
/// (`verdict6`: its IPv6 health verdict, where it has IPv6 targets).
fn why_down6(v6: &Wan6, gateway_mac: bool, verdict6: Option<bool>) -> &'static str {
    if v6.gateway.is_unspecified() {
        "no IPv6 default route"
    } else if v6.nat == Nat6::Masquerade && v6.address.is_unspecified() {
        "no global IPv6 address"
    } else if v6.nat != Nat6::Masquerade && v6.prefix.is_none() {
        "prefix6 unresolved"
    } else if !gateway_mac {
        "IPv6 gateway unresolved"
    } else if verdict6 == Some(false) {
        "IPv6 probes down"
    } else {
        "uplink down"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_why_ipv6_is_down() {
        let resolved = Wan6 {
            address: "2001:db8:1::2".parse().unwrap(),
            address_auto: true,
            gateway: "fe80::1".parse().unwrap(),
            gateway_auto: true,
            prefix: None,
            prefix_auto: false,
            nat: Nat6::Masquerade,
        };
        assert_eq!(why_down6(&resolved, false, None), "IPv6 gateway unresolved");
        assert_eq!(why_down6(&resolved, true, None), "uplink down");
        assert_eq!(why_down6(&resolved, true, Some(false)), "IPv6 probes down");
        let no_route = Wan6 {
            gateway: std::net::Ipv6Addr::UNSPECIFIED,
            ..resolved.clone()
        };
        assert_eq!(why_down6(&no_route, true, None), "no IPv6 default route");
        let no_address = Wan6 {
            address: std::net::Ipv6Addr::UNSPECIFIED,
            ..resolved.clone()
        };
        assert_eq!(why_down6(&no_address, true, None), "no global IPv6 address");
        let no_prefix = Wan6 {
            nat: Nat6::Prefix,
            prefix_auto: true,
            ..resolved
        };
        assert_eq!(why_down6(&no_prefix, true, None), "prefix6 unresolved");
    }
}
