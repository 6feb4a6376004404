//! One IKE SA: its lifecycle state, its Child SAs, and the tasks that run
//! its exchanges (after strongSwan's task-per-exchange structure).
//!
//! Implements, per RFC 7296: IKE_SA_INIT (§1.2, §2.6 cookies, §2.7 INVALID_KE
//! retry, §2.23 NAT detection), IKE_AUTH with PSK (§2.15) or RFC 7427
//! signatures and the first Child SA (§1.2, §2.9 narrowing, §3.15 CP),
//! CREATE_CHILD_SA (§1.3: new Child SA, Child SA rekey with optional PFS,
//! IKE SA rekey §2.18, simultaneous rekeys §2.8.1), INFORMATIONAL (§1.4:
//! deletes, liveness checks §2.4).
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
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ike_crypto::ke::KeyExchange;
use ike_crypto::keys::{self, ChildSaKeys};
use ike_wire::{
    parse_inner, CfgAttrType, CfgAttribute, CfgType, Cp, Delete, ExchangeType, Flags, Header, Ke, KeId, Message,
    Nonce, Notify, NotifyType, Payload, ProtocolId, NON_ESP_MARKER,
};

use crate::auth_job::{AuthDone, AuthJob, Phase, SignWork, VerifyWork};
use crate::config::{ConnectionConfig, Family, Identity, LocalAuth, Mode, RemoteAuth};
use crate::error::ProtoError;
use crate::event::{ChildKeys, ChildSaHandle, ChildSaInstall, DownReason, Event, IkeSaHandle, Transmit};
use crate::exchange::{ExchangeManager, RequestCheck, Timeout};
use crate::fragment::{self, Reassembly};
use crate::message::{self, Payloads};
use crate::proposal::{self, EspSuite};
use crate::config::EndpointConfig;
use crate::sa::{self, Ctx, Effect, IkeKeys, Role};
use crate::time::Time;
use crate::ts::{self, TrafficSelector};

mod followup;
mod intermediate;

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
}

pub struct IkeSaInitTask {
    ke: Box<dyn KeyExchange>,
    ni: Vec<u8>,
    cookie: Option<Vec<u8>>,
    retries: u8,
}

pub struct IkeAuthTask {
    init: InitData,
    child: Option<ChildRequest>,
    /// RFC 8784: the PPK-mixed keys, taken on when the response carries
    /// N(PPK_IDENTITY); `None` when no PPK was offered.
    ppk: Option<PpkKeys>,
    /// The IKE_AUTH request's Message ID (RFC 9242 IKE_AUTH_MID).
    message_id: u32,
}

/// SK_d, SK_pi and SK_pr with a PPK mixed in (RFC 8784 §3).
pub struct PpkKeys {
    sk_d: ike_crypto::Secret,
    sk_pi: ike_crypto::Secret,
    sk_pr: ike_crypto::Secret,
}

impl PpkKeys {
    fn mix(keys: &IkeKeys, ppk: &[u8]) -> Result<Self, ProtoError> {
        let prf = &*keys.prf;
        Ok(Self {
            sk_d: keys::mix_ppk_key(prf, ppk, &keys.sk_d)?,
            sk_pi: keys::mix_ppk_key(prf, ppk, &keys.sk_pi)?,
            sk_pr: keys::mix_ppk_key(prf, ppk, &keys.sk_pr)?,
        })
    }

    /// From now on the SA uses the mixed keys; SK_e and SK_a stay.
    fn apply(self, keys: &mut IkeKeys) {
        keys.sk_d = self.sk_d;
        keys.sk_pi = self.sk_pi;
        keys.sk_pr = self.sk_pr;
    }
}

/// How a responder authenticates the initiator (RFC 8784 §3, Table 1).
enum PpkDecision<'a> {
    /// Plain IKEv2.
    None,
    /// Mix this PPK in; AUTH is computed with the mixed keys.
    Use(&'a crate::config::Ppk),
    /// Plain IKEv2 with the NO_PPK_AUTH data as the initiator's AUTH.
    NoPpkAuth(Vec<u8>),
}

pub struct IntermediateTask {
    init: InitData,
    ke: Box<dyn KeyExchange>,
    /// IntAuth_i including our request (computed with the keys that
    /// protected it).
    int_auth_i: Vec<u8>,
}

/// What we proposed for a Child SA.
pub struct ChildRequest {
    spi_in: u32,
    ts_local: Vec<TrafficSelector>,
    ts_remote: Vec<TrafficSelector>,
}

pub struct CreateChildTask {
    child: ChildRequest,
    ni: Vec<u8>,
    ke: Option<Box<dyn KeyExchange>>,
    rekey_of: Option<ChildSaHandle>,
    /// The peer rekeyed the same Child SA meanwhile (§2.8.1): the smaller
    /// nonce of its exchange and the Child SA it created.
    collision: Option<(Vec<u8>, ChildSaHandle)>,
    /// INVALID_KE_PAYLOAD retries made so far (§1.3).
    ke_retries: u8,
}

pub struct RekeyIkeTask {
    new_handle: IkeSaHandle,
    new_spi_i: u64,
    ni: Vec<u8>,
    ke: Box<dyn KeyExchange>,
    /// The peer rekeyed this IKE SA meanwhile: the smaller nonce of its
    /// exchange and the IKE SA it created.
    collision: Option<(Vec<u8>, IkeSaHandle)>,
    /// INVALID_KE_PAYLOAD retries made so far (§1.3).
    ke_retries: u8,
}

/// Which exchange negotiates a Child SA: only CREATE_CHILD_SA carries its
/// own nonces and an optional PFS key exchange (§1.2, §1.3).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    IkeAuth,
    CreateChildSa,
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

/// Where the signatures of an IKE_AUTH request come from.
enum Signatures {
    /// Inline, or from a job if the endpoint defers them.
    MayDefer,
    /// From this job's result where it applies, inline otherwise (never
    /// deferred again).
    Done(AuthDone),
}

/// An IKE_AUTH request whose signatures are being computed elsewhere
/// ([`crate::auth_job`]): what answering it later needs.
struct PendingAuth {
    header: Header,
    request_bytes: Vec<u8>,
    first: ike_wire::PayloadType,
    plain: Vec<u8>,
}

struct KeyUpdate {
    /// `None` after an IKE_INTERMEDIATE without a key exchange: IntAuth
    /// grows, the keys stay.
    keys: Option<IkeKeys>,
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
    pub suite: proposal::IkeSuite,
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
    /// Responder: the IKE_AUTH request waiting for its signature job.
    pending_auth: Option<Box<PendingAuth>>,
    /// Initiator: IKE_AUTH waits for our signature(s) from a job.
    /// (These three are boxed: rarely set, and an IKE SA is held 100k
    /// times.)
    pending_start: Option<Box<InitData>>,
    /// Initiator: the IKE_AUTH response (first inner payload, inner chain,
    /// Message ID) waiting for the job checking the responder's signature;
    /// its task stays in `active`.
    pending_complete: Option<Box<(ike_wire::PayloadType, Vec<u8>, u32)>>,
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

/// RFC 8784 §3 responder rules (Table 1 and the PPK_ID checks) for the
/// connection chosen by the initiator's identity. Errors are
/// AUTHENTICATION_FAILED.
fn ppk_decision<'a>(conn: &'a ConnectionConfig, negotiated: bool, p: &Payloads<'_, '_>) -> Result<PpkDecision<'a>, ProtoError> {
    let required = conn.ppk.as_ref().is_some_and(|c| c.required);
    if !negotiated {
        // No USE_PPK from the initiator (or none of our connections has
        // PPKs): plain IKEv2, unless this one demands a PPK.
        return if required { Err(ProtoError::AuthenticationFailed) } else { Ok(PpkDecision::None) };
    }
    // USE_PPK was exchanged: the initiator must name its PPK.
    let id = p.notify(NotifyType::PPK_IDENTITY).ok_or(ProtoError::AuthenticationFailed)?;
    if let Some(k) = conn.ppk.as_ref().and_then(|c| c.find(&id.data)) {
        return Ok(PpkDecision::Use(k));
    }
    // No PPK for this PPK_ID (or this peer): continue without one only if
    // it is optional and the initiator gave NO_PPK_AUTH.
    match p.notify(NotifyType::NO_PPK_AUTH) {
        Some(n) if !required && !n.data.is_empty() => Ok(PpkDecision::NoPpkAuth(n.data.to_vec())),
        _ => Err(ProtoError::AuthenticationFailed),
    }
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
            pending_start: None,
            pending_complete: None,
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
    // Creation

    /// Initiator: a new IKE SA; sends the IKE_SA_INIT request.
    pub fn initiate(
        ctx: &mut Ctx<'_>,
        conn: Arc<ConnectionConfig>,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<Self, ProtoError> {
        let handle = ctx.alloc.ike_handle();
        let spi_i = ctx.alloc.ike_spi(ctx.rng, handle);
        let method = conn.ike_proposals.first().and_then(|p| p.ke.first()).copied().ok_or(ProtoError::NoProposalChosen)?;
        let ke = ctx.crypto.key_exchange(method.0, ctx.rng)?;
        let ni = ctx.nonce();
        let mut sa = Self::new(handle, conn, Role::Initiator, spi_i, 0, local, remote, ctx);
        let task = IkeSaInitTask { ke, ni, cookie: None, retries: 0 };
        let bytes = sa.ike_sa_init_request(&task, ctx.config.fragmentation.is_some(), ctx.config.intermediate)?;
        sa.xm.start_request(ctx.now, ExchangeType::IKE_SA_INIT, vec![bytes.clone()]);
        sa.transmit(ctx, &bytes);
        sa.active = Some(Task::IkeSaInit(task));
        Ok(sa)
    }

    /// HDR, [N(COOKIE)], SAi1, KEi, Ni, N(NAT_D)x2, N(SIGNATURE_HASH_ALGORITHMS).
    fn ike_sa_init_request(&self, task: &IkeSaInitTask, fragmentation: bool, intermediate: bool) -> Result<Vec<u8>, ProtoError> {
        let mut p = Vec::new();
        if let Some(c) = &task.cookie {
            // §2.6: the COOKIE notify goes first.
            p.push(Payload::Notify(Notify::new(NotifyType::COOKIE, c.clone())));
        }
        p.push(Payload::Sa(proposal::ike_sa_payload(&self.conn.ike_proposals, &[])));
        p.push(Payload::Ke(Ke { ke_method: KeId(task.ke.method()), data: task.ke.public_key().to_vec().into() }));
        p.push(Payload::Nonce(Nonce { data: task.ni.clone().into() }));
        for n in sa::nat_notifies(self.spi_i, 0, self.local, self.remote) {
            p.push(Payload::Notify(n));
        }
        if fragmentation {
            p.push(notify_payload(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED));
        }
        // RFC 9242 §3.1, RFC 9370 §2.2.1: announced when we offer ADDKE.
        if intermediate && self.conn.ike_proposals.iter().any(|p| p.has_additional_ke()) {
            p.push(notify_payload(NotifyType::INTERMEDIATE_EXCHANGE_SUPPORTED));
        }
        p.push(Payload::Notify(sa::signature_hashes_notify()));
        // RFC 8784 §3: also on COOKIE / INVALID_KE retries (rebuilt here).
        if self.conn.ppk.is_some() {
            p.push(notify_payload(NotifyType::USE_PPK));
        }
        message::plain(self.header(ExchangeType::IKE_SA_INIT, false, 0), p)
    }

    /// Responder: answers an IKE_SA_INIT request with a new half-open SA.
    /// `conns` are the candidate connections in order.
    /// The cheap half of answering an IKE_SA_INIT request: its syntax, the
    /// connection and proposal chosen, and that its KE payload is of the
    /// chosen group. No key exchange, no state: the endpoint asks this
    /// before it spends one ([`crate::endpoint`]'s order of checks).
    pub fn choose_init(config: &EndpointConfig, conns: &[Arc<ConnectionConfig>], msg: &Message<'_>) -> Result<InitChoice, ProtoError> {
        message::check(&msg.payloads, message::IKE_SA_INIT_REQUEST)?;
        let p = Payloads(&msg.payloads);
        let (Some(sa_i), Some(ke_i), Some(_)) = (p.sa(), p.ke(), p.nonce()) else {
            return Err(ProtoError::Invalid("IKE_SA_INIT"));
        };
        // RFC 9370 §2.2.1: additional key exchanges only over IKE_INTERMEDIATE.
        let intermediate = config.intermediate && p.notify(NotifyType::INTERMEDIATE_EXCHANGE_SUPPORTED).is_some();
        let mut chosen = None;
        for conn in conns {
            if let Ok((suite, answer)) = proposal::select_ike_for_ke(&conn.ike_proposals, sa_i, &[], ke_i.ke_method, intermediate) {
                chosen = Some((conn.clone(), suite, answer));
                break;
            }
        }
        let (conn, suite, answer) = chosen.ok_or(ProtoError::NoProposalChosen)?;
        if suite.ke != ke_i.ke_method {
            // §1.2: the KE payload's group must be the one chosen.
            return Err(ProtoError::InvalidKePayload(suite.ke));
        }
        Ok(InitChoice { conn, suite, answer, intermediate })
    }

    /// Answers an IKE_SA_INIT request [`Self::choose_init`] accepted: the
    /// key exchange, a new half-open IKE SA, the response.
    pub fn respond_init(
        ctx: &mut Ctx<'_>,
        choice: InitChoice,
        conns: &[Arc<ConnectionConfig>],
        request: &[u8],
        msg: &Message<'_>,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<(Self, Vec<u8>), ProtoError> {
        let InitChoice { conn, suite, answer, intermediate } = choice;
        let p = Payloads(&msg.payloads);
        let (Some(ke_i), Some(ni)) = (p.ke(), p.nonce()) else {
            return Err(ProtoError::Invalid("IKE_SA_INIT"));
        };
        let responded = ctx.crypto.key_exchange_respond(suite.ke.0, &ke_i.data, ctx.rng)?;
        let handle = ctx.alloc.ike_handle();
        let spi_i = msg.header.spi_i;
        let spi_r = ctx.alloc.ike_spi(ctx.rng, handle);
        let nr = ctx.nonce();
        let mut sa = Self::new(handle, conn, Role::Responder, spi_i, spi_r, local, remote, ctx);
        let notifies: Vec<&Notify<'_>> = p.notifies().collect();
        (sa.nat_local, sa.nat_remote) = sa::detect_nat(&notifies, spi_i, 0, local, remote);
        if let Some(n) = p.notify(NotifyType::SIGNATURE_HASH_ALGORITHMS) {
            sa.peer_hashes = sa::parse_signature_hashes(&n.data);
        }
        match IkeKeys::initial(ctx.crypto, &suite, &responded.shared, &ni.data, &nr, spi_i, spi_r, Role::Responder) {
            Ok(k) => sa.keys = Some(k),
            Err(e) => {
                ctx.alloc.ike_spis.remove(&spi_r);
                return Err(e);
            }
        }
        let mut out = vec![
            Payload::Sa(answer),
            Payload::Ke(Ke { ke_method: suite.ke, data: responded.ke_data.into() }),
            Payload::Nonce(Nonce { data: nr.clone().into() }),
        ];
        for n in sa::nat_notifies(spi_i, spi_r, local, remote) {
            out.push(Payload::Notify(n));
        }
        // §1.2: the responder asks for the initiator's certificate here.
        if let Some(req) = sa::certreq(&sa.conn.remote_auth) {
            out.push(Payload::CertReq(req));
        }
        // RFC 7383 §2.3: announce support only in answer to the initiator's.
        if let (Some(f), Some(_)) = (ctx.config.fragmentation, p.notify(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED)) {
            out.push(notify_payload(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED));
            sa.fragment_len = Some(f.max_message_len);
        }
        if intermediate {
            out.push(notify_payload(NotifyType::INTERMEDIATE_EXCHANGE_SUPPORTED));
        }
        out.push(Payload::Notify(sa::signature_hashes_notify()));
        // RFC 8784 §3: answer USE_PPK when a connection that could be
        // chosen in IKE_AUTH has PPKs.
        if p.notify(NotifyType::USE_PPK).is_some() && conns.iter().any(|c| c.ppk.is_some()) {
            out.push(notify_payload(NotifyType::USE_PPK));
            sa.ppk_negotiated = true;
        }
        // RFC 9593 §3.1: the responder announces in IKE_SA_INIT.
        if sa.conn.ext.announce_auth_methods {
            out.push(supported_auth_methods(&sa.conn));
        }
        let response = match message::plain(sa.header(ExchangeType::IKE_SA_INIT, true, 0), out) {
            Ok(r) => r,
            Err(e) => {
                ctx.alloc.ike_spis.remove(&spi_r);
                return Err(e);
            }
        };
        sa.xm.record_response(0, request, vec![response.clone()]);
        sa.transmit(ctx, &response);
        sa.init_key = Some((spi_i, ni.data.to_vec()));
        sa.state = IkeState::HalfOpen(Box::new(InitData::new(ni.data.to_vec(), nr, request.to_vec(), response.clone(), suite.additional_ke.clone())));
        Ok((sa, response))
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
                (ExchangeType::INFORMATIONAL, IkeState::HalfOpen(_)) => Err(ProtoError::Invalid("INFORMATIONAL before IKE_AUTH")),
                (ExchangeType::INFORMATIONAL, _) => self.respond_informational(ctx, &payloads),
                _ => Err(ProtoError::MessageId),
            },
        };
        if matches!(&result, Ok(Reply { then: Then::Defer, .. })) {
            self.pending_auth = Some(Box::new(PendingAuth { header: *header, request_bytes, first, plain }));
            return;
        }
        self.answer(ctx, header, &request_bytes, result);
    }

    /// A signature job of this SA is done: go on where it was made. A
    /// result for anything no longer waiting is dropped.
    pub fn resume_auth(&mut self, ctx: &mut Ctx<'_>, done: AuthDone) {
        match done.phase {
            Phase::Respond => self.resume_respond(ctx, done),
            Phase::Start => {
                let Some(init) = self.pending_start.take() else { return };
                if !matches!(self.state, IkeState::Connecting) {
                    return;
                }
                if let Err(e) = self.start_ike_auth(ctx, *init, Signatures::Done(done)) {
                    let reason = DownReason::Refused(e.notify().map_or(NotifyType::INVALID_SYNTAX, |n| n.notify_type));
                    self.close(ctx, reason);
                }
            }
            Phase::Complete => {
                if !self.pending_complete.as_ref().is_some_and(|p| p.2 == done.message_id) {
                    return;
                }
                let Some(pending) = self.pending_complete.take() else { return };
                let (first, plain, _) = *pending;
                let Some(Task::IkeAuth(task)) = self.active.take() else { return };
                let payloads = parse_inner(first, &plain).unwrap_or_default();
                self.process_ike_auth_response(ctx, *task, &payloads, first, &plain, Signatures::Done(done));
            }
        }
        self.pump(ctx);
    }

    fn resume_respond(&mut self, ctx: &mut Ctx<'_>, done: AuthDone) {
        if !self.pending_auth.as_ref().is_some_and(|p| p.header.message_id == done.message_id) {
            return;
        }
        let Some(pending) = self.pending_auth.take() else { return };
        if !matches!(self.state, IkeState::HalfOpen(_)) {
            return;
        }
        let result = match parse_inner(pending.first, &pending.plain) {
            Err(e) => Err(ProtoError::from(e)),
            Ok(payloads) => self.respond_ike_auth(ctx, &payloads, pending.header.message_id, Signatures::Done(done)),
        };
        self.answer(ctx, &pending.header, &pending.request_bytes, result);
    }

    /// Sends the response to a request (or the Notify its error maps to)
    /// and does what follows it.
    fn answer(&mut self, ctx: &mut Ctx<'_>, header: &Header, request_bytes: &[u8], result: Result<Reply, ProtoError>) {
        let exchange = header.exchange_type;
        let reply = match result {
            Ok(r) => r,
            Err(e) => {
                let then = if exchange == ExchangeType::IKE_AUTH || exchange == ExchangeType::IKE_INTERMEDIATE {
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
            Err(_) if matches!(task, Task::IkeAuth(_) | Task::Intermediate(_)) => {
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
            Task::Dpd => {}
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
    // IKE_SA_INIT (initiator)

    fn process_ike_sa_init_response(&mut self, ctx: &mut Ctx<'_>, msg: &Message<'_>, bytes: &[u8], local: SocketAddr, remote: SocketAddr) {
        let Some(Task::IkeSaInit(mut task)) = self.active.take() else { return };
        let p = Payloads(&msg.payloads);
        // §2.6: a COOKIE answer; retry with it.
        if let Some(c) = p.notify(NotifyType::COOKIE) {
            if task.retries < MAX_INIT_RETRIES && !c.data.is_empty() {
                task.retries += 1;
                task.cookie = Some(c.data.to_vec());
                self.retry_init(ctx, task);
            } else {
                self.close(ctx, DownReason::Refused(NotifyType::COOKIE));
            }
            return;
        }
        // §1.2: INVALID_KE_PAYLOAD names the group the responder wants.
        if let Some(n) = p.notify(NotifyType::INVALID_KE_PAYLOAD) {
            let wanted = <[u8; 2]>::try_from(&n.data[..]).ok().map(|b| KeId(u16::from_be_bytes(b)));
            let offered = |k: KeId| self.conn.ike_proposals.iter().any(|p| p.ke.contains(&k));
            match wanted {
                Some(k) if offered(k) && k.0 != task.ke.method() && task.retries < MAX_INIT_RETRIES => {
                    match ctx.crypto.key_exchange(k.0, ctx.rng) {
                        Ok(ke) => {
                            task.retries += 1;
                            task.ke = ke;
                            self.retry_init(ctx, task);
                        }
                        Err(_) => self.close(ctx, DownReason::Refused(NotifyType::INVALID_KE_PAYLOAD)),
                    }
                }
                _ => self.close(ctx, DownReason::Refused(NotifyType::INVALID_KE_PAYLOAD)),
            }
            return;
        }
        if let Some(t) = p.error_notify() {
            self.close(ctx, DownReason::Refused(t));
            return;
        }
        self.ppk_negotiated = self.conn.ppk.is_some() && p.notify(NotifyType::USE_PPK).is_some();
        if self.conn.ppk.as_ref().is_some_and(|c| c.required) && !self.ppk_negotiated {
            // RFC 8784 §3: a mandatory PPK and a responder without USE_PPK:
            // abort (the peer can never authenticate as this policy needs).
            self.close(ctx, DownReason::AuthenticationFailed);
            return;
        }
        match self.complete_ike_sa_init(ctx, task, msg, bytes, local, remote) {
            Ok(init) => self.start_next_initial_exchange(ctx, init),
            Err(_) => self.close(ctx, DownReason::Refused(NotifyType::INVALID_SYNTAX)),
        }
    }

    fn retry_init(&mut self, ctx: &mut Ctx<'_>, task: IkeSaInitTask) {
        match self.ike_sa_init_request(&task, ctx.config.fragmentation.is_some(), ctx.config.intermediate) {
            Ok(bytes) => {
                self.xm.restart_request(ctx.now, 0, vec![bytes.clone()]);
                self.transmit(ctx, &bytes);
                self.active = Some(Task::IkeSaInit(task));
            }
            Err(_) => self.close(ctx, DownReason::Refused(NotifyType::INVALID_SYNTAX)),
        }
    }

    fn complete_ike_sa_init(
        &mut self,
        ctx: &mut Ctx<'_>,
        task: IkeSaInitTask,
        msg: &Message<'_>,
        bytes: &[u8],
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<InitData, ProtoError> {
        message::check(&msg.payloads, message::IKE_SA_INIT_RESPONSE)?;
        let p = Payloads(&msg.payloads);
        let (Some(sa_r), Some(ke_r), Some(nr)) = (p.sa(), p.ke(), p.nonce()) else {
            return Err(ProtoError::Invalid("IKE_SA_INIT response"));
        };
        if msg.header.spi_r == 0 {
            return Err(ProtoError::Invalid("SPIr"));
        }
        let (suite, _) = proposal::accept_ike(&self.conn.ike_proposals, sa_r)?;
        if suite.ke.0 != task.ke.method() || ke_r.ke_method != suite.ke {
            return Err(ProtoError::Invalid("KE method of the response"));
        }
        // RFC 9370 §2.2.1: ADDKE needs both sides' IKE_INTERMEDIATE support.
        let intermediate = ctx.config.intermediate && p.notify(NotifyType::INTERMEDIATE_EXCHANGE_SUPPORTED).is_some();
        if !suite.additional_ke.is_empty() && !intermediate {
            return Err(ProtoError::Invalid("ADDKE chosen without IKE_INTERMEDIATE"));
        }
        let g_ir = task.ke.compute_shared(&ke_r.data)?;
        let outstanding = self.xm.take_response(0, ExchangeType::IKE_SA_INIT).ok_or(ProtoError::MessageId)?;
        let message1 = outstanding.packets.into_iter().next().ok_or(ProtoError::MessageId)?;
        self.spi_r = msg.header.spi_r;
        let notifies: Vec<&Notify<'_>> = p.notifies().collect();
        (self.nat_local, self.nat_remote) = sa::detect_nat(&notifies, self.spi_i, self.spi_r, local, remote);
        if let Some(n) = p.notify(NotifyType::SIGNATURE_HASH_ALGORITHMS) {
            self.peer_hashes = sa::parse_signature_hashes(&n.data);
        }
        if let (Some(f), Some(_)) = (ctx.config.fragmentation, p.notify(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED)) {
            self.fragment_len = Some(f.max_message_len);
        }
        self.ext.peer_auth_methods = peer_auth_methods(p.notify(NotifyType::SUPPORTED_AUTH_METHODS));
        self.keys = Some(IkeKeys::initial(ctx.crypto, &suite, &g_ir, &task.ni, &nr.data, self.spi_i, self.spi_r, Role::Initiator)?);
        if self.nat_local || self.nat_remote {
            // §2.23: after a NAT is detected, IKE moves to port 4500.
            self.local.set_port(ctx.config.natt_port);
            self.remote.set_port(ctx.config.natt_port);
        }
        Ok(InitData::new(task.ni, nr.data.to_vec(), message1, bytes.to_vec(), suite.additional_ke))
    }

    /// After IKE_SA_INIT and after each IKE_INTERMEDIATE: the next exchange
    /// of the initial sequence. One RFC 9242 IKE_INTERMEDIATE exchange per
    /// RFC 9370 additional key exchange, each updating the keys and the
    /// IntAuth chain kept with `init`, then IKE_AUTH (whose Message ID
    /// follows the last IKE_INTERMEDIATE's).
    fn start_next_initial_exchange(&mut self, ctx: &mut Ctx<'_>, mut init: InitData) {
        let r = match init.pending_ke.pop_front() {
            Some(method) => self.start_intermediate(ctx, init, method),
            None => self.start_ike_auth(ctx, init, Signatures::MayDefer),
        };
        if let Err(e) = r {
            let reason = DownReason::Refused(e.notify().map_or(NotifyType::INVALID_SYNTAX, |n| n.notify_type));
            self.close(ctx, reason);
        }
    }

    // ------------------------------------------------------------------
    // IKE_AUTH

    fn child_request(&self, ctx: &mut Ctx<'_>) -> ChildRequest {
        let ts_local = if self.conn.request_vip.is_empty() {
            self.conn.child.local_ts.clone()
        } else {
            // A remote-access client does not know its address yet: it
            // proposes "any" and the responder narrows (§2.9).
            self.conn
                .request_vip
                .iter()
                .map(|f| match f {
                    Family::V4 => TrafficSelector::any_v4(),
                    Family::V6 => TrafficSelector::any_v6(),
                })
                .collect()
        };
        ChildRequest { spi_in: ctx.alloc.child_spi(ctx.rng), ts_local, ts_remote: self.conn.child.remote_ts.clone() }
    }

    /// Sends the IKE_AUTH request, or hands its signature(s) to a job first
    /// (then `pending_start` keeps `init` until [`Self::resume_auth`]).
    fn start_ike_auth(&mut self, ctx: &mut Ctx<'_>, init: InitData, work: Signatures) -> Result<(), ProtoError> {
        let conn = self.conn.clone();
        let keys = self.keys.as_ref().ok_or(ProtoError::Invalid("no keys"))?;
        let id_i = sa::id_body(&conn.local_id);
        let message_id = self.xm.next_request_id();
        let int_auth = init.int_auth_for(message_id);
        let octets = sa::signed_octets_int(&*keys.prf, &keys.sk_pi, &init.message1, &init.nr, &id_i, int_auth.as_deref())?;
        let peer_schemes = self.ext.peer_auth_methods.as_deref().map(crate::auth_methods::schemes).unwrap_or_default();
        // RFC 8784 §3: with a PPK, AUTH uses the mixed SK_pi; NO_PPK_AUTH
        // carries the AUTH data with the original SK_pi' (same method),
        // only when the PPK is optional.
        let ppk = conn.ppk.as_ref().filter(|_| self.ppk_negotiated).and_then(|c| c.keys.first().map(|k| (k, c.required)));
        let mixed = match ppk {
            Some((k, _)) => Some(PpkKeys::mix(keys, &k.secret)?),
            None => None,
        };
        // What we sign: AUTH's octets, then NO_PPK_AUTH's.
        let mut to_sign = Vec::new();
        match &mixed {
            Some(m) => {
                to_sign.push(sa::signed_octets_int(&*keys.prf, &m.sk_pi, &init.message1, &init.nr, &id_i, int_auth.as_deref())?);
                if ppk.is_some_and(|(_, required)| !required) {
                    to_sign.push(octets);
                }
            }
            None => to_sign.push(octets),
        }
        let precomputed = match work {
            Signatures::MayDefer if ctx.config.defer_signatures && matches!(conn.local_auth, LocalAuth::PubKey { .. }) => {
                let sign = to_sign
                    .into_iter()
                    .map(|octets| {
                        let mut seed = [0u8; 32];
                        ctx.rng.fill_bytes(&mut seed);
                        SignWork { octets, peer_hashes: self.peer_hashes.clone(), peer_schemes: peer_schemes.clone(), seed }
                    })
                    .collect();
                ctx.out.jobs.push_back(AuthJob { ike_sa: self.handle, message_id, phase: Phase::Start, conn, verify: None, sign });
                self.pending_start = Some(Box::new(init));
                return Ok(());
            }
            Signatures::Done(d) if d.fits(Phase::Start, message_id, &conn) => d.signed,
            _ => Vec::new(),
        };
        let mut precomputed = precomputed.into_iter();
        let mut signed = Vec::with_capacity(to_sign.len());
        for o in &to_sign {
            signed.push(match precomputed.next() {
                Some(r) => r?,
                None => sa::make_auth_with(&conn.local_auth, &*keys.prf, o, &self.peer_hashes, &peer_schemes, ctx.rng)?,
            });
        }
        let mut signed = signed.into_iter();
        let (auth, certs, scheme) = signed.next().ok_or(ProtoError::Invalid("no AUTH"))?;
        let mut ppk_notifies = Vec::new();
        if let Some((k, _)) = ppk {
            ppk_notifies.push(Payload::Notify(Notify::new(NotifyType::PPK_IDENTITY, k.wire_id())));
            if let Some((no_ppk, _, _)) = signed.next() {
                ppk_notifies.push(Payload::Notify(Notify::new(NotifyType::NO_PPK_AUTH, no_ppk.data.to_vec())));
            }
        }
        let ppk_keys = mixed;
        self.ext.auth_scheme = scheme;
        let child = self.child_request(ctx);
        let mut p = vec![Payload::IdI(sa::id_payload(&conn.local_id))];
        p.extend(certs.into_iter().map(Payload::Cert));
        if let Some(req) = sa::certreq(&conn.remote_auth) {
            p.push(Payload::CertReq(req));
        }
        if conn.initial_contact {
            p.push(notify_payload(NotifyType::INITIAL_CONTACT));
        }
        if let Some(r) = &conn.remote_id {
            p.push(Payload::IdR(sa::id_payload(r)));
        }
        p.push(Payload::Auth(auth));
        p.extend(ppk_notifies);
        // RFC 9593 §3.1: the initiator's list, once the responder sent one.
        if conn.ext.announce_auth_methods && self.ext.peer_auth_methods.is_some() {
            p.push(supported_auth_methods(&conn));
        }
        if !conn.request_vip.is_empty() {
            let mut attributes = Vec::new();
            for f in &conn.request_vip {
                let (addr, dns) = match f {
                    Family::V4 => (CfgAttrType::INTERNAL_IP4_ADDRESS, CfgAttrType::INTERNAL_IP4_DNS),
                    Family::V6 => (CfgAttrType::INTERNAL_IP6_ADDRESS, CfgAttrType::INTERNAL_IP6_DNS),
                };
                attributes.push(CfgAttribute::new(addr, Vec::new()));
                attributes.push(CfgAttribute::new(dns, Vec::new()));
            }
            // RFC 8598 §3.1: with the DNS server requests above.
            attributes.extend(crate::split_dns::request_attributes(&conn.ext.split_dns));
            p.push(Payload::Cp(Cp { cfg_type: CfgType::CFG_REQUEST, attributes }));
        }
        if conn.child.mode == Mode::Transport {
            p.push(notify_payload(NotifyType::USE_TRANSPORT_MODE));
        }
        p.push(Payload::Sa(proposal::esp_sa_payload(&conn.child.esp_proposals, child.spi_in, false)));
        let label = self.conn.child.sec_label.as_deref();
        p.push(Payload::TsI(ts::to_wire_list_labeled(&child.ts_local, label)));
        p.push(Payload::TsR(ts::to_wire_list_labeled(&child.ts_remote, label)));
        self.send_request(ctx, ExchangeType::IKE_AUTH, &p)?;
        self.active = Some(Task::IkeAuth(Box::new(IkeAuthTask { init, child: Some(child), ppk: ppk_keys, message_id })));
        Ok(())
    }

    fn respond_ike_auth(&mut self, ctx: &mut Ctx<'_>, payloads: &[Payload<'_>], message_id: u32, work: Signatures) -> Result<Reply, ProtoError> {
        message::check(payloads, message::IKE_AUTH_REQUEST)?;
        let p = Payloads(payloads);
        let id_i = p.id_i().ok_or(ProtoError::PayloadCount(ike_wire::PayloadType::IDI))?;
        let auth = p.auth().ok_or(ProtoError::PayloadCount(ike_wire::PayloadType::AUTH))?;
        let peer_id = Identity::from_wire(id_i.id_type, &id_i.data).ok_or(ProtoError::AuthenticationFailed)?;
        let wanted_local = p.id_r().and_then(|i| Identity::from_wire(i.id_type, &i.data));
        // The connection is chosen by identities (strongSwan's peer_cfg
        // selection); IKE_SA_INIT only fixed the IKE proposal.
        let conn = ctx
            .config
            .connections
            .iter()
            .find(|c| {
                c.remote_id.as_ref().map_or(true, |r| *r == peer_id) && wanted_local.as_ref().map_or(true, |l| *l == c.local_id)
            })
            .cloned()
            .ok_or(ProtoError::AuthenticationFailed)?;
        let IkeState::HalfOpen(init) = &self.state else { return Err(ProtoError::MessageId) };
        if !init.pending_ke.is_empty() {
            // RFC 9370 §2.2.2: every negotiated additional key exchange
            // completes before IKE_AUTH.
            return Err(ProtoError::Invalid("IKE_AUTH before the additional key exchanges"));
        }
        let int_auth = init.int_auth_for(message_id);
        let keys = self.keys.as_ref().ok_or(ProtoError::Invalid("no keys"))?;
        let decision = ppk_decision(&conn, self.ppk_negotiated, &p)?;
        let mixed = match &decision {
            PpkDecision::Use(k) => Some(PpkKeys::mix(keys, &k.secret)?),
            _ => None,
        };
        let (sk_pi, sk_pr) = mixed.as_ref().map_or((&keys.sk_pi, &keys.sk_pr), |m| (&m.sk_pi, &m.sk_pr));
        let mut id_i_body = vec![id_i.id_type.0, 0, 0, 0];
        id_i_body.extend_from_slice(&id_i.data);
        let octets_i = sa::signed_octets_int(&*keys.prf, sk_pi, &init.message1, &init.nr, &id_i_body, int_auth.as_deref())?;
        let certs: Vec<&ike_wire::Cert<'_>> = p.certs().collect();
        let no_ppk_auth;
        let auth = match &decision {
            // §3: "the same method as in the AUTH payload".
            PpkDecision::NoPpkAuth(data) => {
                no_ppk_auth = ike_wire::Auth { method: auth.method, data: data.as_slice().into() };
                &no_ppk_auth
            }
            _ => auth,
        };
        sa::check_scheme_allowed(auth, &conn.ext.signature_schemes)?;
        let peer_methods = peer_auth_methods(p.notify(NotifyType::SUPPORTED_AUTH_METHODS));
        let peer_schemes = peer_methods.as_deref().map(crate::auth_methods::schemes).unwrap_or_default();
        let id_r = sa::id_body(&conn.local_id);
        let octets_r = sa::signed_octets_int(&*keys.prf, sk_pr, &init.message2, &init.ni, &id_r, int_auth.as_deref())?;
        let remote_sig = matches!(conn.remote_auth, RemoteAuth::PubKey { .. });
        let local_sig = matches!(conn.local_auth, LocalAuth::PubKey { .. });
        let (verified, signed) = match work {
            Signatures::MayDefer if ctx.config.defer_signatures && (remote_sig || local_sig) => {
                // The signatures go to a job (crate::auth_job); a PSK is
                // checked here, its failure answered at once.
                if !remote_sig {
                    sa::verify_auth(&conn.remote_auth, &*keys.prf, &octets_i, auth, &certs, &peer_id, ctx.unix)?;
                }
                let mut seed = [0u8; 32];
                ctx.rng.fill_bytes(&mut seed);
                ctx.out.jobs.push_back(AuthJob {
                    ike_sa: self.handle,
                    message_id,
                    phase: Phase::Respond,
                    conn: conn.clone(),
                    verify: remote_sig.then(|| VerifyWork {
                        octets: octets_i.clone(),
                        auth: ike_wire::Auth { method: auth.method, data: auth.data.to_vec().into() },
                        certs: certs.iter().map(|c| ike_wire::Cert { encoding: c.encoding, data: c.data.to_vec().into() }).collect(),
                        peer_id: peer_id.clone(),
                        unix: ctx.unix,
                    }),
                    sign: local_sig
                        .then(|| SignWork { octets: octets_r.clone(), peer_hashes: self.peer_hashes.clone(), peer_schemes: peer_schemes.clone(), seed })
                        .into_iter()
                        .collect(),
                });
                return Ok(Reply { payloads: Vec::new(), then: Then::Defer });
            }
            // A result computed for this request and this connection (a
            // reload in between makes it stale: redone inline).
            Signatures::Done(d) if d.fits(Phase::Respond, message_id, &conn) => (d.verified, d.signed.into_iter().next()),
            _ => (None, None),
        };
        match verified {
            Some(r) => r?,
            None => sa::verify_auth(&conn.remote_auth, &*keys.prf, &octets_i, auth, &certs, &peer_id, ctx.unix)?,
        }
        let (auth_r, certs_r, scheme) = match signed {
            Some(r) => r?,
            None => sa::make_auth_with(&conn.local_auth, &*keys.prf, &octets_r, &self.peer_hashes, &peer_schemes, ctx.rng)?,
        };
        self.ext.peer_auth_methods = peer_methods;
        self.ext.auth_scheme = scheme;
        let (ni, nr) = (init.ni.clone(), init.nr.clone());
        if let Some(m) = mixed {
            // Before the Child SA's KEYMAT: it comes from the mixed SK_d.
            if let Some(k) = self.keys.as_mut() {
                m.apply(k);
            }
            self.ppk_used = true;
        }
        self.conn = conn.clone();
        self.remote_id = Some(peer_id.clone());
        if p.notify(NotifyType::INITIAL_CONTACT).is_some() {
            ctx.out.effects.push(Effect::InitialContact { keep: self.handle, remote_id: peer_id.clone() });
        }
        let mut out = vec![Payload::IdR(sa::id_payload(&conn.local_id))];
        out.extend(certs_r.into_iter().map(Payload::Cert));
        out.push(Payload::Auth(auth_r));
        if self.ppk_used {
            // §3: the responder's PPK_IDENTITY carries no PPK_ID.
            out.push(notify_payload(NotifyType::PPK_IDENTITY));
        }
        // §3.15: CFG_REPLY only in answer to CFG_REQUEST.
        let mut dns = Vec::new();
        let cp_result = match p.cp().filter(|c| c.cfg_type == CfgType::CFG_REQUEST) {
            Some(cp) => {
                let r = self.assign_config(ctx, cp, &mut dns).map(|c| {
                    out.push(Payload::Cp(c));
                });
                // RFC 8983 §5 Table 1: the families we assign, whenever an
                // address was asked for (the error case carries its own).
                if !matches!(r, Err(ProtoError::AddressFamilyNotAllowed(_))) {
                    out.extend(self.allowed_notifies(cp).into_iter().map(notify_payload));
                }
                r
            }
            None => Ok(()),
        };
        let child = match (cp_result, p.sa(), p.ts_i(), p.ts_r()) {
            (Err(e), _, _, _) => Err(e),
            (Ok(()), Some(sa_i), Some(ts_i), Some(ts_r)) => {
                let transport = p.notify(NotifyType::USE_TRANSPORT_MODE).is_some();
                self.respond_child(ctx, sa_i, ts_i, ts_r, None, &ni, &nr, None, transport, Via::IkeAuth)
            }
            // RFC 6023 childless, or a malformed triple: no Child SA.
            (Ok(()), _, _, _) => Err(ProtoError::NoProposalChosen),
        };
        self.state = IkeState::Established;
        self.rekey_at = ike_rekey_time(&conn, ctx);
        ctx.out.events.push_back(Event::IkeSaUp {
            ike_sa: self.handle,
            connection: conn.name.clone(),
            local: self.local,
            remote: self.remote,
            local_id: conn.local_id.clone(),
            remote_id: peer_id,
            virtual_ips: self.leases.clone(),
            dns,
            nat_local: self.nat_local,
            nat_remote: self.nat_remote,
            ppk: self.ppk_used,
        });
        if !self.ext.dns_domains.is_empty() {
            ctx.out.events.push_back(Event::SplitDns { ike_sa: self.handle, domains: self.ext.dns_domains.clone(), refused: Vec::new() });
        }
        match child {
            Ok((payloads, install)) => {
                out.extend(payloads);
                self.install_child(ctx, *install);
            }
            Err(e) => {
                if let Some(n) = e.notify() {
                    ctx.out.events.push_back(Event::ChildSaFailed { ike_sa: self.handle, notify: n.notify_type });
                    out.push(Payload::Notify(n));
                }
            }
        }
        Ok(Reply::new(out))
    }

    /// CFG_REPLY for a CFG_REQUEST: one address per requested family from
    /// the pool, and the pool's DNS servers of those families.
    /// RFC 8983 §5: IP4_ALLOWED / IP6_ALLOWED for the families our pool
    /// assigns, in answer to a request for addresses.
    fn allowed_notifies(&self, cp: &Cp<'_>) -> Vec<NotifyType> {
        let asked = cp.attributes.iter().any(|a| matches!(a.attr_type, CfgAttrType::INTERNAL_IP4_ADDRESS | CfgAttrType::INTERNAL_IP6_ADDRESS));
        let Some(pool) = self.conn.pool.as_ref().filter(|_| asked) else { return Vec::new() };
        let mut v = Vec::new();
        if pool.v4.is_some() {
            v.push(NotifyType::IP4_ALLOWED);
        }
        if pool.v6.is_some() {
            v.push(NotifyType::IP6_ALLOWED);
        }
        v
    }

    fn assign_config(&mut self, ctx: &mut Ctx<'_>, cp: &Cp<'_>, dns_out: &mut Vec<IpAddr>) -> Result<Cp<'static>, ProtoError> {
        let pool = self.conn.pool.clone().ok_or(ProtoError::InternalAddressFailure)?;
        let mut attributes = Vec::new();
        let mut families = Vec::new();
        for a in &cp.attributes {
            match a.attr_type {
                CfgAttrType::INTERNAL_IP4_ADDRESS if !families.contains(&Family::V4) => families.push(Family::V4),
                CfgAttrType::INTERNAL_IP6_ADDRESS if !families.contains(&Family::V6) => families.push(Family::V6),
                _ => {}
            }
        }
        for f in &families {
            let existing = self.leases.iter().copied().find(|a| a.is_ipv4() == (*f == Family::V4));
            let addr = match existing {
                Some(a) => a,
                None => match ctx.pools.lease(&pool, *f) {
                    Some(a) => {
                        self.leases.push(a);
                        a
                    }
                    None => continue,
                },
            };
            match addr {
                IpAddr::V4(a) => attributes.push(CfgAttribute::new(CfgAttrType::INTERNAL_IP4_ADDRESS, a.octets().to_vec())),
                IpAddr::V6(a) => {
                    // §3.15.1: address and a one-octet prefix length.
                    let mut v = a.octets().to_vec();
                    v.push(128);
                    attributes.push(CfgAttribute::new(CfgAttrType::INTERNAL_IP6_ADDRESS, v));
                }
            }
        }
        // §3.15.3: INTERNAL_ADDRESS_FAILURE only if no address at all;
        // RFC 8983: if none of the requested families is one we assign,
        // say which one we do instead.
        if attributes.is_empty() && !families.is_empty() {
            let supported = |f: &Family| match f {
                Family::V4 => pool.v4.is_some(),
                Family::V6 => pool.v6.is_some(),
            };
            if !families.iter().any(supported) {
                match (pool.v4.is_some(), pool.v6.is_some()) {
                    (true, false) => return Err(ProtoError::AddressFamilyNotAllowed(NotifyType::IP4_ALLOWED)),
                    (false, true) => return Err(ProtoError::AddressFamilyNotAllowed(NotifyType::IP6_ALLOWED)),
                    _ => {}
                }
            }
            return Err(ProtoError::InternalAddressFailure);
        }
        let asked_dns4 = cp.attributes.iter().any(|a| a.attr_type == CfgAttrType::INTERNAL_IP4_DNS);
        let asked_dns6 = cp.attributes.iter().any(|a| a.attr_type == CfgAttrType::INTERNAL_IP6_DNS);
        for d in &pool.dns {
            match d {
                IpAddr::V4(a) if asked_dns4 => {
                    attributes.push(CfgAttribute::new(CfgAttrType::INTERNAL_IP4_DNS, a.octets().to_vec()));
                    dns_out.push(*d);
                }
                IpAddr::V6(a) if asked_dns6 => {
                    attributes.push(CfgAttribute::new(CfgAttrType::INTERNAL_IP6_DNS, a.octets().to_vec()));
                    dns_out.push(*d);
                }
                _ => {}
            }
        }
        // RFC 8598 §3.3: domains only to a client that asked, and only
        // with a DNS server that resolves them.
        if crate::split_dns::requested(&cp.attributes) && !dns_out.is_empty() && !pool.dns_domains.is_empty() {
            attributes.extend(crate::split_dns::reply_attributes(&pool.dns_domains));
            self.ext.dns_domains = pool.dns_domains.clone();
        }
        Ok(Cp { cfg_type: CfgType::CFG_REPLY, attributes })
    }

    fn process_ike_auth_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        task: IkeAuthTask,
        payloads: &[Payload<'_>],
        first: ike_wire::PayloadType,
        plain: &[u8],
        work: Signatures,
    ) {
        let peer_refused = Payloads(payloads).auth().is_none();
        match self.complete_ike_auth(ctx, task, payloads, first, plain, work) {
            Ok(()) => {}
            // §2.21.2: the responder's AUTH did not verify; tell it in an
            // INFORMATIONAL and delete, rather than leave it half-up.
            Err(ProtoError::AuthenticationFailed) if !peer_refused => {
                if self.start_delete_ike(ctx, DownReason::AuthenticationFailed, Some(NotifyType::AUTHENTICATION_FAILED)).is_err() {
                    self.close(ctx, DownReason::AuthenticationFailed);
                }
            }
            Err(ProtoError::AuthenticationFailed) => self.close(ctx, DownReason::AuthenticationFailed),
            Err(e) => self.close(ctx, DownReason::Refused(e.notify().map_or(NotifyType::INVALID_SYNTAX, |n| n.notify_type))),
        }
    }

    /// Checks and takes the IKE_AUTH response; `Ok` also when the check of
    /// the responder's signature went to a job (the task waits in
    /// `active`, the response in `pending_complete`).
    fn complete_ike_auth(
        &mut self,
        ctx: &mut Ctx<'_>,
        mut task: IkeAuthTask,
        payloads: &[Payload<'_>],
        first: ike_wire::PayloadType,
        plain: &[u8],
        work: Signatures,
    ) -> Result<(), ProtoError> {
        let p = Payloads(payloads);
        if p.auth().is_none() {
            // An error answer (§2.21.2): AUTHENTICATION_FAILED or similar.
            return match p.error_notify() {
                Some(NotifyType::AUTHENTICATION_FAILED) => Err(ProtoError::AuthenticationFailed),
                Some(NotifyType::NO_PROPOSAL_CHOSEN) => Err(ProtoError::NoProposalChosen),
                _ => Err(ProtoError::PayloadCount(ike_wire::PayloadType::AUTH)),
            };
        }
        message::check(payloads, message::IKE_AUTH_RESPONSE)?;
        let (Some(id_r), Some(auth)) = (p.id_r(), p.auth()) else {
            return Err(ProtoError::PayloadCount(ike_wire::PayloadType::IDR));
        };
        let peer_id = Identity::from_wire(id_r.id_type, &id_r.data).ok_or(ProtoError::AuthenticationFailed)?;
        if self.conn.remote_id.as_ref().is_some_and(|r| *r != peer_id) {
            return Err(ProtoError::AuthenticationFailed);
        }
        // RFC 8784 §3: N(PPK_IDENTITY) in the response says the responder
        // used the PPK (its content is ignored); without it, a mandatory
        // PPK fails, an optional one was dropped via NO_PPK_AUTH. The
        // mixed keys are taken on once the AUTH verified.
        let use_ppk = match (&task.ppk, p.notify(NotifyType::PPK_IDENTITY).is_some()) {
            (Some(_), true) => true,
            (Some(_), false) if self.conn.ppk.as_ref().is_some_and(|c| c.required) => return Err(ProtoError::AuthenticationFailed),
            _ => false,
        };
        let keys = self.keys.as_ref().ok_or(ProtoError::Invalid("no keys"))?;
        let sk_pr = match &task.ppk {
            Some(m) if use_ppk => &m.sk_pr,
            _ => &keys.sk_pr,
        };
        let mut id_r_body = vec![id_r.id_type.0, 0, 0, 0];
        id_r_body.extend_from_slice(&id_r.data);
        let int_auth = task.init.int_auth_for(task.message_id);
        let octets = sa::signed_octets_int(&*keys.prf, sk_pr, &task.init.message2, &task.init.ni, &id_r_body, int_auth.as_deref())?;
        let certs: Vec<&ike_wire::Cert<'_>> = p.certs().collect();
        sa::check_scheme_allowed(auth, &self.conn.ext.signature_schemes)?;
        let remote_sig = matches!(self.conn.remote_auth, RemoteAuth::PubKey { .. });
        let verified = match work {
            Signatures::MayDefer if ctx.config.defer_signatures && remote_sig => {
                ctx.out.jobs.push_back(AuthJob {
                    ike_sa: self.handle,
                    message_id: task.message_id,
                    phase: Phase::Complete,
                    conn: self.conn.clone(),
                    verify: Some(VerifyWork {
                        octets,
                        auth: ike_wire::Auth { method: auth.method, data: auth.data.to_vec().into() },
                        certs: certs.iter().map(|c| ike_wire::Cert { encoding: c.encoding, data: c.data.to_vec().into() }).collect(),
                        peer_id,
                        unix: ctx.unix,
                    }),
                    sign: Vec::new(),
                });
                self.pending_complete = Some(Box::new((first, plain.to_vec(), task.message_id)));
                self.active = Some(Task::IkeAuth(Box::new(task)));
                return Ok(());
            }
            Signatures::Done(d) if d.fits(Phase::Complete, task.message_id, &self.conn) => d.verified,
            _ => None,
        };
        match verified {
            Some(r) => r?,
            None => sa::verify_auth(&self.conn.remote_auth, &*keys.prf, &octets, auth, &certs, &peer_id, ctx.unix)?,
        }
        if use_ppk {
            if let (Some(m), Some(k)) = (task.ppk.take(), self.keys.as_mut()) {
                m.apply(k);
            }
            self.ppk_used = true;
        }
        self.remote_id = Some(peer_id.clone());
        let mut dns = Vec::new();
        let mut vips = Vec::new();
        let mut split_dns = crate::split_dns::SplitDnsOutcome::default();
        for (t, f) in [(NotifyType::IP4_ALLOWED, Family::V4), (NotifyType::IP6_ALLOWED, Family::V6)] {
            if p.notify(t).is_some() {
                self.ext.peer_allowed.push(f);
            }
        }
        if let Some(cp) = p.cp().filter(|c| c.cfg_type == CfgType::CFG_REPLY) {
            for a in &cp.attributes {
                match a.attr_type {
                    CfgAttrType::INTERNAL_IP4_ADDRESS => {
                        if let Ok(b) = <[u8; 4]>::try_from(&a.value[..]) {
                            vips.push(IpAddr::V4(Ipv4Addr::from(b)));
                        }
                    }
                    CfgAttrType::INTERNAL_IP6_ADDRESS if a.value.len() == 17 => {
                        if let Ok(b) = <[u8; 16]>::try_from(&a.value[..16]) {
                            vips.push(IpAddr::V6(Ipv6Addr::from(b)));
                        }
                    }
                    CfgAttrType::INTERNAL_IP4_DNS => {
                        if let Ok(b) = <[u8; 4]>::try_from(&a.value[..]) {
                            dns.push(IpAddr::V4(Ipv4Addr::from(b)));
                        }
                    }
                    CfgAttrType::INTERNAL_IP6_DNS => {
                        if let Ok(b) = <[u8; 16]>::try_from(&a.value[..]) {
                            dns.push(IpAddr::V6(Ipv6Addr::from(b)));
                        }
                    }
                    _ => {}
                }
            }
            // RFC 8598 §3.3: domains need a DNS server to go to.
            if !dns.is_empty() {
                let full_tunnel = self.conn.child.remote_ts.iter().any(|t| *t == TrafficSelector::any_v4() || *t == TrafficSelector::any_v6());
                split_dns = crate::split_dns::accept_reply(&self.conn.ext.split_dns, &cp.attributes, full_tunnel);
                self.ext.dns_domains = split_dns.accepted.clone();
            }
        }
        self.state = IkeState::Established;
        self.rekey_at = ike_rekey_time(&self.conn, ctx);
        ctx.out.events.push_back(Event::IkeSaUp {
            ike_sa: self.handle,
            connection: self.conn.name.clone(),
            local: self.local,
            remote: self.remote,
            local_id: self.conn.local_id.clone(),
            remote_id: peer_id,
            virtual_ips: vips.clone(),
            dns,
            nat_local: self.nat_local,
            nat_remote: self.nat_remote,
            ppk: self.ppk_used,
        });
        if !split_dns.accepted.is_empty() || !split_dns.refused.is_empty() {
            ctx.out.events.push_back(Event::SplitDns { ike_sa: self.handle, domains: split_dns.accepted, refused: split_dns.refused });
        }
        let Some(mut child) = task.child else { return Ok(()) };
        if !vips.is_empty() {
            // Our side of the tunnel is the assigned address.
            child.ts_local = vips.iter().map(|a| TrafficSelector::host(*a)).collect();
        }
        let result = match (p.sa(), p.ts_i(), p.ts_r()) {
            (Some(sa_r), Some(ts_i), Some(ts_r)) => {
                let transport = p.notify(NotifyType::USE_TRANSPORT_MODE).is_some();
                self.accept_child(ctx, &child, sa_r, ts_i, ts_r, None, &task.init.ni, &task.init.nr, None, transport, vips.is_empty(), Via::IkeAuth)
            }
            _ => Err(ProtoError::NoProposalChosen),
        };
        match result {
            Ok(install) => self.install_child(ctx, install),
            Err(e) => {
                ctx.alloc.release_child_spi(child.spi_in);
                let mut notify = p.error_notify().or_else(|| e.notify().map(|n| n.notify_type)).unwrap_or(NotifyType::NO_PROPOSAL_CHOSEN);
                if let Some(t) = self.address_family_refused(vips.is_empty()) {
                    notify = t;
                    self.follow_allowed_family(ctx);
                }
                ctx.out.events.push_back(Event::ChildSaFailed { ike_sa: self.handle, notify });
            }
        }
        Ok(())
    }

    /// RFC 8983: we asked for addresses, got none, and the responder's
    /// IPx_ALLOWED names only families we did not ask for: the status to
    /// report (IP4_ALLOWED or IP6_ALLOWED).
    fn address_family_refused(&self, no_vips: bool) -> Option<NotifyType> {
        let asked = &self.conn.request_vip;
        let allowed = &self.ext.peer_allowed;
        if !no_vips || asked.is_empty() || allowed.is_empty() || allowed.iter().any(|f| asked.contains(f)) {
            return None;
        }
        Some(if allowed.contains(&Family::V4) { NotifyType::IP4_ALLOWED } else { NotifyType::IP6_ALLOWED })
    }

    /// RFC 8983 §5: a dual-stack initiator that asked for one family and
    /// was told only the other is assigned "MUST send a request for" it; the
    /// configuration payload only goes in IKE_AUTH, so on a new IKE SA.
    /// This one has no Child SA and is deleted. The new SA asks only for
    /// the allowed families and does not fall back again.
    fn follow_allowed_family(&mut self, ctx: &mut Ctx<'_>) {
        if !self.conn.ext.dual_stack || !self.children.is_empty() {
            return;
        }
        let mut conn = (*self.conn).clone();
        conn.request_vip = self.ext.peer_allowed.clone();
        conn.ext.dual_stack = false;
        ctx.out.effects.push(Effect::Reinitiate { conn: Arc::new(conn), local: self.local, remote: self.remote });
        self.enqueue(Queued::Terminate);
    }

    // ------------------------------------------------------------------
    // Child SAs (IKE_AUTH and CREATE_CHILD_SA)

    /// Responder side of a Child SA negotiation. `ke_i` and `dh` are the
    /// PFS key exchange of a CREATE_CHILD_SA; the nonces are those whose
    /// KEYMAT applies (§2.17). Returns the answer payloads (SA, [Nr, KEr],
    /// TSi, TSr) and the SA to install.
    #[allow(clippy::too_many_arguments)]
    fn respond_child(
        &mut self,
        ctx: &mut Ctx<'_>,
        sa_i: &ike_wire::Sa<'_>,
        ts_i: &ike_wire::Ts<'_>,
        ts_r: &ike_wire::Ts<'_>,
        ke_i: Option<&Ke<'_>>,
        ni: &[u8],
        nr: &[u8],
        rekey_of: Option<&ChildSa>,
        transport: bool,
        via: Via,
    ) -> Result<(Vec<Payload<'static>>, Box<ChildSaInstall>), ProtoError> {
        let pfs = via == Via::CreateChildSa;
        let conn = self.conn.clone();
        let (allowed_i, allowed_r) = match rekey_of {
            Some(old) => (old.ts_remote.clone(), old.ts_local.clone()),
            None if !self.leases.is_empty() => (self.leases.iter().map(|a| TrafficSelector::host(*a)).collect(), conn.child.local_ts.clone()),
            None => (conn.child.remote_ts.clone(), conn.child.local_ts.clone()),
        };
        let ts_remote = ts::narrow(&ts::from_wire_list(&ts_i.selectors), &allowed_i);
        let ts_local = ts::narrow(&ts::from_wire_list(&ts_r.selectors), &allowed_r);
        if ts_remote.is_empty() || ts_local.is_empty() {
            return Err(ProtoError::TsUnacceptable);
        }
        // RFC 9478: a rekey keeps the label of the SA it replaces.
        let our_label = match rekey_of {
            Some(old) => old.sec_label.clone(),
            None => conn.child.sec_label.clone(),
        };
        let label = ts::choose_label(our_label.as_deref(), &ts_i.selectors, &ts_r.selectors)?;
        let spi_in = ctx.alloc.child_spi(ctx.rng);
        let selected = proposal::select_esp(&conn.child.esp_proposals, sa_i, spi_in, pfs);
        let (suite, spi_out, answer) = match selected {
            Ok(s) => s,
            Err(e) => {
                ctx.alloc.release_child_spi(spi_in);
                return Err(e);
            }
        };
        let mut ke_payload = None;
        let g_ir = match (suite.ke, ke_i) {
            (Some(method), Some(k)) if k.ke_method == method => {
                let r = ctx.crypto.key_exchange_respond(method.0, &k.data, ctx.rng);
                match r {
                    Ok(r) => {
                        ke_payload = Some(Ke { ke_method: method, data: r.ke_data.into() });
                        Some(r.shared)
                    }
                    Err(e) => {
                        ctx.alloc.release_child_spi(spi_in);
                        return Err(e.into());
                    }
                }
            }
            (Some(method), _) => {
                ctx.alloc.release_child_spi(spi_in);
                return Err(ProtoError::InvalidKePayload(method));
            }
            (None, _) => None,
        };
        let mode = if transport && conn.child.mode == Mode::Transport { Mode::Transport } else { Mode::Tunnel };
        let mut install = self.child_install(ctx, suite, spi_in, spi_out, g_ir.as_ref().map(|g| g.as_slice()), ni, nr, Role::Responder, mode, ts_local.clone(), ts_remote.clone(), rekey_of.map(|c| c.handle))?;
        install.sec_label = label.clone();
        let mut out = vec![Payload::Sa(answer)];
        if pfs {
            out.push(Payload::Nonce(Nonce { data: nr.to_vec().into() }));
            if let Some(k) = ke_payload {
                out.push(Payload::Ke(k));
            }
        }
        out.push(Payload::TsI(ts::to_wire_list_labeled(&ts_remote, label.as_deref())));
        out.push(Payload::TsR(ts::to_wire_list_labeled(&ts_local, label.as_deref())));
        if mode == Mode::Transport {
            out.push(notify_payload(NotifyType::USE_TRANSPORT_MODE));
        }
        Ok((out, install))
    }

    /// Initiator side: checks the responder's answer and derives the keys.
    #[allow(clippy::too_many_arguments)]
    fn accept_child(
        &mut self,
        ctx: &mut Ctx<'_>,
        req: &ChildRequest,
        sa_r: &ike_wire::Sa<'_>,
        ts_i: &ike_wire::Ts<'_>,
        ts_r: &ike_wire::Ts<'_>,
        ke: Option<(&dyn KeyExchange, Option<&Ke<'_>>)>,
        ni: &[u8],
        nr: &[u8],
        rekey_of: Option<ChildSaHandle>,
        transport: bool,
        check_ts_local: bool,
        via: Via,
    ) -> Result<ChildSaInstall, ProtoError> {
        let conn = self.conn.clone();
        let (suite, spi_out) = proposal::accept_esp(&conn.child.esp_proposals, sa_r, via == Via::CreateChildSa)?;
        let ts_local = ts::from_wire_list(&ts_i.selectors);
        let ts_remote = ts::from_wire_list(&ts_r.selectors);
        // §2.9: the responder may only narrow. A virtual-IP client proposed
        // "any" and takes the assigned address instead.
        let local_ok = if check_ts_local { ts::is_narrowing_of(&ts_local, &req.ts_local) } else { !ts_local.is_empty() };
        if !local_ok || !ts::is_narrowing_of(&ts_remote, &req.ts_remote) {
            return Err(ProtoError::TsUnacceptable);
        }
        let label = ts::check_label(conn.child.sec_label.as_deref(), &ts_i.selectors, &ts_r.selectors)?;
        let g_ir = match (suite.ke, ke) {
            (Some(method), Some((ours, Some(ke_r)))) if ours.method() == method.0 && ke_r.ke_method == method => {
                Some(ours.compute_shared(&ke_r.data)?)
            }
            (None, _) => None,
            _ => return Err(ProtoError::Invalid("KE of the Child SA")),
        };
        let mode = if transport && conn.child.mode == Mode::Transport { Mode::Transport } else { Mode::Tunnel };
        let mut install = self.child_install(ctx, suite, req.spi_in, spi_out, g_ir.as_ref().map(|g| g.as_slice()), ni, nr, Role::Initiator, mode, ts_local, ts_remote, rekey_of)?;
        install.sec_label = label;
        Ok(*install)
    }

    /// KEYMAT (§2.17) and the install event of a Child SA. `role` is our
    /// role in the exchange that created it: the initiator's keys come
    /// first in KEYMAT.
    #[allow(clippy::too_many_arguments)]
    fn child_install(
        &mut self,
        ctx: &mut Ctx<'_>,
        suite: EspSuite,
        spi_in: u32,
        spi_out: u32,
        g_ir: Option<&[u8]>,
        ni: &[u8],
        nr: &[u8],
        role: Role,
        mode: Mode,
        ts_local: Vec<TrafficSelector>,
        ts_remote: Vec<TrafficSelector>,
        rekey_of: Option<ChildSaHandle>,
    ) -> Result<Box<ChildSaInstall>, ProtoError> {
        // RFC 9370 §2.2.4: with additional key exchanges KEYMAT waits for
        // them (the caller holds the install back; see `followup`).
        let (keys_out, keys_in) = if suite.additional().next().is_some() {
            self.pending_keymat = Some(followup::ChildKeymat { g_ir: g_ir.map(|g| ike_crypto::Secret::new(g.to_vec())), ni: ni.to_vec(), nr: nr.to_vec(), role });
            let none = || ChildKeys { encr: ike_crypto::Secret::new(Vec::new()), integ: ike_crypto::Secret::new(Vec::new()) };
            (none(), none())
        } else {
            self.child_keys(ctx, &suite, g_ir, ni, nr, &[], role)?
        };
        Ok(Box::new(ChildSaInstall {
            ike_sa: self.handle,
            child_sa: ctx.alloc.child_handle(),
            spi_in,
            spi_out,
            keys_in,
            keys_out,
            suite,
            mode,
            ts_local,
            ts_remote,
            lifetime: self.conn.child.lifetime,
            local: self.local,
            remote: self.remote,
            udp_encap: self.nat_local || self.nat_remote,
            rekey_of,
            sec_label: None,
        }))
    }

    /// KEYMAT split into (outbound, inbound) keys for `role`.
    #[allow(clippy::too_many_arguments)]
    fn child_keys(
        &self,
        ctx: &Ctx<'_>,
        suite: &EspSuite,
        g_ir: Option<&[u8]>,
        ni: &[u8],
        nr: &[u8],
        additional: &[&[u8]],
        role: Role,
    ) -> Result<(ChildKeys, ChildKeys), ProtoError> {
        let keys = self.keys.as_ref().ok_or(ProtoError::Invalid("no keys"))?;
        let encr_len = ctx.crypto.encr_key_len(suite.encr.0, suite.key_bits)?;
        let integ_len = ctx.crypto.integ_key_len(suite.integ.0)?;
        let keymat = keys::child_sa_keymat(&*keys.prf, &keys.sk_d, g_ir, ni, nr, additional, ChildSaKeys::keymat_len(encr_len, integ_len))?;
        let k = ChildSaKeys::split(&keymat, encr_len, integ_len)?;
        let i = ChildKeys { encr: k.encr_i, integ: k.integ_i };
        let r = ChildKeys { encr: k.encr_r, integ: k.integ_r };
        Ok(match role {
            Role::Initiator => (i, r),
            Role::Responder => (r, i),
        })
    }

    fn install_child(&mut self, ctx: &mut Ctx<'_>, install: ChildSaInstall) {
        self.children.insert(
            install.child_sa,
            ChildSa {
                handle: install.child_sa,
                spi_in: install.spi_in,
                spi_out: install.spi_out,
                suite: install.suite,
                mode: install.mode,
                ts_local: install.ts_local.clone(),
                ts_remote: install.ts_remote.clone(),
                sec_label: install.sec_label.clone(),
                state: ChildState::Installed,
                installed_at: ctx.now,
                rekey_due: match self.conn.child.lifetime.rekey_secs {
                    0 => None,
                    // Up to 10% earlier, drawn from the injected RNG, so two
                    // peers with the same lifetime rarely rekey at once.
                    secs => {
                        let jitter_ms = (secs * 100).max(1);
                        let early = std::time::Duration::from_millis(u64::from(ctx.rng.next_u32()) % jitter_ms);
                        Some(ctx.now + (std::time::Duration::from_secs(secs) - early))
                    }
                },
            },
        );
        ctx.out.events.push_back(Event::ChildSaInstall(Box::new(install)));
    }

    fn remove_child(&mut self, ctx: &mut Ctx<'_>, handle: ChildSaHandle) {
        if let Some(c) = self.children.remove(&handle) {
            ctx.alloc.release_child_spi(c.spi_in);
            ctx.out.events.push_back(Event::ChildSaDelete { ike_sa: self.handle, child_sa: c.handle, spi_in: c.spi_in, spi_out: c.spi_out });
        }
    }

    // ------------------------------------------------------------------
    // CREATE_CHILD_SA

    fn start_create_child(&mut self, ctx: &mut Ctx<'_>, rekey_of: Option<ChildSaHandle>) -> Result<(), ProtoError> {
        let pfs = self.conn.child.esp_proposals.first().and_then(|e| e.pfs.first()).copied();
        self.start_create_child_with(ctx, rekey_of, pfs, 0)
    }

    /// CREATE_CHILD_SA for a new or rekeyed Child SA with the PFS method
    /// `pfs` in the KE payload (the full proposal list is always offered).
    fn start_create_child_with(
        &mut self,
        ctx: &mut Ctx<'_>,
        rekey_of: Option<ChildSaHandle>,
        pfs: Option<KeId>,
        ke_retries: u8,
    ) -> Result<(), ProtoError> {
        let conn = self.conn.clone();
        let mut child = self.child_request(ctx);
        let mut p = Vec::new();
        if let Some(h) = rekey_of {
            let old = self.children.get_mut(&h).ok_or(ProtoError::ChildSaNotFound)?;
            old.state = ChildState::Rekeying;
            child.ts_local = old.ts_local.clone();
            child.ts_remote = old.ts_remote.clone();
            // §3.10.1 REKEY_SA: protocol ESP, the SPI we receive on.
            p.push(Payload::Notify(Notify {
                protocol_id: ProtocolId::ESP,
                spi: old.spi_in.to_be_bytes().to_vec().into(),
                notify_type: NotifyType::REKEY_SA,
                data: Vec::new().into(),
            }));
        } else if !self.leases.is_empty() {
            child.ts_local = self.leases.iter().map(|a| TrafficSelector::host(*a)).collect();
        }
        let ni = ctx.nonce();
        let ke = match pfs {
            Some(m) => Some(ctx.crypto.key_exchange(m.0, ctx.rng)?),
            None => None,
        };
        p.push(Payload::Sa(proposal::esp_sa_payload(&conn.child.esp_proposals, child.spi_in, true)));
        p.push(Payload::Nonce(Nonce { data: ni.clone().into() }));
        if let Some(k) = &ke {
            p.push(Payload::Ke(Ke { ke_method: KeId(k.method()), data: k.public_key().to_vec().into() }));
        }
        let label = self.conn.child.sec_label.as_deref();
        p.push(Payload::TsI(ts::to_wire_list_labeled(&child.ts_local, label)));
        p.push(Payload::TsR(ts::to_wire_list_labeled(&child.ts_remote, label)));
        if conn.child.mode == Mode::Transport {
            p.push(notify_payload(NotifyType::USE_TRANSPORT_MODE));
        }
        self.send_request(ctx, ExchangeType::CREATE_CHILD_SA, &p)?;
        self.active = Some(Task::CreateChild(Box::new(CreateChildTask { child, ni, ke, rekey_of, collision: None, ke_retries })));
        Ok(())
    }

    fn respond_create_child(&mut self, ctx: &mut Ctx<'_>, payloads: &[Payload<'_>]) -> Result<Reply, ProtoError> {
        message::check(payloads, message::CREATE_CHILD_SA)?;
        let p = Payloads(payloads);
        let (Some(sa_i), Some(ni)) = (p.sa(), p.nonce()) else {
            return Err(ProtoError::PayloadCount(ike_wire::PayloadType::SA));
        };
        if sa_i.proposals.iter().any(|pr| pr.protocol_id == ProtocolId::IKE) {
            return self.respond_rekey_ike(ctx, sa_i, ni, p.ke());
        }
        if !matches!(self.state, IkeState::Established) {
            // §2.25.1: closing or rekeyed; the peer retries on the new SA.
            return Err(ProtoError::TemporaryFailure);
        }
        if matches!(self.active, Some(Task::RekeyIke(_))) {
            return Err(ProtoError::TemporaryFailure);
        }
        let (Some(ts_i), Some(ts_r)) = (p.ts_i(), p.ts_r()) else {
            return Err(ProtoError::PayloadCount(ike_wire::PayloadType::TSI));
        };
        let rekey_of = match p.notify(NotifyType::REKEY_SA) {
            Some(n) => {
                let spi = spi_of(n).ok_or(ProtoError::Invalid("REKEY_SA SPI"))?;
                let old = self.children.values().find(|c| c.spi_out == spi).ok_or(ProtoError::ChildSaNotFound)?;
                if matches!(old.state, ChildState::Rekeyed | ChildState::Deleting) {
                    return Err(ProtoError::TemporaryFailure);
                }
                Some(old.handle)
            }
            None => None,
        };
        let nr = ctx.nonce();
        let transport = p.notify(NotifyType::USE_TRANSPORT_MODE).is_some();
        let old = rekey_of.and_then(|h| self.children.get(&h)).cloned();
        let (mut out, install) = self.respond_child(ctx, sa_i, ts_i, ts_r, p.ke(), &ni.data, &nr, old.as_ref(), transport, Via::CreateChildSa)?;
        if install.suite.additional().next().is_some() {
            // RFC 9370 §2.2.4: installed after the IKE_FOLLOWUP_KE exchanges.
            let keymat = self.pending_keymat.take();
            out.push(self.defer_child(ctx, *install, keymat, rekey_of)?);
            return Ok(Reply::new(out));
        }
        let new_handle = install.child_sa;
        self.install_child(ctx, *install);
        if let Some(h) = rekey_of {
            if let Some(c) = self.children.get_mut(&h) {
                c.state = ChildState::Rekeyed;
            }
            // §2.8.1: are we rekeying the same Child SA right now?
            if let Some(Task::CreateChild(t)) = &mut self.active {
                if t.rekey_of == Some(h) {
                    t.collision = Some((min_nonce(&ni.data, &nr).to_vec(), new_handle));
                }
            }
            self.queue.retain(|q| *q != Queued::RekeyChild(h));
        }
        Ok(Reply::new(out))
    }

    fn process_create_child_response(&mut self, ctx: &mut Ctx<'_>, task: CreateChildTask, payloads: &[Payload<'_>]) {
        let p = Payloads(payloads);
        let refusal = p.sa().is_none().then(|| p.error_notify()).flatten();
        let result = match (refusal, message::check(payloads, message::CREATE_CHILD_SA), p.sa(), p.nonce(), p.ts_i(), p.ts_r()) {
            // An error answer (§1.3): the notify says why.
            (Some(t), ..) => Err(match t {
                NotifyType::TEMPORARY_FAILURE => ProtoError::TemporaryFailure,
                NotifyType::CHILD_SA_NOT_FOUND => ProtoError::ChildSaNotFound,
                NotifyType::TS_UNACCEPTABLE => ProtoError::TsUnacceptable,
                NotifyType::INVALID_KE_PAYLOAD => ProtoError::InvalidKePayload(KeId::NONE),
                _ => ProtoError::NoProposalChosen,
            }),
            (None, Ok(()), Some(sa_r), Some(nr), Some(ts_i), Some(ts_r)) => {
                let transport = p.notify(NotifyType::USE_TRANSPORT_MODE).is_some();
                let ke = task.ke.as_deref().map(|k| (k, p.ke()));
                self.accept_child(ctx, &task.child, sa_r, ts_i, ts_r, ke, &task.ni, &nr.data, task.rekey_of, transport, true, Via::CreateChildSa)
                    .map(|i| (i, nr.data.to_vec()))
            }
            (None, Err(e), ..) => Err(e),
            _ => Err(ProtoError::PayloadCount(ike_wire::PayloadType::SA)),
        };
        let result = match result {
            // RFC 9370 §2.2.4: installed after the IKE_FOLLOWUP_KE exchanges.
            Ok((install, _)) if install.suite.additional().next().is_some() => {
                let link = p.notify(NotifyType::ADDITIONAL_KEY_EXCHANGE).map(|n| n.data.to_vec());
                match (link, self.pending_keymat.take()) {
                    (Some(link), Some(keymat)) => {
                        self.start_child_followup(ctx, task, install, keymat, &link);
                        return;
                    }
                    _ => Err(ProtoError::Invalid("ADDKE without a link")),
                }
            }
            r => r,
        };
        match result {
            Ok((install, nr)) => self.child_created(ctx, task, install, nr),
            Err(e) => self.child_failed(ctx, task, &p, e),
        }
    }

    /// Our CREATE_CHILD_SA made `install`: install it, unless the peer
    /// deleted it meanwhile, and settle a rekey (§2.8.1 collisions).
    fn child_created(&mut self, ctx: &mut Ctx<'_>, task: CreateChildTask, install: ChildSaInstall, nr: Vec<u8>) {
        let early_deletes = std::mem::take(&mut self.early_deletes);
        if early_deletes.contains(&install.spi_out) {
            // Deleted by the peer before we learnt of it: never install.
            ctx.alloc.release_child_spi(install.spi_in);
            if let Some(old) = task.rekey_of.and_then(|h| self.children.get_mut(&h)) {
                // The peer took the rekey as done: the old SA goes too.
                old.state = ChildState::Rekeyed;
                let h = old.handle;
                self.queue.push_back(Queued::DeleteChild(h));
            }
            return;
        }
        let new_handle = install.child_sa;
        self.install_child(ctx, install);
        let Some(old) = task.rekey_of else { return };
        match task.collision {
            // §2.8.1: the exchange with the lowest nonce made the
            // redundant SA; its initiator (we) deletes it, and the
            // peer deletes the old one.
            Some((peer_min, _)) if min_nonce(&task.ni, &nr) < &peer_min[..] => {
                if let Some(c) = self.children.get_mut(&new_handle) {
                    c.state = ChildState::Deleting;
                }
                self.queue.push_back(Queued::DeleteChild(new_handle));
            }
            _ => {
                if let Some(c) = self.children.get_mut(&old) {
                    c.state = ChildState::Rekeyed;
                }
                self.queue.push_back(Queued::DeleteChild(old));
            }
        }
    }

    /// Our CREATE_CHILD_SA failed: give the SPI back, retry with another
    /// PFS group if asked, or later.
    fn child_failed(&mut self, ctx: &mut Ctx<'_>, task: CreateChildTask, p: &Payloads<'_, '_>, e: ProtoError) {
        ctx.alloc.release_child_spi(task.child.spi_in);
        // §1.3: the responder wants another PFS group; retry with it if we
        // offered it.
        if let Some(group) = p.notify(NotifyType::INVALID_KE_PAYLOAD).and_then(|n| <[u8; 2]>::try_from(&n.data[..]).ok()) {
            let group = KeId(u16::from_be_bytes(group));
            let offered = self.conn.child.esp_proposals.iter().any(|e| e.pfs.contains(&group));
            let current = task.ke.as_ref().map(|k| k.method());
            if offered && current != Some(group.0) && task.ke_retries < MAX_INIT_RETRIES
                && self.start_create_child_with(ctx, task.rekey_of, Some(group), task.ke_retries + 1).is_ok()
            {
                return;
            }
        }
        let backoff = retry_backoff(ctx);
        if let Some(old) = task.rekey_of.and_then(|h| self.children.get_mut(&h)) {
            if old.state == ChildState::Rekeying {
                old.state = ChildState::Installed;
                // §2.25: retry later, not at once.
                old.rekey_due = old.rekey_due.map(|_| ctx.now + backoff);
            }
        }
        let notify = e.notify().map_or(NotifyType::NO_PROPOSAL_CHOSEN, |n| n.notify_type);
        ctx.out.events.push_back(Event::ChildSaFailed { ike_sa: self.handle, notify });
    }

    // ------------------------------------------------------------------
    // IKE SA rekey (§2.18)

    fn start_rekey_ike(&mut self, ctx: &mut Ctx<'_>) -> Result<(), ProtoError> {
        let keys = self.keys.as_ref().ok_or(ProtoError::Invalid("no keys"))?;
        let method = keys.suite.ke;
        self.start_rekey_ike_with(ctx, method, 0)
    }

    /// IKE SA rekey with KE method `method` (§1.3.2: KE is mandatory).
    fn start_rekey_ike_with(&mut self, ctx: &mut Ctx<'_>, method: KeId, ke_retries: u8) -> Result<(), ProtoError> {
        let new_handle = ctx.alloc.ike_handle();
        let new_spi_i = ctx.alloc.ike_spi(ctx.rng, new_handle);
        let ke = ctx.crypto.key_exchange(method.0, ctx.rng)?;
        let ni = ctx.nonce();
        let p = vec![
            Payload::Sa(proposal::ike_sa_payload(&self.conn.ike_proposals, &new_spi_i.to_be_bytes())),
            Payload::Nonce(Nonce { data: ni.clone().into() }),
            Payload::Ke(Ke { ke_method: method, data: ke.public_key().to_vec().into() }),
        ];
        self.send_request(ctx, ExchangeType::CREATE_CHILD_SA, &p)?;
        self.active = Some(Task::RekeyIke(Box::new(RekeyIkeTask { new_handle, new_spi_i, ni, ke, collision: None, ke_retries })));
        Ok(())
    }

    /// The new IKE SA of a rekey, inheriting this one's identity, addresses
    /// and leases; `role` is ours in the rekey exchange (the I flag follows
    /// the rekey initiator, §2.18).
    #[allow(clippy::too_many_arguments)]
    fn rekeyed_sa(
        &mut self,
        ctx: &mut Ctx<'_>,
        handle: IkeSaHandle,
        role: Role,
        spi_i: u64,
        spi_r: u64,
        suite: &proposal::IkeSuite,
        g_ir: &[u8],
        ni: &[u8],
        nr: &[u8],
        additional: &[&[u8]],
    ) -> Result<IkeSa, ProtoError> {
        let old = self.keys.as_ref().ok_or(ProtoError::Invalid("no keys"))?;
        // §2.18: SKEYSEED with the old PRF and SK_d, keys with the new PRF;
        // RFC 9370 §2.2.4 appends the IKE_FOLLOWUP_KE secrets.
        let skeyseed = keys::skeyseed_rekey(&*old.prf, &old.sk_d, g_ir, ni, nr, additional)?;
        let keys = IkeKeys::derive(ctx.crypto, suite, &skeyseed, ni, nr, spi_i, spi_r, role)?;
        let mut sa = IkeSa::new(handle, self.conn.clone(), role, spi_i, spi_r, self.local, self.remote, ctx);
        sa.keys = Some(keys);
        sa.state = IkeState::Established;
        sa.nat_local = self.nat_local;
        sa.nat_remote = self.nat_remote;
        sa.remote_id = self.remote_id.clone();
        sa.peer_hashes = self.peer_hashes.clone();
        sa.fragment_len = self.fragment_len;
        // RFC 8784 §3: no new PPK mix, but SK_d descends from the mixed one.
        sa.ppk_used = self.ppk_used;
        // Split-DNS domains, RFC 8983 and RFC 9593 state carry over.
        sa.ext = self.ext.clone();
        sa.rekey_at = ike_rekey_time(&self.conn, ctx);
        Ok(sa)
    }

    fn respond_rekey_ike(&mut self, ctx: &mut Ctx<'_>, sa_i: &ike_wire::Sa<'_>, ni: &Nonce<'_>, ke_i: Option<&Ke<'_>>) -> Result<Reply, ProtoError> {
        if !matches!(self.state, IkeState::Established) {
            return Err(ProtoError::TemporaryFailure);
        }
        // §2.25.2: a Child SA operation of ours is in flight. Any of our
        // requests counts: a Delete or a liveness check answered on the old
        // SA after its Child SAs moved would act on the wrong SA. Our own
        // IKE rekey is the simultaneous-rekey case, handled below.
        if self.active.as_ref().is_some_and(|t| !matches!(t, Task::RekeyIke(_))) {
            return Err(ProtoError::TemporaryFailure);
        }
        let ke_i = ke_i.ok_or(ProtoError::PayloadCount(ike_wire::PayloadType::KE))?;
        // RFC 9370 §2.2.4: a rekey with additional key exchanges only when
        // no simultaneous rekey of ours needs the §2.8.1 tie-break.
        let addke = self.active.is_none();
        let spi_i = sa_i
            .proposals
            .iter()
            .find_map(|p| <[u8; 8]>::try_from(&p.spi[..]).ok())
            .map(u64::from_be_bytes)
            .filter(|s| *s != 0)
            .ok_or(ProtoError::Invalid("IKE rekey SPI"))?;
        let handle = ctx.alloc.ike_handle();
        let spi_r = ctx.alloc.ike_spi(ctx.rng, handle);
        let built = (|| {
            let (suite, answer) = proposal::select_ike_for_ke(&self.conn.ike_proposals, sa_i, &spi_r.to_be_bytes(), ke_i.ke_method, addke)?;
            if suite.ke != ke_i.ke_method {
                return Err(ProtoError::InvalidKePayload(suite.ke));
            }
            let responded = ctx.crypto.key_exchange_respond(suite.ke.0, &ke_i.data, ctx.rng)?;
            let nr = ctx.nonce();
            if !suite.additional_ke.is_empty() {
                return Ok((suite, answer, responded, nr, None));
            }
            let new = self.rekeyed_sa(ctx, handle, Role::Responder, spi_i, spi_r, &suite, &responded.shared, &ni.data, &nr, &[])?;
            Ok((suite, answer, responded, nr, Some(new)))
        })();
        let (suite, answer, responded, nr, new) = match built {
            Ok(b) => b,
            Err(e) => {
                // Nothing was created: give the SPI back.
                ctx.alloc.ike_spis.remove(&spi_r);
                return Err(e);
            }
        };
        let mut out = vec![
            Payload::Sa(answer),
            Payload::Nonce(Nonce { data: nr.clone().into() }),
            Payload::Ke(Ke { ke_method: suite.ke, data: responded.ke_data.into() }),
        ];
        let Some(new) = new else {
            // RFC 9370 §2.2.4: the new SA waits for the IKE_FOLLOWUP_KE
            // exchanges; the link names this rekey in the first one.
            let state = followup::RekeyIkeState { handle, spi_i, spi_r, suite, ni: ni.data.to_vec(), nr };
            out.push(self.defer_rekey_ike(ctx, state, responded.shared));
            return Ok(Reply::new(out));
        };
        match &mut self.active {
            Some(Task::RekeyIke(t)) => {
                // §2.8.1: simultaneous rekey, decided when our response
                // comes. Until then the Child SAs live in the peer's new SA
                // (the peer may use it at once if it never saw our request);
                // it remembers us in case the peer deletes it as redundant.
                t.collision = Some((min_nonce(&ni.data, &nr).to_vec(), handle));
                let mut new = new;
                new.predecessor = Some(self.handle);
                ctx.out.effects.push(Effect::NewIkeSa(Box::new(new)));
                ctx.out.effects.push(Effect::MoveChildren { from: self.handle, to: handle });
            }
            _ => {
                ctx.out.effects.push(Effect::NewIkeSa(Box::new(new)));
                self.hand_over(ctx, handle);
            }
        }
        Ok(Reply::new(out))
    }

    /// Children and leases move to `successor`; this SA waits for deletion.
    fn hand_over(&mut self, ctx: &mut Ctx<'_>, successor: IkeSaHandle) {
        ctx.out.effects.push(Effect::MoveChildren { from: self.handle, to: successor });
        let announced = matches!(self.state, IkeState::Rekeyed { successor: s } | IkeState::PeerDeleted { successor: s } if s == successor);
        if !announced {
            ctx.out.events.push_back(Event::IkeSaRekeyed { old: self.handle, new: successor });
        }
        self.state = IkeState::Rekeyed { successor };
        if self.queue.contains(&Queued::Terminate) {
            // The owner asked to terminate the tunnel, not this generation.
            ctx.out.effects.push(Effect::DeleteIkeSa(successor));
        }
        self.queue.retain(|q| matches!(q, Queued::DeleteIke));
    }

    fn process_rekey_ike_response(&mut self, ctx: &mut Ctx<'_>, task: RekeyIkeTask, payloads: &[Payload<'_>]) {
        let peer_deleted = matches!(self.state, IkeState::PeerDeleted { .. });
        self.complete_rekey_ike(ctx, task, payloads);
        if peer_deleted {
            // The peer already deleted this SA: nothing more to send on it.
            self.queue.clear();
            self.close(ctx, DownReason::Rekeyed);
        }
    }

    fn complete_rekey_ike(&mut self, ctx: &mut Ctx<'_>, task: RekeyIkeTask, payloads: &[Payload<'_>]) {
        let p = Payloads(payloads);
        let new = (|| {
            message::check(payloads, message::CREATE_CHILD_SA)?;
            let (Some(sa_r), Some(nr), Some(ke_r)) = (p.sa(), p.nonce(), p.ke()) else {
                return Err(ProtoError::PayloadCount(ike_wire::PayloadType::SA));
            };
            let (suite, spi) = proposal::accept_ike(&self.conn.ike_proposals, sa_r)?;
            let spi_r = <[u8; 8]>::try_from(&spi[..]).map(u64::from_be_bytes).map_err(|_| ProtoError::Invalid("IKE rekey SPI"))?;
            if spi_r == 0 || suite.ke.0 != task.ke.method() || ke_r.ke_method != suite.ke {
                return Err(ProtoError::Invalid("IKE rekey response"));
            }
            let g_ir = task.ke.compute_shared(&ke_r.data)?;
            if !suite.additional_ke.is_empty() {
                // RFC 9370 §2.2.4: IKE_FOLLOWUP_KE exchanges follow.
                let link = p.notify(NotifyType::ADDITIONAL_KEY_EXCHANGE).map(|n| n.data.to_vec()).ok_or(ProtoError::Invalid("ADDKE without a link"))?;
                let state = followup::RekeyIkeState { handle: task.new_handle, spi_i: task.new_spi_i, spi_r, suite, ni: task.ni.clone(), nr: nr.data.to_vec() };
                return Ok(Err((state, g_ir, link)));
            }
            let new = self.rekeyed_sa(ctx, task.new_handle, Role::Initiator, task.new_spi_i, spi_r, &suite, &g_ir, &task.ni, &nr.data, &[])?;
            Ok(Ok((new, nr.data.to_vec())))
        })();
        let new = match new {
            Ok(Err((state, g_ir, link))) if task.collision.is_none() && matches!(self.state, IkeState::Established) => {
                self.start_followup(ctx, task, state, g_ir, &link);
                return;
            }
            // A simultaneous rekey (or a peer Delete) meanwhile: no
            // follow-up exchanges on this SA; the attempt is given up.
            Ok(Err(_)) => Err(ProtoError::TemporaryFailure),
            Ok(Ok(n)) => Ok(n),
            Err(e) => Err(e),
        };
        let (new, nr) = match new {
            Ok(n) => n,
            Err(_) => {
                ctx.alloc.ike_spis.remove(&task.new_spi_i);
                // §1.3.2 / §1.2: the responder wants another KE method.
                if let Some(group) = p.notify(NotifyType::INVALID_KE_PAYLOAD).and_then(|n| <[u8; 2]>::try_from(&n.data[..]).ok()) {
                    let group = KeId(u16::from_be_bytes(group));
                    let offered = self.conn.ike_proposals.iter().any(|pr| pr.ke.contains(&group));
                    if offered
                        && group.0 != task.ke.method()
                        && task.ke_retries < MAX_INIT_RETRIES
                        && task.collision.is_none()
                        && matches!(self.state, IkeState::Established)
                        && self.start_rekey_ike_with(ctx, group, task.ke_retries + 1).is_ok()
                    {
                        return;
                    }
                }
                if let Some((_, theirs)) = task.collision {
                    // Ours failed but the peer's simultaneous rekey, which
                    // we answered, stands: it is the successor.
                    ctx.out.effects.push(Effect::Resolved { successor: theirs });
                    self.hand_over(ctx, theirs);
                } else if self.conn.ike_rekey_after.is_some() {
                    // TEMPORARY_FAILURE or a refusal: try again later if
                    // the rekey is time-driven (§2.25).
                    self.rekey_at = Some(ctx.now + retry_backoff(ctx));
                }
                return;
            }
        };
        self.finish_rekey_ike(ctx, task, new, nr);
    }

    /// Our IKE SA rekey produced `new` (with the responder's nonce `nr`):
    /// the §2.8.1 tie-break, then the hand-over.
    fn finish_rekey_ike(&mut self, ctx: &mut Ctx<'_>, task: RekeyIkeTask, new: IkeSa, nr: Vec<u8>) {
        let ours = task.new_handle;
        ctx.out.effects.push(Effect::NewIkeSa(Box::new(new)));
        match task.collision {
            // §2.8.1: our exchange holds the lowest nonce, so the SA we
            // created is redundant: we delete it; the peer deletes the old.
            Some((peer_min, theirs)) if min_nonce(&task.ni, &nr) < &peer_min[..] => {
                ctx.out.effects.push(Effect::DeleteIkeSa(ours));
                ctx.out.effects.push(Effect::Resolved { successor: theirs });
                self.hand_over(ctx, theirs);
            }
            collision => {
                if let Some((_, theirs)) = collision {
                    // We won: the peer deletes its redundant SA; the Child
                    // SAs parked there come to ours.
                    ctx.out.effects.push(Effect::Resolved { successor: theirs });
                    ctx.out.effects.push(Effect::MoveChildren { from: theirs, to: ours });
                }
                self.hand_over(ctx, ours);
                // §2.18 step 4: the rekey initiator deletes the old SA.
                self.queue.push_back(Queued::DeleteIke);
            }
        }
    }

    // ------------------------------------------------------------------
    // INFORMATIONAL

    fn respond_informational(&mut self, ctx: &mut Ctx<'_>, payloads: &[Payload<'_>]) -> Result<Reply, ProtoError> {
        message::check(payloads, message::INFORMATIONAL)?;
        let p = Payloads(payloads);
        let mut out = Vec::new();
        let mut spis_in = Vec::new();
        for d in p.deletes() {
            match d.protocol_id {
                ProtocolId::IKE => {
                    // Simultaneous rekey whose own request went unanswered:
                    // the peer's rekey won and it deletes the old SA, so
                    // the Child SAs go to the SA its rekey created (§2.8.1).
                    if let Some(Task::RekeyIke(t)) = &self.active {
                        if let Some((_, theirs)) = t.collision {
                            ctx.out.effects.push(Effect::Resolved { successor: theirs });
                            self.hand_over(ctx, theirs);
                            self.state = IkeState::PeerDeleted { successor: theirs };
                            return Ok(Reply::new(Vec::new()));
                        }
                    }
                    // The peer deletes the SA its simultaneous rekey created
                    // as redundant (it lost, §2.8.1) before our own rekey
                    // response came: the parked Child SAs go back to the SA
                    // whose rekey will win.
                    if let Some(pred) = self.predecessor.take() {
                        ctx.out.effects.push(Effect::MoveChildren { from: self.handle, to: pred });
                        self.state = IkeState::Rekeyed { successor: pred };
                    }
                    // §1.4.1: answer with an empty INFORMATIONAL, then close.
                    let reason = match self.state {
                        IkeState::Rekeyed { .. } => DownReason::Rekeyed,
                        _ if p.notify(NotifyType::AUTHENTICATION_FAILED).is_some() => DownReason::AuthenticationFailed,
                        _ => DownReason::Deleted,
                    };
                    return Ok(Reply { payloads: Vec::new(), then: Then::Close(reason) });
                }
                ProtocolId::ESP | ProtocolId::AH => {
                    for spi in &d.spis {
                        let Ok(b) = <[u8; 4]>::try_from(&spi[..]) else { continue };
                        let spi = u32::from_be_bytes(b);
                        let Some(h) = self.children.values().find(|c| c.spi_out == spi).map(|c| c.handle) else {
                            if matches!(self.active, Some(Task::CreateChild(_))) || self.child_in_followup() {
                                self.early_deletes.push(spi);
                            }
                            continue;
                        };
                        if let Some(c) = self.children.get(&h) {
                            // §1.4.1: answer with our inbound SPIs, unless
                            // we are deleting it ourselves (simultaneous).
                            if c.state != ChildState::Deleting {
                                spis_in.push(c.spi_in.to_be_bytes().to_vec().into());
                            }
                        }
                        self.remove_child(ctx, h);
                    }
                }
                _ => {}
            }
        }
        if !spis_in.is_empty() {
            out.push(Payload::Delete(Delete { protocol_id: ProtocolId::ESP, spi_size: 4, spis: spis_in }));
        }
        Ok(Reply::new(out))
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
            };
            if r.is_err() {
                self.close(ctx, DownReason::Refused(NotifyType::INVALID_SYNTAX));
                return;
            }
        }
    }

    /// Sends the INFORMATIONAL Delete of this IKE SA (§1.4.1), with an
    /// error notify if the deletion is the answer to one (§2.21.2).
    fn start_delete_ike(&mut self, ctx: &mut Ctx<'_>, reason: DownReason, error: Option<NotifyType>) -> Result<(), ProtoError> {
        if matches!(self.state, IkeState::Established | IkeState::Connecting) {
            self.state = IkeState::Deleting;
        }
        let mut p = Vec::new();
        if let Some(t) = error {
            p.push(notify_payload(t));
        }
        p.push(Payload::Delete(Delete { protocol_id: ProtocolId::IKE, spi_size: 0, spis: Vec::new() }));
        self.send_request(ctx, ExchangeType::INFORMATIONAL, &p)?;
        self.active = Some(Task::DeleteIke(reason));
        Ok(())
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

