//! The per-host flow limit (`[limits] max_flows_per_host`): one LAN host's
//! SYN flood (or a flood at one forwarded host) fills its own share of the
//! flow table, not everyone's.

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

/// Flows per LAN host, counted while they are in the table.
pub struct HostLimit {
    /// 0: no limit (and nothing is counted).
    limit: u32,
    flows: DashMap<[u8; 4], u32, ahash::RandomState>,
}

impl HostLimit {
    pub fn new(limit: u32) -> HostLimit {
        HostLimit {
            limit,
            flows: DashMap::default(),
        }
    }

    /// Counts one more flow for `host`; false, counting nothing, when it has
    /// its limit already.
    pub fn take(&self, host: [u8; 4]) -> bool {
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
    pub fn give_back(&self, host: [u8; 4]) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_up_to_the_limit_and_forgets_hosts_with_none() {
        let hosts = HostLimit::new(2);
        let a = [192, 168, 50, 10];
        assert!(hosts.take(a) && hosts.take(a));
        assert!(!hosts.take(a));
        assert!(hosts.take([192, 168, 50, 11]));
        hosts.give_back(a);
        assert!(hosts.take(a));
        for _ in 0..2 {
            hosts.give_back(a);
        }
        hosts.give_back([192, 168, 50, 11]);
        assert_eq!(hosts.hosts(), 0);
    }

    #[test]
    fn zero_is_no_limit() {
        let hosts = HostLimit::new(0);
        assert!((0..100_000).all(|_| hosts.take([10, 0, 0, 1])));
        assert_eq!(hosts.hosts(), 0);
    }
}
