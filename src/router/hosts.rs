//! The flow limits of `[limits]`: per LAN host (`max_flows_per_host`, the
//! flows it opens, hairpinned ones included), per port forward target
//! (`max_flows_per_forward`) and per Internet source
//! (`max_flows_per_source`) for the flows opened from the Internet. One
//! host's SYN flood, or a spoofed flood at a forwarded port, fills its own
//! share of the flow table, and the flows opened from outside never use a
//! LAN host's own allowance.

use std::hash::Hash;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

use crate::verdict::DropReason;

/// Flows per key (a host's address, a forward's target endpoint), counted
/// while they are in the table.
pub struct HostLimit<K: Hash + Eq> {
    /// 0: no limit (and nothing is counted).
    limit: u32,
    flows: DashMap<K, u32, ahash::RandomState>,
}

impl<K: Hash + Eq> HostLimit<K> {
    pub fn new(limit: u32) -> HostLimit<K> {
        HostLimit {
            limit,
            flows: DashMap::default(),
        }
    }

    /// Counts one more flow for `host`; false, counting nothing, when it has
    /// its limit already.
    pub fn take(&self, host: K) -> bool {
        if self.limit == 0 {
            return true;
        }
        let mut flows = self.flows.entry(host).or_insert(0);
        if *flows >= self.limit {
            return false;
        }
        *flows += 1;
        true
    }

    /// One flow of `host` left the table.
    pub fn give_back(&self, host: K) {
        if self.limit == 0 {
            return;
        }
        if let Entry::Occupied(mut flows) = self.flows.entry(host) {
            *flows.get_mut() -= 1;
            if *flows.get() == 0 {
                flows.remove();
            }
        }
    }

    /// Hosts with at least one flow counted.
    pub fn hosts(&self) -> usize {
        self.flows.len()
    }
}

/// The three limits of `[limits]` for one family: per LAN host (`H`, the
/// address as the family keys it), per forward target or inbound
/// connection's target (`T`, an endpoint) and per Internet source.
pub struct Allowances<H: Hash + Eq, T: Hash + Eq> {
    pub hosts: HostLimit<H>,
    targets: HostLimit<T>,
    sources: HostLimit<H>,
}

impl<H: Hash + Eq + Copy, T: Hash + Eq + Copy> Allowances<H, T> {
    pub fn new(limits: &crate::config::Limits) -> Allowances<H, T> {
        Allowances {
            hosts: HostLimit::new(limits.max_flows_per_host),
            targets: HostLimit::new(limits.max_flows_per_forward),
            sources: HostLimit::new(limits.max_flows_per_source),
        }
    }

    /// Counts a new flow: one opened from the Internet (`inbound`) against
    /// its target and its source, any other against its LAN host.
    pub fn take(&self, inbound: bool, host: H, target: T, source: H) -> Result<(), DropReason> {
        if !inbound {
            return self
                .hosts
                .take(host)
                .then_some(())
                .ok_or(DropReason::HostLimit);
        }
        if !self.targets.take(target) {
            return Err(DropReason::ForwardLimit);
        }
        if !self.sources.take(source) {
            self.targets.give_back(target);
            return Err(DropReason::SourceLimit);
        }
        Ok(())
    }

    /// What [`Allowances::take`] counted for a flow that left.
    pub fn give_back(&self, inbound: bool, host: H, target: T, source: H) {
        if inbound {
            self.targets.give_back(target);
            self.sources.give_back(source);
        } else {
            self.hosts.give_back(host);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_up_to_the_limit_and_forgets_hosts_with_none() {
        let hosts = HostLimit::new(2);
        let a = u32::from_be_bytes([192, 168, 50, 10]);
        assert!(hosts.take(a) && hosts.take(a));
        assert!(!hosts.take(a));
        assert!(hosts.take(u32::from_be_bytes([192, 168, 50, 11])));
        hosts.give_back(a);
        assert!(hosts.take(a));
        for _ in 0..2 {
            hosts.give_back(a);
        }
        hosts.give_back(u32::from_be_bytes([192, 168, 50, 11]));
        assert_eq!(hosts.hosts(), 0);
    }

    #[test]
    fn zero_is_no_limit() {
        let hosts = HostLimit::new(0);
        assert!((0..100_000).all(|_| hosts.take([10, 0, 0, 1])));
        assert_eq!(hosts.hosts(), 0);
    }
}
