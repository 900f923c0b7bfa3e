//! Policy for new connections from the LAN: steering rules, then balancing
//! over the uplinks that are up, optionally sticky per client.

#![forbid(unsafe_code)]

mod balance;
mod rules;

pub use balance::{best_tier, smooth_round_robin, Balancer};
pub use rules::{NewConnection, RuleDecision, Rules};

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use crate::config::{Action, Balance, Sticky, UplinkId, Wan};
use crate::packet::Family;
use crate::verdict::DropReason;

/// Where a new connection goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Uplink(UplinkId),
    Bypass,
    Drop(DropReason),
}

/// A client's uplink, kept for `sticky_timeout_s` after its last new connection.
#[derive(Debug)]
struct StickyEntry {
    uplink: UplinkId,
    last_used: AtomicU32,
}

/// The policy: rules, balancer and sticky table.
#[derive(Debug)]
pub struct Policy {
    rules: Rules,
    balancer: Balancer,
    sticky: Sticky,
    sticky_timeout_s: u32,
    sticky_limit: usize,
    /// Shared with the policy a reconfiguration replaces this one with, when
    /// the sticky mode stays the same, so clients keep their uplinks.
    sticky_table: Arc<DashMap<u64, StickyEntry, ahash::RandomState>>,
}

impl Policy {
    pub fn new(
        rules: Rules,
        balance: &Balance,
        wans: &[Wan],
        sticky_limit: usize,
        seed: u64,
    ) -> Policy {
        Policy {
            rules,
            balancer: Balancer::new(balance.mode, wans, seed),
            sticky: balance.sticky,
            sticky_timeout_s: balance.sticky_timeout_s,
            sticky_limit,
            sticky_table: Arc::default(),
        }
    }

    /// The policy for a reloaded configuration: new rules, balancing and
    /// sticky settings; the uplinks' up or down state, the balancer's seed
    /// and (while the sticky mode is unchanged) the sticky clients carry over.
    pub fn reconfigured(&self, rules: Rules, balance: &Balance, wans: &[Wan]) -> Policy {
        Policy {
            rules,
            balancer: self.balancer.reconfigured(balance.mode, wans),
            sticky: balance.sticky,
            sticky_timeout_s: balance.sticky_timeout_s,
            sticky_limit: self.sticky_limit,
            sticky_table: if balance.sticky == self.sticky {
                Arc::clone(&self.sticky_table)
            } else {
                Arc::default()
            },
        }
    }

    pub fn balancer(&self) -> &Balancer {
        &self.balancer
    }

    /// What the rules say about a new connection.
    pub fn decide<A: Family>(&self, conn: &NewConnection<A>) -> RuleDecision {
        self.rules.decide(conn)
    }

    /// Where a new connection goes at `now` (seconds), given the rules' decision.
    pub fn assign<A: Family>(
        &self,
        decision: RuleDecision,
        conn: &NewConnection<A>,
        now: u32,
    ) -> Choice {
        match decision.action {
            Action::Bypass => Choice::Bypass,
            Action::Drop => Choice::Drop(DropReason::Rule),
            Action::Uplink(uplink) if self.balancer.is_up(uplink) => Choice::Uplink(uplink),
            Action::Uplink(_) if decision.strict => Choice::Drop(DropReason::NoUplink),
            Action::Uplink(_) | Action::Balance => self.balance(conn, now),
        }
    }

    fn sticky_key<A: Family>(&self, conn: &NewConnection<A>) -> Option<u64> {
        let src = u64::from(conn.src.folded());
        match self.sticky {
            Sticky::None => None,
            Sticky::Src => Some(src),
            Sticky::SrcDst => Some(src << 32 | u64::from(conn.dst.folded())),
        }
    }

    fn balance<A: Family>(&self, conn: &NewConnection<A>, now: u32) -> Choice {
        let Some(key) = self.sticky_key(conn) else {
            return self.pick(conn);
        };
        if let Some(entry) = self.sticky_table.get(&key) {
            let fresh = now.saturating_sub(entry.last_used.load(Ordering::Relaxed))
                <= self.sticky_timeout_s;
            if fresh && self.balancer.is_candidate(entry.uplink) {
                // Written only when the second moved: the entry's cache line
                // stays shared between workers opening flows of one client.
                if entry.last_used.load(Ordering::Relaxed) != now {
                    entry.last_used.store(now, Ordering::Relaxed);
                }
                return Choice::Uplink(entry.uplink);
            }
        }
        let choice = self.pick(conn);
        if let Choice::Uplink(uplink) = choice {
            if self.sticky_table.len() < self.sticky_limit || self.sticky_table.contains_key(&key) {
                self.sticky_table.insert(
                    key,
                    StickyEntry {
                        uplink,
                        last_used: AtomicU32::new(now),
                    },
                );
            }
        }
        choice
    }

    fn pick<A: Family>(&self, conn: &NewConnection<A>) -> Choice {
        self.balancer
            .pick(conn.src.folded(), conn.dst.folded())
            .map_or(Choice::Drop(DropReason::NoUplink), Choice::Uplink)
    }

    /// Forgets sticky clients idle for longer than the sticky timeout.
    pub fn expire(&self, now: u32) {
        self.sticky_table.retain(|_, entry| {
            now.saturating_sub(entry.last_used.load(Ordering::Relaxed)) <= self.sticky_timeout_s
        });
    }

    /// Sticky clients remembered.
    pub fn sticky_clients(&self) -> usize {
        self.sticky_table.len()
    }

    /// The sticky mode and its clients as (key, uplink, seconds since last
    /// used at `now`), for a restart.
    pub fn save_sticky(&self, now: u32) -> (Sticky, Vec<(u64, UplinkId, u32)>) {
        let clients = self
            .sticky_table
            .iter()
            .map(|e| {
                let idle = now.saturating_sub(e.last_used.load(Ordering::Relaxed));
                (*e.key(), e.uplink, idle)
            })
            .collect();
        (self.sticky, clients)
    }

    /// Puts saved sticky clients back at `now`, when they were saved in this
    /// policy's sticky mode (a key means something else in another);
    /// `uplink` maps a saved uplink to today's, None for one that is gone.
    /// Returns how many were restored.
    pub fn restore_sticky(
        &self,
        mode: Sticky,
        clients: &[(u64, UplinkId, u32)],
        uplink: impl Fn(UplinkId) -> Option<UplinkId>,
        now: u32,
    ) -> usize {
        if mode != self.sticky {
            return 0;
        }
        let mut restored = 0;
        for &(key, saved, idle) in clients {
            if self.sticky_table.len() >= self.sticky_limit || idle > self.sticky_timeout_s {
                continue;
            }
            if let Some(uplink) = uplink(saved) {
                let last_used = AtomicU32::new(now.saturating_sub(idle));
                self.sticky_table
                    .insert(key, StickyEntry { uplink, last_used });
                restored += 1;
            }
        }
        restored
    }
}
