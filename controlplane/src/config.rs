//! The `ike:` section of esprit's one YAML file (DESIGN.md §7), turned into
//! [`ike_proto::EndpointConfig`] plus the daemon's own settings.
//!
//! Guarantees: a file that loads is complete: every connection's
//! credentials were read from disk, every proposal string names algorithms
//! the endpoint knows, every selector and pool parses, every pool a
//! connection names exists. A file that does not load yields a
//! [`ConfigError`] whose `path` names the offending field from the top of
//! the file (`ike.connections.rw.child.esp_proposals[0]`), through
//! `serde_path_to_error` for syntax and by hand for the checks after it.
//!
//! The `dataplane:` and `metrics:` sections belong to esprit-dataplane; only
//! `dataplane.sa_table` is read here, so both processes agree on the table.
//!
//! Proposal strings follow strongSwan's notation (one proposal per string,
//! algorithms joined by `-`): `aes256gcm16-prfsha256-x25519-ecp256` for IKE,
//! `aes256gcm16-esn-noesn` (and a key exchange for PFS) for ESP.
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ike_crypto::cert::Certificate;
use ike_crypto::sig::PrivateKey;
use ike_crypto::Secret;
use ike_proto::split_dns::{DnsDomain, DnssecTa, SplitDnsPolicy};
use ike_proto::{
    ChildConfig, ConnectionConfig, EndpointConfig, EspProposal, Extensions, Family, Identity, IkeProposal, Lifetimes, LocalAuth, Mode,
    PoolConfig, Ppk, PpkConfig, PpkExchange, RemoteAuth, RetransmitConfig, TrafficSelector, PPK_ID_FIXED, PPK_ID_OPAQUE,
};
use ike_proto::group::{GroupConfig, GroupId};
use ike_wire::{EncrId, EsnId, IntegId, KeId, PrfId};
use schemars::JsonSchema;
use serde::Deserialize;

/// A configuration error: the field path from the top of the file and what
/// is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {msg}")]
pub struct ConfigError {
    pub path: String,
    pub msg: String,
}

fn err(path: impl Into<String>, msg: impl Into<String>) -> ConfigError {
    ConfigError { path: path.into(), msg: msg.into() }
}

// ---- the YAML as written -------------------------------------------------

/// JSON Schema of the `ike` section, from the types below (their doc
/// comments are its descriptions); the dataplane's tests merge it into the
/// whole file's schema (deploy/esprit.schema.json).
pub fn ike_schema() -> schemars::Schema {
    schemars::schema_for!(IkeYaml)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    ike: IkeYaml,
    /// esprit-dataplane's section: only `sa_table` is read here.
    #[serde(default)]
    dataplane: Option<DataplaneRef>,
    /// esprit-dataplane's metrics; not ours.
    #[serde(default)]
    #[allow(dead_code)]
    metrics: Option<serde_yaml::Value>,
}

#[derive(Debug, Deserialize)]
struct DataplaneRef {
    #[serde(default)]
    sa_table: Option<TableYaml>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct TableYaml {
    #[serde(default)]
    path: Option<PathBuf>,
    #[serde(default)]
    capacity: Option<u32>,
}

/// `ike.log_level`: how much esprit-ike logs.
#[derive(Clone, Copy, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Failures and rare events only: no line per SA, for gateways holding
    /// many SAs (a line per handshake costs a write each).
    Warn,
    /// Also a line per IKE SA and Child SA event.
    #[default]
    Info,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct IkeYaml {
    /// Addresses to bind UDP `port` and `natt_port` on (the punt TAP's).
    listen: Vec<IpAddr>,
    #[serde(default = "default_port")]
    port: u16,
    #[serde(default = "default_natt_port")]
    natt_port: u16,
    #[serde(default = "default_control_socket")]
    control_socket: PathBuf,
    /// `/metrics` listener; `null` turns it off.
    #[serde(default = "default_metrics_listen")]
    metrics_listen: Option<SocketAddr>,
    /// What esprit-ike writes to stderr: `info` (the default) adds a line
    /// per IKE SA and Child SA event (up, down, installed, deleted,
    /// rekeyed) to the `warn` lines (failures, restarts, reloads).
    #[serde(default)]
    log_level: LogLevel,
    /// Overrides `dataplane.sa_table`.
    #[serde(default)]
    sa_table: Option<TableYaml>,
    #[serde(default = "default_replay_window")]
    replay_window_pkts: u32,
    /// How long SAs left in the table by an earlier esprit-ike are kept
    /// after a restart (their IKE SAs are gone); 0 deletes them at once.
    #[serde(default = "default_orphan_grace")]
    orphan_grace_secs: u64,
    /// Where IKE SAs are kept across restarts (`crate::store`); without
    /// it a restart forgets them.
    #[serde(default)]
    state: Option<StateYaml>,
    #[serde(default)]
    limits: LimitsYaml,
    #[serde(default)]
    pools: BTreeMap<String, PoolYaml>,
    /// RFC 8784 post-quantum preshared keys that connections name by ID.
    #[serde(default)]
    ppks: Vec<PpkYaml>,
    /// Every Diet-ESP code point IANA has not assigned yet (docs/diet-esp.md).
    #[serde(default)]
    diet_esp_code_points: Option<CodePointsYaml>,
    /// RFC 9838 G-IKEv2: the groups this esprit-ike serves as GCKS.
    #[serde(default)]
    groups: Vec<GroupYaml>,
    connections: BTreeMap<String, ConnYaml>,
    /// RADIUS servers for connections with `remote_auth: { eap: radius }`.
    #[serde(default)]
    radius: Option<RadiusYaml>,
}

/// `ike.radius`: the AAA servers EAP goes to, in failover order.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RadiusYaml {
    servers: Vec<RadiusServerYaml>,
    /// How long to wait for an answer before sending again.
    #[serde(default = "default_radius_timeout_ms")]
    timeout_ms: u64,
    /// Retransmissions to one server before failing over to the next.
    #[serde(default = "default_radius_retries")]
    retries: u32,
    /// NAS-Identifier in every request.
    #[serde(default)]
    nas_identifier: Option<String>,
    /// Address the RADIUS socket binds to (any by default).
    #[serde(default)]
    source: Option<IpAddr>,
    /// RFC 2866 accounting for EAP-authenticated IKE SAs: Start when the
    /// first Child SA is up, Interim-Update, Stop with the cause.
    #[serde(default)]
    accounting: Option<AccountingYaml>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct AccountingYaml {
    /// Interim-Update period; an Access-Accept's Acct-Interim-Interval
    /// (RFC 2869 §5.16) overrides it. None: Start and Stop only (unless
    /// the server asks).
    #[serde(default)]
    interim_interval_secs: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RadiusServerYaml {
    /// `ip:port` (1812 is the authentication port).
    address: SocketAddr,
    /// The shared secret, one line, in a file of its own.
    secret_file: PathBuf,
    /// The accounting port (the authentication port + 1 by default).
    #[serde(default)]
    accounting_port: Option<u16>,
}

fn default_radius_timeout_ms() -> u64 {
    1000
}
fn default_radius_retries() -> u32 {
    2
}

/// `ike.groups[]`: one group served (GCKS role).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct GroupYaml {
    name: String,
    /// The group ID, sent as ID_KEY_ID (its octets as written).
    id: String,
    /// Who may join and as what; `id: null` (or absent) is anyone the
    /// connection authenticated.
    members: Vec<GroupMemberYaml>,
    /// Data-security policies: one TEK each.
    policies: Vec<GroupPolicyYaml>,
    rekey: GroupRekeyYaml,
    /// GWP_SENDER_ID_BITS: 8, 12 or 16.
    #[serde(default = "default_sid_bits")]
    sender_id_bits: u8,
    #[serde(default = "one")]
    max_sids_per_member: u32,
    /// GWP_ATD / GWP_DTD (seconds).
    #[serde(default = "one_u16")]
    activation_delay_secs: u16,
    #[serde(default = "default_dtd")]
    deactivation_delay_secs: u16,
    /// Transport mode instead of tunnel mode with address preservation.
    #[serde(default)]
    transport: bool,
    #[serde(default = "default_max_members")]
    max_members: usize,
    #[serde(default = "default_linger")]
    registration_linger_secs: u64,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct GroupMemberYaml {
    #[serde(default)]
    id: Option<String>,
    /// `sender` or `receiver`.
    role: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct GroupPolicyYaml {
    /// Source and destination selectors: site prefixes, a 239/8 address.
    src: String,
    dst: String,
    /// One AEAD ESP transform (no ESN: RFC 9838 §4.4.2.1).
    esp: String,
    #[serde(default = "default_tek_life")]
    lifetime_secs: u32,
    /// `unspecified` (several senders; the default) or `sequential`.
    #[serde(default)]
    sequence: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct GroupRekeyYaml {
    /// `multicast` (GSA_REKEY) or `inband` (GSA_INBAND_REKEY, small groups).
    delivery: String,
    /// KEK suite: cipher[-integrity]-kwN, e.g. `aes256gcm16-kw256`.
    #[serde(default)]
    kek: Option<String>,
    /// GCAUTH Digital Signature key (PKCS#8); absent = Implicit.
    #[serde(default)]
    signature_key: Option<PathBuf>,
    /// GSA_REKEY destination `239.x.y.z:port` and the source it leaves from
    /// (default: the first `ike.listen` address, the same port).
    #[serde(default)]
    destination: Option<SocketAddr>,
    #[serde(default)]
    source: Option<SocketAddr>,
    #[serde(default = "default_kek_life")]
    lifetime_secs: u32,
    /// A TEK's successor goes out this long before it expires.
    #[serde(default = "default_margin")]
    margin_secs: u32,
    #[serde(default = "one_u8")]
    retransmits: u8,
    #[serde(default = "default_rtx_ms")]
    retransmit_interval_ms: u64,
    /// Multicast TTL and interface (by address) of the GSA_REKEY socket.
    #[serde(default = "one_u32")]
    ttl: u32,
}

fn default_sid_bits() -> u8 {
    16
}
fn one() -> u32 {
    1
}
fn one_u32() -> u32 {
    1
}
fn one_u16() -> u16 {
    1
}
fn one_u8() -> u8 {
    1
}
fn default_dtd() -> u16 {
    2
}
fn default_max_members() -> usize {
    10_000
}
fn default_linger() -> u64 {
    10
}
fn default_tek_life() -> u32 {
    3600
}
fn default_kek_life() -> u32 {
    86_400
}
fn default_margin() -> u32 {
    60
}
fn default_rtx_ms() -> u64 {
    1000
}

/// A connection's `groups` entry: on a GM connection (with `remote`) a
/// group to join; on the GCKS, a group the peer may join.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ConnGroupYaml {
    /// The group ID (as `ike.groups[].id`).
    id: String,
    /// Sender-IDs to ask for (0 = receiver only).
    #[serde(default)]
    sender_ids: u32,
    /// A sender that also receives (a mesh site).
    #[serde(default = "yes")]
    receive: bool,
}

/// `ike.diet_esp_code_points`: overrides of
/// [`ike_proto::compression::HcpCodePoints`]'s defaults.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CodePointsYaml {
    hcp_proposal_notify: Option<u16>,
    hcp_name_diet_esp: Option<u8>,
    range_afrg: Option<u16>,
    #[serde(default)]
    afrg: BTreeMap<String, u16>,
}

/// One HCP proposal: per AfRG the acceptable values, most preferred first.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct HcpPolicyYaml {
    dscp_cda: Option<Vec<String>>,
    ecn_cda: Option<Vec<String>>,
    flow_label_cda: Option<Vec<String>>,
    alignment: Option<Vec<String>>,
    esp_trailer: Option<Vec<String>>,
    esp_spi_lsb: Option<Vec<u8>>,
    esp_sn_lsb: Option<Vec<u8>>,
}

/// `child.compression`: Diet-ESP negotiated with N(HCP_PROPOSAL).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CompressionYaml {
    proposals: Vec<HcpPolicyYaml>,
}

/// `ike.state`: the store (the embedded file by default, or etcd for a
/// cluster) and the key sealing its records.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct StateYaml {
    /// `redb` (the default: one file, one box) or `etcd` (a cluster).
    #[serde(default)]
    backend: Option<String>,
    /// redb: the file.
    #[serde(default)]
    path: Option<PathBuf>,
    /// 32 octets, raw or as 64 hex digits (`head -c 32 /dev/urandom`):
    /// the node key (redb) or the cluster key, the same on every node (etcd).
    key_file: PathBuf,
    /// etcd: its client URLs (`http://10.0.0.1:2379`).
    #[serde(default)]
    endpoints: Vec<String>,
    /// etcd: the key prefix of this cluster (default `/esprit`).
    #[serde(default)]
    prefix: Option<String>,
    /// etcd: this node's name in the cluster (default: the host name).
    #[serde(default)]
    node: Option<String>,
    /// etcd: the node's lease; it is dead this long after its last
    /// keep-alive (default 5 s, at least 2).
    #[serde(default)]
    lease_ttl_secs: Option<i64>,
    /// etcd: how often the node looks for IKE SAs without an owner
    /// (default 1000 ms).
    #[serde(default)]
    scan_interval_ms: Option<u64>,
    /// etcd: run after this node claimed IKE SAs of another node (moves
    /// the service address here, as keepalived's notify scripts do), with
    /// `ESPRIT_CLAIMED` (how many) and `ESPRIT_NODE` in its environment.
    #[serde(default)]
    on_takeover: Option<PathBuf>,
    /// etcd: run after `esprit-ctl cluster drain` handed this node's IKE
    /// SAs over (removes the service address here).
    #[serde(default)]
    on_drain: Option<PathBuf>,
}

fn state_backend(s: &StateYaml, base: &Path) -> Result<StateBackend, ConfigError> {
    let etcd_only = [
        ("endpoints", !s.endpoints.is_empty()),
        ("prefix", s.prefix.is_some()),
        ("node", s.node.is_some()),
        ("lease_ttl_secs", s.lease_ttl_secs.is_some()),
        ("scan_interval_ms", s.scan_interval_ms.is_some()),
        ("on_takeover", s.on_takeover.is_some()),
        ("on_drain", s.on_drain.is_some()),
    ];
    match s.backend.as_deref().unwrap_or("redb") {
        "redb" => {
            // A knob nothing reads is refused, not ignored.
            if let Some((k, _)) = etcd_only.iter().find(|(_, set)| *set) {
                return Err(err(format!("ike.state.{k}"), "only with backend: etcd"));
            }
            let path = s.path.as_ref().ok_or_else(|| err("ike.state.path", "required with the redb backend"))?;
            Ok(StateBackend::Redb { path: self::file(base, path) })
        }
        "etcd" => {
            if s.path.is_some() {
                return Err(err("ike.state.path", "only with backend: redb (etcd keeps no file)"));
            }
            if s.endpoints.is_empty() {
                return Err(err("ike.state.endpoints", "backend etcd needs at least one endpoint"));
            }
            let node = match &s.node {
                Some(n) => n.clone(),
                None => std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default(),
            };
            if node.is_empty() || node.contains('/') {
                return Err(err("ike.state.node", format!("{node:?}: a non-empty name without '/'")));
            }
            let prefix = s.prefix.clone().unwrap_or_else(|| "/esprit".to_string());
            if prefix.is_empty() {
                return Err(err("ike.state.prefix", "must not be empty"));
            }
            let ttl = s.lease_ttl_secs.unwrap_or(5);
            if !(2..=3600).contains(&ttl) {
                return Err(err("ike.state.lease_ttl_secs", format!("{ttl}: 2 to 3600")));
            }
            let scan = s.scan_interval_ms.unwrap_or(1000);
            if !(50..=60_000).contains(&scan) {
                return Err(err("ike.state.scan_interval_ms", format!("{scan}: 50 to 60000")));
            }
            Ok(StateBackend::Etcd(EtcdConfig {
                endpoints: s.endpoints.clone(),
                prefix,
                node,
                lease_ttl_secs: ttl,
                scan_interval: std::time::Duration::from_millis(scan),
                on_takeover: s.on_takeover.as_ref().map(|p| self::file(base, p)),
                on_drain: s.on_drain.as_ref().map(|p| self::file(base, p)),
            }))
        }
        other => Err(err("ike.state.backend", format!("{other:?}: redb or etcd"))),
    }
}

/// One PPK: its PPK_ID and the secret, from a file or as hex.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PpkYaml {
    id: String,
    /// `fixed` (PPK_ID_FIXED, what strongSwan sends and accepts; the
    /// default) or `opaque` (PPK_ID_OPAQUE).
    #[serde(default)]
    id_type: Option<String>,
    /// A file holding the key's raw octets (e.g. `head -c 64 /dev/urandom`).
    #[serde(default)]
    secret_file: Option<PathBuf>,
    #[serde(default)]
    secret_hex: Option<String>,
}

impl std::fmt::Debug for PpkYaml {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("PpkYaml").field("id", &self.id).field("secret_file", &self.secret_file).finish_non_exhaustive()
    }
}

/// Default length of each datagram queue of the event loop: a few
/// milliseconds of work at the loop's rate, about 1 MB of small datagrams.
pub const DEFAULT_DATAGRAM_QUEUE: usize = 2048;

/// RFC 8784 §6: a PPK needs at least 256 bits of entropy.
pub const MIN_PPK_LEN: usize = 32;

/// A connection's use of the PPKs.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ConnPpkYaml {
    /// The PPK_ID to send (initiator) and accept (responder).
    #[serde(default)]
    id: Option<String>,
    /// More PPK_IDs a responder accepts (the initiator sends `id`, or the
    /// first of these).
    #[serde(default)]
    ids: Vec<String>,
    /// Refuse IKE SAs without this PPK (default: fall back to plain IKEv2).
    #[serde(default)]
    required: bool,
    /// Where the PPK is negotiated: `either` (default: RFC 9867 in
    /// IKE_INTERMEDIATE when the peer offers or answers it, so the PPK_ID
    /// and IKE_AUTH are protected by PPK-derived keys; RFC 8784 in
    /// IKE_AUTH otherwise), `intermediate` (RFC 9867 only: a peer without
    /// it gets no PPK, refused when `required`) or `ike_auth` (RFC 8784
    /// only).
    #[serde(default)]
    exchange: PpkExchangeYaml,
}

/// `ppk.exchange` of a connection.
#[derive(Clone, Copy, Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
enum PpkExchangeYaml {
    #[default]
    Either,
    Intermediate,
    IkeAuth,
}

fn default_port() -> u16 {
    500
}
fn default_natt_port() -> u16 {
    4500
}
fn default_control_socket() -> PathBuf {
    PathBuf::from("/run/esprit/ike.sock")
}
fn default_metrics_listen() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 9465)))
}
fn default_replay_window() -> u32 {
    1024
}
fn default_orphan_grace() -> u64 {
    30
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct LimitsYaml {
    cookie_threshold: Option<usize>,
    half_open_limit: Option<usize>,
    half_open_per_peer_limit: Option<usize>,
    half_open_timeout_secs: Option<u64>,
    /// RFC 7296 §2.1 retransmission: first timeout, backoff base, tries.
    retransmit_timeout_ms: Option<u64>,
    retransmit_base: Option<f64>,
    retransmit_tries: Option<u32>,
    /// Datagrams each of the event loop's two queues holds (IKE_SA_INIT
    /// requests; everything else); a full queue drops, counted.
    datagram_queue: Option<usize>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PoolYaml {
    /// `10.99.0.0/24` (the network and broadcast addresses are skipped) or
    /// `10.99.0.10-10.99.0.50`.
    #[serde(default)]
    v4: Option<String>,
    #[serde(default)]
    v6: Option<String>,
    #[serde(default)]
    dns: Vec<IpAddr>,
    /// RFC 8598 split-DNS domains pushed to clients that ask: a name, or
    /// `{ name, trust_anchors: ["<key tag> <alg> <digest type> <hex>"] }`
    /// (DS presentation form).
    #[serde(default)]
    dns_domains: Vec<DomainYaml>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
enum DomainYaml {
    Name(String),
    WithTa {
        name: String,
        #[serde(default)]
        trust_anchors: Vec<String>,
    },
}

/// Initiator side of RFC 8598 split DNS.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SplitDnsYaml {
    #[serde(default = "yes")]
    request: bool,
    /// Accept only these domains (and their subdomains).
    #[serde(default)]
    allowed_domains: Option<Vec<String>>,
    /// Domains whose DNSSEC trust anchors may be installed.
    #[serde(default)]
    dnssec_ta_domains: Vec<String>,
    /// Run with the accepted domains in the environment when the IKE SA
    /// comes up and goes down.
    #[serde(default)]
    hook: Option<PathBuf>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ConnYaml {
    /// Our address for `initiate` (default: the first `listen` address).
    #[serde(default)]
    local: Option<IpAddr>,
    /// The peer's address for `initiate`; a responder-only connection
    /// leaves it out.
    #[serde(default)]
    remote: Option<IpAddr>,
    local_id: String,
    /// `null` or absent: any authenticated identity.
    #[serde(default)]
    remote_id: Option<String>,
    local_auth: AuthYaml,
    remote_auth: AuthYaml,
    /// Absent: [`DEFAULT_IKE_PROPOSALS`].
    #[serde(default)]
    proposals: Option<Vec<String>>,
    child: ChildYaml,
    #[serde(default)]
    ike_rekey_secs: Option<u64>,
    #[serde(default)]
    dpd_delay_secs: Option<u64>,
    /// Responder: the pool virtual IPs come from.
    #[serde(default)]
    pool: Option<String>,
    /// Initiator: virtual IP families to ask for (`v4`, `v6`).
    #[serde(default)]
    request_vip: Vec<String>,
    #[serde(default = "yes")]
    initial_contact: bool,
    /// RFC 8784 PPK for this connection.
    #[serde(default)]
    ppk: Option<ConnPpkYaml>,
    #[serde(default)]
    split_dns: Option<SplitDnsYaml>,
    /// RFC 8983 §5: follow IPx_ALLOWED to the other address family.
    #[serde(default)]
    dual_stack: bool,
    /// RFC 9593 SUPPORTED_AUTH_METHODS.
    #[serde(default = "yes")]
    announce_auth_methods: bool,
    /// The peer's signature schemes accepted (and announced): ed25519,
    /// ecdsa-sha256, ecdsa-sha384, rsa-pkcs1-sha256/384/512,
    /// rsa-pss-sha256/384/512. Empty: all.
    #[serde(default)]
    signature_schemes: Vec<String>,
    /// RFC 9838: GM, the groups to register to (the first by GSA_AUTH, the
    /// others by GSA_REGISTRATION); GCKS, the groups this connection's
    /// peers may join (empty: any group whose members list them).
    #[serde(default)]
    groups: Vec<ConnGroupYaml>,
    /// RFC 4555 MOBIKE: answer MOBIKE_SUPPORTED in IKE_AUTH and let the
    /// client move the IKE SA and its Child SAs with UPDATE_SA_ADDRESSES
    /// (no new IKE SA, no rekey).
    #[serde(default = "yes")]
    mobike: bool,
    /// RFC 4555 §3.7: move the Child SAs to a client's new address only
    /// after a return-routability check (an INFORMATIONAL with COOKIE2 to
    /// the new address) is answered. `false` moves at once, as strongSwan
    /// does as responder.
    #[serde(default = "yes")]
    mobike_return_routability: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct AuthYaml {
    /// Pre-shared key as text.
    #[serde(default)]
    psk: Option<String>,
    /// Pre-shared key as hex.
    #[serde(default)]
    psk_hex: Option<String>,
    /// Local: our certificate chain (PEM, end entity first).
    #[serde(default)]
    cert: Option<PathBuf>,
    /// Local: our PKCS#8 private key.
    #[serde(default)]
    key: Option<PathBuf>,
    /// Remote: CA certificates the peer's certificate must chain to.
    #[serde(default)]
    cas: Vec<PathBuf>,
    /// Remote: EAP passed through to an AAA backend (RFC 7296 §2.16);
    /// `radius` (the servers in `ike.radius`) is the only one.
    #[serde(default)]
    eap: Option<String>,
    /// Remote, with `eap`: honour the initiator's EAP_ONLY_AUTHENTICATION
    /// (RFC 5998: no AUTH of ours before EAP).
    #[serde(default)]
    eap_only: bool,
}

impl std::fmt::Debug for AuthYaml {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the PSK: only whether one is set.
        let set = |o: &Option<String>| if o.is_some() { "[redacted]" } else { "None" };
        f.debug_struct("AuthYaml")
            .field("psk", &format_args!("{}", set(&self.psk)))
            .field("psk_hex", &format_args!("{}", set(&self.psk_hex)))
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("cas", &self.cas)
            .field("eap", &self.eap)
            .field("eap_only", &self.eap_only)
            .finish()
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ChildYaml {
    esp_proposals: Vec<String>,
    #[serde(default)]
    local_ts: Vec<String>,
    #[serde(default)]
    remote_ts: Vec<String>,
    #[serde(default = "tunnel")]
    mode: String,
    #[serde(default)]
    rekey_secs: u64,
    #[serde(default)]
    life_secs: u64,
    #[serde(default)]
    rekey_bytes: u64,
    #[serde(default)]
    life_bytes: u64,
    #[serde(default)]
    rekey_packets: u64,
    #[serde(default)]
    life_packets: u64,
    /// RFC 9478 security label, e.g. `system_u:object_r:ipsec_spd_t:s0`.
    #[serde(default)]
    sec_label: Option<String>,
    /// Diet-ESP header compression (draft-ietf-ipsecme-diet-esp-07).
    #[serde(default)]
    compression: Option<CompressionYaml>,
}

fn code_points(at: &str, y: Option<&CodePointsYaml>) -> Result<ike_proto::compression::HcpCodePoints, ConfigError> {
    let mut cp = ike_proto::compression::HcpCodePoints::default();
    let Some(y) = y else { return Ok(cp) };
    if let Some(v) = y.hcp_proposal_notify {
        if v < 16384 {
            return Err(err(format!("{at}.hcp_proposal_notify"), "a status notify type is 16384 or more (RFC 7296 §3.10.1)"));
        }
        cp.hcp_proposal = ike_wire::NotifyType(v);
    }
    if let Some(v) = y.hcp_name_diet_esp {
        cp.diet_esp = v;
    }
    if let Some(v) = y.range_afrg {
        cp.range_afrg = v;
    }
    for (name, &v) in &y.afrg {
        let slot = match name.as_str() {
            "dscp_cda" => &mut cp.dscp_cda,
            "ecn_cda" => &mut cp.ecn_cda,
            "flow_label_cda" => &mut cp.flow_label_cda,
            "alignment" => &mut cp.alignment,
            "esp_trailer" => &mut cp.esp_trailer,
            "esp_spi_lsb" => &mut cp.esp_spi_lsb,
            "esp_sn_lsb" => &mut cp.esp_sn_lsb,
            _ => return Err(err(format!("{at}.afrg.{name}"), "not a Diet-ESP AfRG")),
        };
        *slot = v;
    }
    let mut types = vec![cp.dscp_cda, cp.ecn_cda, cp.flow_label_cda, cp.alignment, cp.esp_trailer, cp.esp_spi_lsb, cp.esp_sn_lsb, cp.range_afrg];
    if types.iter().any(|&t| t > 0x7fff) {
        return Err(err(format!("{at}.afrg"), "attribute types are 15 bits (RFC 7296 §3.3.5)"));
    }
    types.sort_unstable();
    types.dedup();
    if types.len() != 8 {
        return Err(err(format!("{at}.afrg"), "two AfRGs (or range_afrg) share a type"));
    }
    Ok(cp)
}

fn compression(at: &str, y: &CompressionYaml, cp: ike_proto::compression::HcpCodePoints) -> Result<ike_proto::compression::CompressionConfig, ConfigError> {
    use ike_proto::compression::{Afrg, CompressionConfig, HcpPolicy};
    if y.proposals.is_empty() || y.proposals.len() > 255 {
        return Err(err(format!("{at}.proposals"), "1 to 255 proposals"));
    }
    let mut proposals = Vec::new();
    for (i, p) in y.proposals.iter().enumerate() {
        let mut pol = HcpPolicy::default();
        let named = [
            (Afrg::DscpCda, &p.dscp_cda),
            (Afrg::EcnCda, &p.ecn_cda),
            (Afrg::FlowLabelCda, &p.flow_label_cda),
            (Afrg::Alignment, &p.alignment),
            (Afrg::EspTrailer, &p.esp_trailer),
        ];
        for (a, vals) in named {
            for (k, v) in vals.iter().flatten().enumerate() {
                let field = format!("{at}.proposals[{i}].{}[{k}]", a.name());
                let x = a.parse_value(v).ok_or_else(|| err(field.clone(), format!("not a {} value: {v:?}", a.name())))?;
                if a == Afrg::DscpCda && x == 2 {
                    return Err(err(field, "the sa DSCP CDA needs a DSCP list, which esprit does not negotiate"));
                }
                pol.values[a as usize].push(x);
            }
        }
        for (a, vals) in [(Afrg::EspSpiLsb, &p.esp_spi_lsb), (Afrg::EspSnLsb, &p.esp_sn_lsb)] {
            for (k, &v) in vals.iter().flatten().enumerate() {
                if v > 32 {
                    return Err(err(format!("{at}.proposals[{i}].{}[{k}]", a.name()), "0 to 32 bits"));
                }
                pol.values[a as usize].push(v);
            }
        }
        proposals.push(pol);
    }
    Ok(CompressionConfig { proposals, code_points: cp })
}

fn tunnel() -> String {
    "tunnel".into()
}

// ---- the result ----------------------------------------------------------

/// Where `initiate <conn>` sends from and to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitiateAddrs {
    pub local: IpAddr,
    pub remote: Option<IpAddr>,
}

/// The daemon's configuration: the endpoint's plus its own.
#[derive(Clone)]
pub struct DaemonConfig {
    pub endpoint: EndpointConfig,
    pub listen: Vec<IpAddr>,
    pub port: u16,
    pub control_socket: PathBuf,
    pub metrics_listen: Option<SocketAddr>,
    pub log_level: LogLevel,
    pub sa_table_path: PathBuf,
    pub sa_table_capacity: u32,
    pub replay_window_pkts: u32,
    pub orphan_grace: Duration,
    /// Length of each of the event loop's two datagram queues.
    pub datagram_queue: usize,
    /// Per connection name.
    pub initiate: BTreeMap<String, InitiateAddrs>,
    /// RFC 8598 resolver hook script per connection name.
    pub split_dns_hooks: BTreeMap<String, PathBuf>,
    /// `ike.state`: where IKE SAs survive restarts.
    pub state: Option<StateConfig>,
    /// `ike.radius`: the AAA servers of EAP connections.
    pub radius: Option<RadiusConfig>,
    /// RFC 9838: the GSA_REKEY multicast TTL per group name.
    pub group_ttl: BTreeMap<String, u32>,
}

/// The RADIUS client's configuration ([`crate::aaa`]).
#[derive(Clone, Debug)]
pub struct RadiusConfig {
    pub client: radius_wire::client::Config,
    pub nas_identifier: String,
    pub source: Option<IpAddr>,
    /// `ike.radius.accounting`: the servers' accounting ports.
    pub accounting: Option<AccountingConfig>,
}

/// RFC 2866 accounting ([`crate::aaa`]).
#[derive(Clone, Debug)]
pub struct AccountingConfig {
    pub client: radius_wire::client::Config,
    pub interim: Option<Duration>,
}

/// The state store ([`crate::store`]): its backend and the key sealing it.
#[derive(Clone, Debug)]
pub struct StateConfig {
    pub backend: StateBackend,
    pub key: crate::store::NodeKey,
}

/// Where the records go.
#[derive(Clone, Debug)]
pub enum StateBackend {
    Redb { path: PathBuf },
    Etcd(EtcdConfig),
}

/// `ike.state` with `backend: etcd` ([`crate::cluster`]).
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    pub endpoints: Vec<String>,
    pub prefix: String,
    pub node: String,
    pub lease_ttl_secs: i64,
    pub scan_interval: std::time::Duration,
    pub on_takeover: Option<PathBuf>,
    pub on_drain: Option<PathBuf>,
}

impl std::fmt::Debug for DaemonConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Connections hold secrets: only their names are printed.
        f.debug_struct("DaemonConfig")
            .field("connections", &self.endpoint.connections.iter().map(|c| c.name.clone()).collect::<Vec<_>>())
            .field("listen", &self.listen)
            .field("port", &self.port)
            .field("natt_port", &self.endpoint.natt_port)
            .field("control_socket", &self.control_socket)
            .field("metrics_listen", &self.metrics_listen)
            .field("sa_table_path", &self.sa_table_path)
            .finish()
    }
}

impl DaemonConfig {
    /// Reads and checks `path`; relative credential paths are taken from
    /// the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| err(path.display().to_string(), e.to_string()))?;
        Self::from_yaml(&text, path.parent().unwrap_or(Path::new(".")))
    }

    /// Parses a whole esprit YAML file; `base` resolves relative file names.
    pub fn from_yaml(text: &str, base: &Path) -> Result<Self, ConfigError> {
        let de = serde_yaml::Deserializer::from_str(text);
        let file: File = serde_path_to_error::deserialize(de).map_err(|e| {
            let p = e.path().to_string();
            err(if p == "." { String::new() } else { p }, e.inner().to_string())
        })?;
        build(file, base)
    }
}

fn build(file: File, base: &Path) -> Result<DaemonConfig, ConfigError> {
    let ike = file.ike;
    if ike.listen.is_empty() {
        return Err(err("ike.listen", "at least one address to bind IKE's UDP sockets on"));
    }
    if ike.port == ike.natt_port {
        return Err(err("ike.natt_port", "must differ from ike.port"));
    }
    if ike.limits.retransmit_base.is_some_and(|b| !(1.0..=10.0).contains(&b)) {
        return Err(err("ike.limits.retransmit_base", "between 1.0 and 10.0"));
    }
    if ike.limits.datagram_queue.is_some_and(|n| !(16..=1 << 20).contains(&n)) {
        return Err(err("ike.limits.datagram_queue", "between 16 and 1048576 datagrams"));
    }
    if ike.limits.retransmit_timeout_ms == Some(0) {
        return Err(err("ike.limits.retransmit_timeout_ms", "must be positive"));
    }
    if ike.replay_window_pkts > sa_table::MAX_REPLAY_WINDOW_PKTS {
        return Err(err("ike.replay_window_pkts", format!("at most {}", sa_table::MAX_REPLAY_WINDOW_PKTS)));
    }
    let dp_table = file.dataplane.and_then(|d| d.sa_table);
    let table = ike.sa_table.clone().or(dp_table);
    let sa_table_path = table.as_ref().and_then(|t| t.path.clone()).unwrap_or_else(|| PathBuf::from("/dev/shm/esprit/default"));
    let sa_table_capacity = table.as_ref().and_then(|t| t.capacity).unwrap_or(65536);

    let mut pools = BTreeMap::new();
    for (name, p) in &ike.pools {
        pools.insert(name.clone(), pool(&format!("ike.pools.{name}"), name, p)?);
    }

    let ppks = ppks(&ike.ppks, base)?;
    let hcp_codes = code_points("ike.diet_esp_code_points", ike.diet_esp_code_points.as_ref())?;
    let state = match &ike.state {
        None => None,
        Some(s) => {
            let key_file = self::file(base, &s.key_file);
            let key = crate::store::NodeKey::load(&key_file).map_err(|e| err("ike.state.key_file", format!("{}: {e}", key_file.display())))?;
            Some(StateConfig { backend: state_backend(s, base)?, key })
        }
    };

    let radius = match &ike.radius {
        None => None,
        Some(r) => Some(radius(r, base)?),
    };
    let mut connections = Vec::new();
    let mut initiate = BTreeMap::new();
    let mut split_dns_hooks = BTreeMap::new();
    for (name, c) in &ike.connections {
        let at = format!("ike.connections.{name}");
        let mut conn = connection(&at, name, c, &pools, base)?;
        for (i, g) in c.groups.iter().enumerate() {
            if g.id.is_empty() {
                return Err(err(format!("{at}.groups[{i}].id"), "empty group ID"));
            }
            if c.remote.is_none() && !ike.groups.iter().any(|x| x.id == g.id) {
                return Err(err(format!("{at}.groups[{i}].id"), format!("no group with ID {:?} in ike.groups", g.id)));
            }
            conn.ext.groups.push(ike_proto::group::GroupMembership { group: GroupId::key_id(g.id.as_bytes()), sender_ids: g.sender_ids, receive: g.receive });
        }
        if !c.groups.is_empty() && conn.ike_proposals.iter().all(|p| p.kwa.is_empty()) {
            return Err(err(format!("{at}.proposals"), "a group connection needs a Key Wrap transform in its proposals (e.g. aes256gcm16-prfsha256-x25519-kw256, RFC 9838 §2.1)"));
        }
        if let Some(y) = &c.child.compression {
            conn.child.compression = Some(compression(&format!("{at}.child.compression"), y, hcp_codes)?);
        }
        conn.ppk = match &c.ppk {
            None => None,
            Some(p) => Some(conn_ppk(&format!("{at}.ppk"), p, &ppks)?),
        };
        if matches!(conn.remote_auth, RemoteAuth::Eap(_)) && radius.is_none() {
            return Err(err(format!("{at}.remote_auth.eap"), "needs RADIUS servers in ike.radius"));
        }
        connections.push(Arc::new(conn));
        if let Some(h) = c.split_dns.as_ref().and_then(|s| s.hook.as_ref()) {
            split_dns_hooks.insert(name.clone(), self::file(base, h));
        }
        initiate.insert(name.clone(), InitiateAddrs { local: c.local.unwrap_or(ike.listen[0]), remote: c.remote });
    }
    let mut groups = Vec::new();
    for (i, g) in ike.groups.iter().enumerate() {
        let at = format!("ike.groups[{i}]");
        if ike.groups[..i].iter().any(|o| o.name == g.name || o.id == g.id) {
            return Err(err(format!("{at}.name"), "two groups share a name or an ID"));
        }
        groups.push(Arc::new(group(&at, g, ike.listen[0], base)?));
    }
    let d = EndpointConfig::default();
    let l = &ike.limits;
    let endpoint = EndpointConfig {
        connections,
        natt_port: ike.natt_port,
        cookie_threshold: l.cookie_threshold.unwrap_or(d.cookie_threshold),
        half_open_limit: l.half_open_limit.unwrap_or(d.half_open_limit),
        half_open_per_peer_limit: l.half_open_per_peer_limit.unwrap_or(d.half_open_per_peer_limit),
        half_open_timeout: l.half_open_timeout_secs.map_or(d.half_open_timeout, Duration::from_secs),
        retransmit: RetransmitConfig {
            timeout: l.retransmit_timeout_ms.map_or(d.retransmit.timeout, Duration::from_millis),
            base: l.retransmit_base.unwrap_or(d.retransmit.base),
            tries: l.retransmit_tries.unwrap_or(d.retransmit.tries),
        },
        // IKE_AUTH signatures run on the rayon pool (daemon.rs).
        defer_signatures: true,
        // RFC 6311 only when SAs can be resumed.
        mid_sync: state.is_some(),
        groups,
        ..d
    };
    Ok(DaemonConfig {
        endpoint,
        listen: ike.listen,
        port: ike.port,
        control_socket: ike.control_socket,
        metrics_listen: ike.metrics_listen,
        log_level: ike.log_level,
        sa_table_path,
        sa_table_capacity,
        replay_window_pkts: ike.replay_window_pkts,
        orphan_grace: Duration::from_secs(ike.orphan_grace_secs),
        datagram_queue: ike.limits.datagram_queue.unwrap_or(DEFAULT_DATAGRAM_QUEUE),
        initiate,
        split_dns_hooks,
        state,
        group_ttl: ike.groups.iter().map(|g| (g.name.clone(), g.rekey.ttl)).collect(),
        radius,
    })
}

/// `ike.radius`: servers with their secrets read from their files.
fn radius(r: &RadiusYaml, base: &Path) -> Result<RadiusConfig, ConfigError> {
    if r.servers.is_empty() {
        return Err(err("ike.radius.servers", "at least one server"));
    }
    if !(1..=60_000).contains(&r.timeout_ms) {
        return Err(err("ike.radius.timeout_ms", "between 1 and 60000"));
    }
    if r.retries > 10 {
        return Err(err("ike.radius.retries", "at most 10"));
    }
    let mut servers = Vec::new();
    for (i, s) in r.servers.iter().enumerate() {
        let at = format!("ike.radius.servers[{i}].secret_file");
        let path = file(base, &s.secret_file);
        let text = std::fs::read(&path).map_err(|e| err(&at, format!("{}: {e}", path.display())))?;
        let mut secret = zeroize::Zeroizing::new(text);
        while secret.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            secret.pop();
        }
        if secret.is_empty() {
            return Err(err(&at, format!("{}: empty", path.display())));
        }
        servers.push(radius_wire::client::Server { addr: s.address, secret });
    }
    let accounting = match &r.accounting {
        None => None,
        Some(a) => {
            if a.interim_interval_secs.is_some_and(|s| !(1..=86_400).contains(&s)) {
                return Err(err("ike.radius.accounting.interim_interval_secs", "between 1 and 86400"));
            }
            let acct = servers
                .iter()
                .zip(&r.servers)
                .map(|(s, y)| {
                    let port = y.accounting_port.unwrap_or(y.address.port().wrapping_add(1));
                    radius_wire::client::Server { addr: SocketAddr::new(y.address.ip(), port), secret: s.secret.clone() }
                })
                .collect();
            Some(AccountingConfig {
                client: radius_wire::client::Config { servers: acct, timeout: Duration::from_millis(r.timeout_ms), retries: r.retries },
                interim: a.interim_interval_secs.map(Duration::from_secs),
            })
        }
    };
    Ok(RadiusConfig {
        accounting,
        client: radius_wire::client::Config { servers, timeout: Duration::from_millis(r.timeout_ms), retries: r.retries },
        nas_identifier: r.nas_identifier.clone().unwrap_or_else(|| "esprit".into()),
        source: r.source,
    })
}

/// `ike.ppks`, by ID. Secrets never appear in errors.
fn ppks(list: &[PpkYaml], base: &Path) -> Result<BTreeMap<String, Ppk>, ConfigError> {
    let mut out = BTreeMap::new();
    for (i, p) in list.iter().enumerate() {
        let at = format!("ike.ppks[{i}]");
        if p.id.is_empty() {
            return Err(err(format!("{at}.id"), "empty"));
        }
        let id_type = match p.id_type.as_deref() {
            None | Some("fixed") => PPK_ID_FIXED,
            Some("opaque") => PPK_ID_OPAQUE,
            Some(t) => return Err(err(format!("{at}.id_type"), format!("fixed or opaque, not {t:?}"))),
        };
        let (secret, field) = match (&p.secret_file, &p.secret_hex) {
            (Some(_), Some(_)) | (None, None) => return Err(err(&at, "needs exactly one of secret_file and secret_hex")),
            (Some(f), None) => {
                let v = std::fs::read(file(base, f)).map_err(|e| err(format!("{at}.secret_file"), format!("{}: {e}", f.display())))?;
                (Secret::new(v), "secret_file")
            }
            (None, Some(h)) => {
                // The decoder's message would quote the offending digit.
                let v = hex::decode(h.trim()).map_err(|_| err(format!("{at}.secret_hex"), "not an even number of hex digits"))?;
                (Secret::new(v), "secret_hex")
            }
        };
        if secret.len() < MIN_PPK_LEN {
            return Err(err(
                format!("{at}.{field}"),
                format!("a PPK needs at least {MIN_PPK_LEN} octets (256 bits, RFC 8784 §6); this one has {}", secret.len()),
            ));
        }
        if out.insert(p.id.clone(), Ppk { id_type, id: p.id.as_bytes().to_vec(), secret }).is_some() {
            return Err(err(format!("{at}.id"), format!("PPK_ID {:?} appears twice", p.id)));
        }
    }
    Ok(out)
}

fn conn_ppk(at: &str, c: &ConnPpkYaml, ppks: &BTreeMap<String, Ppk>) -> Result<PpkConfig, ConfigError> {
    let mut keys = Vec::new();
    let named = c.id.iter().map(|id| (format!("{at}.id"), id)).chain(c.ids.iter().enumerate().map(|(i, id)| (format!("{at}.ids[{i}]"), id)));
    for (field, id) in named {
        let k = ppks.get(id).ok_or_else(|| err(&field, format!("no PPK with id {id:?} in ike.ppks")))?;
        if !keys.iter().any(|x: &Ppk| x.id == k.id) {
            keys.push(k.clone());
        }
    }
    if keys.is_empty() {
        return Err(err(at, "needs id (or ids) naming a PPK of ike.ppks"));
    }
    let exchange = match c.exchange {
        PpkExchangeYaml::Either => PpkExchange::Either,
        PpkExchangeYaml::Intermediate => PpkExchange::Intermediate,
        PpkExchangeYaml::IkeAuth => PpkExchange::IkeAuth,
    };
    Ok(PpkConfig { keys, required: c.required, exchange })
}

fn pool(at: &str, name: &str, p: &PoolYaml) -> Result<PoolConfig, ConfigError> {
    let v4 = match &p.v4 {
        None => None,
        Some(s) => match range(s) {
            Some((IpAddr::V4(a), n)) => Some((a, u32::try_from(n).unwrap_or(u32::MAX))),
            _ => return Err(err(format!("{at}.v4"), format!("not an IPv4 prefix or range: {s:?}"))),
        },
    };
    let v6 = match &p.v6 {
        None => None,
        Some(s) => match range(s) {
            Some((IpAddr::V6(a), n)) => Some((a, u32::try_from(n).unwrap_or(u32::MAX))),
            _ => return Err(err(format!("{at}.v6"), format!("not an IPv6 prefix or range: {s:?}"))),
        },
    };
    if v4.is_none() && v6.is_none() {
        return Err(err(at, "a pool needs v4 or v6 addresses"));
    }
    let mut dns_domains = Vec::new();
    for (i, d) in p.dns_domains.iter().enumerate() {
        let dat = format!("{at}.dns_domains[{i}]");
        let (n, tas) = match d {
            DomainYaml::Name(n) => (n, &[][..]),
            DomainYaml::WithTa { name, trust_anchors } => (name, &trust_anchors[..]),
        };
        let mut dom = match DnsDomain::new(n) {
            Some(d) if !d.name.is_empty() => d,
            _ => return Err(err(dat, format!("not a DNS name (A-labels only): {n:?}"))),
        };
        for (k, t) in tas.iter().enumerate() {
            dom.trust_anchors.push(trust_anchor(t).ok_or_else(|| {
                err(format!("{dat}.trust_anchors[{k}]"), format!("not \"<key tag> <algorithm> <digest type> <hex digest>\" of a valid length: {t:?}"))
            })?);
        }
        dns_domains.push(dom);
    }
    if !dns_domains.is_empty() && p.dns.is_empty() {
        return Err(err(format!("{at}.dns_domains"), "RFC 8598 §3.3: split-DNS domains need at least one dns server"));
    }
    Ok(PoolConfig { name: name.into(), v4, v6, dns: p.dns.clone(), dns_domains })
}

/// A signature scheme by its configuration name.
pub fn signature_scheme(n: &str) -> Option<ike_crypto::sig::SignatureScheme> {
    use ike_crypto::sig::SignatureScheme as S;
    Some(match n {
        "ed25519" => S::Ed25519,
        "ecdsa-sha256" => S::EcdsaP256Sha256,
        "ecdsa-sha384" => S::EcdsaP384Sha384,
        "rsa-pkcs1-sha256" => S::RsaPkcs1Sha256,
        "rsa-pkcs1-sha384" => S::RsaPkcs1Sha384,
        "rsa-pkcs1-sha512" => S::RsaPkcs1Sha512,
        "rsa-pss-sha256" => S::RsaPssSha256,
        "rsa-pss-sha384" => S::RsaPssSha384,
        "rsa-pss-sha512" => S::RsaPssSha512,
        _ => return None,
    })
}

/// `20326 8 2 E06D44B8...` (DS presentation form, RFC 4034 §5.3).
fn trust_anchor(s: &str) -> Option<DnssecTa> {
    let mut it = s.split_whitespace();
    let key_tag = it.next()?.parse().ok()?;
    let algorithm = it.next()?.parse().ok()?;
    let digest_type = it.next()?.parse().ok()?;
    let digest = hex::decode(it.collect::<String>()).ok()?;
    let ta = DnssecTa { key_tag, algorithm, digest_type, digest };
    ta.is_valid().then_some(ta)
}

/// `a.b.c.d/len` (hosts only: network and broadcast skipped for IPv4
/// prefixes shorter than /31) or `first-last`: first address and count.
fn range(s: &str) -> Option<(IpAddr, u128)> {
    if let Some((a, b)) = s.split_once('-') {
        let (a, b): (IpAddr, IpAddr) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
        let (x, y) = (bits(a), bits(b));
        return (a.is_ipv4() == b.is_ipv4() && x <= y).then(|| (a, y - x + 1));
    }
    let ts = selector(s)?;
    let (x, y) = (bits(ts.start_addr), bits(ts.end_addr));
    let n = y - x + 1;
    match ts.start_addr {
        IpAddr::V4(_) if n > 2 => Some((from_bits(ts.start_addr, x + 1), n - 2)),
        a => Some((a, n)),
    }
}

fn bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_bits(like: IpAddr, b: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(u32::try_from(b).unwrap_or(u32::MAX).into()),
        IpAddr::V6(_) => IpAddr::V6(b.into()),
    }
}

/// `10.1.0.0/16`, a single address, or `0.0.0.0/0`.
pub fn selector(s: &str) -> Option<TrafficSelector> {
    match s.split_once('/') {
        Some((a, l)) => TrafficSelector::prefix(a.trim().parse().ok()?, l.trim().parse().ok()?),
        None => Some(TrafficSelector::host(s.trim().parse().ok()?)),
    }
}

/// An identity as the YAML writes it (`esprit-ctl group exclude` too).
pub fn identity_of(s: &str) -> Identity {
    identity(s)
}

fn identity(s: &str) -> Identity {
    if let Ok(IpAddr::V4(a)) = s.parse() {
        return Identity::Ipv4(a);
    }
    if let Ok(IpAddr::V6(a)) = s.parse() {
        return Identity::Ipv6(a);
    }
    if s.contains('@') && !s.starts_with('@') {
        return Identity::Email(s.into());
    }
    Identity::Fqdn(s.trim_start_matches('@').into())
}

fn psk(at: &str, a: &AuthYaml) -> Result<Option<Secret>, ConfigError> {
    match (&a.psk, &a.psk_hex) {
        (Some(_), Some(_)) => Err(err(at, "psk and psk_hex are exclusive")),
        (Some(t), None) if t.is_empty() => Err(err(format!("{at}.psk"), "empty")),
        (Some(t), None) => Ok(Some(Secret::new(t.as_bytes().to_vec()))),
        (None, Some(h)) => hex::decode(h).map(|v| Some(Secret::new(v))).map_err(|e| err(format!("{at}.psk_hex"), e.to_string())),
        (None, None) => Ok(None),
    }
}

fn file(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn local_auth(at: &str, a: &AuthYaml, base: &Path) -> Result<LocalAuth, ConfigError> {
    if a.eap.is_some() || a.eap_only {
        return Err(err(format!("{at}.eap"), "EAP is for remote_auth (esprit is the EAP authenticator, never the peer)"));
    }
    if let Some(k) = psk(at, a)? {
        if a.cert.is_some() || a.key.is_some() {
            return Err(err(at, "either a PSK or cert + key, not both"));
        }
        return Ok(LocalAuth::Psk(k));
    }
    let (Some(cert), Some(key)) = (&a.cert, &a.key) else {
        return Err(err(at, "needs psk, psk_hex, or cert and key"));
    };
    let certs = Certificate::load_all(file(base, cert)).map_err(|e| err(format!("{at}.cert"), e.to_string()))?;
    if certs.is_empty() {
        return Err(err(format!("{at}.cert"), "no certificate in the file"));
    }
    let key = PrivateKey::load(file(base, key)).map_err(|e| err(format!("{at}.key"), e.to_string()))?;
    Ok(LocalAuth::PubKey { signer: Arc::new(key), certs })
}

fn remote_auth(at: &str, a: &AuthYaml, base: &Path) -> Result<RemoteAuth, ConfigError> {
    match a.eap.as_deref() {
        Some("radius") => {
            if a.psk.is_some() || a.psk_hex.is_some() || !a.cas.is_empty() || a.cert.is_some() || a.key.is_some() {
                return Err(err(format!("{at}.eap"), "EAP authenticates the peer alone: no psk, psk_hex, cas, cert or key beside it"));
            }
            return Ok(RemoteAuth::Eap(ike_proto::EapConfig { eap_only: a.eap_only }));
        }
        Some(other) => return Err(err(format!("{at}.eap"), format!("unknown EAP backend {other:?} (radius)"))),
        None if a.eap_only => return Err(err(format!("{at}.eap_only"), "only with eap")),
        None => {}
    }
    if let Some(k) = psk(at, a)? {
        return Ok(RemoteAuth::Psk(k));
    }
    if a.cas.is_empty() {
        return Err(err(at, "needs psk, psk_hex, or cas"));
    }
    let mut cas = Vec::new();
    for (i, p) in a.cas.iter().enumerate() {
        cas.extend(Certificate::load_all(file(base, p)).map_err(|e| err(format!("{at}.cas[{i}]"), e.to_string()))?);
    }
    Ok(RemoteAuth::PubKey { cas })
}

fn connection(
    at: &str,
    name: &str,
    c: &ConnYaml,
    pools: &BTreeMap<String, PoolConfig>,
    base: &Path,
) -> Result<ConnectionConfig, ConfigError> {
    let mut ike_proposals = Vec::new();
    let defaults: Vec<String> = DEFAULT_IKE_PROPOSALS.iter().map(|s| s.to_string()).collect();
    for (i, p) in c.proposals.as_ref().unwrap_or(&defaults).iter().enumerate() {
        ike_proposals.push(ike_proposal(p).map_err(|m| err(format!("{at}.proposals[{i}]"), m))?);
    }
    if ike_proposals.is_empty() {
        return Err(err(format!("{at}.proposals"), "at least one proposal"));
    }
    let ch = &c.child;
    let cat = format!("{at}.child");
    let mut esp_proposals = Vec::new();
    for (i, p) in ch.esp_proposals.iter().enumerate() {
        esp_proposals.push(esp_proposal(p).map_err(|m| err(format!("{cat}.esp_proposals[{i}]"), m))?);
    }
    if esp_proposals.is_empty() {
        return Err(err(format!("{cat}.esp_proposals"), "at least one proposal"));
    }
    let sels = |field: &str, v: &[String]| -> Result<Vec<TrafficSelector>, ConfigError> {
        v.iter()
            .enumerate()
            .map(|(i, s)| selector(s).ok_or_else(|| err(format!("{cat}.{field}[{i}]"), format!("not an address or prefix: {s:?}"))))
            .collect()
    };
    let mut local_ts = sels("local_ts", &ch.local_ts)?;
    let mut remote_ts = sels("remote_ts", &ch.remote_ts)?;
    // Unset selectors mean "anything" (the responder narrows, §2.9).
    if local_ts.is_empty() {
        local_ts = vec![TrafficSelector::any_v4()];
    }
    if remote_ts.is_empty() {
        remote_ts = vec![TrafficSelector::any_v4()];
    }
    let mode = match ch.mode.as_str() {
        "tunnel" => Mode::Tunnel,
        "transport" => Mode::Transport,
        m => return Err(err(format!("{cat}.mode"), format!("tunnel or transport, not {m:?}"))),
    };
    let pool = match &c.pool {
        None => None,
        Some(p) => Some(pools.get(p).cloned().ok_or_else(|| err(format!("{at}.pool"), format!("no pool named {p:?} in ike.pools")))?),
    };
    let sec_label = match &ch.sec_label {
        // The table keeps the label with its terminating NUL (RFC 9478 as
        // strongSwan and libreswan encode SELinux contexts).
        Some(l) if l.is_empty() || l.len() >= sa_table::MAX_SEC_LABEL_BYTES || l.contains('\0') => {
            return Err(err(format!("{cat}.sec_label"), format!("1 to {} octets, no NUL", sa_table::MAX_SEC_LABEL_BYTES - 1)));
        }
        Some(l) => Some(l.as_bytes().to_vec()),
        None => None,
    };
    if let Some(sd) = &c.split_dns {
        for (i, d) in sd.allowed_domains.iter().flatten().chain(&sd.dnssec_ta_domains).enumerate() {
            if ike_proto::split_dns::normalize(d).filter(|n| !n.is_empty()).is_none() {
                return Err(err(format!("{at}.split_dns"), format!("entry {i}: not a DNS name: {d:?}")));
            }
        }
    }
    let mut signature_schemes = Vec::new();
    for (i, n) in c.signature_schemes.iter().enumerate() {
        signature_schemes.push(signature_scheme(n).ok_or_else(|| err(format!("{at}.signature_schemes[{i}]"), format!("unknown scheme {n:?}")))?);
    }
    let mut request_vip = Vec::new();
    for (i, f) in c.request_vip.iter().enumerate() {
        request_vip.push(match f.as_str() {
            "v4" => Family::V4,
            "v6" => Family::V6,
            _ => return Err(err(format!("{at}.request_vip[{i}]"), "v4 or v6")),
        });
    }
    Ok(ConnectionConfig {
        name: name.into(),
        local_id: identity(&c.local_id),
        remote_id: c.remote_id.as_deref().map(identity),
        local_auth: local_auth(&format!("{at}.local_auth"), &c.local_auth, base)?,
        remote_auth: remote_auth(&format!("{at}.remote_auth"), &c.remote_auth, base)?,
        ike_proposals,
        child: ChildConfig {
            esp_proposals,
            local_ts,
            remote_ts,
            mode,
            lifetime: Lifetimes {
                rekey_secs: ch.rekey_secs,
                hard_secs: ch.life_secs,
                rekey_bytes: ch.rekey_bytes,
                hard_bytes: ch.life_bytes,
                rekey_packets: ch.rekey_packets,
                hard_packets: ch.life_packets,
            },
            sec_label,
            compression: None,
        },
        ike_rekey_after: c.ike_rekey_secs.filter(|s| *s > 0).map(Duration::from_secs),
        dpd_delay: c.dpd_delay_secs.filter(|s| *s > 0).map(Duration::from_secs),
        pool,
        request_vip,
        initial_contact: c.initial_contact,
        ppk: None,
        ext: Extensions {
            split_dns: match &c.split_dns {
                None => SplitDnsPolicy::default(),
                Some(s) => SplitDnsPolicy {
                    request: s.request,
                    allowed_domains: s.allowed_domains.clone(),
                    dnssec_ta_domains: s.dnssec_ta_domains.clone(),
                },
            },
            dual_stack: c.dual_stack,
            announce_auth_methods: c.announce_auth_methods,
            groups: Vec::new(),
            signature_schemes,
            mobike: c.mobike,
            mobike_return_routability: c.mobike_return_routability,
        },
    })
}

/// `ike.groups[i]` as the GCKS serves it.
fn group(at: &str, g: &GroupYaml, listen: IpAddr, base: &Path) -> Result<GroupConfig, ConfigError> {
    use ike_proto::group::{KekPolicy, MemberPolicy, MemberRole, SequenceMode, TekPolicy};
    if g.name.is_empty() {
        return Err(err(format!("{at}.name"), "empty"));
    }
    if g.id.is_empty() || g.id.len() > 255 {
        return Err(err(format!("{at}.id"), "1 to 255 octets"));
    }
    if ![8, 12, 16].contains(&g.sender_id_bits) {
        return Err(err(format!("{at}.sender_id_bits"), "8, 12 or 16 (RFC 9838 §2.5)"));
    }
    if g.max_sids_per_member == 0 {
        return Err(err(format!("{at}.max_sids_per_member"), "at least 1"));
    }
    if g.members.is_empty() {
        return Err(err(format!("{at}.members"), "at least one member entry"));
    }
    let mut members = Vec::new();
    for (i, m) in g.members.iter().enumerate() {
        let role = match m.role.as_str() {
            "sender" => MemberRole::Sender,
            "receiver" => MemberRole::Receiver,
            r => return Err(err(format!("{at}.members[{i}].role"), format!("sender or receiver, not {r:?}"))),
        };
        members.push(MemberPolicy { identity: m.id.as_deref().map(identity), role });
    }
    if g.policies.is_empty() {
        return Err(err(format!("{at}.policies"), "at least one data-security policy"));
    }
    let mut teks = Vec::new();
    for (i, p) in g.policies.iter().enumerate() {
        let pat = format!("{at}.policies[{i}]");
        let src = selector(&p.src).ok_or_else(|| err(format!("{pat}.src"), format!("not an address or prefix: {:?}", p.src)))?;
        let dst = selector(&p.dst).ok_or_else(|| err(format!("{pat}.dst"), format!("not an address or prefix: {:?}", p.dst)))?;
        if src.start_addr.is_ipv4() != dst.start_addr.is_ipv4() {
            return Err(err(format!("{pat}.dst"), "src and dst of different address families"));
        }
        let (encr, key_bits) = encr(&p.esp).ok_or_else(|| err(format!("{pat}.esp"), format!("not an AEAD ESP transform: {:?}", p.esp)))?;
        let sequence = match p.sequence.as_deref() {
            None | Some("unspecified") => SequenceMode::Unspecified,
            Some("sequential") => SequenceMode::Sequential,
            Some(x) => return Err(err(format!("{pat}.sequence"), format!("unspecified or sequential, not {x:?}"))),
        };
        if ike_crypto::sk::is_implicit_iv(encr.0) && sequence == SequenceMode::Unspecified {
            return Err(err(format!("{pat}.esp"), "implicit IV only for single-sender sequential SAs (RFC 9838 §2.7)"));
        }
        if encr == EncrId::ENCR_AES_CBC {
            return Err(err(format!("{pat}.esp"), "the dataplane takes AEAD transforms only"));
        }
        if p.lifetime_secs < 10 {
            return Err(err(format!("{pat}.lifetime_secs"), "at least 10"));
        }
        let suite = ike_proto::EspSuite { encr, key_bits, integ: IntegId::NONE, esn: false, ke: None, additional_ke: [KeId::NONE; 7] };
        teks.push(TekPolicy { suite, src, dst, sequence, lifetime_secs: p.lifetime_secs });
    }
    let r = &g.rekey;
    let rat = format!("{at}.rekey");
    let inband = match r.delivery.as_str() {
        "multicast" => false,
        "inband" => true,
        x => return Err(err(format!("{rat}.delivery"), format!("multicast or inband, not {x:?}"))),
    };
    let kek = if inband {
        None
    } else {
        let dest = r.destination.ok_or_else(|| err(format!("{rat}.destination"), "multicast delivery needs a destination (239.x.y.z:port)"))?;
        if !dest.ip().is_multicast() || dest.port() == 0 {
            return Err(err(format!("{rat}.destination"), format!("a multicast address and a port, not {dest}")));
        }
        let source = r.source.unwrap_or(SocketAddr::new(listen, dest.port()));
        if source.is_ipv4() != dest.is_ipv4() {
            return Err(err(format!("{rat}.source"), "of the destination's address family"));
        }
        let ks = r.kek.as_deref().unwrap_or("aes256gcm16-kw256");
        let (mut e, mut integ_id, mut kwa) = (None, IntegId::NONE, None);
        for t in ks.split('-') {
            if let Some(x) = encr(t) {
                e = Some(x);
            } else if let Some(x) = integ(t) {
                integ_id = x;
            } else if let Some(k) = kwa_id(t) {
                kwa = Some(k);
            } else {
                return Err(err(format!("{rat}.kek"), format!("{ks:?}: unknown algorithm {t:?}")));
            }
        }
        let (Some((encr_id, key_bits)), Some(kwa)) = (e, kwa) else {
            return Err(err(format!("{rat}.kek"), format!("{ks:?}: needs a cipher and a key wrap (kw128, kw192, kw256)")));
        };
        if (encr_id == EncrId::ENCR_AES_CBC) == (integ_id == IntegId::NONE) || ike_crypto::sk::is_implicit_iv(encr_id.0) {
            return Err(err(format!("{rat}.kek"), format!("{ks:?}: an AEAD alone, or a cipher with an integrity algorithm")));
        }
        let gcauth = match &r.signature_key {
            None => None,
            Some(k) => {
                let key = PrivateKey::load(self::file(base, k)).map_err(|e| err(format!("{rat}.signature_key"), e.to_string()))?;
                let spki = key.public_key().to_spki_der().map_err(|e| err(format!("{rat}.signature_key"), e.to_string()))?;
                use ike_crypto::sig::Signer;
                let scheme = *key.schemes().first().ok_or_else(|| err(format!("{rat}.signature_key"), "no signature scheme for this key"))?;
                Some(ike_proto::group::GcauthKey { signer: Arc::new(key), scheme, spki })
            }
        };
        if r.ttl == 0 || r.ttl > 255 {
            return Err(err(format!("{rat}.ttl"), "1 to 255"));
        }
        if r.lifetime_secs < 10 {
            return Err(err(format!("{rat}.lifetime_secs"), "at least 10"));
        }
        Some(KekPolicy {
            encr: encr_id,
            key_bits,
            integ: integ_id,
            kwa,
            gcauth,
            destination: dest,
            source,
            lifetime_secs: r.lifetime_secs,
            retransmits: r.retransmits,
            retransmit_interval: Duration::from_millis(r.retransmit_interval_ms.max(1)),
        })
    };
    if teks.iter().any(|t| t.lifetime_secs <= r.margin_secs) {
        return Err(err(format!("{rat}.margin_secs"), "shorter than every policy's lifetime_secs"));
    }
    Ok(GroupConfig {
        name: g.name.clone(),
        id: GroupId::key_id(g.id.as_bytes()),
        members,
        teks,
        kek,
        inband_rekey: inband,
        rekey_margin_secs: r.margin_secs,
        activation_delay_secs: g.activation_delay_secs,
        deactivation_delay_secs: g.deactivation_delay_secs,
        sender_id_bits: g.sender_id_bits,
        max_sids_per_member: g.max_sids_per_member,
        transport: g.transport,
        max_members: g.max_members,
        registration_linger: Duration::from_secs(g.registration_linger_secs),
    })
}

/// RFC 9838 Key Wrap Algorithm (transform type 13) keywords.
fn kwa_id(t: &str) -> Option<ike_wire::KwaId> {
    Some(match t {
        "kw128" => ike_wire::KwaId::KW_5649_128,
        "kw192" => ike_wire::KwaId::KW_5649_192,
        "kw256" => ike_wire::KwaId::KW_5649_256,
        _ => return None,
    })
}

/// An AEAD or cipher keyword: (ID, key bits).
fn encr(t: &str) -> Option<(EncrId, Option<u16>)> {
    Some(match t {
        "aes128gcm16" | "aes128gcm" => (EncrId::ENCR_AES_GCM_16, Some(128)),
        "aes192gcm16" | "aes192gcm" => (EncrId::ENCR_AES_GCM_16, Some(192)),
        "aes256gcm16" | "aes256gcm" => (EncrId::ENCR_AES_GCM_16, Some(256)),
        "chacha20poly1305" => (EncrId::ENCR_CHACHA20_POLY1305, None),
        // RFC 8750 implicit IV (ESP only).
        "aes128gcm16iiv" => (EncrId::ENCR_AES_GCM_16_IIV, Some(128)),
        "aes192gcm16iiv" => (EncrId::ENCR_AES_GCM_16_IIV, Some(192)),
        "aes256gcm16iiv" => (EncrId::ENCR_AES_GCM_16_IIV, Some(256)),
        "chacha20poly1305iiv" => (EncrId::ENCR_CHACHA20_POLY1305_IIV, None),
        "aes128" => (EncrId::ENCR_AES_CBC, Some(128)),
        "aes256" => (EncrId::ENCR_AES_CBC, Some(256)),
        _ => return None,
    })
}

fn prf(t: &str) -> Option<PrfId> {
    Some(match t {
        "prfsha256" => PrfId::PRF_HMAC_SHA2_256,
        "prfsha384" => PrfId::PRF_HMAC_SHA2_384,
        "prfsha512" => PrfId::PRF_HMAC_SHA2_512,
        _ => return None,
    })
}

fn integ(t: &str) -> Option<IntegId> {
    Some(match t {
        "sha256" => IntegId::AUTH_HMAC_SHA2_256_128,
        "sha384" => IntegId::AUTH_HMAC_SHA2_384_192,
        "sha512" => IntegId::AUTH_HMAC_SHA2_512_256,
        _ => return None,
    })
}

fn ke(t: &str) -> Option<KeId> {
    Some(match t {
        "x25519" | "curve25519" => KeId::CURVE25519,
        "ecp256" => KeId::ECP_256,
        "ecp384" => KeId::ECP_384,
        "ecp521" => KeId::ECP_521,
        "modp2048" => KeId::MODP_2048,
        "mlkem512" => KeId::ML_KEM_512,
        "mlkem768" => KeId::ML_KEM_768,
        "mlkem1024" => KeId::ML_KEM_1024,
        "none" => KeId::NONE,
        _ => return None,
    })
}

/// The IKE proposals of a connection that names none: X25519 in
/// IKE_SA_INIT, then ML-KEM-768 as RFC 9370 ADDKE1 (draft-ietf-ipsecme-
/// ikev2-mlkem's hybrid), offered with its classic fallback (ike-proto adds
/// it) for peers without RFC 9370.
pub const DEFAULT_IKE_PROPOSALS: &[&str] = &["aes256gcm16-prfsha384-x25519-ke1_mlkem768"];

/// `keN_<method>` (strongSwan's notation for RFC 9370 ADDKE`N`, N = 1..7).
fn addke(t: &str) -> Option<(usize, KeId)> {
    let rest = t.strip_prefix("ke")?;
    let (n, m) = rest.split_once('_')?;
    let n: usize = n.parse().ok().filter(|n| (1..=7).contains(n))?;
    Some((n, ke(m)?))
}

/// `aes256gcm16-prfsha256-x25519[-ecp256...][-ke1_mlkem768[-ke1_none]...]`;
/// with a non-AEAD cipher an integrity algorithm (`sha256`) is required,
/// and its PRF is implied when none is given. `keN_x` adds method x to RFC
/// 9370 slot ADDKE`N` (`keN_none` makes it optional). ML-KEM-768/1024 go
/// in an ADDKE slot only: IKE_SA_INIT cannot be fragmented
/// (draft-ietf-ipsecme-ikev2-mlkem §3 allows only ML-KEM-512 there over
/// UDP).
pub fn ike_proposal(s: &str) -> Result<IkeProposal, String> {
    let mut enc = None;
    let mut p = None;
    let mut i = None;
    let mut kes = Vec::new();
    let mut additional_ke: Vec<Vec<KeId>> = Vec::new();
    let mut kwa = Vec::new();
    for t in s.split('-') {
        if let Some(e) = encr(t) {
            if enc.replace(e).is_some() {
                return Err(format!("{s:?}: one cipher per proposal"));
            }
        } else if let Some(x) = prf(t) {
            p = Some(x);
        } else if let Some(x) = integ(t) {
            i = Some((x, t));
        } else if let Some(k) = ke(t).filter(|k| *k != KeId::NONE) {
            if matches!(k, KeId::ML_KEM_768 | KeId::ML_KEM_1024) {
                return Err(format!("{s:?}: {t} cannot go in IKE_SA_INIT (not fragmentable); use it as an additional key exchange, e.g. ke1_{t}"));
            }
            kes.push(k);
        } else if let Some(k) = kwa_id(t) {
            // RFC 9838 §2.1: registration needs a Key Wrap transform.
            if !kwa.contains(&k) {
                kwa.push(k);
            }
        } else if let Some((n, k)) = addke(t) {
            if additional_ke.len() < n {
                additional_ke.resize(n, Vec::new());
            }
            if !additional_ke[n - 1].contains(&k) {
                additional_ke[n - 1].push(k);
            }
        } else {
            return Err(format!("{s:?}: unknown algorithm {t:?}"));
        }
    }
    let (encr, key_bits) = enc.ok_or_else(|| format!("{s:?}: no cipher"))?;
    if ike_crypto::sk::is_implicit_iv(encr.0) {
        return Err(format!("{s:?}: implicit-IV ciphers are for ESP only (RFC 8750 §4: not allowed for IKEv2)"));
    }
    let aead = encr != EncrId::ENCR_AES_CBC;
    let integ = match (aead, i) {
        (true, None) => IntegId::NONE,
        (true, Some(_)) => return Err(format!("{s:?}: an AEAD takes no integrity algorithm")),
        (false, None) => return Err(format!("{s:?}: a non-AEAD cipher needs an integrity algorithm")),
        (false, Some((x, _))) => x,
    };
    let prf = match (p, i) {
        (Some(p), _) => p,
        (None, Some((_, t))) => prf(&format!("prf{t}")).ok_or_else(|| format!("{s:?}: no PRF"))?,
        (None, None) => return Err(format!("{s:?}: no PRF (e.g. prfsha256)")),
    };
    if kes.is_empty() {
        return Err(format!("{s:?}: no key exchange (e.g. x25519)"));
    }
    if additional_ke.iter().any(|slot| !slot.is_empty() && slot.iter().all(|k| *k == KeId::NONE)) {
        return Err(format!("{s:?}: an ADDKE slot with only `none`"));
    }
    Ok(IkeProposal { encr, key_bits, prf, integ, ke: kes, additional_ke, kwa })
}

/// `aes256gcm16[-esn|-noesn...][-x25519...]` (an AEAD: the dataplane has
/// no other ESP transform). Without `esn`/`noesn`, no ESN.
pub fn esp_proposal(s: &str) -> Result<EspProposal, String> {
    let mut enc = None;
    let mut esn = Vec::new();
    let mut pfs = Vec::new();
    let mut additional_ke: Vec<Vec<KeId>> = Vec::new();
    for t in s.split('-') {
        if let Some(e) = encr(t) {
            if enc.replace(e).is_some() {
                return Err(format!("{s:?}: one cipher per proposal"));
            }
        } else if t == "esn" {
            esn.push(EsnId::ESN);
        } else if t == "noesn" {
            esn.push(EsnId::NO_ESN);
        } else if let Some(k) = ke(t) {
            pfs.push(k);
        } else if let Some((n, k)) = addke(t) {
            // RFC 9370 additional key exchanges of CREATE_CHILD_SA.
            if additional_ke.len() < n {
                additional_ke.resize(n, Vec::new());
            }
            if !additional_ke[n - 1].contains(&k) {
                additional_ke[n - 1].push(k);
            }
        } else {
            return Err(format!("{s:?}: unknown algorithm {t:?}"));
        }
    }
    let (encr, key_bits) = enc.ok_or_else(|| format!("{s:?}: no cipher"))?;
    if encr == EncrId::ENCR_AES_CBC {
        return Err(format!("{s:?}: the dataplane carries AEADs only (AES-GCM-16, ChaCha20-Poly1305)"));
    }
    if esn.is_empty() {
        esn.push(EsnId::NO_ESN);
    }
    Ok(EspProposal { encr, key_bits, integ: IntegId::NONE, esn, pfs, additional_ke })
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
dataplane:
  sa_table: { path: /dev/shm/esprit/test, capacity: 128 }
  ports: { outside: { device: x } }
metrics: { listen: null }
ike:
  listen: [172.16.9.1]
  control_socket: /tmp/ike.sock
  pools:
    rw: { v4: 10.99.0.0/24, dns: [192.168.109.53] }
  connections:
    rw:
      local_id: gw.esprit
      remote_id: client@esprit
      local_auth: { psk: "s3cret" }
      remote_auth: { psk: "s3cret" }
      proposals: [aes256gcm16-prfsha256-x25519-ecp256]
      pool: rw
      child:
        esp_proposals: [aes256gcm16, chacha20poly1305-esn-noesn]
        local_ts: [192.168.109.0/24]
"#;

    #[test]
    fn the_parsed_file_never_prints_a_psk() {
        // One side by text, the other by hex.
        let yaml = YAML.replacen("remote_auth: { psk: \"s3cret\" }", "remote_auth: { psk_hex: \"5ec7e7\" }", 1);
        let file: File = serde_yaml::from_str(&yaml).unwrap();
        let text = format!("{file:?} {file:#?}");
        for needle in ["s3cret", "5ec7e7"] {
            assert!(!text.contains(needle), "`{needle}` in {text}");
        }
        assert!(text.contains("psk: [redacted]") && text.contains("psk_hex: [redacted]"), "{text}");
    }

    #[test]
    fn loads_a_road_warrior_responder() {
        let c = DaemonConfig::from_yaml(YAML, Path::new(".")).unwrap();
        assert_eq!(c.sa_table_path, PathBuf::from("/dev/shm/esprit/test"));
        assert_eq!(c.sa_table_capacity, 128);
        assert_eq!(c.port, 500);
        assert_eq!(c.endpoint.natt_port, 4500);
        let conn = &c.endpoint.connections[0];
        assert_eq!(conn.name, "rw");
        assert_eq!(conn.remote_id, Some(Identity::Email("client@esprit".into())));
        assert_eq!(conn.ike_proposals[0].ke, vec![KeId::CURVE25519, KeId::ECP_256]);
        assert_eq!(conn.child.esp_proposals[1].esn, vec![EsnId::ESN, EsnId::NO_ESN]);
        let pool = conn.pool.as_ref().unwrap();
        assert_eq!(pool.v4, Some(("10.99.0.1".parse().unwrap(), 254)));
        assert_eq!(conn.child.remote_ts, vec![TrafficSelector::any_v4()]);
        assert_eq!(c.initiate["rw"], InitiateAddrs { local: "172.16.9.1".parse().unwrap(), remote: None });
    }

    #[test]
    fn loads_diet_esp_compression_code_points_and_their_errors() {
        use ike_proto::compression::Afrg;
        let y = YAML
            .replace(
                "local_ts: [192.168.109.0/24]",
                "local_ts: [192.168.109.0/24]\n        compression:\n          proposals:\n            - { dscp_cda: [lower], alignment: [8bit, 64bit], esp_trailer: [optional], esp_spi_lsb: [8], esp_sn_lsb: [8, 16] }\n            - {}",
            )
            .replace("  connections:", "  diet_esp_code_points: { hcp_proposal_notify: 40999, afrg: { esp_trailer: 20000 } }\n  connections:");
        let c = DaemonConfig::from_yaml(&y, Path::new(".")).unwrap();
        let comp = c.endpoint.connections[0].child.compression.as_ref().unwrap();
        assert_eq!(comp.proposals.len(), 2);
        assert_eq!(comp.proposals[0].values[Afrg::Alignment as usize], vec![0, 3]);
        assert_eq!(comp.proposals[0].values[Afrg::EspSnLsb as usize], vec![8, 16]);
        assert!(comp.proposals[1].values.iter().all(Vec::is_empty));
        assert_eq!(comp.code_points.hcp_proposal, ike_wire::NotifyType(40999));
        assert_eq!(comp.code_points.esp_trailer, 20000);
        assert_eq!(comp.code_points.esp_spi_lsb, 4, "the draft's proposed value by default");
        let path = |bad: String| DaemonConfig::from_yaml(&bad, Path::new(".")).err().unwrap().path;
        assert_eq!(path(y.replace("[8bit, 64bit]", "[8bit, 12bit]")), "ike.connections.rw.child.compression.proposals[0].alignment[1]");
        assert_eq!(path(y.replace("dscp_cda: [lower]", "dscp_cda: [sa]")), "ike.connections.rw.child.compression.proposals[0].dscp_cda[0]");
        assert_eq!(path(y.replace("esp_sn_lsb: [8, 16]", "esp_sn_lsb: [33]")), "ike.connections.rw.child.compression.proposals[0].esp_sn_lsb[0]");
        assert_eq!(path(y.replace("hcp_proposal_notify: 40999", "hcp_proposal_notify: 14")), "ike.diet_esp_code_points.hcp_proposal_notify");
        assert_eq!(path(y.replace("esp_trailer: 20000", "esp_trailer: 4")), "ike.diet_esp_code_points.afrg");
        assert_eq!(path(y.replace("esp_trailer: 20000", "trailer: 5")), "ike.diet_esp_code_points.afrg.trailer");
    }

    #[test]
    fn mobike_is_on_by_default_and_each_knob_is_read() {
        let c = DaemonConfig::from_yaml(YAML, Path::new(".")).unwrap();
        let ext = &c.endpoint.connections[0].ext;
        assert!(ext.mobike && ext.mobike_return_routability);
        let y = YAML.replace("pool: rw", "pool: rw\n      mobike: false\n      mobike_return_routability: false");
        let c = DaemonConfig::from_yaml(&y, Path::new(".")).unwrap();
        let ext = &c.endpoint.connections[0].ext;
        assert!(!ext.mobike && !ext.mobike_return_routability);
    }

    #[test]
    fn loads_split_dns_domains_trust_anchors_labels_and_their_errors() {
        let ta = format!("20326 8 2 {}", "E0".repeat(32));
        let y = YAML
            .replace(
                "dns: [192.168.109.53] }",
                &format!("dns: [192.168.109.53], dns_domains: [corp.example, {{ name: Lab.Example., trust_anchors: [\"{ta}\"] }}] }}"),
            )
            .replace("pool: rw", "pool: rw\n      signature_schemes: [rsa-pkcs1-sha256, ed25519]\n      dual_stack: true\n      split_dns: { allowed_domains: [example], dnssec_ta_domains: [lab.example], hook: hook.sh }")
            .replace("local_ts: [192.168.109.0/24]", "local_ts: [192.168.109.0/24]\n        sec_label: \"system_u:object_r:ipsec_spd_t:s0\"");
        let c = DaemonConfig::from_yaml(&y, Path::new("/etc/esprit")).unwrap();
        let conn = &c.endpoint.connections[0];
        let pool = conn.pool.as_ref().unwrap();
        assert_eq!(pool.dns_domains[0].name, "corp.example");
        assert_eq!(pool.dns_domains[1].name, "lab.example");
        assert_eq!(pool.dns_domains[1].trust_anchors[0].key_tag, 20326);
        assert!(conn.ext.dual_stack);
        assert_eq!(conn.ext.signature_schemes.len(), 2);
        let bad = y.replace("rsa-pkcs1-sha256, ed25519", "rsa-pkcs1-sha256, dsa");
        assert_eq!(DaemonConfig::from_yaml(&bad, Path::new(".")).err().unwrap().path, "ike.connections.rw.signature_schemes[1]");
        assert_eq!(conn.ext.split_dns.allowed_domains, Some(vec!["example".to_string()]));
        assert_eq!(c.split_dns_hooks["rw"], PathBuf::from("/etc/esprit/hook.sh"));
        assert_eq!(conn.child.sec_label.as_deref(), Some(&b"system_u:object_r:ipsec_spd_t:s0"[..]));
        let bad = y.replace(&ta, "20326 8 2 E0E0");
        let e = DaemonConfig::from_yaml(&bad, Path::new(".")).err().unwrap();
        assert_eq!(e.path, "ike.pools.rw.dns_domains[1].trust_anchors[0]");
        let bad = y.replace("corp.example,", "\"bad name\",");
        assert_eq!(DaemonConfig::from_yaml(&bad, Path::new(".")).err().unwrap().path, "ike.pools.rw.dns_domains[0]");
        let bad = y.replace("dns: [192.168.109.53],", "");
        assert_eq!(DaemonConfig::from_yaml(&bad, Path::new(".")).err().unwrap().path, "ike.pools.rw.dns_domains");
    }

    #[test]
    fn log_level_is_info_unless_warn_is_asked_and_nothing_else_parses() {
        assert_eq!(DaemonConfig::from_yaml(YAML, Path::new(".")).unwrap().log_level, LogLevel::Info);
        let warn = YAML.replace("control_socket: /tmp/ike.sock", "control_socket: /tmp/ike.sock\n  log_level: warn");
        assert_eq!(DaemonConfig::from_yaml(&warn, Path::new(".")).unwrap().log_level, LogLevel::Warn);
        let bad = YAML.replace("control_socket: /tmp/ike.sock", "control_socket: /tmp/ike.sock\n  log_level: loud");
        assert_eq!(DaemonConfig::from_yaml(&bad, Path::new(".")).err().unwrap().path, "ike.log_level");
    }

    #[test]
    fn names_the_field_path_of_a_type_error() {
        let bad = YAML.replace("control_socket: /tmp/ike.sock", "control_socket: /tmp/ike.sock\n  natt_port: many");
        let e = DaemonConfig::from_yaml(&bad, Path::new(".")).err().unwrap();
        assert_eq!(e.path, "ike.natt_port");
    }

    #[test]
    fn names_the_field_path_of_an_unknown_field() {
        let bad = YAML.replace("pool: rw", "pool: rw\n      poool: rw");
        let e = DaemonConfig::from_yaml(&bad, Path::new(".")).err().unwrap();
        assert_eq!(e.path, "ike.connections.rw.poool");
        assert!(e.msg.contains("unknown field"), "{}", e.msg);
    }

    #[test]
    fn parses_additional_key_exchanges_and_defaults_to_x25519_then_mlkem768() {
        let e = esp_proposal("aes256gcm16-x25519-ke1_mlkem768").unwrap();
        assert_eq!((e.pfs, e.additional_ke), (vec![KeId::CURVE25519], vec![vec![KeId::ML_KEM_768]]));
        let p = ike_proposal("aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke1_none-ke3_ecp256").unwrap();
        assert_eq!(p.ke, vec![KeId::CURVE25519]);
        assert_eq!(p.additional_ke, vec![vec![KeId::ML_KEM_768, KeId::NONE], vec![], vec![KeId::ECP_256]]);
        assert_eq!(ike_proposal("aes256gcm16-prfsha256-mlkem512").unwrap().ke, vec![KeId::ML_KEM_512]);
        let y = YAML.replace("      proposals: [aes256gcm16-prfsha256-x25519-ecp256]\n", "");
        let c = DaemonConfig::from_yaml(&y, Path::new(".")).unwrap();
        let p = &c.endpoint.connections[0].ike_proposals[0];
        assert_eq!((p.ke.clone(), p.additional_ke.clone()), (vec![KeId::CURVE25519], vec![vec![KeId::ML_KEM_768]]));
    }

    #[test]
    fn refuses_mlkem768_in_ike_sa_init_naming_the_field() {
        let bad = YAML.replace("aes256gcm16-prfsha256-x25519-ecp256", "aes256gcm16-prfsha256-mlkem768");
        let e = DaemonConfig::from_yaml(&bad, Path::new(".")).err().unwrap();
        assert_eq!(e.path, "ike.connections.rw.proposals[0]");
        assert!(e.msg.contains("ke1_mlkem768"), "{}", e.msg);
        let bad = YAML.replace("aes256gcm16-prfsha256-x25519-ecp256", "aes256gcm16-prfsha256-x25519-ke8_mlkem768");
        assert_eq!(DaemonConfig::from_yaml(&bad, Path::new(".")).err().unwrap().path, "ike.connections.rw.proposals[0]");
        let bad = YAML.replace("aes256gcm16-prfsha256-x25519-ecp256", "aes256gcm16-prfsha256-x25519-ke2_none");
        assert_eq!(DaemonConfig::from_yaml(&bad, Path::new(".")).err().unwrap().path, "ike.connections.rw.proposals[0]");
    }

    #[test]
    fn names_the_field_path_of_a_bad_proposal() {
        let bad = YAML.replace("chacha20poly1305-esn-noesn", "chacha20poly1305-md5");
        let e = DaemonConfig::from_yaml(&bad, Path::new(".")).err().unwrap();
        assert_eq!(e.path, "ike.connections.rw.child.esp_proposals[1]");
        assert!(e.msg.contains("md5"), "{}", e.msg);
    }

    #[test]
    fn takes_retransmission_limits_and_refuses_a_shrinking_backoff() {
        let y = YAML.replace("  control_socket: /tmp/ike.sock", "  control_socket: /tmp/ike.sock\n  limits: { retransmit_timeout_ms: 500, retransmit_tries: 2 }");
        let c = DaemonConfig::from_yaml(&y, Path::new(".")).unwrap();
        assert_eq!(c.endpoint.retransmit.timeout, Duration::from_millis(500));
        assert_eq!(c.endpoint.retransmit.tries, 2);
        let y = YAML.replace("  control_socket: /tmp/ike.sock", "  control_socket: /tmp/ike.sock\n  limits: { retransmit_base: 0.5 }");
        assert_eq!(DaemonConfig::from_yaml(&y, Path::new(".")).err().unwrap().path, "ike.limits.retransmit_base");
    }

    #[test]
    fn takes_the_datagram_queue_length_and_refuses_a_tiny_one() {
        assert_eq!(DaemonConfig::from_yaml(YAML, Path::new(".")).unwrap().datagram_queue, DEFAULT_DATAGRAM_QUEUE);
        let y = YAML.replace("  control_socket: /tmp/ike.sock", "  control_socket: /tmp/ike.sock\n  limits: { datagram_queue: 512 }");
        assert_eq!(DaemonConfig::from_yaml(&y, Path::new(".")).unwrap().datagram_queue, 512);
        let y = YAML.replace("  control_socket: /tmp/ike.sock", "  control_socket: /tmp/ike.sock\n  limits: { datagram_queue: 0 }");
        assert_eq!(DaemonConfig::from_yaml(&y, Path::new(".")).err().unwrap().path, "ike.limits.datagram_queue");
    }

    #[test]
    fn refuses_a_connection_naming_a_missing_pool() {
        let bad = YAML.replace("pool: rw", "pool: nope");
        let e = DaemonConfig::from_yaml(&bad, Path::new(".")).err().unwrap();
        assert_eq!(e.path, "ike.connections.rw.pool");
    }

    #[test]
    fn refuses_a_missing_credential_file_naming_the_field() {
        let bad = YAML.replace("local_auth: { psk: \"s3cret\" }", "local_auth: { cert: /nonexistent.pem, key: /nonexistent.key }");
        let e = DaemonConfig::from_yaml(&bad, Path::new(".")).err().unwrap();
        assert_eq!(e.path, "ike.connections.rw.local_auth.cert");
    }

    #[test]
    fn parses_strongswan_style_proposals() {
        let p = ike_proposal("aes128-sha256-modp2048").unwrap();
        assert_eq!((p.encr, p.integ, p.prf), (EncrId::ENCR_AES_CBC, IntegId::AUTH_HMAC_SHA2_256_128, PrfId::PRF_HMAC_SHA2_256));
        assert!(ike_proposal("aes256gcm16-prfsha256").is_err());
        assert!(ike_proposal("aes256gcm16iiv-prfsha256-x25519").unwrap_err().contains("RFC 8750"));
        let iiv = esp_proposal("aes256gcm16iiv-esn-noesn").unwrap();
        assert_eq!((iiv.encr, iiv.key_bits), (EncrId::ENCR_AES_GCM_16_IIV, Some(256)));
        assert_eq!(esp_proposal("chacha20poly1305iiv").unwrap().encr.0, 31);
        assert!(ike_proposal("aes256gcm16-sha256-prfsha256-x25519").is_err());
        assert!(esp_proposal("aes128-sha256").is_err());
        assert_eq!(esp_proposal("aes128gcm16-x25519").unwrap().pfs, vec![KeId::CURVE25519]);
    }

    const PPK_HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn with_ppks(ppks: &str, conn_ppk: &str) -> String {
        YAML.replace("  connections:\n", &format!("  ppks:\n{ppks}  connections:\n")).replace("      pool: rw\n", &format!("      pool: rw\n{conn_ppk}"))
    }

    #[test]
    fn loads_ppks_from_hex_and_files_and_binds_them_to_connections() {
        let dir = std::env::temp_dir().join(format!("esprit-ppk-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("p2.bin"), [7u8; 48]).unwrap();
        let y = with_ppks(
            &format!("    - {{ id: one, secret_hex: \"{PPK_HEX}\" }}\n    - {{ id: two, id_type: opaque, secret_file: p2.bin }}\n"),
            "      ppk: { id: two, ids: [one, two], required: true }\n",
        );
        let c = DaemonConfig::from_yaml(&y, &dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let p = c.endpoint.connections[0].ppk.as_ref().unwrap();
        assert!(p.required);
        assert_eq!(p.keys.len(), 2, "two listed twice counts once");
        assert_eq!((p.keys[0].id.as_slice(), p.keys[0].id_type, p.keys[0].secret.to_vec()), (&b"two"[..], PPK_ID_OPAQUE, vec![7u8; 48]));
        assert_eq!((p.keys[1].id_type, hex::encode(&p.keys[1].secret[..])), (PPK_ID_FIXED, PPK_HEX.to_string()));
        // The Debug output of the whole config carries no key material.
        assert!(!format!("{c:?} {p:?}").contains("0011223344"));
        assert_eq!(p.exchange, PpkExchange::Either, "RFC 9867 with RFC 8784 fallback by default");
    }

    #[test]
    fn reads_where_the_ppk_is_negotiated() {
        for (yaml, want) in [("intermediate", PpkExchange::Intermediate), ("ike_auth", PpkExchange::IkeAuth), ("either", PpkExchange::Either)] {
            let y = with_ppks(&format!("    - {{ id: one, secret_hex: \"{PPK_HEX}\" }}\n"), &format!("      ppk: {{ id: one, exchange: {yaml} }}\n"));
            let c = DaemonConfig::from_yaml(&y, std::path::Path::new("/")).unwrap();
            assert_eq!(c.endpoint.connections[0].ppk.as_ref().unwrap().exchange, want, "{yaml}");
        }
        let y = with_ppks(&format!("    - {{ id: one, secret_hex: \"{PPK_HEX}\" }}\n"), "      ppk: { id: one, exchange: ike_intermediate }\n");
        assert!(DaemonConfig::from_yaml(&y, std::path::Path::new("/")).is_err(), "an unknown exchange is refused");
    }

    #[test]
    fn refuses_bad_ppks_naming_the_field_without_the_secret() {
        let conn = "      ppk: { id: one }\n";
        let short = with_ppks("    - { id: one, secret_hex: \"00112233\" }\n", conn);
        let e = DaemonConfig::from_yaml(&short, Path::new(".")).err().unwrap();
        assert_eq!(e.path, "ike.ppks[0].secret_hex");
        assert!(e.msg.contains("at least 32 octets"), "{}", e.msg);
        let bad = with_ppks("    - { id: one, secret_hex: \"zz112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\" }\n", conn);
        let e = DaemonConfig::from_yaml(&bad, Path::new(".")).err().unwrap();
        assert_eq!(e.path, "ike.ppks[0].secret_hex");
        assert!(!e.msg.contains("zz") && !e.msg.contains('z'), "{}", e.msg);
        let both = with_ppks(&format!("    - {{ id: one, secret_hex: \"{PPK_HEX}\", secret_file: x }}\n"), conn);
        assert_eq!(DaemonConfig::from_yaml(&both, Path::new(".")).err().unwrap().path, "ike.ppks[0]");
        let missing = with_ppks("    - { id: one, secret_file: /nonexistent/ppk }\n", conn);
        assert_eq!(DaemonConfig::from_yaml(&missing, Path::new(".")).err().unwrap().path, "ike.ppks[0].secret_file");
        let dup = with_ppks(&format!("    - {{ id: one, secret_hex: \"{PPK_HEX}\" }}\n    - {{ id: one, secret_hex: \"{PPK_HEX}\" }}\n"), conn);
        assert_eq!(DaemonConfig::from_yaml(&dup, Path::new(".")).err().unwrap().path, "ike.ppks[1].id");
        let unknown = with_ppks(&format!("    - {{ id: one, secret_hex: \"{PPK_HEX}\" }}\n"), "      ppk: { ids: [one, three] }\n");
        let e = DaemonConfig::from_yaml(&unknown, Path::new(".")).err().unwrap();
        assert_eq!(e.path, "ike.connections.rw.ppk.ids[1]");
        let none = with_ppks(&format!("    - {{ id: one, secret_hex: \"{PPK_HEX}\" }}\n"), "      ppk: { required: true }\n");
        assert_eq!(DaemonConfig::from_yaml(&none, Path::new(".")).err().unwrap().path, "ike.connections.rw.ppk");
        let typo = with_ppks(&format!("    - {{ id: one, secret_hex: \"{PPK_HEX}\" }}\n"), "      ppk: { id: one, mandatory: true }\n");
        assert_eq!(DaemonConfig::from_yaml(&typo, Path::new(".")).err().unwrap().path, "ike.connections.rw.ppk.mandatory");
    }

    /// `YAML` with an EAP connection and `radius` (indented under `ike:`).
    fn with_eap(remote_auth: &str, radius: &str) -> String {
        YAML.replace("      remote_auth: { psk: \"s3cret\" }", &format!("      remote_auth: {remote_auth}"))
            .replace("  pools:\n", &format!("{radius}  pools:\n"))
    }

    #[test]
    fn eap_radius_connections_need_servers_with_readable_secrets() {
        let dir = std::env::temp_dir().join(format!("esprit-eap-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("r.secret"), "s3cret-radius\n").unwrap();
        std::fs::write(dir.join("empty.secret"), "\n").unwrap();
        let radius = "  radius:\n    servers:\n      - { address: \"10.0.0.2:1812\", secret_file: r.secret }\n      - { address: \"10.0.0.3:1812\", secret_file: r.secret }\n    timeout_ms: 500\n    retries: 1\n";
        let ok = DaemonConfig::from_yaml(&with_eap("{ eap: radius, eap_only: true }", radius), &dir).unwrap();
        assert!(matches!(ok.endpoint.connections[0].remote_auth, RemoteAuth::Eap(ike_proto::EapConfig { eap_only: true })));
        let r = ok.radius.as_ref().unwrap();
        assert_eq!(r.client.servers.len(), 2);
        assert_eq!(&r.client.servers[1].secret[..], b"s3cret-radius", "the newline is not part of the secret");
        assert_eq!((r.client.timeout, r.client.retries, r.nas_identifier.as_str()), (Duration::from_millis(500), 1, "esprit"));
        assert!(!format!("{:?}", r.client).contains("s3cret"), "the secret is never printed");
        let path = |y: &str| DaemonConfig::from_yaml(y, &dir).err().map(|e| e.path).unwrap_or_default();
        assert_eq!(path(&with_eap("{ eap: radius }", "")), "ike.connections.rw.remote_auth.eap");
        assert_eq!(path(&with_eap("{ eap: diameter }", radius)), "ike.connections.rw.remote_auth.eap");
        assert_eq!(path(&with_eap("{ eap: radius, psk: x }", radius)), "ike.connections.rw.remote_auth.eap");
        assert_eq!(path(&with_eap("{ psk: x, eap_only: true }", radius)), "ike.connections.rw.remote_auth.eap_only");
        assert_eq!(path(&with_eap("{ eap: radius }", &radius.replace("r.secret }\n      - {", "missing.secret }\n      - {"))), "ike.radius.servers[0].secret_file");
        assert_eq!(path(&with_eap("{ eap: radius }", &radius.replace("secret_file: r.secret }\n    timeout", "secret_file: empty.secret }\n    timeout"))), "ike.radius.servers[1].secret_file");
        assert_eq!(path(&with_eap("{ eap: radius }", "  radius: { servers: [] }\n")), "ike.radius.servers");
        assert_eq!(path(&with_eap("{ eap: radius }", &radius.replace("timeout_ms: 500", "timeout_ms: 0"))), "ike.radius.timeout_ms");
        assert_eq!(path(&with_eap("{ eap: radius }", &radius.replace("retries: 1", "retries: 11"))), "ike.radius.retries");
        assert_eq!(path(&with_eap("{ eap: radius }", &radius.replace("10.0.0.2:1812", "10.0.0.2"))), "ike.radius.servers[0].address");
        assert_eq!(path(&with_eap("{ eap: radius }", &radius.replace("retries: 1", "retries: 1\n    secret: x"))), "ike.radius.secret");
        let local = with_eap("{ eap: radius }", radius).replace("local_auth: { psk: \"s3cret\" }", "local_auth: { psk: \"s3cret\", eap: radius }");
        assert_eq!(path(&local), "ike.connections.rw.local_auth.eap");
        let _ = std::fs::remove_dir_all(&dir);
    }

    const GCKS: &str = "
ike:
  listen: [10.77.0.10]
  groups:
    - name: mesh
      id: mesh-1
      members: [{ id: gm1.esprit, role: sender }, { role: receiver }]
      policies: [{ src: 10.70.0.0/16, dst: 10.70.0.0/16, esp: aes256gcm16 }]
      rekey: { delivery: multicast, destination: \"239.77.0.1:848\", kek: aes256gcm16-kw256 }
  connections:
    members:
      local_id: gcks.esprit
      local_auth: { psk: x }
      remote_auth: { psk: x }
      proposals: [aes256gcm16-prfsha256-x25519-kw256]
      child: { esp_proposals: [aes256gcm16] }
      groups: [{ id: mesh-1 }]
";

    #[test]
    fn loads_groups_and_names_the_field_of_bad_group_values() {
        let c = DaemonConfig::from_yaml(GCKS, Path::new(".")).unwrap();
        let g = &c.endpoint.groups[0];
        assert_eq!(g.id, GroupId::key_id("mesh-1"));
        assert_eq!(g.members.len(), 2);
        let k = g.kek.as_ref().unwrap();
        assert_eq!(k.kwa, ike_wire::KwaId::KW_5649_256);
        assert_eq!(k.source, "10.77.0.10:848".parse().unwrap());
        assert!(g.kek.as_ref().unwrap().gcauth.is_none());
        assert_eq!(c.endpoint.connections[0].ext.groups[0].group, GroupId::key_id("mesh-1"));
        assert_eq!(c.endpoint.connections[0].ike_proposals[0].kwa, vec![ike_wire::KwaId::KW_5649_256]);
        let bad = |from: &str, to: &str| DaemonConfig::from_yaml(&GCKS.replace(from, to), Path::new(".")).unwrap_err().path;
        assert_eq!(bad("role: receiver", "role: boss"), "ike.groups[0].members[1].role");
        assert_eq!(bad("239.77.0.1:848", "10.0.0.1:848"), "ike.groups[0].rekey.destination");
        assert_eq!(bad("esp: aes256gcm16 }", "esp: aes256gcm16iiv }"), "ike.groups[0].policies[0].esp");
        assert_eq!(bad("kek: aes256gcm16-kw256", "kek: aes256gcm16"), "ike.groups[0].rekey.kek");
        assert_eq!(bad("dst: 10.70.0.0/16", "dst: nowhere"), "ike.groups[0].policies[0].dst");
        assert_eq!(bad("groups: [{ id: mesh-1 }]", "groups: [{ id: mesh-2 }]"), "ike.connections.members.groups[0].id");
        assert_eq!(bad("x25519-kw256", "x25519"), "ike.connections.members.proposals");
    }

    #[test]
    fn pools_take_prefixes_and_ranges() {
        assert_eq!(range("10.0.0.0/30"), Some(("10.0.0.1".parse().unwrap(), 2)));
        assert_eq!(range("10.0.0.5-10.0.0.9"), Some(("10.0.0.5".parse().unwrap(), 5)));
        assert_eq!(range("10.0.0.9-10.0.0.5"), None);
        assert_eq!(range("fd00::/126"), Some(("fd00::".parse().unwrap(), 4)));
    }
}
