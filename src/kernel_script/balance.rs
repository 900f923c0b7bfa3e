//! Balancing in the kernel recipe: the uplinks of the best priority tier and
//! their `nth` cascade, `HMARK` hashing or `random` shares, and the sticky
//! `recent` lists. The tier and the round-robin order come from the policy
//! (`policy::best_tier`, `policy::smooth_round_robin`), so the recipe deals
//! connections exactly as xwan does.

use super::*;
use crate::policy::{self, smooth_round_robin};

/// The uplinks balancing uses: those of the best (lowest) priority, in file
/// order (the policy's choice with every uplink up).
pub(super) fn best_tier(config: &Config) -> Vec<usize> {
    best_tier_of(config, &Family::v4(config))
}

/// The best tier among the uplinks that carry `family`.
pub(super) fn best_tier_of(config: &Config, family: &Family) -> Vec<usize> {
    let priorities: Vec<u32> = config.wans.iter().map(|w| w.priority).collect();
    policy::best_tier(&priorities, |i| family.carries(i))
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Weights divided by their greatest common divisor (a zero weight counts as 1).
pub(super) fn reduced_weights(weights: &[u32]) -> Vec<u32> {
    let weights: Vec<u32> = weights.iter().map(|&w| w.max(1)).collect();
    let g = weights.iter().copied().fold(0, gcd).max(1);
    weights.iter().map(|w| w / g).collect()
}

pub(super) fn balance(s: &mut Script, config: &Config, family: &Family) {
    let t = family.tables;
    let tier = best_tier_of(config, family);
    let weights: Vec<u32> = tier.iter().map(|&i| config.wans[i].weight).collect();
    let weights = reduced_weights(&weights);
    let sticky_src =
        config.balance.sticky == Sticky::Src && config.balance.mode != BalanceMode::Hash;
    let names: Vec<String> = tier
        .iter()
        .zip(&weights)
        .map(|(&i, w)| format!("{} x{w}", config.wans[i].name))
        .collect();
    s.blank();
    s.comment(&format!(
        "Balancing over the best tier: {}",
        names.join(", ")
    ));
    if sticky_src {
        sticky_checks(s, config, family, &tier);
    }
    if config.balance.sticky == Sticky::SrcDst && config.balance.mode != BalanceMode::Hash {
        s.comment("sticky = src+dst is not supported by this recipe with nth or random");
        s.comment("balancing (-m recent keys on one address): connections are balanced alone.");
    }
    // The chain a balanced connection goes to for tier member `k`.
    let target = |k: usize| {
        let n = uplink_number(tier[k]);
        if sticky_src {
            sticky_chain(n)
        } else {
            uplink_chain(n)
        }
    };
    if tier.len() == 1 {
        s.line(&format!("{t} -t mangle -A XWAN_BALANCE -g {}", target(0)));
        return;
    }
    match config.balance.mode {
        BalanceMode::Nth => {
            let slots = smooth_round_robin(&weights);
            let total = slots.len();
            s.comment("nth: new connection number c takes slot c mod W of the smooth weighted");
            s.comment("round-robin order. The rules form a cascade: rule j sees only the W - j");
            s.comment("connections of each period that earlier rules left, and takes the first.");
            s.comment("Each statistic rule counts exactly the packets reaching it, so the shares");
            s.comment("are exact (per W connections, each uplink gets its weight), even when");
            s.comment("packets race on several CPUs.");
            for (j, &k) in slots.iter().enumerate() {
                let every = total - j;
                if every == 1 {
                    s.line(&format!("{t} -t mangle -A XWAN_BALANCE -g {}", target(k)));
                } else {
                    s.line(&format!(
                        "{t} -t mangle -A XWAN_BALANCE -m statistic --mode nth --every {every} --packet 0 -g {}",
                        target(k)
                    ));
                }
            }
        }
        BalanceMode::Random => {
            s.comment("random: uplink k is taken with probability w_k / (w_k + ... + w_last)");
            s.comment("among the connections earlier rules left: overall w_k / W.");
            let mut remaining: u32 = weights.iter().sum();
            for (k, &w) in weights.iter().enumerate() {
                if k + 1 == weights.len() {
                    s.line(&format!("{t} -t mangle -A XWAN_BALANCE -g {}", target(k)));
                } else {
                    let p = f64::from(w) / f64::from(remaining);
                    s.line(&format!(
                        "{t} -t mangle -A XWAN_BALANCE -m statistic --mode random --probability {p:.10} -g {}",
                        target(k)
                    ));
                }
                remaining -= w;
            }
        }
        BalanceMode::Hash => {
            let total: u32 = weights.iter().sum();
            let tuple = match config.balance.sticky {
                Sticky::None => "src,dst,sport,dport,proto",
                Sticky::Src => "src",
                Sticky::SrcDst => "src,dst",
            };
            s.comment(&format!(
                "hash: HMARK hashes ({tuple}) into W = {total} slots (mark {HASH_MARK_BASE:#x} + slot); each"
            ));
            s.comment("uplink owns as many slots as its weight. The seed is fixed: the same key");
            s.comment("always takes the same uplink, across reloads too.");
            s.line(&format!(
                "{t} -t mangle -A XWAN_BALANCE -j HMARK --hmark-tuple {tuple} --hmark-mod {total} --hmark-offset {HASH_MARK_BASE:#x} --hmark-rnd {HASH_SEED:#x}"
            ));
            let mut slot = HASH_MARK_BASE;
            for (k, &w) in weights.iter().enumerate() {
                for _ in 0..w {
                    s.line(&format!(
                        "{t} -t mangle -A XWAN_BALANCE -m mark --mark {slot:#x} -g {}",
                        target(k)
                    ));
                    slot += 1;
                }
            }
        }
    }
}

/// sticky = src with nth / random: one `recent` list per uplink remembers the
/// sources recently balanced onto it.
pub(super) fn sticky_checks(s: &mut Script, config: &Config, family: &Family, tier: &[usize]) {
    let t = family.tables;
    let seconds = config.balance.sticky_timeout_s;
    s.comment("sticky = src, approximated with -m recent: a source balanced onto an uplink in the");
    s.comment(&format!(
        "last {seconds} s (counted from its last new connection, not its last packet) goes"
    ));
    s.comment("there again. Each list holds the kernel's ip_list_tot sources (100 unless the");
    s.comment("xt_recent module parameter says otherwise); older ones are forgotten.");
    for &i in tier {
        let n = uplink_number(i);
        let chain = sticky_chain(n);
        s.line(&format!("{t} -t mangle -N {chain}"));
        s.line(&format!(
            "{t} -t mangle -A {chain} -m recent --name {} --rsource --set",
            recent_list(family, n)
        ));
        s.line(&format!("{t} -t mangle -A {chain} -g {}", uplink_chain(n)));
    }
    for &i in tier {
        let n = uplink_number(i);
        s.line(&format!(
            "{t} -t mangle -A XWAN_BALANCE -m recent --name {} --rsource --update --seconds {seconds} -g {}",
            recent_list(family, n),
            uplink_chain(n)
        ));
    }
}
