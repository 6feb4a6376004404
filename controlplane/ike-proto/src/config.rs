//! Configuration as plain Rust values: the endpoint's limits and timers, and
//! one [`ConnectionConfig`] per tunnel policy. The YAML layer of the daemon
//! builds these; nothing here parses files.
//!
//! Defaults follow strongSwan where RFC 7296 leaves the choice open
//! (§2.1: "no timers are mandated", backoff must be exponential):
//! retransmit after 4 s, ×1.8 each time, give up after 5 retransmits.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use ike_crypto::cert::Certificate;
use ike_crypto::sig::Signer;
use ike_crypto::Secret;
use ike_wire::{EncrId, EsnId, IdType, IntegId, KeId, PrfId};

use crate::ts::TrafficSelector;

/// RFC 7296 §2.1 retransmission: `timeout * base^n` before the n-th
/// retransmit; after `tries` retransmits and one more timeout the IKE SA is
/// dead.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetransmitConfig {
    pub timeout: Duration,
    pub base: f64,
    pub tries: u32,
}

impl Default for RetransmitConfig {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(4), base: 1.8, tries: 5 }
    }
}

impl RetransmitConfig {
    /// How long to wait after sending attempt `n` (0 = the first send).
    pub fn timeout_after(&self, n: u32) -> Duration {
        let factor = self.base.max(1.0).powi(i32::try_from(n).unwrap_or(i32::MAX));
        Duration::try_from_secs_f64(self.timeout.as_secs_f64() * factor).unwrap_or(Duration::from_secs(24 * 3600))
    }
}

/// IKE fragmentation (RFC 7383) limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragmentationConfig {
    /// Longest IKE message sent unfragmented, and longest fragment, in
    /// octets from the IKE header on. RFC 7383 §2.5.1 recommends IP
    /// datagrams of at most 1280 octets: 1280 - 40 (IPv6) - 8 (UDP) - 4
    /// (non-ESP marker) = 1228.
    pub max_message_len: usize,
    /// Refuse messages announced with more fragments.
    pub max_fragments: u16,
    /// Refuse reassembled messages longer than this.
    pub max_reassembled_len: usize,
    /// Abandon an incomplete reassembly after this long (§2.6).
    pub reassembly_timeout: Duration,
}

impl Default for FragmentationConfig {
    fn default() -> Self {
        Self { max_message_len: 1228, max_fragments: 64, max_reassembled_len: 64 * 1024, reassembly_timeout: Duration::from_secs(30) }
    }
}

/// Endpoint-wide settings.
#[derive(Clone)]
pub struct EndpointConfig {
    pub connections: Vec<Arc<ConnectionConfig>>,
    pub retransmit: RetransmitConfig,
    /// RFC 7296 §2.6: demand a COOKIE once this many responder IKE SAs are
    /// half-open (IKE_SA_INIT answered, IKE_AUTH not yet done).
    pub cookie_threshold: usize,
    /// Refuse new IKE_SA_INIT requests outright above this many half-open SAs.
    pub half_open_limit: usize,
    /// Refuse new IKE_SA_INIT requests from an address that already holds
    /// this many half-open SAs.
    pub half_open_per_peer_limit: usize,
    /// A responder IKE SA that sees no IKE_AUTH this long after IKE_SA_INIT
    /// is dropped (strongSwan's half-open timeout is 30 s).
    pub half_open_timeout: Duration,
    /// How long a cookie secret is used before a new one is drawn; cookies
    /// of the previous secret stay valid for one more period (§2.6).
    pub cookie_secret_lifetime: Duration,
    /// How long a closed IKE SA keeps its last response for retransmitted
    /// requests (§2.1: "several minutes" is plenty; strongSwan keeps it
    /// while the SA lives).
    pub closed_linger: Duration,
    /// The UDP port IKE moves to after NAT detection (RFC 7296 §2.23).
    pub natt_port: u16,
    /// IKE fragmentation; `None` neither announces nor accepts it.
    pub fragmentation: Option<FragmentationConfig>,
    /// Nonce length in octets (RFC 7296 §2.10: at least 16 and at least half
    /// the PRF key size; 32 covers PRF_HMAC_SHA2_512).
    pub nonce_len: usize,
    /// RFC 9242: announce and accept IKE_INTERMEDIATE (needed for RFC 9370
    /// additional key exchanges). Off only to emulate an older peer.
    pub intermediate: bool,
    /// Hand IKE_AUTH signatures (ours and the peer's) out as
    /// [`crate::auth_job::AuthJob`]s instead of computing them inline
    /// (the owner must then run them: [`crate::Endpoint::poll_auth_job`]).
    pub defer_signatures: bool,
    /// RFC 9838 GCKS role: the groups this endpoint serves.
    pub groups: crate::group::config::Groups,
    /// RFC 6311: announce IKEV2_MESSAGE_ID_SYNC_SUPPORTED in IKE_AUTH, and
    /// resynchronise the Message IDs of IKE SAs restored from a snapshot
    /// ([`crate::snapshot`]). On when the owner keeps snapshots.
    pub mid_sync: bool,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            connections: Vec::new(),
            retransmit: RetransmitConfig::default(),
            cookie_threshold: 1000,
            half_open_limit: 20_000,
            half_open_per_peer_limit: 5,
            half_open_timeout: Duration::from_secs(30),
            cookie_secret_lifetime: Duration::from_secs(120),
            closed_linger: Duration::from_secs(60),
            natt_port: 4500,
            fragmentation: Some(FragmentationConfig::default()),
            nonce_len: 32,
            intermediate: true,
            defer_signatures: false,
            groups: Vec::new(),
            mid_sync: false,
        }
    }
}

/// An IKE identity (RFC 7296 §3.5).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Identity {
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
    Fqdn(String),
    Email(String),
    /// ID_DER_ASN1_DN: the DER of an X.501 Name.
    Dn(Vec<u8>),
    KeyId(Vec<u8>),
}

impl Identity {
    pub fn id_type(&self) -> IdType {
        match self {
            Identity::Ipv4(_) => IdType::ID_IPV4_ADDR,
            Identity::Ipv6(_) => IdType::ID_IPV6_ADDR,
            Identity::Fqdn(_) => IdType::ID_FQDN,
            Identity::Email(_) => IdType::ID_RFC822_ADDR,
            Identity::Dn(_) => IdType::ID_DER_ASN1_DN,
            Identity::KeyId(_) => IdType::ID_KEY_ID,
        }
    }

    pub fn data(&self) -> Vec<u8> {
        match self {
            Identity::Ipv4(a) => a.octets().to_vec(),
            Identity::Ipv6(a) => a.octets().to_vec(),
            Identity::Fqdn(s) | Identity::Email(s) => s.as_bytes().to_vec(),
            Identity::Dn(d) | Identity::KeyId(d) => d.clone(),
        }
    }

    /// From an ID payload; `None` for types this crate does not match on.
    pub fn from_wire(id_type: IdType, data: &[u8]) -> Option<Self> {
        Some(match id_type {
            IdType::ID_IPV4_ADDR => Identity::Ipv4(Ipv4Addr::from(<[u8; 4]>::try_from(data).ok()?)),
            IdType::ID_IPV6_ADDR => Identity::Ipv6(Ipv6Addr::from(<[u8; 16]>::try_from(data).ok()?)),
            IdType::ID_FQDN => Identity::Fqdn(String::from_utf8(data.to_vec()).ok()?),
            IdType::ID_RFC822_ADDR => Identity::Email(String::from_utf8(data.to_vec()).ok()?),
            IdType::ID_DER_ASN1_DN => Identity::Dn(data.to_vec()),
            IdType::ID_KEY_ID => Identity::KeyId(data.to_vec()),
            _ => return None,
        })
    }
}

/// How this end proves its identity.
#[derive(Clone)]
pub enum LocalAuth {
    /// RFC 7296 §2.15 shared key.
    Psk(Secret),
    /// RFC 7427 digital signature with a certificate chain (end-entity
    /// first, then intermediates) sent in CERT payloads.
    PubKey { signer: Arc<dyn Signer>, certs: Vec<Certificate> },
}

/// How the peer must prove its identity.
#[derive(Clone)]
pub enum RemoteAuth {
    Psk(Secret),
    /// RFC 7427 signature by a certificate that chains to one of `cas`.
    PubKey { cas: Vec<Certificate> },
    /// RFC 7296 §2.16: EAP, with us as the authenticator passing the
    /// conversation to the owner's AAA backend ([`crate::eap`]); the
    /// initiator's AUTH is then made with the MSK.
    Eap(EapConfig),
}

/// How a responder runs EAP (RFC 7296 §2.16, RFC 5998).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EapConfig {
    /// RFC 5998: when the initiator sends EAP_ONLY_AUTHENTICATION, leave
    /// our AUTH out of the first IKE_AUTH response (the EAP method
    /// authenticates us; the AAA server's choice of a mutually
    /// authenticating method is trusted).
    pub eap_only: bool,
}

/// One IKE SA proposal: one cipher, one PRF, one integrity algorithm (NONE
/// with an AEAD) and the key exchange methods, preferred first. The first
/// KE method is the one the initiator's KE payload uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IkeProposal {
    pub encr: EncrId,
    /// Key Length attribute in bits (AES); `None` for ChaCha20-Poly1305.
    pub key_bits: Option<u16>,
    pub prf: PrfId,
    pub integ: IntegId,
    pub ke: Vec<KeId>,
    /// RFC 9370 additional key exchanges: entry `n - 1` lists the methods
    /// acceptable in transform type ADDKE`n` (n = 1..=7), preferred first;
    /// [`KeId::NONE`] in a slot makes it optional. Empty (or all slots
    /// empty) means a classic proposal. A proposal with ADDKE transforms is
    /// always followed on the wire by the same proposal without them, for
    /// peers that predate RFC 9370 (they reject unknown transform types,
    /// RFC 7296 §3.3.6). ML-KEM-768/1024 belong here rather than in `ke`:
    /// IKE_SA_INIT cannot be fragmented (draft-ietf-ipsecme-ikev2-mlkem §3).
    pub additional_ke: Vec<Vec<KeId>>,
    /// RFC 9838 §2.1: the Key Wrap Algorithm transform (type 13) of a
    /// G-IKEv2 registration SA, preferred first; empty for plain IKEv2 (a
    /// proposal with it is refused by a peer without G-IKEv2, and one
    /// without it by a GCKS).
    pub kwa: Vec<ike_wire::KwaId>,
}

impl IkeProposal {
    /// Whether this proposal carries ADDKE transforms.
    pub fn has_additional_ke(&self) -> bool {
        self.additional_ke.iter().any(|s| !s.is_empty())
    }
}

/// One ESP proposal for Child SAs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EspProposal {
    pub encr: EncrId,
    pub key_bits: Option<u16>,
    pub integ: IntegId,
    /// ESN transforms offered or accepted, preferred first.
    pub esn: Vec<EsnId>,
    /// Key exchange methods for PFS in CREATE_CHILD_SA, preferred first;
    /// empty means no PFS (the KE transform is left out, RFC 7296 §3.3.3).
    pub pfs: Vec<KeId>,
    /// RFC 9370 additional key exchanges of CREATE_CHILD_SA (run over
    /// IKE_FOLLOWUP_KE), per ADDKE slot like [`IkeProposal::additional_ke`];
    /// never in IKE_AUTH. Offered with a fallback proposal without them.
    pub additional_ke: Vec<Vec<KeId>>,
}

impl EspProposal {
    pub fn has_additional_ke(&self) -> bool {
        self.additional_ke.iter().any(|s| !s.is_empty())
    }
}

/// ESP encapsulation mode (RFC 7296 §1.3.1 USE_TRANSPORT_MODE).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    Tunnel,
    Transport,
}

/// Child SA lifetimes; zero means "no limit". Time limits are enforced by
/// the endpoint's timers: a rekey up to 10% before `rekey_secs` (jittered),
/// a Delete at `hard_secs`. Byte and packet limits are carried in the
/// install event for the dataplane; the daemon turns them into
/// `Command::RekeyChild` / `Command::DeleteChild`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Lifetimes {
    pub rekey_secs: u64,
    pub hard_secs: u64,
    pub rekey_bytes: u64,
    pub hard_bytes: u64,
    pub rekey_packets: u64,
    pub hard_packets: u64,
}

/// Child SA policy of a connection.
#[derive(Clone, Debug)]
pub struct ChildConfig {
    pub esp_proposals: Vec<EspProposal>,
    /// Our side's selectors (TSi when we initiate). When the connection
    /// asks for a virtual IP, the initiator proposes "any" instead and the
    /// responder narrows it to the assigned address.
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
    pub mode: Mode,
    pub lifetime: Lifetimes,
    /// RFC 9478 security label (e.g. an SELinux context) sent as a
    /// TS_SECLABEL selector in TSi and TSr; the peer must return it
    /// unchanged. `None`: no label, as for peers without RFC 9478.
    pub sec_label: Option<Vec<u8>>,
    /// Diet-ESP header compression proposed / accepted with N(HCP_PROPOSAL)
    /// (draft-ietf-ipsecme-ikev2-diet-esp-extension-04); `None`: never sent,
    /// and the peer's is ignored like any unknown status notify.
    pub compression: Option<crate::compression::CompressionConfig>,
}

/// Address families a remote-access client asks for (RFC 7296 §3.15).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

/// A pool of addresses handed out in CFG_REPLY (RFC 7296 §3.15.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    pub name: String,
    /// First address and number of addresses.
    pub v4: Option<(Ipv4Addr, u32)>,
    pub v6: Option<(Ipv6Addr, u32)>,
    /// INTERNAL_IP4_DNS / INTERNAL_IP6_DNS servers.
    pub dns: Vec<IpAddr>,
    /// RFC 8598 split-DNS domains (with DNSSEC trust anchors) pushed to
    /// clients that ask for them; every server in `dns` must resolve them.
    pub dns_domains: Vec<crate::split_dns::DnsDomain>,
}

/// One tunnel policy.
#[derive(Clone)]
pub struct ConnectionConfig {
    pub name: String,
    pub local_id: Identity,
    /// `None` accepts any authenticated identity.
    pub remote_id: Option<Identity>,
    pub local_auth: LocalAuth,
    pub remote_auth: RemoteAuth,
    pub ike_proposals: Vec<IkeProposal>,
    pub child: ChildConfig,
    /// Rekey the IKE SA at most this long (up to 10% less, jittered) after
    /// it was established.
    pub ike_rekey_after: Option<Duration>,
    /// Send a liveness check when nothing arrived for this long.
    pub dpd_delay: Option<Duration>,
    /// Responder: where virtual IPs come from.
    pub pool: Option<PoolConfig>,
    /// Initiator: the virtual IP families to request in CP(CFG_REQUEST).
    pub request_vip: Vec<Family>,
    /// Initiator: send INITIAL_CONTACT in the first IKE_AUTH (RFC 7296 §2.4).
    pub initial_contact: bool,
    /// RFC 8784 post-quantum preshared keys; `None` neither offers nor
    /// accepts them.
    pub ppk: Option<PpkConfig>,
    /// The ipsecme extensions of this connection.
    pub ext: Extensions,
}

/// RFC 8784 §3 PPK_ID types (the first octet of a PPK_ID).
pub const PPK_ID_OPAQUE: u8 = 1;
pub const PPK_ID_FIXED: u8 = 2;

/// One post-quantum preshared key and its PPK_ID.
#[derive(Clone)]
pub struct Ppk {
    /// [`PPK_ID_FIXED`] (what strongSwan sends and accepts) or
    /// [`PPK_ID_OPAQUE`].
    pub id_type: u8,
    /// The PPK_ID without its type octet.
    pub id: Vec<u8>,
    pub secret: Secret,
}

impl Ppk {
    /// The PPK_ID as carried in N(PPK_IDENTITY): type octet, then the ID.
    pub fn wire_id(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(1 + self.id.len());
        v.push(self.id_type);
        v.extend_from_slice(&self.id);
        v
    }
}

impl std::fmt::Debug for Ppk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Ppk").field("id_type", &self.id_type).field("id", &String::from_utf8_lossy(&self.id)).finish_non_exhaustive()
    }
}

/// RFC 8784 PPK policy of a connection.
#[derive(Clone, Debug)]
pub struct PpkConfig {
    /// Initiator: the first is used. Responder: the initiator's PPK_ID
    /// picks one of these; a PPK_ID not listed is unknown (§3: a PPK not
    /// bound to this peer).
    pub keys: Vec<Ppk>,
    /// Mandatory: refuse IKE SAs without a PPK. Optional: fall back to
    /// plain IKEv2 (as initiator, NO_PPK_AUTH is sent for that).
    pub required: bool,
    /// In which exchange the PPK is negotiated and mixed in.
    pub exchange: PpkExchange,
}

/// Where a connection's PPK is negotiated: RFC 9867 (in IKE_INTERMEDIATE,
/// before IKE_AUTH, so the PPK_ID and everything after it are protected by
/// PPK-derived keys) or RFC 8784 (in IKE_AUTH, under the keys of the
/// classical key exchange).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PpkExchange {
    /// Offer both; RFC 9867 when the peer takes it, RFC 8784 otherwise.
    /// A responder answers RFC 9867 to an initiator that offers it.
    #[default]
    Either,
    /// RFC 9867 only: a peer without it gets no PPK (refused if the PPK is
    /// required), so the PPK_ID never travels under classical-only keys.
    Intermediate,
    /// RFC 8784 only (neither sends nor answers USE_PPK_INT).
    IkeAuth,
}

impl PpkExchange {
    /// RFC 9867 offered (initiator) or accepted (responder).
    pub fn intermediate(self) -> bool {
        matches!(self, Self::Either | Self::Intermediate)
    }

    /// RFC 8784 offered or accepted.
    pub fn ike_auth(self) -> bool {
        matches!(self, Self::Either | Self::IkeAuth)
    }
}

impl PpkConfig {
    /// The key the initiator's PPK_IDENTITY data (type octet and ID) names.
    /// Both defined ID types are accepted; the ID must match exactly.
    pub fn find(&self, wire_id: &[u8]) -> Option<&Ppk> {
        let (&t, id) = wire_id.split_first()?;
        if !(t == PPK_ID_OPAQUE || t == PPK_ID_FIXED) || id.is_empty() {
            return None;
        }
        self.keys.iter().find(|k| k.id == id)
    }
}

/// Per-connection settings of the ipsecme extensions, on by default where
/// that is safe for peers that do not implement them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extensions {
    /// Initiator: RFC 8598 split-DNS request and acceptance policy.
    pub split_dns: crate::split_dns::SplitDnsPolicy,
    /// Initiator: RFC 8983 §5 "dual stack": when the responder answers a
    /// request for one address family with only the other family's
    /// IPx_ALLOWED, set up a new IKE SA asking for that family.
    pub dual_stack: bool,
    /// RFC 9593: announce our authentication methods and use the peer's
    /// announcement to choose our signature scheme.
    pub announce_auth_methods: bool,
    /// The peer's signature schemes we accept (and announce); empty
    /// accepts every scheme we can verify.
    pub signature_schemes: Vec<ike_crypto::sig::SignatureScheme>,
    /// RFC 9838 GM role: register to these groups, the first in GSA_AUTH
    /// (instead of IKE_AUTH; the IKE proposals carry a KWA transform), the
    /// others by GSA_REGISTRATION on the same IKE SA.
    pub groups: Vec<crate::group::GroupMembership>,
    /// RFC 4555 MOBIKE: answer MOBIKE_SUPPORTED (responder) or announce it
    /// (initiator), and follow the peer's UPDATE_SA_ADDRESSES.
    pub mobike: bool,
    /// RFC 4555 §3.7: move the Child SAs to a new peer address only after
    /// a return-routability check (COOKIE2) answered from there. `false`
    /// moves at once, as strongSwan does as responder.
    pub mobike_return_routability: bool,
}

impl Default for Extensions {
    fn default() -> Self {
        Self { split_dns: crate::split_dns::SplitDnsPolicy::default(), dual_stack: false, announce_auth_methods: true, signature_schemes: Vec::new(), groups: Vec::new(), mobike: true, mobike_return_routability: true }
    }
}
