//! The SA table as esprit-ike programs it, checked slot by slot: both
//! directions, UDP encapsulation, make-before-break rekeys, volume
//! lifetimes from the dataplane's counters (simulated here through the
//! same per-SA state the workers write), and the refusal of suites the
//! dataplane cannot run.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use esprit_controlplane::table::{LifetimeAction, ProgramError, SaProgrammer};
use ike_crypto::Secret;
use ike_proto::{ChildKeys, ChildSaHandle, ChildSaInstall, EspSuite, IkeSaHandle, Lifetimes, Mode, Time, TrafficSelector};
use ike_wire::{EncrId, IntegId, KeId};
use sa_table::{Direction, SaFlags, TransformId};

const T0: Time = Time::from_secs(1_800_000_000);

struct Table(PathBuf);

impl Table {
    fn new(name: &str) -> Self {
        let p = PathBuf::from(format!("/dev/shm/esprit-ike-table-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        Self(p)
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn keys(b: u8) -> ChildKeys {
    ChildKeys { encr: Secret::new(vec![b; 36]), integ: Secret::new(Vec::new()) }
}

fn install(child: u64, spi: u32, rekey_of: Option<u64>, local: &str) -> ChildSaInstall {
    let p = |s: &str| {
        let (a, l) = s.split_once('/').unwrap();
        TrafficSelector::prefix(a.parse().unwrap(), l.parse().unwrap()).unwrap()
    };
    ChildSaInstall {
        ike_sa: IkeSaHandle(1),
        child_sa: ChildSaHandle(child),
        spi_in: spi,
        spi_out: spi + 1,
        keys_in: keys(1),
        keys_out: keys(2),
        suite: EspSuite { encr: EncrId::ENCR_AES_GCM_16, key_bits: Some(256), integ: IntegId::NONE, esn: false, ke: None, additional_ke: [KeId::NONE; 7] },
        mode: Mode::Tunnel,
        ts_local: vec![p("192.168.109.0/24")],
        ts_remote: vec![p("10.99.0.1/32")],
        lifetime: Lifetimes { rekey_bytes: 1000, hard_bytes: 2000, ..Lifetimes::default() },
        local: local.parse::<SocketAddr>().unwrap(),
        remote: "172.16.9.2:4500".parse().unwrap(),
        udp_encap: false,
        rekey_of: rekey_of.map(ChildSaHandle),
        sec_label: None,
        compression: None,
    }
}

fn open(t: &Table) -> SaProgrammer {
    open_with(t, 16)
}

fn open_with(t: &Table, capacity: u32) -> SaProgrammer {
    SaProgrammer::open(&t.0, capacity, 1024, 4500, T0, Duration::from_secs(30)).unwrap().0
}

#[test]
fn a_child_sa_becomes_an_inbound_and_an_outbound_slot_with_udp_encapsulation_on_port_4500() {
    let t = Table::new("slots");
    let mut p = open(&t);
    let e = p.install(T0, &install(7, 0x100, None, "172.16.9.1:4500")).unwrap().clone();
    assert!(e.udp_encap);
    let w = p.writer();
    let inb = w.get(e.inbound).unwrap();
    let out = w.get(e.outbound.unwrap()).unwrap();
    assert_eq!((inb.direction, inb.spi, out.direction, out.spi), (Direction::INBOUND, 0x100, Direction::OUTBOUND, 0x101));
    assert_eq!(inb.transform, TransformId::AES_GCM_16);
    assert_eq!((inb.key(), inb.salt), (&[1u8; 32][..], [1; 4]));
    assert_eq!((out.key(), out.salt), (&[2u8; 32][..], [2; 4]));
    assert!(out.flags.contains(SaFlags::UDP_ENCAP) && inb.flags.contains(SaFlags::UDP_ENCAP));
    assert_eq!((out.udp_src_port, out.udp_dst_port), (4500, 4500));
    assert_eq!(out.outer_src_addr(), Some("172.16.9.1".parse().unwrap()));
    assert_eq!(inb.outer_src_addr(), Some("172.16.9.2".parse().unwrap()));
    assert_eq!(out.served().len(), 1);
    assert_eq!(inb.served().len(), 0);
    assert_eq!((inb.replay_window_pkts, out.initial_seq), (1024, 1));
    assert_eq!(out.lifetime.soft_bytes, 1000);
    assert_eq!(inb.cookie, esprit_controlplane::table::cookie(ChildSaHandle(7)));
    // On port 500 without a NAT: raw ESP.
    let e2 = p.install(T0, &install(8, 0x200, None, "172.16.9.1:500")).unwrap().clone();
    assert!(!e2.udp_encap);
    assert!(!p.writer().get(e2.outbound.unwrap()).unwrap().flags.contains(SaFlags::UDP_ENCAP));
}

#[test]
fn a_rekey_replaces_the_outbound_slot_at_once_and_keeps_the_old_inbound_until_its_delete() {
    let t = Table::new("rekey");
    let mut p = open(&t);
    let old = p.install(T0, &install(7, 0x100, None, "172.16.9.1:4500")).unwrap().clone();
    let new = p.install(T0, &install(9, 0x300, Some(7), "172.16.9.1:4500")).unwrap().clone();
    // Old inbound, new inbound, new outbound.
    assert_eq!(p.live_slots(), 3);
    assert!(p.writer().get(old.outbound.unwrap()).is_err(), "the old outbound SA is gone");
    assert!(p.writer().get(old.inbound).is_ok(), "the old inbound SA still decrypts packets in flight");
    assert_eq!(p.child(ChildSaHandle(7)).unwrap().outbound, None);
    assert!(p.delete(ChildSaHandle(7)).is_some());
    assert_eq!(p.live_slots(), 2);
    assert!(p.writer().get(new.inbound).is_ok() && p.writer().get(new.outbound.unwrap()).is_ok());
    assert_eq!(p.delete_ike_sa(IkeSaHandle(1)), 1);
    assert_eq!(p.live_slots(), 0);
}

#[test]
fn volume_lifetimes_from_the_counters_ask_for_one_rekey_then_one_delete() {
    let t = Table::new("lifetimes");
    let mut p = open(&t);
    let e = p.install(T0, &install(7, 0x100, None, "172.16.9.1:4500")).unwrap().clone();
    assert_eq!(p.check_lifetimes(T0), vec![]);
    p.writer().state(e.inbound).unwrap().add_traffic(10, 999);
    assert_eq!(p.check_lifetimes(T0), vec![]);
    assert!(p.child(ChildSaHandle(7)).unwrap().last_active.is_some());
    p.writer().state(e.inbound).unwrap().add_traffic(1, 1);
    let want = LifetimeAction::Rekey { ike_sa: IkeSaHandle(1), child_sa: ChildSaHandle(7) };
    assert_eq!(p.check_lifetimes(T0), vec![want]);
    assert_eq!(p.check_lifetimes(T0), vec![], "asked once");
    p.writer().state(e.outbound.unwrap()).unwrap().add_traffic(10, 2000);
    let want = LifetimeAction::Delete { ike_sa: IkeSaHandle(1), child_sa: ChildSaHandle(7) };
    assert_eq!(p.check_lifetimes(T0), vec![want]);
    assert_eq!(p.check_lifetimes(T0), vec![]);
}

#[test]
fn only_inbound_esp_counts_as_a_sign_of_life_for_the_liveness_check() {
    let t = Table::new("alive");
    let mut p = open(&t);
    let e = p.install(T0, &install(7, 0x100, None, "172.16.9.1:4500")).unwrap().clone();
    assert_eq!(p.inbound_moved(), vec![]);
    // Our own outbound traffic says nothing about the peer.
    p.writer().state(e.outbound.unwrap()).unwrap().add_traffic(5, 500);
    assert_eq!(p.inbound_moved(), vec![]);
    p.writer().state(e.inbound).unwrap().add_traffic(1, 100);
    assert_eq!(p.inbound_moved(), vec![IkeSaHandle(1)]);
    assert_eq!(p.inbound_moved(), vec![], "reported once per movement");
}

#[test]
fn an_outbound_sequence_number_near_exhaustion_asks_for_a_rekey() {
    let t = Table::new("seq");
    let mut p = open(&t);
    let e = p.install(T0, &install(7, 0x100, None, "172.16.9.1:4500")).unwrap().clone();
    let st = p.writer().state(e.outbound.unwrap()).unwrap();
    // Without ESN, 7/8 of the 32-bit space.
    st.reserve_seq(u32::MAX - u32::MAX / 8, false).unwrap();
    assert_eq!(p.check_lifetimes(T0), vec![LifetimeAction::Rekey { ike_sa: IkeSaHandle(1), child_sa: ChildSaHandle(7) }]);
}

#[test]
fn suites_the_dataplane_cannot_run_are_refused_and_leave_the_table_unchanged() {
    let t = Table::new("refuse");
    let mut p = open(&t);
    let mut i = install(7, 0x100, None, "172.16.9.1:4500");
    i.suite.encr = EncrId::ENCR_AES_CBC;
    i.suite.integ = IntegId::AUTH_HMAC_SHA2_256_128;
    assert!(matches!(p.install(T0, &i), Err(ProgramError::UnsupportedSuite(..))));
    let mut i = install(7, 0x100, None, "172.16.9.1:4500");
    i.keys_in = ChildKeys { encr: Secret::new(vec![0; 10]), integ: Secret::new(Vec::new()) };
    assert!(matches!(p.install(T0, &i), Err(ProgramError::BadKey(10))));
    assert_eq!(p.live_slots(), 0);
}

#[test]
fn an_implicit_iv_child_sa_is_installed_as_an_iiv_suite_and_rekeyed_before_its_sequence_number_wraps() {
    let t = Table::new("iiv");
    let mut p = open(&t);
    let mut i = install(7, 0x100, None, "172.16.9.1:4500");
    i.suite.encr = EncrId::ENCR_AES_GCM_16_IIV;
    let e = p.install(T0, &i).unwrap().clone();
    let w = p.writer();
    assert_eq!(w.get(e.inbound).unwrap().transform, TransformId::AES_GCM_16_IIV);
    assert_eq!(w.get(e.outbound.unwrap()).unwrap().transform, TransformId::AES_GCM_16_IIV);
    // The IV is the sequence number (RFC 8750 §2): it must never repeat,
    // so the rekey comes well before 2^32.
    assert_eq!(p.check_lifetimes(T0), vec![]);
    let st = p.writer().state(e.outbound.unwrap()).unwrap();
    st.reserve_seq(u32::MAX - u32::MAX / 8, false).unwrap();
    assert_eq!(p.check_lifetimes(T0), vec![LifetimeAction::Rekey { ike_sa: IkeSaHandle(1), child_sa: ChildSaHandle(7) }]);
    let mut i = install(8, 0x200, None, "172.16.9.1:4500");
    i.suite.encr = EncrId::ENCR_CHACHA20_POLY1305_IIV;
    i.suite.key_bits = None;
    let e = p.install(T0, &i).unwrap().clone();
    assert_eq!(p.writer().get(e.inbound).unwrap().transform, TransformId::CHACHA20_POLY1305_IIV);
}

#[test]
fn a_labeled_child_sa_carries_its_label_in_both_slots() {
    let t = Table::new("label");
    let mut p = open(&t);
    let mut i = install(7, 0x100, None, "172.16.9.1:4500");
    i.sec_label = Some(b"system_u:object_r:ipsec_spd_t:s0\0".to_vec());
    let e = p.install(T0, &i).unwrap().clone();
    let w = p.writer();
    for id in [e.inbound, e.outbound.unwrap()] {
        assert_eq!(w.get(id).unwrap().sec_label(), b"system_u:object_r:ipsec_spd_t:s0\0");
    }
    let mut i = install(8, 0x200, None, "172.16.9.1:4500");
    i.sec_label = Some(vec![b'x'; sa_table::MAX_SEC_LABEL_BYTES + 1]);
    assert!(matches!(p.install(T0, &i), Err(ProgramError::LabelTooLong(_))));
    let unlabeled = p.install(T0, &install(9, 0x300, None, "172.16.9.1:4500")).unwrap().clone();
    assert!(p.writer().get(unlabeled.inbound).unwrap().sec_label().is_empty());
}

/// A Child SA of IKE SA `ike` without volume or packet limits.
fn unlimited(ike: u64, child: u64, spi: u32) -> ChildSaInstall {
    let mut i = install(child, spi, None, "172.16.9.1:4500");
    i.ike_sa = IkeSaHandle(ike);
    i.lifetime = Lifetimes::default();
    i
}

#[test]
fn the_tick_polls_only_due_child_sas_and_idle_ones_ever_less_often() {
    use esprit_controlplane::table::{CHECK_EVERY, CHECK_IDLE_MAX};
    let t = Table::new("due");
    let mut p = open_with(&t, 256);
    let secs = |s: u64| T0 + Duration::from_secs(s);
    // 100 idle Child SAs without volume limits, one with limits, one busy.
    for c in 0..100u32 {
        p.install(T0, &unlimited(1, u64::from(c), 0x1000 + 2 * c)).unwrap();
    }
    p.install(T0, &install(500, 0x100, None, "172.16.9.1:4500")).unwrap();
    let busy = p.install(T0, &unlimited(2, 600, 0x200)).unwrap().clone();
    assert_eq!(CHECK_EVERY, Duration::from_secs(1));
    assert_eq!(p.poll_due(T0).visited, 0, "nothing is due at install");
    // Polled once per second while busy or limited; idle ones wait 1, 2,
    // 4, then 8 s between polls.
    let mut visits = Vec::new();
    for s in 1..=40 {
        if s % 3 == 0 {
            p.writer().state(busy.inbound).unwrap().add_traffic(1, 100);
        }
        let polled = p.poll_due(secs(s));
        let want_inbound = if s % 3 == 0 { vec![IkeSaHandle(2)] } else { vec![] };
        assert_eq!(polled.inbound_moved, want_inbound, "second {s}");
        visits.push(polled.visited);
    }
    // Idle ones are due at 1, 3, 7, 15, 23, 31, 39 s.
    let idle_at = [1, 3, 7, 15, 23, 31, 39];
    for (i, v) in visits.iter().enumerate() {
        let s = i as u64 + 1;
        // The busy one moves every third second and backs off in between
        // (moved at 3: every 1 s; idle at 4 → 2 s; ...).
        let idle = if idle_at.contains(&s) { 100 } else { 0 };
        assert!((1 + idle..=2 + idle).contains(v), "second {s}: {v} visited");
    }
    let total: usize = visits.iter().sum();
    assert!(total < 40 * 102 / 4, "{total} visits: the idle SAs were polled every second");
    assert_eq!(CHECK_IDLE_MAX, Duration::from_secs(8));
    // A volume lifetime still fires from the poll, within a second.
    p.writer().state(p.child(ChildSaHandle(500)).unwrap().inbound).unwrap().add_traffic(1, 1000);
    let polled = p.poll_due(secs(41));
    assert_eq!(polled.actions, vec![LifetimeAction::Rekey { ike_sa: IkeSaHandle(1), child_sa: ChildSaHandle(500) }]);
    // A deleted Child SA leaves the queue.
    p.delete(ChildSaHandle(500));
    assert!(p.poll_due(secs(100)).visited <= 101);
}

#[test]
fn an_ike_sa_s_child_sas_are_found_by_index_across_a_reparent() {
    let t = Table::new("byike");
    let mut p = open_with(&t, 128);
    for c in 0..50u32 {
        p.install(T0, &unlimited(u64::from(c % 5), u64::from(c), 0x1000 + 2 * c)).unwrap();
    }
    assert_eq!(p.children_of(IkeSaHandle(3)), (0..50).filter(|c| c % 5 == 3).map(ChildSaHandle).collect::<Vec<_>>());
    p.reparent(IkeSaHandle(3), IkeSaHandle(77));
    assert!(p.children_of(IkeSaHandle(3)).is_empty());
    assert_eq!(p.children_of(IkeSaHandle(77)).len(), 10);
    assert!(p.children().filter(|e| e.ike_sa == IkeSaHandle(77)).count() == 10);
    assert_eq!(p.delete_ike_sa(IkeSaHandle(77)), 10);
    assert_eq!(p.delete_ike_sa(IkeSaHandle(3)), 0);
    assert_eq!(p.child_count(), 40);
    assert_eq!(p.live_slots(), 80);
}

/// A static SA as the dataplane installs it (cookie tag "STAT").
fn static_sa(spi: u32) -> sa_table::SaParams {
    let mut p = sa_table::SaParams::zeroed();
    p.cookie = (0x5354_4154 << 32) | u64::from(spi);
    p.spi = spi;
    p.direction = Direction::INBOUND;
    p.mode = sa_table::Mode::TUNNEL;
    p.transform = TransformId::AES_GCM_16;
    p.set_key(&[7; 16], [1, 2, 3, 4]);
    p.set_outer("172.16.2.5".parse().unwrap(), "172.16.1.5".parse().unwrap());
    p.initial_seq = 1;
    p
}

#[test]
fn esprit_ike_shares_the_table_with_the_dataplanes_static_sas_and_never_touches_them() {
    let t = Table::new("shared");
    let mut p = open(&t);
    // The dataplane starts while esprit-ike runs and writes its static SA.
    let (mut dp, _) = sa_table::Writer::open(&t.0, &sa_table::TableConfig { capacity: 16, ..Default::default() }).unwrap();
    let stat = dp.install(&static_sa(0x5000)).unwrap();
    let e = p.install(T0, &install(1, 0x1000, None, "172.16.9.1:4500")).unwrap().clone();
    assert!(e.inbound.slot() != stat.slot() && e.outbound.unwrap().slot() != stat.slot());
    assert_eq!(p.writer().get(stat).unwrap().spi, 0x5000, "esprit-ike caught up with the dataplane's install");
    assert_eq!(p.writer().live_count(), 3);
    drop(p);
    // esprit-ike restarts beside the dataplane: its own two slots are orphans, the static one is not.
    let (mut p, _) = SaProgrammer::open(&t.0, 16, 1024, 4500, T0, Duration::ZERO).unwrap();
    assert!(p.orphans().is_empty(), "orphans expired at once with no grace");
    p.retry_deletes();
    dp.refresh().unwrap();
    let left: Vec<u32> = dp.live().map(|(_, s)| s.spi).collect();
    assert_eq!(left, vec![0x5000], "esprit-ike removed its orphans and only those");
    assert_eq!(p.writer().live_count(), 1);
}

#[test]
fn a_delete_that_cannot_get_the_table_in_time_is_deferred_and_retried() {
    let t = Table::new("deferred");
    let mut p = open(&t);
    let e = p.install(T0, &install(1, 0x1000, None, "172.16.9.1:4500")).unwrap().clone();
    // The dataplane holds the table (stopped halfway through a transaction, say).
    let (mut dp, _) = sa_table::Writer::open(&t.0, &sa_table::TableConfig { capacity: 16, ..Default::default() }).unwrap();
    let held = dp.lock().unwrap();
    let start = std::time::Instant::now();
    assert!(p.delete(ChildSaHandle(1)).is_some());
    assert!(start.elapsed() < Duration::from_secs(1), "the event loop was held {:?}", start.elapsed());
    assert_eq!(p.deferred_deletes(), 2);
    assert!(matches!(
        p.install(T0, &install(2, 0x2000, None, "172.16.9.1:4500")),
        Err(ProgramError::Table(sa_table::WriteError::Busy { .. }))
    ));
    drop(held);
    assert_eq!(p.retry_deletes(), 0);
    assert!(p.writer().get(e.inbound).is_err() && p.writer().get(e.outbound.unwrap()).is_err());
    assert_eq!(p.writer().live_count(), 0);
}

#[test]
fn the_backend_the_dataplane_noted_per_direction_reaches_the_counters() {
    use sa_table::Backends;
    let t = Table::new("backends");
    let mut p = open(&t);
    let e = p.install(T0, &install(1, 0x1000, None, "172.16.9.1:4500")).unwrap().clone();
    assert!(p.counters(&e).in_backends.is_empty(), "no dataplane built it yet");
    // What the dataplane's workers note as they build the SA's crypto.
    p.writer().state(e.inbound).unwrap().note_backend(42, Backends::IPSEC_MB);
    p.writer().state(e.outbound.unwrap()).unwrap().note_backend(42, Backends::RING | Backends::FALLBACK);
    let c = p.counters(&e);
    assert_eq!(c.in_backends.names(), vec!["ipsec-mb"]);
    assert_eq!(c.out_backends.names(), vec!["ring", "fallback"]);
}

#[test]
fn a_restarted_daemon_adopts_its_child_sas_slots_and_jumps_the_outbound_counter() {
    use esprit_controlplane::table::{AdoptResult, ADOPT_SEQ_MARGIN};
    let t = Table::new("adopt");
    let (in_id, out_id) = {
        let mut p = open(&t);
        let e = p.install(T0, &install(7, 0x300, None, "172.16.9.1:4500")).unwrap().clone();
        // The dataplane sent 1000 packets on it.
        p.writer().state(e.outbound.unwrap()).unwrap().reserve_seq(1000, false).unwrap();
        (e.inbound, e.outbound.unwrap())
        // (dropped without deleting: the process dies)
    };
    let mut p = open(&t);
    assert_eq!(p.orphans().len(), 2);
    // The restored Child SA comes without keys: they are in the slots.
    let mut i = install(7, 0x300, None, "172.16.9.1:4500");
    i.keys_in = ChildKeys { encr: Secret::new(Vec::new()), integ: Secret::new(Vec::new()) };
    i.keys_out = i.keys_in.clone();
    let r = p.adopt(T0, &i);
    assert_eq!(r, AdoptResult::Adopted { seq_next: 1001 + u64::from(ADOPT_SEQ_MARGIN) });
    assert!(p.orphans().is_empty(), "adopted slots are no orphans");
    let e = p.child(ChildSaHandle(7)).unwrap();
    assert_eq!((e.inbound, e.outbound), (in_id, Some(out_id)));
    // The keys stayed where they were.
    assert_eq!(p.writer().get(out_id).unwrap().key(), &[2u8; 32][..]);
    // Nothing to adopt for an unknown Child SA or other SPIs.
    assert_eq!(p.adopt(T0, &install(8, 0x300, None, "172.16.9.1:4500")), AdoptResult::Missing);
    // Expiring orphans no longer touches the adopted slots.
    p.expire_orphans(T0 + Duration::from_secs(3600));
    assert_eq!(p.live_slots(), 2);
}

/// RFC 9838 group SA (one TEK, mesh 10.70.0.0/16 <-> 10.70.0.0/16, tunnel
/// mode with address preservation): the dataplane finds the outbound slot
/// by the inner destination and the inbound slot by the SPI, both from a
/// reader attached to the table as the workers are.
#[test]
fn a_group_sa_is_found_outbound_by_its_prefix_and_inbound_by_its_spi() {
    use ike_proto::group::{GroupId, GroupSaDirection, GroupSaInstall, SequenceMode};
    let t = Table::new("group");
    let mut p = open(&t);
    let mesh = TrafficSelector::prefix("10.70.0.0".parse().unwrap(), 16).unwrap();
    let i = GroupSaInstall {
        group: GroupId::key_id("mesh-1"),
        generation: 1,
        spi: 0xa8e3_bdc9,
        suite: EspSuite { encr: EncrId::ENCR_AES_GCM_16, key_bits: Some(256), integ: IntegId::NONE, esn: false, ke: None, additional_ke: [KeId::NONE; 7] },
        keys: keys(3),
        src: mesh,
        dst: mesh,
        direction: GroupSaDirection::Both,
        transport: false,
        sequence: SequenceMode::Unspecified,
        sender_ids: vec![1],
        sender_id_bits: 16,
        lifetime_secs: 600,
        activation_delay_secs: 0,
    };
    let e = p.install_group(T0, &i, "10.77.0.12".parse().unwrap(), true).unwrap().clone();
    let (inb, out) = (e.inbound.unwrap(), e.outbound.unwrap());
    let mut r = sa_table::Reader::attach(&t.0).unwrap();
    r.poll_changes(|_| {});
    let mut found = Vec::new();
    r.outbound_candidates("10.70.2.2".parse().unwrap(), |id| {
        found.push(id);
        true
    });
    assert_eq!(found, vec![out], "outbound by the inner destination");
    assert_eq!(r.lookup_outbound("10.71.0.2".parse().unwrap()), None, "outside the group's policy");
    assert_eq!(r.lookup_inbound(0xa8e3_bdc9, "10.70.2.2".parse().unwrap(), "10.70.1.2".parse().unwrap()), Some(inb));
    let o = r.read(out).unwrap();
    assert!(o.flags.contains(SaFlags::PRESERVE_SRC | SaFlags::PRESERVE_DST));
    assert_eq!((o.sender_id, o.sender_id_bits), (1, 16));
    let lr = |t: &sa_table::TrafficSelector| (t.start_addr, t.end_addr, t.ip_proto, t.start_port, t.end_port);
    assert_eq!(lr(&o.ts_local()[0]), lr(&o.ts_remote()[0]));
    assert_eq!((o.ts_local()[0].start_port, o.ts_local()[0].end_port), (0, 65535), "any port (ICMP type/code too)");
}
