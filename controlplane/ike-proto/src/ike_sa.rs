//! One IKE SA: its lifecycle state, its Child SAs, the exchange manager
//! glue that routes each message to its task, and the queue of work.
//!
//! One task per exchange, each in a file of its own with its build and
//! process steps in both roles (strongSwan's `sa/ikev2/tasks/`):
//! * `ike_init`: IKE_SA_INIT (RFC 7296 §1.2, §2.6 cookies, §2.7 INVALID_KE
//!   retry, §2.23 NAT detection);
//! * `intermediate`: RFC 9242 IKE_INTERMEDIATE with RFC 9370 additional key
//!   exchanges, the RFC 9867 PPK, and the IntAuth chain;
//! * `ike_auth`: IKE_AUTH with PSK (§2.15) or RFC 7427 signatures, RFC 8784
//!   PPKs, and the first Child SA (§1.2); `ike_config`: its CP payload
//!   (§3.15);
//! * `child_sa`: what every Child SA negotiation shares (§2.9 narrowing,
//!   §2.17 KEYMAT, install and remove);
//! * `child_create`: CREATE_CHILD_SA for new and rekeyed Child SAs (§1.3,
//!   simultaneous rekeys §2.8.1);
//! * `ike_rekey`: IKE SA rekey (§1.3.2, §2.18, §2.8.1);
//! * `followup`: RFC 9370 IKE_FOLLOWUP_KE after a CREATE_CHILD_SA;
//! * `informational`: INFORMATIONAL deletes (§1.4) and liveness checks
//!   (§2.4, started from the queue here);
//! * RFC 9838 G-IKEv2: `gsa_auth` (GSA_AUTH, in place of IKE_AUTH on a
//!   connection with groups), `gsa_registration` (GSA_REGISTRATION),
//!   `gsa_inband_rekey` (GSA_INBAND_REKEY); the multicast GSA_REKEY runs on
//!   no IKE SA (`crate::group::rekey`);
//! * `mobike`: RFC 4555 MOBIKE as the responder (UPDATE_SA_ADDRESSES,
//!   COOKIE2, return-routability checks).
//!
//! Guarantees:
//! * Each request we send belongs to exactly one [`Task`] (the active one);
//!   its response is processed by that task's `process` step and nowhere
//!   else. Further work waits in a queue of [`Queued`] tasks until the
//!   exchange manager's window has room.
//! * Responder steps build a response or fail with a [`ProtoError`]; the
//!   error's Notify is the response (or there is none, and the request is
//!   dropped), in one place (`IkeSa::handle_request`).
//! * Nothing is processed from a message whose SK payload did not verify.
//! * The initial exchanges run IKE_SA_INIT, one RFC 9242 IKE_INTERMEDIATE
//!   per negotiated RFC 9370 additional key exchange, then IKE_AUTH through
//!   `IkeSa::start_next_initial_exchange`. Each IKE_INTERMEDIATE is protected
//!   with the keys of the previous generation, extends IntAuth_i/IntAuth_r
//!   with those keys' SK_pi/SK_pr over its unfragmented `A | P` (RFC 9242
//!   §3.3), then the keys are derived again (`SKEYSEED(n) = prf(SK_d(n-1),
//!   SK(n) | Ni | Nr)`); both AUTH payloads sign `IntAuth_iN | IntAuth_rN |
//!   IKE_AUTH_MID`. A responder refuses IKE_AUTH before every negotiated
//!   exchange ran and any IKE_INTERMEDIATE beyond them.
//! * CREATE_CHILD_SA exchanges that negotiate additional key exchanges
//!   continue over IKE_FOLLOWUP_KE (module `followup`); the new SA exists
//!   only after the last one.
use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ike_wire::{
    parse_inner, Delete, ExchangeType, Flags, Header, KeId, Message, Notify, NotifyType, Payload, ProtocolId, NON_ESP_MARKER,
};

use crate::config::{ConnectionConfig, Family, Identity, Mode};
use crate::error::ProtoError;
use crate::event::{ChildSaHandle, DownReason, Event, IkeSaHandle, Transmit};
use crate::exchange::{ExchangeManager, RequestCheck, Timeout};
use crate::fragment::{self, Reassembly};
use crate::message;
use crate::proposal::EspSuite;
use crate::sa::{Ctx, IkeKeys, Role};
use crate::time::Time;
use crate::ts::TrafficSelector;

mod child_create;
mod child_sa;
mod eap;
mod followup;
mod gsa_auth;
mod gsa_inband_rekey;
mod gsa_registration;
mod ike_auth;
mod ike_config;
mod ike_init;
mod ike_rekey;
mod informational;
mod intermediate;
mod mobike;
mod resume;

pub use child_create::CreateChildTask;
pub use child_sa::ChildRequest;
pub use resume::{Fingerprint, MidSyncTask, MID_SYNC_MARGIN};
pub use gsa_auth::GsaAuthTask;
pub use ike_auth::{IkeAuthTask, PpkKeys};
pub use ike_init::IkeSaInitTask;
pub use ike_rekey::RekeyIkeTask;
pub use intermediate::IntermediateTask;
pub use mobike::{parse as parse_mobike, EspPath, Mobike, MobikeCheckTask, MobikeError, MobikeOutcome, MobikeRefusal, MobikeRequest, MobikeSa};
use child_sa::Via;
use ike_auth::{PendingAuth, Signatures};

/// Test peer: an N(NO_NATS_ALLOWED) naming `src` and `dst` (RFC 4555 §4.2.6).
#[cfg(test)]
pub(crate) fn mobike_no_nats_for_test(src: SocketAddr, dst: SocketAddr) -> Payload<'static> {
    Payload::Notify(Notify::new(NotifyType::NO_NATS_ALLOWED, mobike::no_nats_data(src, dst)))
}

/// How many COOKIE or INVALID_KE_PAYLOAD retries of IKE_SA_INIT we make.
const MAX_INIT_RETRIES: u8 = 3;

/// How long an IKE SA the peer rekeyed waits for the peer's Delete before
/// deleting it itself: the peer's retransmissions of a lost Delete fit in
/// (strongSwan's five tries take about 2.5 minutes).
const REKEYED_DELETE_WAIT: std::time::Duration = std::time::Duration::from_secs(180);

/// Lifecycle of an IKE SA.
pub enum IkeState {
    /// Initiator: the initial exchanges are in flight (their data lives in
    /// the active task).
    Connecting,
    /// Responder: IKE_SA_INIT answered, waiting for IKE_AUTH ("half-open").
    HalfOpen(Box<InitData>),
    Established,
    /// Rekeyed (§2.18): the Child SAs moved to `successor`; the old SA waits
    /// for its Delete.
    Rekeyed { successor: IkeSaHandle },
    /// Our Delete is in flight.
    Deleting,
    /// The peer deleted this SA, its simultaneous rekey having won, while
    /// our own rekey request is still unanswered: the Child SAs are with
    /// `successor`; we only wait for that answer (to delete the redundant SA
    /// it creates, §2.8.1), then close.
    PeerDeleted { successor: IkeSaHandle },
    /// Gone; kept until `until` only to answer retransmitted requests.
    Closed { until: Time },
}

/// What IKE_AUTH needs from IKE_SA_INIT (§2.15).
pub struct InitData {
    pub ni: Vec<u8>,
    pub nr: Vec<u8>,
    /// The IKE_SA_INIT request (the last one sent) and response, from the
    /// IKE header on.
    pub message1: Vec<u8>,
    pub message2: Vec<u8>,
    /// RFC 9370 additional key exchanges still to run, one IKE_INTERMEDIATE
    /// exchange each, in ADDKE order.
    pub pending_ke: VecDeque<KeId>,
    /// RFC 9242 §3.3.1: `(IntAuth_iN, IntAuth_rN)` after the last
    /// IKE_INTERMEDIATE exchange; `None` if there was none.
    pub int_auth: Option<(Vec<u8>, Vec<u8>)>,
    /// Responder: IKE_INTERMEDIATE exchanges without a key exchange
    /// answered so far (RFC 9242 §3 lets the initiator run them for other
    /// purposes, e.g. libreswan 5.2's `intermediate=yes`); bounded.
    pub empty_intermediates: u8,
    /// RFC 9867: where the PPK negotiated in IKE_INTERMEDIATE stands.
    pub ppk_int: PpkInt,
}

/// RFC 9867 progress of the initial exchanges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PpkInt {
    /// Not negotiated: N(USE_PPK_INT) did not go both ways (RFC 8784 or no
    /// PPK instead).
    Off,
    /// Negotiated; N(PPK_IDENTITY_KEY) goes in the last IKE_INTERMEDIATE
    /// exchange (the one of the last RFC 9370 additional key exchange, or
    /// one of its own).
    Pending,
    /// The PPK with this PPK_ID (type octet, then the ID) was mixed into
    /// the keys.
    Used(Vec<u8>),
    /// The peers had no PPK in common; the keys stayed classical.
    NotUsed,
}

/// A Child SA.
#[derive(Clone)]
pub struct ChildSa {
    pub handle: ChildSaHandle,
    pub spi_in: u32,
    pub spi_out: u32,
    pub suite: EspSuite,
    pub mode: Mode,
    pub ts_local: Vec<TrafficSelector>,
    pub ts_remote: Vec<TrafficSelector>,
    /// RFC 9478 label (normalized, NUL-terminated) if negotiated.
    pub sec_label: Option<Vec<u8>>,
    /// Diet-ESP profile, kept by rekeys.
    pub compression: Option<crate::compression::DietProfile>,
    pub state: ChildState,
    pub installed_at: Time,
    /// When our lifetime-driven rekey starts (none without `rekey_secs`);
    /// pushed back after a TEMPORARY_FAILURE (§2.25: not at once).
    pub rekey_due: Option<Time>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildState {
    Installed,
    /// Our rekey (or a queued one) is under way.
    Rekeying,
    /// Replaced; the peer or we will delete it.
    Rekeyed,
    /// Our Delete is in flight.
    Deleting,
}

/// Work waiting for the window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Queued {
    CreateChild,
    RekeyChild(ChildSaHandle),
    DeleteChild(ChildSaHandle),
    RekeyIke,
    /// Delete this SA after a rekey (§2.18 step 4).
    DeleteIke,
    /// The owner's Terminate: delete the IKE SA, or its successor if it is
    /// rekeyed meanwhile.
    Terminate,
    Dpd,
    /// RFC 9838: join one more group of this connection.
    GsaRegistration(crate::group::GroupId),
    /// RFC 9838: push the next of `pending_inband` (GCKS).
    GsaInbandRekey,
    /// RFC 6311: resynchronise Message IDs after a restore.
    MidSync,
    /// RFC 4555 §3.7: check that the peer's new address is reachable.
    MobikeCheck,
}

/// The initiator's side of the exchange in flight, with its data.
pub enum Task {
    IkeSaInit(IkeSaInitTask),
    IkeAuth(Box<IkeAuthTask>),
    /// RFC 9242/9370: an IKE_INTERMEDIATE exchange with one additional KE.
    Intermediate(Box<IntermediateTask>),
    /// RFC 9370 §2.2.4: an IKE SA rekey's additional key exchanges.
    FollowupKe(Box<followup::FollowupTask>),
    CreateChild(Box<CreateChildTask>),
    RekeyIke(Box<RekeyIkeTask>),
    DeleteChildren(Vec<ChildSaHandle>),
    /// Delete the IKE SA; the reason is reported when it is done.
    DeleteIke(DownReason),
    Dpd,
    /// RFC 9838 GSA_AUTH (instead of IKE_AUTH).
    GsaAuth(Box<GsaAuthTask>),
    GsaRegistration(crate::group::GroupId),
    GsaInbandRekey,
    /// RFC 6311 IKEV2_MESSAGE_ID_SYNC in flight (Message ID 0).
    MidSync(resume::MidSyncTask),
    /// RFC 4555 §3.7: our return-routability check (COOKIE2) in flight.
    MobikeCheck(Box<MobikeCheckTask>),
    /// A request restored from a snapshot, resent as it was; its task's
    /// state is gone, so the answer only completes the exchange.
    Resumed,
}

/// A responder step's answer, and what happens to the SA after it is sent.
struct Reply {
    payloads: Vec<Payload<'static>>,
    then: Then,
}

enum Then {
    Continue,
    Close(DownReason),
    /// After an IKE_INTERMEDIATE response is sent: extend IntAuth_r with it
    /// and switch to the keys of the additional key exchange.
    KeyUpdate(Box<KeyUpdate>),
    /// No answer yet: the request waits for its [`crate::auth_job`].
    Defer,
}

struct KeyUpdate {
    /// `None` after an IKE_INTERMEDIATE that changed no key: IntAuth
    /// grows, the keys stay.
    keys: Option<IkeKeys>,
    /// The exchange ran the next RFC 9370 additional key exchange.
    additional_ke: bool,
    /// RFC 9867: the outcome of the PPK negotiated in this exchange.
    ppk: Option<PpkInt>,
    int_auth_i: Vec<u8>,
}

impl Reply {
    fn new(payloads: Vec<Payload<'static>>) -> Self {
        Self { payloads, then: Then::Continue }
    }
}

/// What an IKE_SA_INIT request will be answered with, decided before any
/// key exchange ([`IkeSa::choose_init`]).
pub struct InitChoice {
    pub conn: Arc<ConnectionConfig>,
    pub suite: crate::proposal::IkeSuite,
    pub answer: ike_wire::Sa<'static>,
    pub intermediate: bool,
}

pub struct IkeSa {
    pub handle: IkeSaHandle,
    pub conn: Arc<ConnectionConfig>,
    pub role: Role,
    pub spi_i: u64,
    pub spi_r: u64,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub nat_local: bool,
    pub nat_remote: bool,
    pub state: IkeState,
    pub keys: Option<IkeKeys>,
    pub xm: ExchangeManager,
    pub active: Option<Task>,
    pub queue: VecDeque<Queued>,
    pub children: BTreeMap<ChildSaHandle, ChildSa>,
    pub remote_id: Option<Identity>,
    pub peer_hashes: Vec<u16>,
    pub leases: Vec<IpAddr>,
    pub last_inbound: Time,
    pub half_open_timeout: std::time::Duration,
    pub rekey_at: Option<Time>,
    /// (SPIi, Ni) of the IKE_SA_INIT request this responder SA answered, to
    /// spot its retransmits (§2.1: not by SPIi alone).
    pub init_key: Option<(u64, Vec<u8>)>,
    /// Peer SPIs named in Delete payloads while our CREATE_CHILD_SA was in
    /// flight, before we knew them: the peer deleted the Child SA it had
    /// just created for us and our response got lost (it answers our
    /// retransmit from its cache). Such a Child SA must not be installed.
    early_deletes: Vec<u32>,
    /// Set on the SA a peer's simultaneous rekey created while ours is still
    /// unanswered: the old SA, to which parked Child SAs return if the peer
    /// deletes this one as redundant.
    pub predecessor: Option<IkeSaHandle>,
    /// RFC 7383: the fragment size, once both peers announced support.
    pub fragment_len: Option<usize>,
    fragmentation_cfg: Option<crate::config::FragmentationConfig>,
    reassembly: Reassembly,
    /// RFC 8784: both ends sent N(USE_PPK) in IKE_SA_INIT.
    ppk_negotiated: bool,
    /// RFC 8784: a PPK was mixed into the keys (inherited by rekeyed SAs).
    pub ppk_used: bool,
    /// What the ipsecme extensions negotiated on this SA.
    pub ext: ExtState,
    /// Responder: an IKE SA rekey or Child SA waiting for IKE_FOLLOWUP_KE.
    followup: Option<followup::PendingFollowup>,
    /// What [`Self::child_install`] needs to derive KEYMAT again once the
    /// RFC 9370 additional key exchanges of a Child SA are done (its
    /// install is held back until then).
    pending_keymat: Option<followup::ChildKeymat>,
    /// Responder: the IKE_AUTH request waiting for its signature job or
    /// its AAA answer (EAP).
    pending_auth: Option<Box<PendingAuth>>,
    /// Responder: the EAP conversation of IKE_AUTH (RFC 7296 §2.16).
    eap: Option<Box<eap::EapState>>,
    /// Initiator: IKE_AUTH waits for our signature(s) from a job.
    /// (These three are boxed: rarely set, and an IKE SA is held 100k
    /// times.)
    pending_start: Option<Box<InitData>>,
    /// Initiator: the IKE_AUTH response (first inner payload, inner chain,
    /// Message ID) waiting for the job checking the responder's signature;
    /// its task stays in `active`.
    pending_complete: Option<Box<(ike_wire::PayloadType, Vec<u8>, u32)>>,
    /// RFC 9838 GCKS: close this registration SA then (§2.3.4).
    pub group_close_at: Option<Time>,
    /// RFC 9838 GCKS: groups whose TEKs go to this member in-band.
    pub inband_groups: Vec<crate::group::GroupId>,
    /// RFC 9838 GCKS: GSA_INBAND_REKEY requests waiting for the window.
    pending_inband: VecDeque<Vec<Payload<'static>>>,
    /// RFC 6311: we announced IKEV2_MESSAGE_ID_SYNC_SUPPORTED on this SA
    /// (or the SA it was rekeyed from), so the peer answers a sync.
    pub mid_sync: bool,
}

/// Per-SA state of the ipsecme extensions (split DNS, RFC 8983, RFC 9593).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtState {
    /// RFC 8598 domains: accepted (initiator) or pushed (responder).
    pub dns_domains: Vec<crate::split_dns::DnsDomain>,
    /// RFC 8983: the address families the responder says it assigns.
    pub peer_allowed: Vec<Family>,
    /// RFC 9593: the peer's SUPPORTED_AUTH_METHODS, if it sent them.
    pub peer_auth_methods: Option<Vec<crate::auth_methods::Announcement>>,
    /// The scheme our AUTH was signed with (certificates only).
    pub auth_scheme: Option<ike_crypto::sig::SignatureScheme>,
    /// RFC 4555: MOBIKE, if negotiated, and the Child SAs' path.
    pub mobike: Mobike,
}

fn supported_auth_methods(conn: &ConnectionConfig) -> Payload<'static> {
    let anns = crate::auth_methods::ours(&conn.remote_auth, &conn.ext.signature_schemes);
    Payload::Notify(Notify::new(NotifyType::SUPPORTED_AUTH_METHODS, crate::auth_methods::encode(&anns)))
}

fn peer_auth_methods(n: Option<&Notify<'_>>) -> Option<Vec<crate::auth_methods::Announcement>> {
    n.and_then(|n| crate::auth_methods::parse(&n.data))
}

fn notify_payload(t: NotifyType) -> Payload<'static> {
    Payload::Notify(Notify::new(t, Vec::new()))
}

fn spi_of(n: &Notify<'_>) -> Option<u32> {
    <[u8; 4]>::try_from(&n.spi[..]).ok().map(u32::from_be_bytes)
}

/// How long to wait before retrying an exchange refused with
/// TEMPORARY_FAILURE: 5 to 15 s, drawn from the injected RNG so that two
/// peers that collided do not collide again.
fn retry_backoff(ctx: &mut Ctx<'_>) -> std::time::Duration {
    std::time::Duration::from_millis(5_000 + u64::from(ctx.rng.next_u32() % 10_000))
}

/// When a new IKE SA of `conn` rekeys: `ike_rekey_after`, up to 10% early
/// (from the injected RNG) so both peers do not start at once.
fn ike_rekey_time(conn: &ConnectionConfig, ctx: &mut Ctx<'_>) -> Option<Time> {
    let after = conn.ike_rekey_after?;
    let window_ms = u64::try_from(after.as_millis() / 10).unwrap_or(u64::MAX).max(1);
    let early = std::time::Duration::from_millis(u64::from(ctx.rng.next_u32()) % window_ms);
    Some(ctx.now + after.saturating_sub(early))
}

/// The lowest of two nonces (§2.8.1: octet by octet, shorter is lower).
fn min_nonce<'a>(a: &'a [u8], b: &'a [u8]) -> &'a [u8] {
    a.min(b)
}

impl IkeSa {
    #[allow(clippy::too_many_arguments)]
    fn new(
        handle: IkeSaHandle,
        conn: Arc<ConnectionConfig>,
        role: Role,
        spi_i: u64,
        spi_r: u64,
        local: SocketAddr,
        remote: SocketAddr,
        ctx: &Ctx<'_>,
    ) -> Self {
        Self {
            handle,
            conn,
            role,
            spi_i,
            spi_r,
            local,
            remote,
            nat_local: false,
            nat_remote: false,
            state: IkeState::Connecting,
            keys: None,
            xm: ExchangeManager::new(ctx.config.retransmit),
            active: None,
            queue: VecDeque::new(),
            children: BTreeMap::new(),
            remote_id: None,
            peer_hashes: Vec::new(),
            leases: Vec::new(),
            last_inbound: ctx.now,
            half_open_timeout: ctx.config.half_open_timeout,
            rekey_at: None,
            init_key: None,
            early_deletes: Vec::new(),
            predecessor: None,
            fragment_len: None,
            fragmentation_cfg: ctx.config.fragmentation,
            reassembly: Reassembly::default(),
            ppk_negotiated: false,
            ppk_used: false,
            ext: ExtState::default(),
            followup: None,
            pending_keymat: None,
            pending_auth: None,
            eap: None,
            pending_start: None,
            pending_complete: None,
            group_close_at: None,
            inband_groups: Vec::new(),
            pending_inband: VecDeque::new(),
            mid_sync: false,
        }
    }

    /// The state's name, for listings.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            IkeState::Connecting => "Connecting",
            IkeState::HalfOpen(_) => "HalfOpen",
            IkeState::Established => "Established",
            IkeState::Rekeyed { .. } => "Rekeyed",
            IkeState::Deleting => "Deleting",
            IkeState::PeerDeleted { .. } => "PeerDeleted",
            IkeState::Closed { .. } => "Closed",
        }
    }

    pub fn is_half_open(&self) -> bool {
        matches!(self.state, IkeState::HalfOpen(_))
    }

    pub fn is_established(&self) -> bool {
        matches!(self.state, IkeState::Established)
    }

    pub fn closed_until(&self) -> Option<Time> {
        match self.state {
            IkeState::Closed { until } => Some(until),
            _ => None,
        }
    }

    /// Our SPI of this IKE SA.
    pub fn local_spi(&self) -> u64 {
        match self.role {
            Role::Initiator => self.spi_i,
            Role::Responder => self.spi_r,
        }
    }

    // ------------------------------------------------------------------
    // Sending

    fn transmit(&self, ctx: &mut Ctx<'_>, bytes: &[u8]) {
        let payload = if self.local.port() == ctx.config.natt_port {
            // RFC 3948 §2.2 / RFC 7296 §2.23: IKE on 4500 after the marker.
            let mut v = NON_ESP_MARKER.to_vec();
            v.extend_from_slice(bytes);
            v
        } else {
            bytes.to_vec()
        };
        ctx.out.transmits.push_back(Transmit { local: self.local, remote: self.remote, payload });
    }

    fn header(&self, exchange: ExchangeType, response: bool, message_id: u32) -> Header {
        Header::new(self.spi_i, self.spi_r, exchange, Flags::new(self.role == Role::Initiator, response), message_id)
    }

    fn send_request(&mut self, ctx: &mut Ctx<'_>, exchange: ExchangeType, inner: &[Payload<'_>]) -> Result<(), ProtoError> {
        let header = self.header(exchange, false, self.xm.next_request_id());
        let keys = self.keys.as_mut().ok_or(ProtoError::Invalid("no keys"))?;
        let packets = fragment::seal(header, inner, &mut *keys.outbound, ctx.rng, self.fragment_len)?;
        for p in &packets {
            self.transmit(ctx, p);
        }
        self.xm.start_request(ctx.now, exchange, packets);
        Ok(())
    }

    /// Seals, sends and caches a response; returns its first datagram.
    fn send_response(&mut self, ctx: &mut Ctx<'_>, request: &Header, request_bytes: &[u8], inner: &[Payload<'_>]) -> Option<Vec<u8>> {
        let header = self.header(request.exchange_type, true, request.message_id);
        let keys = self.keys.as_mut()?;
        match fragment::seal(header, inner, &mut *keys.outbound, ctx.rng, self.fragment_len) {
            Ok(packets) => {
                for p in &packets {
                    self.transmit(ctx, p);
                }
                let first = packets.first().cloned();
                self.xm.record_response(request.message_id, request_bytes, packets);
                first
            }
            Err(_) => {
                self.xm.skip_request(request.message_id);
                None
            }
        }
    }

    // ------------------------------------------------------------------
    // Incoming

    /// A datagram for this SA (marker stripped, header parsed).
    pub fn handle_datagram(&mut self, ctx: &mut Ctx<'_>, header: &Header, bytes: &[u8], local: SocketAddr, remote: SocketAddr) {
        // The I flag says who sent it (§3.1): a message from the original
        // initiator has it set.
        let from_initiator = header.flags.initiator();
        if from_initiator == (self.role == Role::Initiator) {
            return;
        }
        if header.flags.response() {
            self.handle_response(ctx, header, bytes, local, remote);
        } else {
            self.handle_request(ctx, header, bytes, local, remote);
        }
        self.pump(ctx);
    }

    fn handle_request(&mut self, ctx: &mut Ctx<'_>, header: &Header, bytes: &[u8], local: SocketAddr, remote: SocketAddr) {
        if header.message_id == 0
            && header.exchange_type == ExchangeType::INFORMATIONAL
            && self.mid_sync
            && self.xm.next_expected_id() != 0
            && matches!(self.state, IkeState::Established)
        {
            // RFC 6311 §4: a peer restored from a snapshot resynchronises.
            self.respond_mid_sync(ctx, header, bytes);
            return;
        }
        match self.xm.check_request(header.message_id, bytes) {
            RequestCheck::Resend(packets) => {
                let packets = packets.to_vec();
                for p in packets {
                    self.transmit(ctx, &p);
                }
                return;
            }
            RequestCheck::Drop => return,
            RequestCheck::New => {}
        }
        if matches!(self.state, IkeState::Closed { .. } | IkeState::Connecting | IkeState::PeerDeleted { .. }) {
            return;
        }
        if self.pending_auth.as_ref().is_some_and(|p| p.header.message_id == header.message_id) {
            // A retransmit while its signature job runs: the answer comes
            // when the job is done.
            return;
        }
        let Ok(msg) = Message::parse(bytes) else { return };
        let Some((first, plain, request_bytes)) = self.decrypt(ctx, header, bytes, &msg) else { return };
        // Authenticated: the peer is alive, and behind a NAT it may move
        // (§2.23); answer where the request came from.
        self.last_inbound = ctx.now;
        if matches!(self.state, IkeState::HalfOpen(_)) || self.nat_local || self.nat_remote {
            self.local = local;
            self.remote = remote;
        }
        let exchange = header.exchange_type;
        let result = match parse_inner(first, &plain) {
            Err(e) => Err(ProtoError::from(e)),
            Ok(payloads) => match (exchange, &self.state) {
                (ExchangeType::IKE_AUTH, IkeState::HalfOpen(_)) => self.respond_ike_auth(ctx, &payloads, header.message_id, Signatures::MayDefer),
                (ExchangeType::IKE_INTERMEDIATE, IkeState::HalfOpen(_)) => self.respond_intermediate(ctx, &payloads, &request_bytes, &plain),
                (ExchangeType::CREATE_CHILD_SA, IkeState::Established | IkeState::Rekeyed { .. } | IkeState::Deleting) => {
                    self.respond_create_child(ctx, &payloads)
                }
                (ExchangeType::IKE_FOLLOWUP_KE, IkeState::Established | IkeState::Rekeyed { .. } | IkeState::Deleting) => {
                    self.respond_followup(ctx, &payloads)
                }
                (ExchangeType::GSA_AUTH, IkeState::HalfOpen(_)) => self.respond_gsa_auth(ctx, &payloads, header.message_id),
                (ExchangeType::GSA_REGISTRATION, IkeState::Established) => self.respond_gsa_registration(ctx, &payloads),
                (ExchangeType::GSA_INBAND_REKEY, IkeState::Established) => self.respond_gsa_inband_rekey(ctx, &payloads),
                (ExchangeType::INFORMATIONAL, IkeState::HalfOpen(_)) => Err(ProtoError::Invalid("INFORMATIONAL before IKE_AUTH")),
                (ExchangeType::INFORMATIONAL, _) => self.respond_informational(ctx, &payloads, local, remote),
                _ => Err(ProtoError::MessageId),
            },
        };
        if matches!(&result, Ok(Reply { then: Then::Defer, .. })) {
            self.pending_auth = Some(Box::new(PendingAuth { header: *header, request_bytes, first, plain }));
            return;
        }
        self.answer(ctx, header, &request_bytes, result);
    }
    /// Sends the response to a request (or the Notify its error maps to)
    /// and does what follows it.
    fn answer(&mut self, ctx: &mut Ctx<'_>, header: &Header, request_bytes: &[u8], result: Result<Reply, ProtoError>) {
        let exchange = header.exchange_type;
        let reply = match result {
            Ok(r) => r,
            Err(e) => {
                let then = if exchange == ExchangeType::IKE_AUTH || exchange == ExchangeType::IKE_INTERMEDIATE || exchange == ExchangeType::GSA_AUTH {
                    // §2.21.2: a failed IKE_AUTH leaves no IKE SA.
                    Then::Close(match e {
                        ProtoError::AuthenticationFailed => DownReason::AuthenticationFailed,
                        ref e => DownReason::Refused(e.notify().map_or(NotifyType::INVALID_SYNTAX, |n| n.notify_type)),
                    })
                } else {
                    Then::Continue
                };
                match e.notify() {
                    Some(n) => Reply { payloads: vec![Payload::Notify(n)], then },
                    None => {
                        self.xm.skip_request(header.message_id);
                        return;
                    }
                }
            }
        };
        let sent = self.send_response(ctx, header, request_bytes, &reply.payloads);
        match reply.then {
            Then::Continue | Then::Defer => {}
            Then::Close(reason) => self.close(ctx, reason),
            Then::KeyUpdate(u) => {
                let done = sent.ok_or(ProtoError::Invalid("IKE_INTERMEDIATE response")).and_then(|first| self.finish_intermediate(*u, &first, &reply.payloads));
                if done.is_err() {
                    self.close(ctx, DownReason::Refused(NotifyType::INVALID_SYNTAX));
                }
            }
        }
    }

    fn handle_response(&mut self, ctx: &mut Ctx<'_>, header: &Header, bytes: &[u8], local: SocketAddr, remote: SocketAddr) {
        let exchange = header.exchange_type;
        // (`is_some_and`, not `is_none_or`: the workspace targets Rust 1.81.)
        if !self.xm.outstanding(header.message_id).is_some_and(|o| o.exchange == exchange) {
            return;
        }
        let Ok(msg) = Message::parse(bytes) else { return };
        if exchange == ExchangeType::IKE_SA_INIT {
            self.process_ike_sa_init_response(ctx, &msg, bytes, local, remote);
            return;
        }
        let Some((first, plain, first_bytes)) = self.decrypt(ctx, header, bytes, &msg) else { return };
        self.last_inbound = ctx.now;
        let Some(outstanding) = self.xm.take_response(header.message_id, exchange) else { return };
        let Some(task) = self.active.take() else { return };
        drop(outstanding);
        let payloads = match parse_inner(first, &plain) {
            Ok(p) => p,
            // A response we cannot read ends its exchange; in the initial
            // exchanges that ends the IKE SA (§2.21.2).
            Err(_) if matches!(task, Task::IkeAuth(_) | Task::Intermediate(_) | Task::GsaAuth(_)) => {
                self.close(ctx, DownReason::Refused(NotifyType::INVALID_SYNTAX));
                return;
            }
            // Any other exchange ends as one answered with nothing useful:
            // its task cleans up as for a refusal (a Delete still deletes),
            // instead of leaving SPIs reserved and states half-changed.
            Err(_) => Vec::new(),
        };
        match task {
            Task::IkeSaInit(_) => {}
            Task::IkeAuth(t) => self.process_ike_auth_response(ctx, *t, &payloads, first, &plain, Signatures::MayDefer),
            Task::Intermediate(t) => self.process_intermediate_response(ctx, *t, &payloads, &first_bytes, &plain),
            Task::CreateChild(t) => self.process_create_child_response(ctx, *t, &payloads),
            Task::RekeyIke(t) => self.process_rekey_ike_response(ctx, *t, &payloads),
            Task::FollowupKe(t) => self.process_followup_response(ctx, *t, &payloads),
            Task::DeleteChildren(handles) => {
                for h in handles {
                    self.remove_child(ctx, h);
                }
            }
            Task::DeleteIke(reason) => self.close(ctx, reason),
            Task::Dpd | Task::GsaInbandRekey => {}
            Task::MidSync(t) => self.process_mid_sync_response(ctx, t, &payloads),
            Task::MobikeCheck(t) => self.process_mobike_check_response(ctx, *t, &payloads),
            Task::Resumed => {}
            Task::GsaAuth(t) => self.process_gsa_auth_response(ctx, *t, &payloads),
            Task::GsaRegistration(g) => self.process_gsa_registration_response(ctx, g, &payloads),
        }
    }

    /// Verifies and decrypts an SK message, or adds an SKF fragment to its
    /// reassembly (RFC 7383 §2.6). Returns the first inner payload type, the
    /// inner chain, and the datagram that identifies the message (fragment
    /// 1 of a fragmented one) once a whole message is in.
    fn decrypt(&mut self, ctx: &Ctx<'_>, header: &Header, bytes: &[u8], msg: &Message<'_>) -> Option<(ike_wire::PayloadType, Vec<u8>, Vec<u8>)> {
        let keys = self.keys.as_ref()?;
        if msg.skf().is_none() {
            let (first, plain) = message::open(bytes, msg, &*keys.inbound).ok()?;
            return Some((first, plain, bytes.to_vec()));
        }
        // Fragments only when both sides announced support (§2.3).
        let cfg = ctx.config.fragmentation.filter(|_| self.fragment_len.is_some())?;
        let f = fragment::open(bytes, msg, &*keys.inbound).ok()?;
        let whole = self.reassembly.add(&cfg, ctx.now, (header.flags.response(), header.message_id), bytes, f)?;
        Some((whole.first_inner, whole.plain, whole.first_bytes))
    }

    // ------------------------------------------------------------------
    // Queue, timers, closing

    pub fn enqueue(&mut self, q: Queued) {
        if !self.queue.contains(&q) {
            self.queue.push_back(q);
        }
    }

    /// Starts queued work while the window has room.
    pub fn pump(&mut self, ctx: &mut Ctx<'_>) {
        while self.active.is_none() && self.xm.can_send() {
            let usable = matches!(self.state, IkeState::Established | IkeState::Rekeyed { .. } | IkeState::Deleting);
            if !usable {
                return;
            }
            // §2.25.2 as for a plain rekey: nothing of ours may be in flight
            // when a peer's IKE SA rekey completes its IKE_FOLLOWUP_KE.
            if self.ike_rekey_pending_followup() {
                return;
            }
            let Some(q) = self.queue.pop_front() else { return };
            let rekeyed = !matches!(self.state, IkeState::Established);
            let r = match q {
                // A rekeyed or closing SA only deletes (§2.18: the Delete is
                // the last request on the old SA).
                Queued::CreateChild
                | Queued::RekeyChild(_)
                | Queued::RekeyIke
                | Queued::DeleteChild(_)
                | Queued::Dpd
                | Queued::Terminate
                | Queued::GsaRegistration(_)
                | Queued::GsaInbandRekey
                | Queued::MidSync
                | Queued::MobikeCheck
                    if rekeyed =>
                {
                    continue
                }
                Queued::CreateChild => self.start_create_child(ctx, None),
                Queued::RekeyChild(h) => match self.children.get(&h) {
                    Some(c) if matches!(c.state, ChildState::Installed | ChildState::Rekeying) => self.start_create_child(ctx, Some(h)),
                    _ => continue,
                },
                Queued::DeleteChild(h) => {
                    let Some(c) = self.children.get_mut(&h) else { continue };
                    c.state = ChildState::Deleting;
                    let spi = c.spi_in;
                    let d = Delete { protocol_id: ProtocolId::ESP, spi_size: 4, spis: vec![spi.to_be_bytes().to_vec().into()] };
                    self.send_request(ctx, ExchangeType::INFORMATIONAL, &[Payload::Delete(d)])
                        .map(|()| self.active = Some(Task::DeleteChildren(vec![h])))
                }
                Queued::RekeyIke => self.start_rekey_ike(ctx),
                Queued::DeleteIke | Queued::Terminate => {
                    let reason = match self.state {
                        IkeState::Rekeyed { .. } => DownReason::Rekeyed,
                        _ => DownReason::Deleted,
                    };
                    self.start_delete_ike(ctx, reason, None)
                }
                Queued::Dpd => self.send_request(ctx, ExchangeType::INFORMATIONAL, &[]).map(|()| self.active = Some(Task::Dpd)),
                Queued::GsaRegistration(g) => self.start_gsa_registration(ctx, g),
                Queued::GsaInbandRekey => self.send_group_inband(ctx),
                Queued::MidSync => self.start_mid_sync(ctx),
                Queued::MobikeCheck => self.start_mobike_check(ctx),
            };
            if r.is_err() {
                self.close(ctx, DownReason::Refused(NotifyType::INVALID_SYNTAX));
                return;
            }
        }
    }

    /// Closes the SA: every Child SA is deleted by event, then the IKE SA.
    pub fn close(&mut self, ctx: &mut Ctx<'_>, reason: DownReason) {
        if matches!(self.state, IkeState::Closed { .. }) {
            return;
        }
        // A rekeyed SA's Child SAs belong to its successor (the move is
        // applied by the endpoint right after this call); any other SA's
        // die with it.
        if !matches!(self.state, IkeState::Rekeyed { .. } | IkeState::PeerDeleted { .. }) {
            let handles: Vec<ChildSaHandle> = self.children.keys().copied().collect();
            for h in handles {
                self.remove_child(ctx, h);
            }
        }
        if let Some(Task::CreateChild(t)) = &self.active {
            ctx.alloc.release_child_spi(t.child.spi_in);
        }
        if let Some(Task::IkeAuth(t)) = &self.active {
            if let Some(c) = &t.child {
                ctx.alloc.release_child_spi(c.spi_in);
            }
        }
        if let Some(Task::RekeyIke(t)) = &self.active {
            ctx.alloc.ike_spis.remove(&t.new_spi_i);
        }
        if let Some(Task::FollowupKe(t)) = &self.active {
            self.release_followup_task(ctx, t);
        }
        self.drop_pending_followup(ctx);
        ctx.groups.gcks.forget_ike_sa(self.handle);
        self.active = None;
        self.queue.clear();
        self.xm.clear_outstanding();
        if let Some(pool) = &self.conn.pool {
            for a in self.leases.drain(..) {
                ctx.pools.release(&pool.name, a);
            }
        }
        ctx.out.events.push_back(Event::IkeSaDown { ike_sa: self.handle, reason });
        self.state = IkeState::Closed { until: ctx.now + ctx.config.closed_linger };
    }

    /// The earliest time this SA wants [`IkeSa::handle_timeout`].
    pub fn deadline(&self) -> Option<Time> {
        if let IkeState::Closed { until } = self.state {
            return Some(until);
        }
        let mut d = self.xm.deadline();
        let mut consider = |t: Option<Time>| {
            if let Some(t) = t {
                d = Some(d.map_or(t, |d| d.min(t)));
            }
        };
        if matches!(self.state, IkeState::HalfOpen(_)) {
            consider(Some(self.last_inbound + self.half_open_timeout));
        }
        if self.awaits_peer_delete() {
            consider(Some(self.last_inbound + REKEYED_DELETE_WAIT));
        }
        consider(self.followup_deadline());
        if let Some(cfg) = &self.fragmentation_cfg {
            consider(self.reassembly.deadline(cfg));
        }
        if matches!(self.state, IkeState::Established) {
            consider(self.rekey_at);
            consider(self.group_close_at);
            if self.active.is_none() {
                consider(self.conn.dpd_delay.map(|dd| self.last_inbound + dd));
            }
            for c in self.children.values().filter(|c| c.state == ChildState::Installed) {
                consider(c.rekey_due);
            }
            if let Some(hard) = self.child_hard_lifetime() {
                for c in self.children.values().filter(|c| c.state != ChildState::Deleting) {
                    consider(Some(c.installed_at + hard));
                }
            }
        }
        d
    }

    /// ESP from the peer arrived by `now`: it is alive (§2.4).
    pub fn note_inbound_esp(&mut self, now: Time) {
        self.last_inbound = self.last_inbound.max(now);
    }

    pub fn handle_timeout(&mut self, ctx: &mut Ctx<'_>) {
        match self.xm.on_timeout(ctx.now) {
            Timeout::Nothing => {}
            Timeout::Resend(packets) => {
                for p in packets {
                    self.transmit(ctx, &p);
                }
            }
            Timeout::GiveUp => {
                // §2.4: no answer after retransmissions: the peer is dead
                // (or, having deleted this SA, just never answered).
                let reason = match self.state {
                    IkeState::PeerDeleted { .. } | IkeState::Rekeyed { .. } => DownReason::Rekeyed,
                    _ => DownReason::Timeout,
                };
                self.close(ctx, reason);
                return;
            }
        }
        if let Some(cfg) = ctx.config.fragmentation {
            self.reassembly.expire(&cfg, ctx.now);
        }
        self.expire_followup(ctx);
        if matches!(self.state, IkeState::HalfOpen(_)) && self.last_inbound + self.half_open_timeout <= ctx.now {
            // The initiator never sent IKE_AUTH: free the half-open slot.
            self.close(ctx, DownReason::Timeout);
            return;
        }
        if self.awaits_peer_delete() && self.last_inbound + REKEYED_DELETE_WAIT <= ctx.now {
            // §2.18: the rekey's initiator deletes the old SA. One that
            // never does must not make us keep it forever: delete it here.
            self.enqueue(Queued::DeleteIke);
        }
        if matches!(self.state, IkeState::Established) {
            if self.rekey_at.is_some_and(|t| t <= ctx.now) {
                self.rekey_at = None;
                self.enqueue(Queued::RekeyIke);
            }
            if self.group_close_at.is_some_and(|t| t <= ctx.now) {
                // RFC 9838 §2.3.4: the GCKS closes the registration SA.
                self.group_close_at = None;
                self.enqueue(Queued::DeleteIke);
            }
            if self.active.is_none() && self.conn.dpd_delay.is_some_and(|dd| self.last_inbound + dd <= ctx.now) {
                self.enqueue(Queued::Dpd);
            }
            let due: Vec<ChildSaHandle> = self
                .children
                .values()
                .filter(|c| c.state == ChildState::Installed && c.rekey_due.is_some_and(|t| t <= ctx.now))
                .map(|c| c.handle)
                .collect();
            for h in due {
                if let Some(c) = self.children.get_mut(&h) {
                    c.state = ChildState::Rekeying;
                }
                self.enqueue(Queued::RekeyChild(h));
            }
            // The hard lifetime: a Child SA not replaced in time is deleted.
            if let Some(hard) = self.child_hard_lifetime() {
                let expired: Vec<ChildSaHandle> = self
                    .children
                    .values()
                    .filter(|c| c.state != ChildState::Deleting && c.installed_at + hard <= ctx.now)
                    .map(|c| c.handle)
                    .collect();
                for h in expired {
                    if let Some(c) = self.children.get_mut(&h) {
                        c.state = ChildState::Deleting;
                    }
                    self.queue.retain(|q| *q != Queued::RekeyChild(h));
                    self.enqueue(Queued::DeleteChild(h));
                }
            }
        }
        self.pump(ctx);
    }

    /// Rekeyed by the peer and idle: only the peer's Delete is expected.
    fn awaits_peer_delete(&self) -> bool {
        matches!(self.state, IkeState::Rekeyed { .. }) && self.active.is_none() && self.queue.is_empty()
    }

    fn child_hard_lifetime(&self) -> Option<std::time::Duration> {
        match self.conn.child.lifetime.hard_secs {
            0 => None,
            secs => Some(std::time::Duration::from_secs(secs)),
        }
    }

    /// Child SAs handed over by a rekeyed IKE SA.
    pub fn adopt_children(&mut self, children: BTreeMap<ChildSaHandle, ChildSa>, leases: Vec<IpAddr>) {
        self.children.extend(children);
        self.leases.extend(leases);
    }
}

