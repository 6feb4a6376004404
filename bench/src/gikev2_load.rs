//! G-IKEv2 (RFC 9838) at group scale, in one process: one GCKS endpoint and
//! N GM endpoints (esprit's sans-IO `ike-proto`), datagrams handed over in
//! memory, virtual time. Measures the GCKS's CPU time per registration
//! (IKE_SA_INIT with X25519 + GSA_AUTH with PSK, key download with RFC 5649
//! wraps, Sender-IDs) and, for one multicast GSA_REKEY (Ed25519 GCAUTH), the
//! GCKS's CPU time to build and sign it and each GM's CPU time to check and
//! install it.
//!
//! CPU time is this thread's (CLOCK_THREAD_CPUTIME_ID), read around every
//! call into the endpoint being measured, so other processes' load does not
//! count; the clock reads themselves (well under a microsecond) do.
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ike_crypto::sig::{PrivateKey, SignatureScheme};
use ike_crypto::{RustCryptoProvider, Secret};
use ike_proto::group::{GcauthKey, GroupConfig, GroupId, GroupMembership, KekPolicy, MemberPolicy, MemberRole, SequenceMode, TekPolicy};
use ike_proto::{ChildConfig, Command, ConnectionConfig, Endpoint, EndpointConfig, EspProposal, Event, Identity, IkeProposal, Lifetimes, LocalAuth, Mode, RemoteAuth, Time, TrafficSelector};
use ike_wire::{EncrId, EsnId, IntegId, KeId, KwaId, PrfId};

/// This thread's CPU time so far (CLOCK_THREAD_CPUTIME_ID).
pub fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(u64::try_from(t.tv_sec).unwrap_or(0), u32::try_from(t.tv_nsec).unwrap_or(0))
}

const GCKS: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 255, 0, 1));
const PSK: &[u8] = b"gikev2-load shared key for all members";

fn gm_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 1 + (i >> 16) as u8, (i >> 8) as u8, i as u8))
}

fn conn(name: &str, local: Identity, remote: Option<Identity>, groups: Vec<GroupMembership>) -> ConnectionConfig {
    let ike = IkeProposal {
        encr: EncrId::ENCR_AES_GCM_16,
        key_bits: Some(256),
        prf: PrfId::PRF_HMAC_SHA2_256,
        integ: IntegId::NONE,
        ke: vec![KeId::CURVE25519],
        additional_ke: Vec::new(),
        kwa: vec![KwaId::KW_5649_256],
    };
    ConnectionConfig {
        name: name.into(),
        local_id: local,
        remote_id: remote,
        local_auth: LocalAuth::Psk(Secret::new(PSK.to_vec())),
        remote_auth: RemoteAuth::Psk(Secret::new(PSK.to_vec())),
        ike_proposals: vec![ike],
        child: ChildConfig {
            esp_proposals: vec![EspProposal { encr: EncrId::ENCR_AES_GCM_16, key_bits: Some(256), integ: IntegId::NONE, esn: vec![EsnId::NO_ESN], pfs: Vec::new(), additional_ke: Vec::new() }],
            local_ts: vec![TrafficSelector::any_v4()],
            remote_ts: vec![TrafficSelector::any_v4()],
            mode: Mode::Tunnel,
            lifetime: Lifetimes::default(),
            sec_label: None,
            compression: None,
        },
        ike_rekey_after: None,
        dpd_delay: None,
        pool: None,
        request_vip: Vec::new(),
        initial_contact: false,
        ppk: None,
        ext: ike_proto::Extensions { groups, ..Default::default() },
    }
}

fn group(members: usize) -> GroupConfig {
    let suite = ike_proto::EspSuite { encr: EncrId::ENCR_AES_GCM_16, key_bits: Some(256), integ: IntegId::NONE, esn: false, ke: None, additional_ke: [KeId::NONE; 7] };
    let key = PrivateKey::ed25519_from_secret(&[9u8; 32]).expect("key");
    let spki = key.public_key().to_spki_der().expect("spki");
    let sites = TrafficSelector::prefix(IpAddr::V4(Ipv4Addr::new(172, 16, 0, 0)), 12).expect("prefix");
    GroupConfig {
        name: "load".into(),
        id: GroupId::key_id("load"),
        members: vec![MemberPolicy { identity: None, role: MemberRole::Sender }],
        teks: vec![TekPolicy { suite, src: sites, dst: sites, sequence: SequenceMode::Unspecified, lifetime_secs: 3600 }],
        kek: Some(KekPolicy {
            encr: EncrId::ENCR_AES_GCM_16,
            key_bits: Some(256),
            integ: IntegId::NONE,
            kwa: KwaId::KW_5649_256,
            gcauth: Some(GcauthKey { signer: Arc::new(key), scheme: SignatureScheme::Ed25519, spki }),
            destination: "239.192.0.1:848".parse().expect("addr"),
            source: SocketAddr::new(GCKS, 848),
            lifetime_secs: 86_400,
            retransmits: 0,
            retransmit_interval: Duration::from_secs(1),
        }),
        inband_rekey: false,
        rekey_margin_secs: 60,
        activation_delay_secs: 2,
        deactivation_delay_secs: 5,
        sender_id_bits: 16,
        max_sids_per_member: 1,
        transport: false,
        max_members: members + 1,
        registration_linger: Duration::from_secs(30),
    }
}

/// What one run measured.
#[derive(Debug)]
pub struct GroupLoadReport {
    pub members: usize,
    pub registered: usize,
    /// GCKS CPU time over all registrations.
    pub gcks_registration_cpu: Duration,
    /// GCKS CPU time to build, sign and seal one GSA_REKEY.
    pub gcks_rekey_cpu: Duration,
    pub rekey_bytes: usize,
    /// GMs that accepted that rekey, and their CPU time (sum, max).
    pub rekey_accepted: usize,
    pub gm_rekey_cpu_total: Duration,
    pub gm_rekey_cpu_max: Duration,
}

/// Registers `members` GMs (at most `window` registrations in flight), then
/// multicasts one rekey to all of them.
pub fn run(members: usize, window: usize) -> GroupLoadReport {
    let mut now = Time::from_secs(1_800_000_000);
    let unix = ike_proto::UnixTime::from_secs(1_800_000_000);
    let cfg = EndpointConfig {
        connections: vec![Arc::new(conn("members", Identity::Fqdn("gcks.load".into()), None, Vec::new()))],
        groups: vec![Arc::new(group(members))],
        cookie_threshold: usize::MAX,
        half_open_limit: usize::MAX,
        half_open_per_peer_limit: usize::MAX,
        ..EndpointConfig::default()
    };
    let mut gcks = Endpoint::new(cfg, Box::new(RustCryptoProvider), Box::new(rand_core::OsRng), now, unix);
    let membership = vec![GroupMembership { group: GroupId::key_id("load"), sender_ids: 1, receive: true }];
    let mut gms: Vec<Endpoint> = (0..members)
        .map(|i| {
            let c = conn("gcks", Identity::Fqdn(format!("gm{i}.load")), Some(Identity::Fqdn("gcks.load".into())), membership.clone());
            Endpoint::new(EndpointConfig { connections: vec![Arc::new(c)], ..EndpointConfig::default() }, Box::new(RustCryptoProvider), Box::new(rand_core::OsRng), now, unix)
        })
        .collect();
    let mut gcks_cpu = Duration::ZERO;
    let measured = |cpu: &mut Duration, f: &mut dyn FnMut()| {
        let t0 = thread_cpu();
        f();
        *cpu += thread_cpu().saturating_sub(t0);
    };
    let mut registered = 0usize;
    let mut started = 0usize;
    let mut to_gcks: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)> = VecDeque::new();
    // The inverse of gm_ip.
    let gm_index = |ip: IpAddr| -> Option<usize> {
        let IpAddr::V4(a) = ip else { return None };
        let o = a.octets();
        (o[0] == 10 && o[1] >= 1 && o[1] < 255).then(|| (usize::from(o[1] - 1) << 16) | (usize::from(o[2]) << 8) | usize::from(o[3]))
    };
    let deadline = now + Duration::from_secs(3600);
    while registered < members && now < deadline {
        while started < members && started - registered.min(started) < window {
            let ip = gm_ip(started);
            gms[started]
                .handle_command(now, Command::Initiate { connection: "gcks".into(), local: SocketAddr::new(ip, 500), remote: SocketAddr::new(GCKS, 500) })
                .expect("initiate");
            started += 1;
        }
        // GMs out.
        for gm in gms.iter_mut().take(started) {
            while let Some(t) = gm.poll_transmit() {
                to_gcks.push_back((t.remote, t.local, t.payload));
            }
            while let Some(e) = gm.poll_event() {
                if matches!(e, Event::GroupRegistered { .. }) {
                    registered += 1;
                }
            }
        }
        if to_gcks.is_empty() {
            now = now + Duration::from_millis(100);
            for gm in gms.iter_mut().take(started) {
                if gm.poll_timeout().is_some_and(|t| t <= now) {
                    gm.handle_timeout(now);
                }
            }
            measured(&mut gcks_cpu, &mut || {
                if gcks.poll_timeout().is_some_and(|t| t <= now) {
                    gcks.handle_timeout(now);
                }
            });
        }
        while let Some((local, remote, payload)) = to_gcks.pop_front() {
            let mut replies = Vec::new();
            measured(&mut gcks_cpu, &mut || {
                gcks.handle_datagram(now, local, remote, &payload);
                while let Some(t) = gcks.poll_transmit() {
                    replies.push(t);
                }
                while gcks.poll_event().is_some() {}
            });
            for t in replies {
                if let Some(i) = gm_index(t.remote.ip()).filter(|i| *i < members) {
                    gms[i].handle_datagram(now, t.local, t.remote, &t.payload);
                }
            }
        }
    }
    // One multicast rekey to everyone.
    let mut rekey = Vec::new();
    let mut gcks_rekey_cpu = Duration::ZERO;
    measured(&mut gcks_rekey_cpu, &mut || {
        gcks.handle_group_command(now, ike_proto::event::GroupCommand::Rekey { group: GroupId::key_id("load") }).expect("rekey");
        while let Some(t) = gcks.poll_transmit() {
            if t.remote.ip().is_multicast() {
                rekey = t.payload;
            }
        }
    });
    let (mut accepted, mut total, mut max) = (0usize, Duration::ZERO, Duration::ZERO);
    let dst: SocketAddr = "239.192.0.1:848".parse().expect("addr");
    for gm in &mut gms {
        let t0 = thread_cpu();
        gm.handle_datagram(now, dst, SocketAddr::new(GCKS, 848), &rekey);
        let mut ok = false;
        while let Some(e) = gm.poll_event() {
            ok |= matches!(e, Event::GroupRekeyAccepted { .. });
        }
        let d = thread_cpu().saturating_sub(t0);
        total += d;
        max = max.max(d);
        accepted += usize::from(ok);
    }
    GroupLoadReport {
        members,
        registered,
        gcks_registration_cpu: gcks_cpu,
        gcks_rekey_cpu,
        rekey_bytes: rekey.len(),
        rekey_accepted: accepted,
        gm_rekey_cpu_total: total,
        gm_rekey_cpu_max: max,
    }
}
