//! Tests of the flow table: both keys of a flow, removal, expiry and limits.

use super::*;
use crate::flow::FlowKind;
use crate::packet::PROTO_UDP;
use proptest::prelude::*;

fn spec(host: u8, port: u16, remote: u8, outside_port: u16) -> FlowSpec {
    FlowSpec {
        protocol: PROTO_UDP,
        inside: Endpoint::new([192, 168, 50, host], port),
        outside: Endpoint::new([198, 18, 1, 2], outside_port),
        remote: Endpoint::new([203, 0, 113, remote], 53),
        uplink: 0,
        kind: FlowKind::Snat,
        lan_mac: [2, 0, 0, 0, 0, host],
    }
}

fn timeouts() -> Timeouts {
    Timeouts {
        tcp_established_s: 7440,
        tcp_transitory_s: 240,
        udp_s: 300,
        icmp_s: 60,
    }
}

#[test]
fn found_from_both_sides() {
    let table = FlowTable::new(100);
    let s = spec(10, 4000, 1, 20000);
    table.insert(s, 0, |_| ()).unwrap();
    assert_eq!(
        table.with_flow(Side::Lan, &s.lan_key(), |f| f.spec),
        Some(s)
    );
    assert_eq!(
        table.with_flow(Side::Wan, &s.wan_key(), |f| f.spec),
        Some(s)
    );
    // A LAN key is not found as a WAN key.
    assert_eq!(table.with_flow(Side::Wan, &s.lan_key(), |f| f.spec), None);
}

#[test]
fn refuses_when_full_and_recovers() {
    let table = FlowTable::new(3);
    for i in 0..3 {
        table
            .insert(spec(10, 4000 + i, 1, 20000 + i), 0, |_| ())
            .unwrap();
    }
    assert_eq!(
        table.insert(spec(11, 1, 1, 30000), 0, |_| ()),
        Err(InsertError::Full)
    );
    assert_eq!(table.stats().refusals, 1);
    assert_eq!(table.expire(301, &timeouts()).len(), 3);
    assert!(table.insert(spec(11, 1, 1, 30000), 301, |_| ()).is_ok());
}

#[test]
fn flows_to_one_endpoint_can_fill_the_whole_table() {
    // Every flow has the same remote endpoint, so all land in one shard,
    // which grows past its initial size up to the table's limit.
    let table = FlowTable::new(20_000);
    assert!(table.shards.len() > 1);
    for port in 1..=20_000u16 {
        let s = spec(1, port, 1, port);
        assert_eq!(table.insert(s, 0, |_| ()), Ok(s), "flow {port}");
    }
    assert_eq!(
        table.insert(spec(2, 1, 1, 30_000), 0, |_| ()),
        Err(InsertError::Full)
    );
    for port in (1..=20_000u16).step_by(997) {
        let s = spec(1, port, 1, port);
        assert!(table.with_flow(Side::Lan, &s.lan_key(), |_| ()).is_some());
        assert!(table.with_flow(Side::Wan, &s.wan_key(), |_| ()).is_some());
    }
    assert_eq!(table.expire(10_000, &timeouts()).len(), 20_000);
    assert!(table.is_empty());
}

/// The mean number of buckets a lookup of each key in `shard` reads.
fn mean_probe_length(shard: &Shard<Addr4>, hasher: &KeyHasher) -> f64 {
    let mut keys = 0;
    let mut probes = 0;
    for (at, &bucket) in shard.buckets.iter().enumerate() {
        if bucket == 0 {
            continue;
        }
        let (slot, side) = decode(bucket);
        let flow = shard.slab[slot].as_ref().expect("an indexed flow");
        let home = shard.home(hasher, side, &flow.spec.key(side));
        keys += 1;
        probes += (at.wrapping_sub(home) & shard.mask) + 1;
    }
    probes as f64 / f64::from(keys)
}

#[test]
fn keys_that_differ_in_ports_alone_spread_over_their_shard() {
    // Many flows to one endpoint (a DNS resolver): one shard, keys that
    // differ only in the inside and outside ports. Each fresh table has new
    // hash keys; every one must spread them (a quarter of the buckets in
    // use: about 1.16 buckets per lookup; the bare folded multiply gave
    // 1.8 to 4.4, and a clustered run now and then made one flow cost
    // hundreds of instructions more per packet).
    for _ in 0..8 {
        let table = FlowTable::new(65_536);
        for i in 0..2000u16 {
            let s = spec(10 + (i % 4) as u8, 30_000 + i, 1, 20_000 + i);
            assert_eq!(table.insert(s, 0, |_| ()), Ok(s));
        }
        let s = spec(10, 30_000, 1, 20_000);
        let shard = FlowTable::read(table.shard_of(s.protocol, &s.remote));
        assert_eq!(shard.live, 2000);
        let mean = mean_probe_length(&shard, &table.hasher);
        assert!(mean < 1.6, "{mean} buckets per lookup");
    }
}

#[test]
fn same_flow_twice_returns_the_first_and_clashes_are_refused() {
    let table = FlowTable::new(10);
    let s = spec(10, 4000, 1, 20000);
    assert_eq!(table.insert(s, 0, |_| ()), Ok(s));
    let mut again = s;
    again.lan_mac = [9; 6];
    assert_eq!(table.insert(again, 0, |_| ()), Ok(s));
    assert_eq!(table.len(), 1);
    // Another inside endpoint on the same outside tuple clashes.
    assert_eq!(
        table.insert(spec(11, 4000, 1, 20000), 0, |_| ()),
        Err(InsertError::Clash)
    );
}

proptest! {
    /// Whatever the order of inserts and removals, every live flow is found
    /// from both sides and removed flows are gone (the index stays intact
    /// through backward-shift deletion). A table of 8 flows has 32 buckets,
    /// half of them in use when full: a flow's two keys often end their
    /// searches at the same empty bucket.
    #[test]
    fn index_stays_consistent(
        max_flows in prop::sample::select(vec![8u32, 64]),
        ops in proptest::collection::vec((0u8..40, any::<bool>()), 1..300),
    ) {
        let table = FlowTable::new(max_flows);
        let mut live = std::collections::HashSet::new();
        for (n, insert) in ops {
            let s = spec(n, 1000 + u16::from(n), n % 3, 20000 + u16::from(n));
            if insert {
                if table.insert(s, 0, |_| ()).is_ok() {
                    live.insert(n);
                }
            } else if live.remove(&n) {
                let removed: Vec<FlowSpec> =
                    table.remove_where(|f| f.spec == s).iter().map(|r| r.spec).collect();
                prop_assert_eq!(removed, vec![s]);
            }
            for m in 0u8..40 {
                let s = spec(m, 1000 + u16::from(m), m % 3, 20000 + u16::from(m));
                let found = table.with_flow(Side::Lan, &s.lan_key(), |_| ()).is_some();
                prop_assert_eq!(found, live.contains(&m));
                let found = table.with_flow(Side::Wan, &s.wan_key(), |_| ()).is_some();
                prop_assert_eq!(found, live.contains(&m));
            }
            prop_assert_eq!(table.len() as usize, live.len());
        }
    }

    /// Expiry never removes a flow younger than its timer.
    #[test]
    fn expiry_respects_timers(idle in proptest::collection::vec(0u32..700, 1..50)) {
        let table = FlowTable::new(1000);
        let now = 1000;
        for (i, age) in idle.iter().enumerate() {
            table.insert(spec(1, i as u16, 1, 20000 + i as u16), now - age, |_| ()).unwrap();
        }
        let removed = table.expire(now, &timeouts());
        for r in removed {
            let age = idle[usize::from(r.spec.inside.port)];
            prop_assert!(age > 300, "removed a flow idle for {age} s");
        }
        prop_assert_eq!(table.len() as usize, idle.iter().filter(|a| **a <= 300).count());
    }
}

#[test]
fn saved_flows_come_back_with_their_state_and_times() {
    let table = FlowTable::new(100);
    let s = spec(10, 4000, 1, 20000);
    table.insert(s, 100, |_| ()).unwrap();
    table.with_flow(Side::Lan, &s.lan_key(), |f| {
        FlowTable::touch(f, Side::Wan, 60, 130, true, tcp_state::SYN_FROM_WAN);
        FlowTable::track_seq_to_lan(f, 1000, 10);
    });
    let saved = table.save(150);
    assert_eq!(saved.len(), 1);
    assert_eq!((saved[0].age_s, saved[0].idle_s), (50, 20));
    assert_eq!(saved[0].next_seq_to_lan, 1010);

    let other = FlowTable::new(100);
    other.restore(&saved[0], 5000).unwrap();
    assert_eq!(other.save(5000), saved);
    assert_eq!(other.restore(&saved[0], 5000), Err(InsertError::Clash));
    // A clock younger than the offsets starts them at its zero.
    let young = FlowTable::new(100);
    young.restore(&saved[0], 10).unwrap();
    assert_eq!(young.save(10)[0].idle_s, 10);
}

#[test]
fn early_drop_evicts_unanswered_oldest_first_never_answered() {
    let table = FlowTable::new(8);
    // Two answered UDP flows, then six unanswered.
    for i in 0..8u16 {
        let s = spec(10, 4000 + i, 1, 20000 + i);
        table.insert(s, 0, |_| ()).unwrap();
        if i < 2 {
            table.with_flow(Side::Wan, &s.wan_key(), |f| {
                FlowTable::touch(f, Side::Wan, 60, 0, true, 0)
            });
        }
    }
    assert_eq!(
        table.insert(spec(10, 5000, 1, 21000), 0, |_| ()),
        Err(InsertError::Full)
    );
    let evicted = table.evict_unanswered(0, 2);
    let ports: Vec<u16> = evicted.iter().map(|r| r.spec.inside.port).collect();
    assert_eq!(ports, [4002, 4003], "the two oldest unanswered");
    assert_eq!(table.len(), 6);
    assert_eq!(table.stats().evictions, 2);
    let all = table.evict_unanswered(0, 100);
    assert_eq!(all.len(), 4);
    assert!(table
        .with_flow(Side::Lan, &spec(10, 4000, 1, 20000).lan_key(), |_| ())
        .is_some());
    // Only answered flows left: nothing to evict, and the next call in the
    // same second does not scan again.
    assert!(table.evict_unanswered(0, 1).is_empty());
    assert_eq!(table.len(), 2);
}

#[test]
fn established_tcp_is_never_evicted_but_a_lone_syn_is() {
    let table = FlowTable::new(2);
    let mut established = spec(10, 4000, 1, 20000);
    established.protocol = crate::packet::PROTO_TCP;
    let mut syn = spec(10, 4001, 1, 20001);
    syn.protocol = crate::packet::PROTO_TCP;
    table.insert(established, 0, |_| ()).unwrap();
    table.insert(syn, 0, |_| ()).unwrap();
    table.with_flow(Side::Lan, &established.lan_key(), |f| {
        FlowTable::touch(f, Side::Lan, 60, 0, true, tcp_state::SYN_FROM_LAN);
        FlowTable::touch(f, Side::Wan, 60, 0, true, tcp_state::SYN_FROM_WAN);
    });
    let evicted = table.evict_unanswered(1, 2);
    assert_eq!(evicted.len(), 1);
    assert_eq!(evicted[0].spec, syn);
}

/// IPv4 flows pay nothing for IPv6: the table is instantiated per family,
/// and an IPv4 flow keeps the size it had before IPv6 (a 14-byte key; the
/// slab entry of 88 bytes); an IPv6 flow's is 128 bytes (its three
/// 16-byte addresses).
#[test]
fn an_ipv4_flow_keeps_its_size_and_an_ipv6_flow_costs_its_addresses() {
    use crate::packet::Addr6;
    assert_eq!(std::mem::size_of::<FlowKey<Addr4>>(), 14);
    assert_eq!(std::mem::size_of::<FlowKey<Addr6>>(), 38);
    assert_eq!(std::mem::size_of::<Option<Flow<Addr4>>>(), 88);
    assert_eq!(std::mem::size_of::<Option<Flow<Addr6>>>(), 128);
}
