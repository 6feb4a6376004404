//! What an established IKE SA needs to resume after its process restarts
//! (DESIGN.md §8): a value the owner stores and hands back, and its
//! byte encoding. The core does no I/O: [`crate::Endpoint::take_changes`]
//! exports the snapshots of the IKE SAs an event-loop turn changed,
//! [`crate::Endpoint::restore`] imports them into a fresh endpoint; where
//! and how they are kept (sealed, in a store) is the daemon's business.
//!
//! Guarantees:
//! * Only established IKE SAs have a snapshot; an IKE SA that stops being
//!   established (rekeyed, deleting, closed) or is removed is reported as
//!   gone, so the store never resumes an SA the peer no longer has.
//! * The encoding is versioned ([`VERSION`]) and [`IkeSaSnapshot::decode`]
//!   refuses anything malformed, truncated or with trailing bytes: a
//!   corrupt record is an error, never a half-restored SA.
//! * The snapshot holds secrets (SK_d, SK_e/a, SK_p of both directions) as
//!   [`Secret`]s, zeroized on drop; its `Debug` prints no key material. The
//!   encoding is plaintext: the owner must seal it before it leaves memory.
//! * Times are durations relative to the moment the snapshot was taken; the
//!   owner says on restore how long ago that was (it knows the wall clock,
//!   the core does not: `crate::time`).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ike_crypto::Secret;
use ike_wire::codec::{Reader, Writer};
use ike_wire::{EncrId, IdType, IntegId, KeId, PrfId};

use crate::config::{Identity, Mode};
use crate::proposal::{EspSuite, IkeSuite};
use crate::ts::TrafficSelector;

/// Encoding version (the first octet after the magic).
pub const VERSION: u8 = 2;
const MAGIC: &[u8; 4] = b"EIKS";

/// One established IKE SA.
#[derive(Clone, PartialEq, Eq)]
pub struct IkeSaSnapshot {
    /// The endpoint's handle; kept across a restart so that the SA table's
    /// slot cookies (the Child SA handles) still name their Child SAs.
    pub handle: u64,
    pub connection: String,
    /// We hold the I flag (original initiator or last rekeyer).
    pub initiator: bool,
    pub spi_i: u64,
    pub spi_r: u64,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub nat_local: bool,
    pub nat_remote: bool,
    pub suite: IkeSuite,
    pub sk_d: Secret,
    pub sk_ei: Secret,
    pub sk_ai: Secret,
    pub sk_er: Secret,
    pub sk_ar: Secret,
    pub sk_pi: Secret,
    pub sk_pr: Secret,
    /// The Message ID our next request carries (RFC 7296 §2.2).
    pub next_request_id: u32,
    /// The Message ID of the next request we expect from the peer.
    pub next_expected_id: u32,
    /// The request of ours that was outstanding, as sent (Message ID,
    /// exchange type, its sealed datagrams): a restored SA resends exactly
    /// it, so the peer either answers it or replays its cached answer
    /// (RFC 7296 §2.1), and both ends agree on Message IDs without asking.
    pub pending_request: Option<PendingRequest>,
    /// We announced IKEV2_MESSAGE_ID_SYNC_SUPPORTED (RFC 6311 §3), so the
    /// peer answers an IKEV2_MESSAGE_ID_SYNC after the restart.
    pub mid_sync: bool,
    pub remote_id: Option<Identity>,
    pub peer_hashes: Vec<u16>,
    /// Pool addresses leased to the peer.
    pub leases: Vec<IpAddr>,
    pub ppk_used: bool,
    pub fragment_len: Option<u32>,
    /// Time left until our IKE SA rekey, if one is scheduled.
    pub rekey_in: Option<Duration>,
    pub children: Vec<ChildSnapshot>,
}

/// An outstanding request ([`IkeSaSnapshot::pending_request`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingRequest {
    pub message_id: u32,
    pub exchange: u8,
    pub packets: Vec<Vec<u8>>,
}

/// One Child SA of an [`IkeSaSnapshot`]. Its keys are not here: they live
/// in the SA table, whose slots the restarted daemon adopts by cookie and
/// SPI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildSnapshot {
    pub handle: u64,
    pub spi_in: u32,
    pub spi_out: u32,
    pub suite: EspSuite,
    pub mode: Mode,
    pub ts_local: Vec<TrafficSelector>,
    pub ts_remote: Vec<TrafficSelector>,
    pub sec_label: Option<Vec<u8>>,
    /// Diet-ESP profile (the AfRG values), if negotiated.
    pub compression: Option<crate::compression::DietProfile>,
    /// How long it had been installed.
    pub age: Duration,
    /// Time left until our lifetime-driven rekey.
    pub rekey_in: Option<Duration>,
}

impl core::fmt::Debug for IkeSaSnapshot {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never print key material.
        f.debug_struct("IkeSaSnapshot")
            .field("handle", &self.handle)
            .field("connection", &self.connection)
            .field("spi_i", &format_args!("{:016x}", self.spi_i))
            .field("spi_r", &format_args!("{:016x}", self.spi_r))
            .field("next_request_id", &self.next_request_id)
            .field("next_expected_id", &self.next_expected_id)
            .field("children", &self.children)
            .finish_non_exhaustive()
    }
}

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("not an IKE SA snapshot (bad magic)")]
    Magic,
    #[error("snapshot version {0} (this build reads {VERSION})")]
    Version(u8),
    #[error("snapshot malformed: {0}")]
    Malformed(&'static str),
}

impl From<ike_wire::Error> for SnapshotError {
    fn from(_: ike_wire::Error) -> Self {
        SnapshotError::Malformed("truncated")
    }
}

fn put_bytes(w: &mut Writer, b: &[u8]) {
    w.u32(b.len() as u32);
    w.bytes(b);
}

fn get_bytes<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], SnapshotError> {
    let n = r.u32()? as usize;
    Ok(r.take(n)?)
}

fn put_bool(w: &mut Writer, b: bool) {
    w.u8(u8::from(b));
}

fn get_bool(r: &mut Reader<'_>) -> Result<bool, SnapshotError> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(SnapshotError::Malformed("boolean")),
    }
}

fn put_opt_u16(w: &mut Writer, v: Option<u16>) {
    match v {
        None => w.u8(0),
        Some(v) => {
            w.u8(1);
            w.u16(v);
        }
    }
}

fn get_opt_u16(r: &mut Reader<'_>) -> Result<Option<u16>, SnapshotError> {
    Ok(if get_bool(r)? { Some(r.u16()?) } else { None })
}

fn put_duration(w: &mut Writer, d: Option<Duration>) {
    match d {
        None => w.u8(0),
        Some(d) => {
            w.u8(1);
            w.u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        }
    }
}

fn get_duration(r: &mut Reader<'_>) -> Result<Option<Duration>, SnapshotError> {
    Ok(if get_bool(r)? { Some(Duration::from_millis(r.u64()?)) } else { None })
}

fn put_ip(w: &mut Writer, a: IpAddr) {
    match a {
        IpAddr::V4(a) => {
            w.u8(4);
            w.bytes(&a.octets());
        }
        IpAddr::V6(a) => {
            w.u8(6);
            w.bytes(&a.octets());
        }
    }
}

fn get_ip(r: &mut Reader<'_>) -> Result<IpAddr, SnapshotError> {
    match r.u8()? {
        4 => Ok(IpAddr::V4(Ipv4Addr::from(r.array::<4>()?))),
        6 => Ok(IpAddr::V6(Ipv6Addr::from(r.array::<16>()?))),
        _ => Err(SnapshotError::Malformed("address family")),
    }
}

fn put_sock(w: &mut Writer, a: SocketAddr) {
    put_ip(w, a.ip());
    w.u16(a.port());
}

fn get_sock(r: &mut Reader<'_>) -> Result<SocketAddr, SnapshotError> {
    let ip = get_ip(r)?;
    Ok(SocketAddr::new(ip, r.u16()?))
}

fn put_list<T>(w: &mut Writer, items: &[T], mut f: impl FnMut(&mut Writer, &T)) {
    w.u32(items.len() as u32);
    for i in items {
        f(w, i);
    }
}

fn get_list<T>(r: &mut Reader<'_>, mut f: impl FnMut(&mut Reader<'_>) -> Result<T, SnapshotError>) -> Result<Vec<T>, SnapshotError> {
    let n = r.u32()? as usize;
    // Every element takes at least one octet: a forged count cannot make
    // us reserve more than the record holds.
    if n > r.left() {
        return Err(SnapshotError::Malformed("list length"));
    }
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(f(r)?);
    }
    Ok(v)
}

fn put_ts(w: &mut Writer, t: &TrafficSelector) {
    w.u8(t.ip_protocol);
    w.u16(t.start_port);
    w.u16(t.end_port);
    put_ip(w, t.start_addr);
    put_ip(w, t.end_addr);
}

fn get_ts(r: &mut Reader<'_>) -> Result<TrafficSelector, SnapshotError> {
    let ip_protocol = r.u8()?;
    let start_port = r.u16()?;
    let end_port = r.u16()?;
    let start_addr = get_ip(r)?;
    let end_addr = get_ip(r)?;
    if start_addr.is_ipv4() != end_addr.is_ipv4() {
        return Err(SnapshotError::Malformed("selector families"));
    }
    Ok(TrafficSelector { ip_protocol, start_port, end_port, start_addr, end_addr })
}

fn put_ike_suite(w: &mut Writer, s: &IkeSuite) {
    w.u16(s.encr.0);
    put_opt_u16(w, s.key_bits);
    w.u16(s.prf.0);
    w.u16(s.integ.0);
    w.u16(s.ke.0);
    put_list(w, &s.additional_ke, |w, k| w.u16(k.0));
    put_opt_u16(w, s.kwa.map(|k| k.0));
}

fn get_ike_suite(r: &mut Reader<'_>) -> Result<IkeSuite, SnapshotError> {
    Ok(IkeSuite {
        encr: EncrId(r.u16()?),
        key_bits: get_opt_u16(r)?,
        prf: PrfId(r.u16()?),
        integ: IntegId(r.u16()?),
        ke: KeId(r.u16()?),
        additional_ke: get_list(r, |r| Ok(KeId(r.u16()?)))?,
        kwa: get_opt_u16(r)?.map(ike_wire::KwaId),
    })
}

fn put_esp_suite(w: &mut Writer, s: &EspSuite) {
    w.u16(s.encr.0);
    put_opt_u16(w, s.key_bits);
    w.u16(s.integ.0);
    put_bool(w, s.esn);
    put_opt_u16(w, s.ke.map(|k| k.0));
    for k in s.additional_ke {
        w.u16(k.0);
    }
}

fn get_esp_suite(r: &mut Reader<'_>) -> Result<EspSuite, SnapshotError> {
    let encr = EncrId(r.u16()?);
    let key_bits = get_opt_u16(r)?;
    let integ = IntegId(r.u16()?);
    let esn = get_bool(r)?;
    let ke = get_opt_u16(r)?.map(KeId);
    let mut additional_ke = [KeId::NONE; 7];
    for k in &mut additional_ke {
        *k = KeId(r.u16()?);
    }
    Ok(EspSuite { encr, key_bits, integ, esn, ke, additional_ke })
}

impl ChildSnapshot {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.handle);
        w.u32(self.spi_in);
        w.u32(self.spi_out);
        put_esp_suite(w, &self.suite);
        w.u8(match self.mode {
            Mode::Tunnel => 0,
            Mode::Transport => 1,
        });
        put_list(w, &self.ts_local, put_ts);
        put_list(w, &self.ts_remote, put_ts);
        match &self.sec_label {
            None => w.u8(0),
            Some(l) => {
                w.u8(1);
                put_bytes(w, l);
            }
        }
        match &self.compression {
            None => w.u8(0),
            Some(c) => {
                w.u8(1);
                w.bytes(&c.values);
            }
        }
        put_duration(w, Some(self.age));
        put_duration(w, self.rekey_in);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
        Ok(Self {
            handle: r.u64()?,
            spi_in: r.u32()?,
            spi_out: r.u32()?,
            suite: get_esp_suite(r)?,
            mode: match r.u8()? {
                0 => Mode::Tunnel,
                1 => Mode::Transport,
                _ => return Err(SnapshotError::Malformed("mode")),
            },
            ts_local: get_list(r, get_ts)?,
            ts_remote: get_list(r, get_ts)?,
            sec_label: if get_bool(r)? { Some(get_bytes(r)?.to_vec()) } else { None },
            compression: if get_bool(r)? { Some(crate::compression::DietProfile { values: r.array::<7>()? }) } else { None },
            age: get_duration(r)?.ok_or(SnapshotError::Malformed("age"))?,
            rekey_in: get_duration(r)?,
        })
    }
}

impl IkeSaSnapshot {
    /// The key a store files this snapshot under: our IKE SPI (unique per
    /// endpoint, RFC 7296 §2.6), big-endian.
    pub fn key(&self) -> [u8; 8] {
        let ours = if self.initiator { self.spi_i } else { self.spi_r };
        ours.to_be_bytes()
    }

    /// The plaintext record (secrets included: seal it).
    pub fn encode(&self) -> Secret {
        let mut w = Writer::new();
        w.bytes(MAGIC);
        w.u8(VERSION);
        w.u64(self.handle);
        put_bytes(&mut w, self.connection.as_bytes());
        put_bool(&mut w, self.initiator);
        w.u64(self.spi_i);
        w.u64(self.spi_r);
        put_sock(&mut w, self.local);
        put_sock(&mut w, self.remote);
        put_bool(&mut w, self.nat_local);
        put_bool(&mut w, self.nat_remote);
        put_ike_suite(&mut w, &self.suite);
        for k in [&self.sk_d, &self.sk_ei, &self.sk_ai, &self.sk_er, &self.sk_ar, &self.sk_pi, &self.sk_pr] {
            put_bytes(&mut w, k);
        }
        w.u32(self.next_request_id);
        w.u32(self.next_expected_id);
        match &self.pending_request {
            None => w.u8(0),
            Some(p) => {
                w.u8(1);
                w.u32(p.message_id);
                w.u8(p.exchange);
                put_list(&mut w, &p.packets, |w, b| put_bytes(w, b));
            }
        }
        put_bool(&mut w, self.mid_sync);
        match &self.remote_id {
            None => w.u8(0),
            Some(id) => {
                w.u8(1);
                w.u8(id.id_type().0);
                put_bytes(&mut w, &id.data());
            }
        }
        put_list(&mut w, &self.peer_hashes, |w, h| w.u16(*h));
        put_list(&mut w, &self.leases, |w, a| put_ip(w, *a));
        put_bool(&mut w, self.ppk_used);
        match self.fragment_len {
            None => w.u8(0),
            Some(n) => {
                w.u8(1);
                w.u32(n);
            }
        }
        put_duration(&mut w, self.rekey_in);
        put_list(&mut w, &self.children, |w, c| c.encode(w));
        Secret::new(w.into_vec())
    }

    /// Parses a record made by [`Self::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let mut r = Reader::new(bytes);
        if r.take(4).map_err(|_| SnapshotError::Magic)? != MAGIC {
            return Err(SnapshotError::Magic);
        }
        let v = r.u8()?;
        if v != VERSION {
            return Err(SnapshotError::Version(v));
        }
        let handle = r.u64()?;
        let connection = String::from_utf8(get_bytes(&mut r)?.to_vec()).map_err(|_| SnapshotError::Malformed("connection name"))?;
        let initiator = get_bool(&mut r)?;
        let spi_i = r.u64()?;
        let spi_r = r.u64()?;
        let local = get_sock(&mut r)?;
        let remote = get_sock(&mut r)?;
        let nat_local = get_bool(&mut r)?;
        let nat_remote = get_bool(&mut r)?;
        let suite = get_ike_suite(&mut r)?;
        let mut key = || -> Result<Secret, SnapshotError> { Ok(Secret::new(get_bytes(&mut r)?.to_vec())) };
        let (sk_d, sk_ei, sk_ai, sk_er, sk_ar, sk_pi, sk_pr) = (key()?, key()?, key()?, key()?, key()?, key()?, key()?);
        let next_request_id = r.u32()?;
        let next_expected_id = r.u32()?;
        let pending_request = if get_bool(&mut r)? {
            let message_id = r.u32()?;
            let exchange = r.u8()?;
            let packets = get_list(&mut r, |r| Ok(get_bytes(r)?.to_vec()))?;
            Some(PendingRequest { message_id, exchange, packets })
        } else {
            None
        };
        let mid_sync = get_bool(&mut r)?;
        let remote_id = if get_bool(&mut r)? {
            let t = IdType(r.u8()?);
            let data = get_bytes(&mut r)?;
            Some(Identity::from_wire(t, data).ok_or(SnapshotError::Malformed("identity"))?)
        } else {
            None
        };
        let peer_hashes = get_list(&mut r, |r| Ok(r.u16()?))?;
        let leases = get_list(&mut r, get_ip)?;
        let ppk_used = get_bool(&mut r)?;
        let fragment_len = if get_bool(&mut r)? { Some(r.u32()?) } else { None };
        let rekey_in = get_duration(&mut r)?;
        let children = get_list(&mut r, ChildSnapshot::decode)?;
        if !r.is_empty() {
            return Err(SnapshotError::Malformed("trailing bytes"));
        }
        if spi_i == 0 || spi_r == 0 {
            return Err(SnapshotError::Malformed("zero SPI"));
        }
        Ok(Self {
            handle,
            connection,
            initiator,
            spi_i,
            spi_r,
            local,
            remote,
            nat_local,
            nat_remote,
            suite,
            sk_d,
            sk_ei,
            sk_ai,
            sk_er,
            sk_ar,
            sk_pi,
            sk_pr,
            next_request_id,
            next_expected_id,
            pending_request,
            mid_sync,
            remote_id,
            peer_hashes,
            leases,
            ppk_used,
            fragment_len,
            rekey_in,
            children,
        })
    }
}

/// What one event-loop turn changed: snapshots to write (new or changed
/// established IKE SAs) and store keys to delete (SAs no longer
/// established, or gone).
#[derive(Debug, Default)]
pub struct Changes {
    pub put: Vec<IkeSaSnapshot>,
    pub delete: Vec<[u8; 8]>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.put.is_empty() && self.delete.is_empty()
    }
}

/// What [`crate::Endpoint::restore`] made of one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreOutcome {
    Restored { ike_sa: crate::IkeSaHandle, children: usize },
    /// The connection it belonged to is no longer configured.
    NoConnection(String),
    /// Its keys cannot be set up again (a suite this build lacks).
    BadKeys,
    /// Its SPI or handle is taken (the endpoint was not fresh).
    Duplicate,
}
