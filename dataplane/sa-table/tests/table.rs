//! Single-process behaviour of the table: install/update/delete, lookups, rekey,
//! journal overflow and rebuild, layout refusal, repair, slot reuse, counters.

mod common;

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::{consistent, inbound, outbound, outbound_ts, TablePath};
use sa_table::{
    AttachError, Change, InboundMatch, ReadError, Reader, SaFlags, SaId, TableConfig, WriteError,
    Writer, BYTES_PER_SA,
};

fn cfg(capacity: u32, journal_len: u32) -> TableConfig {
    TableConfig {
        capacity,
        journal_len,
        instance_id: 7,
        ..TableConfig::default()
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn installs_an_inbound_sa_and_a_reader_finds_it_by_spi() {
    let t = TablePath::new("installs_inbound");
    let mut w = Writer::create(t.path(), &cfg(64, 64)).unwrap();
    let mut r = Reader::attach(t.path()).unwrap();
    assert_eq!(r.instance_id(), 7);
    let id = w.install(&inbound(0x1000, 1)).unwrap();
    assert_eq!(
        r.lookup_inbound_spi(0x1000),
        None,
        "not visible before a poll"
    );
    let mut seen = Vec::new();
    let stats = r.poll_changes(|c| {
        if let Change::Upsert { id, params } = c {
            seen.push((id, params.spi));
        }
    });
    assert_eq!(stats.entries, 1);
    assert_eq!(seen, vec![(id, 0x1000)]);
    assert_eq!(r.lookup_inbound_spi(0x1000), Some(id));
    assert_eq!(
        r.lookup_inbound(0x1000, ip("198.51.100.7"), ip("192.0.2.1")),
        Some(id)
    );
    assert_eq!(r.lookup_inbound_spi(0x1001), None);
    let copy = r.read(id).unwrap();
    assert!(consistent(&copy));
    assert_eq!(copy.spi, 0x1000);
}

#[test]
fn outbound_lookup_takes_the_longest_matching_prefix_v4_and_v6() {
    let t = TablePath::new("outbound_lpm");
    let mut w = Writer::create(t.path(), &cfg(64, 64)).unwrap();
    let default = w.install(&outbound(0x2000, 1, "0.0.0.0/0")).unwrap();
    let net16 = w.install(&outbound(0x2001, 2, "10.1.0.0/16")).unwrap();
    let net24 = w.install(&outbound(0x2002, 3, "10.1.2.0/24")).unwrap();
    let host = w.install(&outbound(0x2003, 4, "10.1.2.3/32")).unwrap();
    let v6 = w.install(&outbound(0x2004, 5, "2001:db8::/32")).unwrap();
    let v6host = w.install(&outbound(0x2005, 6, "2001:db8::1/128")).unwrap();
    let mut r = Reader::attach(t.path()).unwrap();
    let v4 = |s: &str| r.lookup_outbound_v4(s.parse::<Ipv4Addr>().unwrap());
    assert_eq!(v4("10.1.2.3"), Some(host));
    assert_eq!(v4("10.1.2.4"), Some(net24));
    assert_eq!(v4("10.1.3.4"), Some(net16));
    assert_eq!(v4("8.8.8.8"), Some(default));
    assert_eq!(r.lookup_outbound(ip("2001:db8::1")), Some(v6host));
    assert_eq!(
        r.lookup_outbound_v6("2001:db8::2".parse::<Ipv6Addr>().unwrap()),
        Some(v6)
    );
    assert_eq!(r.lookup_outbound(ip("2001:db9::1")), None);
    w.delete(net24).unwrap();
    r.poll_changes(|_| {});
    assert_eq!(r.lookup_outbound(ip("10.1.2.4")), Some(net16));
    assert_eq!(r.lookup_outbound(ip("10.1.2.3")), Some(host));
}

#[test]
fn outbound_sa_without_served_prefixes_is_keyed_by_its_remote_selector_range() {
    let t = TablePath::new("outbound_ts");
    let mut w = Writer::create(t.path(), &cfg(64, 64)).unwrap();
    // 10.0.0.5 - 10.0.0.20 is not a prefix: it is covered by 5/32, 6/31, 8/29, 16/30, 20/32.
    let id = w
        .install(&outbound_ts(0x3000, 1, "10.0.0.5", "10.0.0.20"))
        .unwrap();
    let r = Reader::attach(t.path()).unwrap();
    for host in 0..=30u8 {
        let got = r.lookup_outbound_v4(Ipv4Addr::new(10, 0, 0, host));
        assert_eq!(got.is_some(), (5..=20).contains(&host), "10.0.0.{host}");
        if let Some(g) = got {
            assert_eq!(g, id);
        }
    }
    let p = r.read(id).unwrap();
    assert!(
        p.selectors_match(ip("10.9.9.9"), ip("10.0.0.7"), 6, 1234, 80) || p.ts_local().is_empty()
    );
    assert!(p.ts_remote()[0].contains(ip("10.0.0.20"), 17, 53));
    assert!(!p.ts_remote()[0].contains(ip("10.0.0.21"), 17, 53));
}

#[test]
fn group_sa_lookup_prefers_spi_dst_src_then_spi_dst_then_spi() {
    let t = TablePath::new("group_lookup");
    let mut w = Writer::create(t.path(), &cfg(64, 64)).unwrap();
    // RFC 5374 §5.2: a GCKS-chosen group SPI may collide with a unicast SPI.
    let unicast = w.install(&inbound(0x4000, 1)).unwrap();
    let mut asm = inbound(0x4000, 2);
    asm.inbound_match = InboundMatch::SPI_DST;
    asm.set_outer(ip("0.0.0.0"), ip("233.252.0.1"));
    asm.sender_id_bits = 16;
    asm.sender_id = 0x1234;
    let asm = w.install(&asm).unwrap();
    let mut ssm = inbound(0x4000, 3);
    ssm.inbound_match = InboundMatch::SPI_DST_SRC;
    ssm.set_outer(ip("192.0.2.99"), ip("233.252.0.1"));
    let ssm = w.install(&ssm).unwrap();
    let mut r = Reader::attach(t.path()).unwrap();
    assert_eq!(
        r.lookup_inbound(0x4000, ip("233.252.0.1"), ip("192.0.2.99")),
        Some(ssm)
    );
    assert_eq!(
        r.lookup_inbound(0x4000, ip("233.252.0.1"), ip("192.0.2.98")),
        Some(asm)
    );
    assert_eq!(
        r.lookup_inbound(0x4000, ip("198.51.100.7"), ip("192.0.2.1")),
        Some(unicast)
    );
    assert_eq!(r.read(asm).unwrap().sender_id, 0x1234);
    // The same group key twice is refused; the same SPI with another key is not.
    let mut dup = inbound(0x4000, 4);
    dup.inbound_match = InboundMatch::SPI_DST;
    dup.set_outer(ip("0.0.0.0"), ip("233.252.0.1"));
    assert!(matches!(
        w.install(&dup),
        Err(WriteError::DuplicateInbound { spi: 0x4000, .. })
    ));
    w.delete(unicast).unwrap();
    w.delete(ssm).unwrap();
    r.poll_changes(|_| {});
    assert_eq!(
        r.lookup_inbound(0x4000, ip("233.252.0.1"), ip("192.0.2.99")),
        Some(asm)
    );
    assert_eq!(
        r.lookup_inbound(0x4000, ip("198.51.100.7"), ip("192.0.2.1")),
        None
    );
    w.delete(asm).unwrap();
    r.poll_changes(|_| {});
    assert_eq!(
        r.lookup_inbound(0x4000, ip("233.252.0.1"), ip("192.0.2.99")),
        None
    );
    assert_eq!(r.index_sizes(), (0, 0, 0, 0));
}

#[test]
fn delete_zeroes_the_key_in_the_file_and_removes_the_sa_from_indexes() {
    let t = TablePath::new("delete_zeroes");
    let mut w = Writer::create(t.path(), &cfg(16, 16)).unwrap();
    let mut r = Reader::attach(t.path()).unwrap();
    let id = w.install(&inbound(0x5000, 99)).unwrap();
    let key = common::derived_key(0x5000, 99);
    let file_has_key = || {
        let mut bytes = Vec::new();
        std::fs::File::open(t.path())
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        bytes.windows(32).any(|win| win == key)
    };
    assert!(file_has_key());
    r.poll_changes(|_| {});
    w.delete(id).unwrap();
    assert!(!file_has_key(), "key bytes must not survive a delete");
    let mut removed = Vec::new();
    r.poll_changes(|c| {
        if let Change::Removed { id } = c {
            removed.push(id);
        }
    });
    assert_eq!(removed, vec![id]);
    assert_eq!(r.lookup_inbound_spi(0x5000), None);
    assert_eq!(r.read(id), Err(ReadError::Gone));
    assert_eq!(w.delete(id), Err(WriteError::Stale(id)));
}

#[test]
fn rekey_makes_the_new_inbound_live_first_and_switches_outbound_at_one_entry() {
    let t = TablePath::new("rekey");
    let mut w = Writer::create(t.path(), &cfg(64, 64)).unwrap();
    let old_in = w.install(&inbound(0x6000, 1)).unwrap();
    let old_out = w.install(&outbound(0x6001, 1, "10.9.0.0/16")).unwrap();
    let mut r = Reader::attach(t.path()).unwrap();
    let gen0 = r.generation();
    let new = w
        .rekey(
            old_out,
            &inbound(0x6002, 2),
            &outbound(0x6003, 2, "10.9.0.0/16"),
        )
        .unwrap();
    // Replay the journal one entry at a time through fresh readers is not possible;
    // instead check the order of changes a following reader sees.
    let mut order = Vec::new();
    r.poll_changes(|c| match c {
        Change::Upsert { params, .. } => order.push(format!("+{:#x}", params.spi)),
        Change::Removed { id } => order.push(format!("-{}", id.slot())),
    });
    assert_eq!(
        order,
        vec![
            "+0x6002".to_string(),
            "+0x6003".into(),
            format!("-{}", old_out.slot())
        ]
    );
    assert_eq!(r.generation(), gen0 + 3);
    assert_eq!(r.lookup_outbound(ip("10.9.1.1")), Some(new.outbound));
    assert_eq!(
        r.lookup_inbound_spi(0x6000),
        Some(old_in),
        "old inbound stays for in-flight packets"
    );
    assert_eq!(r.lookup_inbound_spi(0x6002), Some(new.inbound));
    w.delete(old_in).unwrap();
    r.poll_changes(|_| {});
    assert_eq!(r.lookup_inbound_spi(0x6000), None);
}

#[test]
fn between_the_new_outbound_install_and_the_old_delete_readers_already_use_the_new_sa() {
    let t = TablePath::new("rekey_switch_point");
    let mut w = Writer::create(t.path(), &cfg(64, 64)).unwrap();
    let old_out = w.install(&outbound(0x6101, 1, "10.8.0.0/16")).unwrap();
    let new_out = w.install(&outbound(0x6103, 2, "10.8.0.0/16")).unwrap();
    // A reader attaching at the switch point (both live) must pick the newest.
    let r = Reader::attach(t.path()).unwrap();
    assert_eq!(r.lookup_outbound(ip("10.8.0.1")), Some(new_out));
    w.delete(old_out).unwrap();
    let r2 = Reader::attach(t.path()).unwrap();
    assert_eq!(r2.lookup_outbound(ip("10.8.0.1")), Some(new_out));
}

#[test]
fn update_changes_parameters_in_place_and_keeps_the_id_and_counters() {
    let t = TablePath::new("update");
    let mut w = Writer::create(t.path(), &cfg(16, 16)).unwrap();
    let mut r = Reader::attach(t.path()).unwrap();
    let id = w.install(&outbound(0x7000, 1, "10.7.0.0/16")).unwrap();
    r.poll_changes(|_| {});
    r.state(id).unwrap().add_traffic(3, 300);
    let mut p = outbound(0x7000, 1, "10.7.0.0/16");
    p.lifetime.hard_bytes = 1 << 30;
    w.update(id, &p).unwrap();
    let mut ups = 0;
    r.poll_changes(|c| {
        if let Change::Upsert { id: got, params } = c {
            assert_eq!(got, id);
            assert_eq!(params.lifetime.hard_bytes, 1 << 30);
            ups += 1;
        }
    });
    assert_eq!(ups, 1);
    assert_eq!(w.state(id).unwrap().pkts(), 3);
    assert_eq!(w.state(id).unwrap().bytes(), 300);
}

#[test]
fn install_refuses_invalid_sas_and_leaves_the_table_unchanged() {
    let t = TablePath::new("invalid");
    let mut w = Writer::create(t.path(), &cfg(16, 16)).unwrap();
    let mut bad_key = inbound(0x8000, 1);
    bad_key.transform = sa_table::TransformId::CHACHA20_POLY1305;
    bad_key.key_len = 16;
    assert!(matches!(w.install(&bad_key), Err(WriteError::Invalid(_))));
    assert!(matches!(
        w.install(&inbound(255, 1)),
        Err(WriteError::Invalid(_))
    ));
    let mut window = inbound(0x8001, 1);
    window.replay_window_pkts = 8192;
    assert!(matches!(w.install(&window), Err(WriteError::Invalid(_))));
    let mut esn_group = inbound(0x8002, 1);
    esn_group.inbound_match = InboundMatch::SPI_DST;
    esn_group.flags = SaFlags::ESN;
    assert!(matches!(w.install(&esn_group), Err(WriteError::Invalid(_))));
    let mut sid = inbound(0x8003, 1);
    sid.sender_id_bits = 8;
    sid.sender_id = 256;
    assert!(matches!(w.install(&sid), Err(WriteError::Invalid(_))));
    let mut seq0 = outbound(0x8005, 1, "10.0.0.0/8");
    seq0.initial_seq = 0;
    assert!(matches!(w.install(&seq0), Err(WriteError::Invalid(_))));
    w.install(&inbound(0x8004, 1)).unwrap();
    assert!(matches!(
        w.install(&inbound(0x8004, 2)),
        Err(WriteError::DuplicateInbound { spi: 0x8004, .. })
    ));
    assert_eq!(w.live_count(), 1);
    assert_eq!(w.generation(), 1);
}

#[test]
fn a_reader_lapped_by_the_journal_rebuilds_to_what_following_it_would_give() {
    let t = TablePath::new("lapped");
    let mut w = Writer::create(t.path(), &cfg(512, 8)).unwrap();
    let mut follower = Reader::attach(t.path()).unwrap();
    let mut laggard = Reader::attach(t.path()).unwrap();
    let mut live: Vec<(SaId, u32)> = Vec::new();
    let mut x: u64 = 0x1234_5678;
    let mut rebuilt = 0;
    for step in 0..3000u32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if live.len() < 200 && (x & 3 != 0 || live.is_empty()) {
            let spi = 0x10_0000 + step;
            let p = if x & 8 == 0 {
                inbound(spi, 1)
            } else {
                outbound(spi, 1, &format!("10.{}.{}.0/24", step >> 8, step & 0xff))
            };
            match w.install(&p) {
                Ok(id) => live.push((id, spi)),
                Err(WriteError::TableFull { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        } else {
            let (id, _) = live.swap_remove((x as usize / 7) % live.len());
            w.delete(id).unwrap();
        }
        // The follower polls every 4 changes (journal of 8: never lapped).
        if step % 4 == 3 {
            assert!(!follower.poll_changes(|_| {}).rebuilt);
        }
        // The laggard polls rarely and is lapped.
        if step % 97 == 96 {
            if laggard.poll_changes(|_| {}).rebuilt {
                rebuilt += 1;
            }
            follower.poll_changes(|_| {});
            let a: Vec<SaId> = follower.known_ids().collect();
            let b: Vec<SaId> = laggard.known_ids().collect();
            assert_eq!(a, b, "step {step}");
            assert_eq!(follower.index_sizes(), laggard.index_sizes());
            for &(id, spi) in &live {
                let by_spi = follower.lookup_inbound_spi(spi);
                assert_eq!(by_spi, laggard.lookup_inbound_spi(spi));
                assert!(by_spi.is_none() || by_spi == Some(id));
            }
        }
    }
    assert!(
        rebuilt > 10,
        "the laggard must have been lapped repeatedly ({rebuilt})"
    );
    assert!(laggard.stats().rebuilds as usize > 10);
}

#[test]
fn reader_tracks_a_random_workload_exactly() {
    let t = TablePath::new("model_workload");
    let mut w = Writer::create(t.path(), &cfg(300, 32)).unwrap();
    let mut r = Reader::attach(t.path()).unwrap();
    let mut model: HashMap<SaId, sa_table::SaParams> = HashMap::new();
    let mut x: u64 = 99;
    for step in 0..20_000u32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let ids: Vec<SaId> = model.keys().copied().collect();
        match x % 5 {
            0..=2 if model.len() < 250 => {
                let spi = 0x20_0000 + step;
                let p = if x & 32 == 0 {
                    inbound(spi, u64::from(step))
                } else {
                    outbound(spi, u64::from(step), &format!("172.16.{}.0/24", step % 256))
                };
                if let Ok(id) = w.install(&p) {
                    model.insert(id, p);
                }
            }
            3 if !ids.is_empty() => {
                let id = ids[(x as usize >> 8) % ids.len()];
                let mut p = model[&id];
                p.lifetime.soft_bytes = x;
                w.update(id, &p).unwrap();
                model.insert(id, p);
            }
            _ if !ids.is_empty() => {
                let id = ids[(x as usize >> 8) % ids.len()];
                w.delete(id).unwrap();
                model.remove(&id);
            }
            _ => {}
        }
        if x & 0x700 == 0 {
            r.poll_changes(|_| {});
            let mut known: Vec<SaId> = r.known_ids().collect();
            let mut want: Vec<SaId> = model.keys().copied().collect();
            known.sort();
            want.sort();
            assert_eq!(known, want, "step {step}");
            for (id, p) in &model {
                let got = r.read(*id).unwrap();
                assert_eq!(got.lifetime, p.lifetime);
                assert!(consistent(&got));
                if p.direction == sa_table::Direction::INBOUND {
                    assert_eq!(r.lookup_inbound_spi(p.spi), Some(*id));
                }
            }
            // Several SAs share each /24 here: the newest install serves it.
            for third in 0..=255u8 {
                let want = model
                    .iter()
                    .filter(|(_, p)| {
                        p.direction == sa_table::Direction::OUTBOUND && p.served[0].addr[2] == third
                    })
                    .map(|(id, _)| *id)
                    .max_by_key(|id| id.install_gen());
                assert_eq!(
                    r.lookup_outbound(IpAddr::V4(Ipv4Addr::new(172, 16, third, 9))),
                    want,
                    "step {step}"
                );
            }
        }
    }
}

#[test]
fn a_freed_slot_is_not_reused_until_every_reader_has_seen_the_delete() {
    let t = TablePath::new("reuse");
    let mut w = Writer::create(t.path(), &cfg(2, 16)).unwrap();
    let mut r = Reader::attach(t.path()).unwrap();
    let a = w.install(&inbound(0x9000, 1)).unwrap();
    let _b = w.install(&inbound(0x9001, 1)).unwrap();
    r.poll_changes(|_| {});
    w.delete(a).unwrap();
    match w.install(&inbound(0x9002, 1)) {
        Err(WriteError::TableFull {
            capacity: 2,
            quarantined: 1,
        }) => {}
        other => panic!("slot reused under a reader: {other:?}"),
    }
    r.poll_changes(|_| {});
    let c = w.install(&inbound(0x9002, 1)).unwrap();
    assert_eq!(c.slot(), a.slot());
    assert_ne!(c, a);
    assert_eq!(
        r.read(a),
        Err(ReadError::Gone),
        "a stale id never reads the new occupant"
    );
    // A dropped reader no longer pins anything.
    r.poll_changes(|_| {});
    w.delete(c).unwrap();
    drop(r);
    w.install(&inbound(0x9003, 1)).unwrap();
}

const IKE_TAG: u64 = 0x494b << 48;
const STAT_TAG: u64 = 0x5354_4154 << 32;

#[test]
fn two_writers_share_the_table_and_each_catches_up_with_the_others_changes() {
    let t = TablePath::new("two_writers");
    let mut ike = Writer::create(t.path(), &cfg(16, 16)).unwrap();
    let (mut stat, report) = Writer::open(t.path(), &cfg(16, 16)).unwrap();
    assert_eq!(report.writer_epoch, 2);
    let mut r = Reader::attach(t.path()).unwrap();
    let a = ike.install(&inbound(0x9100, IKE_TAG | 1)).unwrap();
    let b = stat.install(&inbound(0x9200, STAT_TAG | 1)).unwrap();
    assert_ne!(a.slot(), b.slot(), "the second writer took the first one's slot");
    let c = ike.install(&outbound(0x9101, IKE_TAG | 1, "10.91.0.0/16")).unwrap();
    assert!(c.slot() != b.slot() && c.slot() != a.slot());
    stat.delete(b).unwrap();
    let d = stat.install(&outbound(0x9201, STAT_TAG | 2, "10.92.0.0/16")).unwrap();
    assert!(d.slot() != a.slot() && d.slot() != c.slot());
    // Both writers see every live SA, whoever installed it.
    ike.refresh().unwrap();
    let ids = |w: &Writer| w.live().map(|(id, p)| (id, p.spi)).collect::<Vec<_>>();
    assert_eq!(ids(&ike), ids(&stat));
    assert_eq!(ike.live_count(), 3);
    assert_eq!(ike.generation(), stat.generation());
    // The journal told each writer what the other did; nothing was rescanned.
    for w in [&ike, &stat] {
        let s = w.stats();
        assert!(s.catch_ups >= 1 && s.caught_up_entries >= 1, "{s:?}");
        assert_eq!(s.rescans, 0, "{s:?}");
    }
    r.poll_changes(|_| {});
    assert_eq!(r.lookup_inbound_spi(0x9100), Some(a));
    assert_eq!(r.lookup_inbound_spi(0x9200), None);
    assert_eq!(r.lookup_outbound_v4(Ipv4Addr::new(10, 92, 1, 1)), Some(d));
    // An inbound key is unique across writers too.
    assert!(matches!(
        stat.install(&inbound(0x9100, STAT_TAG | 3)),
        Err(WriteError::DuplicateInbound { spi: 0x9100, existing }) if existing == a
    ));
}

#[test]
fn a_writer_waits_for_another_writers_transaction_at_most_its_lock_wait() {
    let t = TablePath::new("lock_wait");
    let mut first = Writer::create(t.path(), &cfg(16, 16)).unwrap();
    let (mut second, _) = Writer::open(t.path(), &cfg(16, 16)).unwrap();
    second.set_lock_wait(std::time::Duration::from_millis(30));
    let held = first.lock().unwrap();
    let start = std::time::Instant::now();
    match second.install(&inbound(0x9300, 1)) {
        Err(WriteError::Busy { pid }) => assert_eq!(pid, u64::from(std::process::id())),
        other => panic!("installed while another writer held the table: {other:?}"),
    }
    let waited = start.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(30) && waited < std::time::Duration::from_secs(1),
        "waited {waited:?}"
    );
    // An attach waits the same way.
    let slow = TableConfig {
        lock_wait: std::time::Duration::from_millis(10),
        ..cfg(16, 16)
    };
    assert!(matches!(
        Writer::open(t.path(), &slow),
        Err(AttachError::WriterBusy { .. })
    ));
    drop(held);
    let id = second.install(&inbound(0x9300, 1)).unwrap();
    assert_eq!(second.stats().lock_waits, 1);
    first.refresh().unwrap();
    assert_eq!(first.get(id).unwrap().spi, 0x9300, "the table was unchanged by the refusal");
    assert_eq!(first.live_count(), 1);
}

#[test]
fn a_writer_repairs_after_another_writer_died_inside_its_transaction() {
    let t = TablePath::new("dead_txn");
    let mut ike = Writer::create(t.path(), &cfg(16, 16)).unwrap();
    let (mut stat, _) = Writer::open(t.path(), &cfg(16, 16)).unwrap();
    let keep = stat.install(&inbound(0x9400, STAT_TAG | 1)).unwrap();
    let victim = ike.install(&inbound(0x9401, IKE_TAG | 1)).unwrap();
    let mut r = Reader::attach(t.path()).unwrap();
    // esprit-ike is killed halfway through rewriting a slot, lock held.
    ike.abandon_write_midway(victim, 0x4242_4242_4242_4242);
    drop(ike);
    assert_eq!(r.read(victim), Err(ReadError::Busy));
    // The surviving writer's next transaction finds the mark and repairs.
    stat.install(&inbound(0x9402, STAT_TAG | 2)).unwrap();
    let s = stat.stats();
    assert_eq!(s.dead_writer_repairs, 1, "{s:?}");
    assert!(stat.get(victim).is_err(), "the torn slot was freed");
    assert_eq!(stat.get(keep).unwrap().spi, 0x9400);
    r.poll_changes(|_| {});
    assert_eq!(r.read(victim), Err(ReadError::Gone));
    assert_eq!(r.lookup_inbound_spi(0x9401), None);
    assert_eq!(r.lookup_inbound_spi(0x9400), Some(keep));
    // A write the dead writer made but never published is published by the
    // next transaction, whoever runs it.
    let (mut ike, _) = Writer::open(t.path(), &cfg(16, 16)).unwrap();
    let mine = ike.install(&inbound(0x9403, IKE_TAG | 2)).unwrap();
    let mut p = inbound(0x9403, IKE_TAG | 2);
    p.lifetime.hard_pkts = 99;
    ike.write_unpublished(mine, &p);
    drop(ike);
    stat.refresh().unwrap();
    assert_eq!(stat.stats().dead_writer_repairs, 2);
    assert_eq!(stat.get(mine).unwrap().lifetime.hard_pkts, 99);
    let mut got = 0;
    r.poll_changes(|c| {
        if let Change::Upsert { params, .. } = c {
            got = params.lifetime.hard_pkts;
        }
    });
    assert_eq!(got, 99);
}

#[test]
fn a_writer_lapped_by_the_others_changes_rescans_the_slots() {
    let t = TablePath::new("lapped_writer");
    let mut ike = Writer::create(t.path(), &cfg(16, 4)).unwrap();
    let (mut stat, _) = Writer::open(t.path(), &cfg(16, 4)).unwrap();
    let mut ids = Vec::new();
    for i in 0..6u32 {
        ids.push(ike.install(&inbound(0x9500 + i, IKE_TAG | 1)).unwrap());
    }
    ike.delete(ids[0]).unwrap();
    let s = stat.install(&inbound(0x9600, STAT_TAG | 1)).unwrap();
    assert!(ids.iter().skip(1).all(|id| id.slot() != s.slot()));
    let st = stat.stats();
    assert_eq!((st.catch_ups, st.rescans), (1, 1), "{st:?}");
    assert_eq!(stat.live_count(), 6);
    ike.refresh().unwrap();
    assert_eq!(ike.stats().rescans, 0, "one entry behind: the journal holds it");
    assert_eq!(ike.live_count(), 6);
}

#[test]
fn a_writer_restricted_to_its_cookie_tag_cannot_touch_the_others_sas() {
    let t = TablePath::new("owner");
    let mut ike = Writer::create(t.path(), &cfg(16, 16)).unwrap();
    ike.restrict_to_cookies(0xffff << 48, IKE_TAG);
    let (mut stat, _) = Writer::open(t.path(), &cfg(16, 16)).unwrap();
    stat.restrict_to_cookies(0xffff_ffff << 32, STAT_TAG);
    let s = stat.install(&inbound(0x9700, STAT_TAG | 1)).unwrap();
    let i = ike.install(&inbound(0x9701, IKE_TAG | 1)).unwrap();
    assert_eq!(
        ike.install(&inbound(0x9702, STAT_TAG | 2)),
        Err(WriteError::NotOwner { cookie: STAT_TAG | 2 })
    );
    ike.refresh().unwrap();
    assert_eq!(ike.delete(s), Err(WriteError::NotOwner { cookie: STAT_TAG | 1 }));
    let mut p = stat.get(s).unwrap();
    p.lifetime.hard_pkts = 5;
    assert!(matches!(ike.update(s, &p), Err(WriteError::NotOwner { .. })));
    assert!(matches!(stat.delete(i), Err(WriteError::NotOwner { .. })));
    stat.delete(s).unwrap();
    ike.delete(i).unwrap();
}

#[test]
fn a_slot_one_writer_freed_waits_for_the_readers_before_the_other_writer_reuses_it() {
    let t = TablePath::new("reuse_two_writers");
    let mut ike = Writer::create(t.path(), &cfg(2, 16)).unwrap();
    let (mut stat, _) = Writer::open(t.path(), &cfg(2, 16)).unwrap();
    let mut r = Reader::attach(t.path()).unwrap();
    let a = ike.install(&inbound(0x9800, 1)).unwrap();
    stat.install(&inbound(0x9801, 1)).unwrap();
    r.poll_changes(|_| {});
    ike.delete(a).unwrap();
    assert!(matches!(
        stat.install(&inbound(0x9802, 1)),
        Err(WriteError::TableFull { quarantined: 1, .. })
    ));
    r.poll_changes(|_| {});
    let c = stat.install(&inbound(0x9802, 1)).unwrap();
    assert_eq!(c.slot(), a.slot());
    assert!(matches!(ike.install(&inbound(0x9803, 1)), Err(WriteError::TableFull { .. })));
}

#[test]
fn attaching_a_table_of_another_layout_says_what_differs() {
    let t = TablePath::new("layout");
    drop(Writer::create(t.path(), &cfg(16, 16)).unwrap());
    // Header words: magic, layout_version, layout_hash, header_bytes, slot_bytes, …
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(t.path())
        .unwrap();
    f.seek(SeekFrom::Start(8 * 2)).unwrap();
    f.write_all(&0xdead_beefu64.to_le_bytes()).unwrap();
    f.seek(SeekFrom::Start(8 * 4)).unwrap();
    f.write_all(&640u64.to_le_bytes()).unwrap();
    drop(f);
    let err = match Reader::attach(t.path()) {
        Err(e) => e,
        Ok(_) => panic!("attached a table of another layout"),
    };
    let msg = err.to_string();
    assert!(
        msg.contains("layout_hash") && msg.contains("0xdeadbeef"),
        "{msg}"
    );
    assert!(
        msg.contains("slot_bytes: this build 0x200, table 0x280"),
        "{msg}"
    );
    assert!(!msg.contains("layout_version"), "{msg}");
    assert!(matches!(
        Writer::reattach(t.path()),
        Err(AttachError::LayoutMismatch(_))
    ));
    std::fs::write(
        t.path(),
        b"not a table at all, just text.....................................",
    )
    .unwrap();
    assert!(matches!(
        Reader::attach(t.path()),
        Err(AttachError::NotATable { .. }) | Err(AttachError::TooShort { .. })
    ));
}

#[test]
fn a_torn_slot_is_skipped_by_readers_and_repaired_by_the_next_writer() {
    let t = TablePath::new("torn");
    // Two slots: after the repair, the only free one is the repaired one.
    let mut w = Writer::create(t.path(), &cfg(2, 16)).unwrap();
    let keep = w.install(&inbound(0xa000, 1)).unwrap();
    let victim = w.install(&inbound(0xa001, 1)).unwrap();
    let mut r = Reader::attach(t.path()).unwrap();
    w.abandon_write_midway(victim, 0x4141_4141_4141_4141);
    drop(w); // the writer "dies" with the slot odd
    assert_eq!(r.read(victim), Err(ReadError::Busy));
    assert_eq!(
        r.lookup_inbound_spi(0xa001),
        Some(victim),
        "previous view kept"
    );
    // A reader attaching now skips the torn slot rather than indexing garbage.
    let mut r2 = Reader::attach(t.path()).unwrap();
    assert_eq!(r2.lookup_inbound_spi(0xa001), None);
    assert_eq!(r2.lookup_inbound_spi(0xa000), Some(keep));
    assert_eq!(r2.stats().busy_slots, 1);
    let (mut w, report) = Writer::reattach(t.path()).unwrap();
    assert_eq!(report.torn_slots, vec![victim.slot()]);
    assert_eq!(report.live, 1);
    assert_eq!(
        w.live().map(|(id, p)| (id, p.spi)).collect::<Vec<_>>(),
        vec![(keep, 0xa000)]
    );
    r.poll_changes(|_| {});
    assert_eq!(r.lookup_inbound_spi(0xa001), None);
    assert_eq!(r.read(victim), Err(ReadError::Gone));
    // The repaired slot is reusable once both readers moved past the repair.
    assert!(matches!(
        w.install(&inbound(0xa001, 2)),
        Err(WriteError::TableFull { .. })
    ));
    r2.poll_changes(|_| {});
    w.install(&inbound(0xa001, 2)).unwrap();
    r.poll_changes(|_| {});
    assert!(consistent(
        &r.read(r.lookup_inbound_spi(0xa001).unwrap()).unwrap()
    ));
}

#[test]
fn an_unpublished_write_is_published_by_the_next_writer() {
    let t = TablePath::new("unpublished");
    let mut w = Writer::create(t.path(), &cfg(16, 16)).unwrap();
    let id = w.install(&inbound(0xb000, 1)).unwrap();
    let mut r = Reader::attach(t.path()).unwrap();
    let mut p = inbound(0xb000, 1);
    p.lifetime.hard_pkts = 77;
    w.write_unpublished(id, &p);
    drop(w);
    r.poll_changes(|_| {});
    let (_w, report) = Writer::reattach(t.path()).unwrap();
    assert_eq!(report.republished, vec![id.slot()]);
    let mut got = 0;
    r.poll_changes(|c| {
        if let Change::Upsert { params, .. } = c {
            got = params.lifetime.hard_pkts;
        }
    });
    assert_eq!(got, 77);
}

#[test]
fn sequence_numbers_are_reserved_per_burst_without_overlap_across_threads() {
    let t = TablePath::new("seq");
    let mut w = Writer::create(t.path(), &cfg(4, 4)).unwrap();
    let id = w.install(&outbound(0xc000, 1, "10.0.0.0/8")).unwrap();
    let r = Reader::attach(t.path()).unwrap();
    let firsts: Vec<Vec<u64>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let st = r.state(id).unwrap();
                s.spawn(move || {
                    (0..10_000)
                        .map(|_| st.reserve_seq(32, false).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<u64> = firsts.concat();
    all.sort_unstable();
    assert_eq!(
        all[0], 1,
        "RFC 4303 §3.3.3: the first packet is sequence number 1"
    );
    assert!(
        all.windows(2).all(|p| p[1] - p[0] == 32),
        "bursts are disjoint and contiguous"
    );
    assert_eq!(w.state(id).unwrap().seq_next(), 1 + 4 * 10_000 * 32);
}

#[test]
fn sequence_reservation_refuses_to_pass_2_pow_32_without_esn() {
    let t = TablePath::new("seq_wrap");
    let mut w = Writer::create(t.path(), &cfg(4, 4)).unwrap();
    let mut p = outbound(0xc100, 1, "10.0.0.0/8");
    p.initial_seq = u64::from(u32::MAX) - 9;
    let id = w.install(&p).unwrap();
    let st = w.state(id).unwrap();
    assert_eq!(st.reserve_seq(10, false), Ok(u64::from(u32::MAX) - 9));
    assert!(st.reserve_seq(1, false).is_err());
    assert_eq!(st.seq_exhausted(), 1);
    p.spi = 0xc101;
    p.flags = SaFlags::ESN;
    let esn = w.install(&p).unwrap();
    assert_eq!(
        w.state(esn).unwrap().reserve_seq(20, true),
        Ok(u64::from(u32::MAX) - 9)
    );
}

#[test]
fn dataplane_counters_are_visible_to_the_writer_and_reset_on_reinstall() {
    let t = TablePath::new("counters");
    let mut w = Writer::create(t.path(), &cfg(1, 4)).unwrap();
    let mut r = Reader::attach(t.path()).unwrap();
    let id = w.install(&inbound(0xd000, 1)).unwrap();
    r.poll_changes(|_| {});
    let st = r.state(r.lookup_inbound_spi(0xd000).unwrap()).unwrap();
    st.add_traffic(10, 1500);
    st.touch(1234);
    st.count_drop(3);
    st.count_drop(999);
    st.set_replay_top(4095);
    st.set_replay_word(63, 0x5a5a);
    let ws = w.state(id).unwrap();
    assert_eq!(
        (ws.pkts(), ws.bytes(), ws.last_use_secs()),
        (10, 1500, 1234)
    );
    let drops = ws.drops();
    assert_eq!((drops[3], drops[sa_table::DROP_REASONS - 1]), (1, 1));
    assert_eq!((ws.replay_top(), ws.replay_word(63)), (4095, 0x5a5a));
    w.delete(id).unwrap();
    r.poll_changes(|_| {});
    let id2 = w.install(&inbound(0xd001, 1)).unwrap();
    let ws = w.state(id2).unwrap();
    assert_eq!(
        (
            ws.pkts(),
            ws.bytes(),
            ws.replay_top(),
            ws.replay_word(63),
            ws.drops()[3]
        ),
        // A new inbound SA: T = initial_seq - 1 = 0, everything up to it seen.
        (0, 0, 0, u64::MAX, 0)
    );
    assert_eq!(ws.seq_next(), 1);
}

/// The installer seeds the receive window: T = initial_seq - 1, every number up to
/// it seen, visible with the SA itself (the state is reset inside the slot's write
/// section); outbound SAs keep T at 0. Without ESN an initial_seq past 2^32 - 1 is
/// refused.
#[test]
fn an_inbound_sa_s_window_starts_just_before_its_initial_seq() {
    let t = TablePath::new("window_seed");
    let mut w = Writer::create(t.path(), &cfg(4, 16)).unwrap();
    let mut r = Reader::attach(t.path()).unwrap();
    let mut p = inbound(0xd100, 1);
    p.flags = SaFlags::ESN;
    p.initial_seq = (1 << 32) - 5;
    w.install(&p).unwrap();
    let mut fresh = inbound(0xd101, 2);
    fresh.initial_seq = 0;
    w.install(&fresh).unwrap();
    let out = w.install(&outbound(0xd102, 3, "10.0.0.0/8")).unwrap();
    r.poll_changes(|_| {});
    let st = r.state(r.lookup_inbound_spi(0xd100).unwrap()).unwrap();
    assert_eq!(st.replay_top(), (1 << 32) - 6);
    assert!((0..sa_table::REPLAY_WORDS).all(|i| st.replay_word(i) == u64::MAX));
    let st = r.state(r.lookup_inbound_spi(0xd101).unwrap()).unwrap();
    assert_eq!(st.replay_top(), 0, "initial_seq 0 is a new SA too");
    let ws = w.state(out).unwrap();
    assert_eq!((ws.replay_top(), ws.replay_word(0)), (0, 0), "outbound: no window");
    let mut no_esn = inbound(0xd103, 4);
    no_esn.initial_seq = 1 << 32;
    assert!(matches!(w.install(&no_esn), Err(WriteError::Invalid(_))));
}

#[test]
fn a_slot_and_its_dataplane_state_take_under_1400_bytes() {
    assert_eq!(BYTES_PER_SA, 512 + 896);
}

#[test]
fn a_reader_notices_when_its_table_is_replaced_at_the_same_path() {
    let t = TablePath::new("replaced");
    let w = Writer::create(t.path(), &cfg(16, 16)).unwrap();
    let r = Reader::attach(t.path()).unwrap();
    assert!(!r.is_replaced());
    drop(w);
    std::fs::remove_file(t.path()).unwrap();
    assert!(r.is_replaced(), "file removed");
    let _w2 = Writer::create(t.path(), &cfg(16, 16)).unwrap();
    assert!(r.is_replaced(), "another table at the path");
    assert!(!Reader::attach(t.path()).unwrap().is_replaced());
}

#[test]
fn the_table_file_is_readable_by_its_owner_only_by_default() {
    use std::os::unix::fs::PermissionsExt;
    let t = TablePath::new("mode");
    let _w = Writer::create(t.path(), &cfg(4, 4)).unwrap();
    let mode = std::fs::metadata(t.path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the table holds ESP keys");
}

#[test]
fn a_reader_maps_slots_and_journal_read_only() {
    let t = TablePath::new("read_only");
    let _w = Writer::create(t.path(), &cfg(64, 64)).unwrap();
    let maps_of_table = || -> Vec<String> {
        std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .filter(|l| l.ends_with(t.path().to_str().unwrap()))
            .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
            .collect()
    };
    assert!(
        !maps_of_table().iter().any(|p| p == "r--s"),
        "the writer maps it all writable"
    );
    let _r = Reader::attach(t.path()).unwrap();
    let perms = maps_of_table();
    // Header (registry) and states stay writable; slots and journal do not.
    assert_eq!(
        perms.iter().filter(|p| *p == "r--s").count(),
        2,
        "{perms:?}"
    );
}

#[test]
fn a_writer_taking_over_a_fresh_table_finds_no_corrupt_slots_and_can_fill_it() {
    // The dataplane creates the table (static SAs) and lets go; esprit-ike
    // then reattaches. Never-written slots are free, not corrupt, so they
    // are usable at once even while a reader that has not polled is attached.
    let t = TablePath::new("fresh_takeover");
    drop(Writer::create(t.path(), &cfg(8, 64)).unwrap());
    let _idle_reader = Reader::attach(t.path()).unwrap();
    let (mut w, report) = Writer::reattach(t.path()).unwrap();
    assert!(report.corrupt_slots.is_empty(), "{report:?}");
    assert!(report.torn_slots.is_empty(), "{report:?}");
    for spi in 0..8u32 {
        w.install(&inbound(0x100 + spi, u64::from(spi))).unwrap();
    }
}

/// A record prints without its key or salt (it is `Copy` over shared
/// memory, so redaction is what keeps it out of logs), and `wipe_key`
/// clears both in a private copy.
#[test]
fn a_record_never_prints_its_key_and_a_private_copy_can_be_wiped() {
    let mut p = inbound(0x1234, 7);
    p.set_key(&[0xab; 32], [0xcd; 4]);
    let text = format!("{p:?} {p:#?}");
    for needle in ["171, 171", "205, 205", "171,\n", "0xab", "abab", "cdcd", "0xcd"] {
        assert!(!text.contains(needle), "`{needle}` in {text}");
    }
    assert!(text.contains("spi: 4660") && text.contains("key: [redacted]") && text.contains("salt: [redacted]"), "{text}");
    p.wipe_key();
    assert_eq!((p.key, p.salt, p.key_len), ([0; sa_table::MAX_KEY_BYTES], [0; 4], 32));
}

#[test]
fn backends_noted_by_the_workers_of_a_run_accumulate_and_a_new_run_replaces_them() {
    use sa_table::Backends;
    let t = TablePath::new("backends");
    let mut w = Writer::create(t.path(), &cfg(4, 4)).unwrap();
    let id = w.install(&outbound(0xc100, 1, "10.0.0.0/8")).unwrap();
    let r = Reader::attach(t.path()).unwrap();
    let st = r.state(id).unwrap();
    assert!(w.state(id).unwrap().backends().is_empty(), "nothing built it yet");
    // Two workers of run 7: one got an ipsec-mb session, one fell back.
    assert!(st.note_backend(7, Backends::IPSEC_MB).is_empty());
    assert_eq!(st.note_backend(7, Backends::RING | Backends::FALLBACK), Backends::IPSEC_MB);
    let prev = st.note_backend(7, Backends::RING | Backends::FALLBACK);
    assert!(prev.contains(Backends::FALLBACK), "the second noter knows it was reported");
    let seen = w.state(id).unwrap().backends();
    assert_eq!(seen.names(), vec!["ipsec-mb", "ring", "fallback"]);
    // A restarted dataplane (another run) starts afresh.
    assert!(st.note_backend(8, Backends::RING).is_empty());
    assert_eq!(w.state(id).unwrap().backends().names(), vec!["ring"]);
    // A reinstall clears it.
    w.delete(id).unwrap();
    let mut r = r;
    r.poll_changes(|_| {});
    let id2 = w.install(&outbound(0xc101, 1, "10.0.0.0/8")).unwrap();
    assert!(w.state(id2).unwrap().backends().is_empty());
}
