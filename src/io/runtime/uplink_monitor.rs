//! The event monitor: one thread on an rtnetlink socket subscribed to link,
//! IPv4 address, IPv4 route and neighbour changes. A link, address or route
//! event reads the kernel's state again ([`KernelState`]) and applies it:
//! - the interfaces' MTUs, the LAN interface's address and the router's
//!   addresses to the core and the kernel side ([`InterfaceWatch`]);
//! - each uplink's link (down or without carrier, or an "auto" address or
//!   gateway missing) to [`KernelUplinks`], which the health thread judges
//!   on its next tick, so a carrier loss fails the uplink over at once;
//! - the "auto" addresses and gateways to the running configuration
//!   ([`RuntimeControl::follow_kernel`]);
//! - xwan's routes and rules for the router's own traffic ([`LocalRoutes`]),
//!   which also follow the uplinks' health.
//!
//! A neighbour event, or [`NEIGHBOUR_ROUND`] without one, runs a round of
//! the neighbour table ([`NeighbourThread`]: gateway and LAN host MACs, and
//! the resolutions the core asks for).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::warn;

use super::interfaces::InterfaceWatch;
use super::kernel_uplinks::KernelUplinks;
use super::local_routes::LocalRoutes;
use super::neighbours::NeighbourThread;
use super::runtime_control::RuntimeControl;
use crate::config::{RunningConfig, UplinkId};
use crate::io::system::{KernelState, RouteEvents};
use crate::router::Router;

/// The longest the neighbour table goes unread.
const NEIGHBOUR_ROUND: Duration = Duration::from_millis(500);

/// How often the thread looks at the uplinks' health for the router's own routes.
const WAKE: Duration = Duration::from_millis(50);

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

    /// The router's own routes, after the uplinks' health.
    fn follow_health(&mut self, running: &RunningConfig) {
        if let Some(local) = &mut self.local {
            let up: Vec<bool> = (0..running.config.wans.len())
                .map(|id| !running.removed[id] && self.router.uplink_up(id as UplinkId))
                .collect();
            local.update(&running.config, &up);
        }
    }
}
