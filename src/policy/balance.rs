//! Balancing new connections over the uplinks that are up, within the best
//! priority tier that has any up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use crate::config::{BalanceMode, UplinkId, Wan};

/// The uplinks new connections may use now, and the order `nth` deals them in.
#[derive(Debug, Default)]
struct Schedule {
    /// Up uplinks of the best tier with their weights.
    members: Vec<(UplinkId, u32)>,
    total_weight: u64,
    /// Smooth weighted round-robin order over one cycle of `total_weight`.
    nth: Vec<UplinkId>,
}

impl Schedule {
    fn new(uplinks: &[(u32, u32)], up: u64) -> Schedule {
        let priorities: Vec<u32> = uplinks.iter().map(|(_, priority)| *priority).collect();
        let members: Vec<(UplinkId, u32)> = best_tier(&priorities, |id| up & (1 << id) != 0)
            .into_iter()
            .map(|id| (id as UplinkId, uplinks[id].0))
            .collect();
        let weights: Vec<u32> = members.iter().map(|(_, weight)| *weight).collect();
        Schedule {
            nth: smooth_round_robin(&weights)
                .into_iter()
                .map(|slot| members[slot].0)
                .collect(),
            total_weight: weights.iter().map(|w| u64::from(*w)).sum(),
            members,
        }
    }
}

/// The uplinks balancing uses: of those `usable` says yes to, the ones with
/// the best (lowest) priority, in file order. The kernel recipe
/// (`kernel_script`) uses the same choice, with every uplink usable.
pub fn best_tier(priorities: &[u32], usable: impl Fn(usize) -> bool) -> Vec<usize> {
    let Some(best) = (0..priorities.len())
        .filter(|&id| usable(id))
        .map(|id| priorities[id])
        .min()
    else {
        return Vec::new();
    };
    (0..priorities.len())
        .filter(|&id| usable(id) && priorities[id] == best)
        .collect()
}

/// One cycle of smooth weighted round-robin (as in nginx): `sum(weights)`
/// slots, each the index of the weight that takes it. Every index gets
/// exactly its weight of the slots, spread out as evenly as possible (2:1
/// gives 0, 1, 0). Weights multiplied by a common factor give the same cycle
/// repeated. `nth` balancing deals new connections in this order, and the
/// kernel recipe's `statistic --mode nth` cascade is built from it.
pub fn smooth_round_robin(weights: &[u32]) -> Vec<usize> {
    let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
    let mut current = vec![0i64; weights.len()];
    (0..total)
        .filter_map(|_| {
            for (c, &weight) in current.iter_mut().zip(weights) {
                *c += i64::from(weight);
            }
            let best = (0..weights.len()).max_by_key(|&i| (current[i], std::cmp::Reverse(i)))?;
            current[best] -= total;
            Some(best)
        })
        .collect()
}

fn mix(a: u64, b: u64) -> u64 {
    let product = u128::from(a ^ 0x9e37_79b9_7f4a_7c15) * u128::from(b ^ 0xc2b2_ae3d_27d4_eb4f);
    let x = (product as u64) ^ ((product >> 64) as u64);
    // A final avalanche so nearby inputs land far apart.
    let x = (x ^ (x >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^ (x >> 29)
}

/// Balances new connections over the uplinks.
#[derive(Debug)]
pub struct Balancer {
    mode: BalanceMode,
    /// (weight, priority) per uplink.
    uplinks: Vec<(u32, u32)>,
    up: AtomicU64,
    schedule: RwLock<Schedule>,
    counter: AtomicU64,
    seed: u64,
}

impl Balancer {
    /// Every uplink starts down.
    pub fn new(mode: BalanceMode, wans: &[Wan], seed: u64) -> Balancer {
        Balancer {
            mode,
            uplinks: wans.iter().map(|w| (w.weight, w.priority)).collect(),
            up: AtomicU64::new(0),
            schedule: RwLock::new(Schedule::default()),
            counter: AtomicU64::new(0),
            seed,
        }
    }

    /// A balancer with a new mode and new weights and priorities (in the same
    /// uplink order), keeping this one's seed and which uplinks are up.
    pub fn reconfigured(&self, mode: BalanceMode, wans: &[Wan]) -> Balancer {
        let up = self.up.load(Ordering::Acquire);
        let uplinks: Vec<(u32, u32)> = wans.iter().map(|w| (w.weight, w.priority)).collect();
        Balancer {
            mode,
            schedule: RwLock::new(Schedule::new(&uplinks, up)),
            uplinks,
            up: AtomicU64::new(up),
            counter: AtomicU64::new(0),
            seed: self.seed,
        }
    }

    pub fn is_up(&self, uplink: UplinkId) -> bool {
        self.up.load(Ordering::Acquire) & (1 << uplink) != 0
    }

    /// Marks an uplink up or down; the schedule restarts from its first slot.
    pub fn set_up(&self, uplink: UplinkId, up: bool) {
        let mut schedule = self
            .schedule
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let bit = 1u64 << uplink;
        let mask = if up {
            self.up.fetch_or(bit, Ordering::AcqRel) | bit
        } else {
            self.up.fetch_and(!bit, Ordering::AcqRel) & !bit
        };
        *schedule = Schedule::new(&self.uplinks, mask);
        self.counter.store(0, Ordering::Release);
    }

    /// The schedule, read-locked while it is used (no reference count to
    /// move: two locked operations where a clone of an `Arc` took four).
    fn schedule(&self) -> RwLockReadGuard<'_, Schedule> {
        self.schedule
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether `uplink` is one new connections may be balanced onto now.
    pub fn is_candidate(&self, uplink: UplinkId) -> bool {
        self.schedule().members.iter().any(|(id, _)| *id == uplink)
    }

    /// The uplink for a new connection between `src` and `dst` (addresses
    /// folded to 32 bits, [`Family::folded`](crate::packet::Family::folded)); None
    /// when no uplink is up.
    pub fn pick(&self, src: u32, dst: u32) -> Option<UplinkId> {
        let schedule = self.schedule();
        if schedule.members.is_empty() {
            return None;
        }
        match self.mode {
            BalanceMode::Nth => {
                let n = self.counter.fetch_add(1, Ordering::Relaxed);
                Some(schedule.nth[(n % schedule.nth.len() as u64) as usize])
            }
            BalanceMode::Hash => {
                // Weighted rendezvous hashing: the pair keeps its uplink while
                // that uplink is up, whatever happens to the others.
                let pair = u64::from(src) << 32 | u64::from(dst);
                schedule
                    .members
                    .iter()
                    .map(|(id, weight)| {
                        let h = mix(pair ^ self.seed, u64::from(*id));
                        // Uniform in (0, 1].
                        let u = ((h >> 11) + 1) as f64 / (1u64 << 53) as f64;
                        (*id, f64::from(*weight) / -u.ln().min(-f64::MIN_POSITIVE))
                    })
                    .max_by(|a, b| a.1.total_cmp(&b.1))
                    .map(|(id, _)| id)
            }
            BalanceMode::Random => {
                let n = self.counter.fetch_add(1, Ordering::Relaxed);
                let mut r = mix(n, self.seed) % schedule.total_weight;
                schedule.members.iter().find_map(|(id, weight)| {
                    if r < u64::from(*weight) {
                        Some(*id)
                    } else {
                        r -= u64::from(*weight);
                        None
                    }
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn wans(weights_priorities: &[(u32, u32)]) -> Vec<Wan> {
        weights_priorities
            .iter()
            .enumerate()
            .map(|(i, (weight, priority))| Wan {
                name: format!("isp{}", i + 1),
                interface: format!("wan{}", i + 1),
                address: Ipv4Addr::new(198, 18, i as u8 + 1, 2),
                gateway: Ipv4Addr::new(198, 18, i as u8 + 1, 1),
                address_auto: false,
                gateway_auto: false,
                weight: *weight,
                priority: *priority,
                probe: vec![],
                mtu: None,
                health: crate::config::DEFAULT_HEALTH,
                ipv6: None,
            })
            .collect()
    }

    fn all_up(balancer: &Balancer, n: usize) {
        for id in 0..n {
            balancer.set_up(id as UplinkId, true);
        }
    }

    proptest! {
        /// nth gives exactly weight-proportional counts over any whole number of cycles.
        #[test]
        fn nth_is_exact(weights in proptest::collection::vec(1u32..8, 2..5), cycles in 1u64..5) {
            let config: Vec<_> = weights.iter().map(|w| (*w, 1)).collect();
            let balancer = Balancer::new(BalanceMode::Nth, &wans(&config), 1);
            all_up(&balancer, weights.len());
            let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
            let mut counts = vec![0u64; weights.len()];
            for _ in 0..total * cycles {
                counts[usize::from(balancer.pick(0x0101_0101, 0x0202_0202).unwrap())] += 1;
            }
            for (count, weight) in counts.iter().zip(&weights) {
                prop_assert_eq!(*count, u64::from(*weight) * cycles);
            }
        }

        /// hash keeps a pair on its uplink while that uplink is up, even when another goes down.
        #[test]
        fn hash_is_stable(src in any::<[u8; 4]>(), dst in any::<[u8; 4]>()) {
            let balancer = Balancer::new(BalanceMode::Hash, &wans(&[(1, 1), (2, 1), (1, 1)]), 7);
            all_up(&balancer, 3);
            let first = balancer.pick(u32::from_be_bytes(src), u32::from_be_bytes(dst)).unwrap();
            prop_assert_eq!(balancer.pick(u32::from_be_bytes(src), u32::from_be_bytes(dst)), Some(first));
            let other = (first + 1) % 3;
            balancer.set_up(other, false);
            prop_assert_eq!(balancer.pick(u32::from_be_bytes(src), u32::from_be_bytes(dst)), Some(first));
        }
    }

    #[test]
    fn reconfigured_keeps_the_up_state_and_takes_the_new_weights() {
        let balancer = Balancer::new(BalanceMode::Nth, &wans(&[(1, 1), (1, 1), (1, 1)]), 1);
        balancer.set_up(0, true);
        balancer.set_up(2, true);
        let next = balancer.reconfigured(BalanceMode::Nth, &wans(&[(1, 1), (5, 1), (3, 1)]));
        assert!(next.is_up(0) && !next.is_up(1) && next.is_up(2));
        let mut counts = [0; 3];
        for _ in 0..8 {
            counts[usize::from(next.pick(0x0101_0101, 0x0202_0202).unwrap())] += 1;
        }
        assert_eq!(counts, [2, 0, 6], "weights 1 and 3 over the up uplinks");
        next.set_up(1, true);
        assert!(next.is_candidate(1));
        assert!(!balancer.is_up(1), "the old balancer is left as it was");
    }

    #[test]
    fn nth_two_to_one_interleaves() {
        let balancer = Balancer::new(BalanceMode::Nth, &wans(&[(2, 1), (1, 1)]), 1);
        all_up(&balancer, 2);
        let picks: Vec<_> = (0..6)
            .map(|_| balancer.pick(0x0101_0101, 0x0202_0202).unwrap())
            .collect();
        assert_eq!(picks, [0, 1, 0, 0, 1, 0]);
    }

    #[test]
    fn lower_priority_only_when_the_better_tier_is_down() {
        let balancer = Balancer::new(BalanceMode::Nth, &wans(&[(1, 1), (1, 2)]), 1);
        all_up(&balancer, 2);
        assert!((0..10).all(|_| balancer.pick(0x0101_0101, 0x0202_0202) == Some(0)));
        balancer.set_up(0, false);
        assert!((0..10).all(|_| balancer.pick(0x0101_0101, 0x0202_0202) == Some(1)));
        balancer.set_up(1, false);
        assert_eq!(balancer.pick(0x0101_0101, 0x0202_0202), None);
    }

    #[test]
    fn random_and_hash_follow_weights() {
        for mode in [BalanceMode::Random, BalanceMode::Hash] {
            let balancer = Balancer::new(mode, &wans(&[(3, 1), (1, 1)]), 42);
            all_up(&balancer, 2);
            let first = (0..20000u32)
                .filter(|i| balancer.pick(*i, 0xcb00_710a) == Some(0))
                .count();
            // 3:1 → 15000 of 20000; allow 2% either way.
            assert!((14600..15400).contains(&first), "{mode:?}: {first}");
        }
    }
}
