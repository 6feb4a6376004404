//! The YAML configuration of esprit (one file for both processes; the
//! dataplane reads `dataplane:` and `metrics:`, and leaves `ike:` to the
//! control plane).
//!
//! Guarantees: a file that loads is complete and consistent (every check
//! below passed); a file that does not load gets one error that names the
//! field path (`dataplane.static_sas[1].key`) and the problem, before
//! anything touches DPDK.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

/// A configuration error: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Field path from the top of the file, e.g. `dataplane.workers.count`.
    pub path: String,
    pub msg: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() || self.path == "." {
            write!(f, "config: {}", self.msg)
        } else {
            write!(f, "config: {}: {}", self.path, self.msg)
        }
    }
}

impl std::error::Error for ConfigError {}

fn err(path: impl Into<String>, msg: impl Into<String>) -> ConfigError {
    ConfigError { path: path.into(), msg: msg.into() }
}

/// The whole file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub dataplane: Dataplane,
    #[serde(default)]
    pub metrics: Metrics,
    /// The control plane's section (esprit-ike); not interpreted here.
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Value>")]
    pub ike: Option<serde_yaml::Value>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dataplane {
    /// EAL arguments after the program name (`-l 0-1 --no-huge -m 512 --no-pci`).
    #[serde(default)]
    pub eal_args: Vec<String>,
    pub ports: Ports,
    #[serde(default)]
    pub workers: Workers,
    #[serde(default)]
    pub crypto: Crypto,
    pub addresses: Addresses,
    #[serde(default)]
    pub sa_table: SaTable,
    /// Manually keyed SAs (as ipsec-secgw's `sa` lines): benchmarks, tests, emergencies.
    #[serde(default)]
    pub static_sas: Vec<StaticSa>,
    /// Neighbours known in advance (next hops that cannot answer ARP, e.g.
    /// a `net_null` or `net_pcap` port in a benchmark).
    #[serde(default)]
    pub neighbours: Vec<Neighbour>,
    /// The security policy database (RFC 4301 §4.4.1), in order: the first
    /// entry that matches a packet decides. Absent: one entry, `protect`
    /// any traffic with an SA whose selectors contain it (what esprit did
    /// before it had an SPD). Present: traffic no entry matches is
    /// discarded (RFC 4301 §4.4.1) and counted as `no_spd_match`.
    #[serde(default)]
    pub spd: Option<Vec<SpdEntry>>,
    /// RFC 9478 security labels and the inside VLAN each one's segment is
    /// carried on.
    #[serde(default)]
    pub labels: Vec<LabelSegment>,
}

/// What an SPD entry does with the packets it matches (RFC 4301 §4.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SpdAction {
    /// Out of the outside port in clear (and, inbound, in clear to the inside).
    Bypass,
    /// Dropped, counted as `spd_discard`.
    Discard,
    /// ESP: with the static SA `spi`, or else with any outbound SA whose
    /// selectors (and label) contain the packet.
    Protect,
}

/// A number or a name, as YAML gives it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum NumOrText {
    Num(u64),
    Text(String),
}

/// One SPD entry. Addresses and ports are from the gateway's point of
/// view: outbound, `local` is the inner source and `remote` the inner
/// destination.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpdEntry {
    pub action: SpdAction,
    /// Our side's addresses: prefixes (`10.1.0.0/16`), ranges
    /// (`10.1.0.5-10.1.0.9`) or single addresses; empty = any.
    #[serde(default)]
    pub local: Vec<String>,
    /// The far side's addresses, as `local`.
    #[serde(default)]
    pub remote: Vec<String>,
    /// `tcp`, `udp`, `icmp`, `icmpv6`, `sctp` or a protocol number; absent = any.
    #[serde(default)]
    pub proto: Option<NumOrText>,
    /// A port (`53`) or a range (`1000-1999`); absent = any.
    #[serde(default)]
    pub local_ports: Option<NumOrText>,
    #[serde(default)]
    pub remote_ports: Option<NumOrText>,
    /// Only packets of this label's segment (one of `dataplane.labels`).
    #[serde(default)]
    pub label: Option<String>,
    /// `protect` only: the SPI of the static outbound SA to use.
    #[serde(default)]
    pub spi: Option<u32>,
}

/// A security label and its inside VLAN.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelSegment {
    /// The RFC 9478 label as negotiated (an SELinux context such as
    /// `system_u:object_r:ipsec_spd_t:s0`); a trailing NUL is ignored.
    pub label: String,
    /// 802.1Q VLAN ID on the inside port (1..=4094), or 0: the label owns
    /// the inside port's untagged network (one port per label), and
    /// unlabeled SAs then serve no inside traffic.
    pub vlan: u16,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Neighbour {
    pub ip: IpAddr,
    /// `02:00:00:00:00:02`
    pub mac: String,
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut m = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return None;
        }
        m[i] = u8::from_str_radix(p, 16).ok()?;
    }
    Some(m)
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ports {
    pub outside: PortSpec,
    pub inside: PortSpec,
    /// The exception path to the kernel (net_tap / virtio_user); optional for benches.
    #[serde(default)]
    pub punt: Option<PortSpec>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    /// A DPDK device string: PCI address or vdev (`net_af_packet0,iface=veth0`).
    pub device: String,
    #[serde(default = "default_desc")]
    pub rx_desc: u16,
    #[serde(default = "default_desc")]
    pub tx_desc: u16,
}

fn default_desc() -> u16 {
    1024
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Workers {
    #[serde(default = "one")]
    pub count: u16,
    /// CPU of each worker, in order; empty = pick after the EAL's main lcore.
    #[serde(default)]
    pub cpus: Vec<usize>,
    /// Most packets a worker takes from an RX queue at once (1..=64; 32,
    /// as DPDK's ipsec-secgw). Every receive asks for this many.
    #[serde(default = "default_burst")]
    pub burst_pkts: u16,
    /// Depth of each worker-to-worker handoff queue, in packets.
    #[serde(default = "default_handoff")]
    pub handoff_queue_pkts: u32,
}

impl Default for Workers {
    fn default() -> Self {
        Workers { count: 1, cpus: Vec::new(), burst_pkts: default_burst(), handoff_queue_pkts: default_handoff() }
    }
}

fn one() -> u16 {
    1
}
fn default_burst() -> u16 {
    32
}
fn default_handoff() -> u32 {
    1024
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Crypto {
    /// AEAD backend by name: `auto` (ring, the fastest software backend
    /// measured here), `ring`, `rustcrypto`, or `ipsec-mb` (intel-ipsec-mb
    /// through DPDK's CPU-crypto API).
    #[serde(default = "auto")]
    pub backend: String,
    /// Crypto sessions per ipsec-mb device (one per SA direction).
    #[serde(default = "default_sessions")]
    pub sessions: u32,
}

impl Default for Crypto {
    fn default() -> Self {
        Crypto { backend: auto(), sessions: default_sessions() }
    }
}

fn default_sessions() -> u32 {
    8191
}

fn auto() -> String {
    "auto".into()
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Addresses {
    /// The gateway's outside addresses (ESP and IKE terminate here).
    pub outside: Vec<IpAddr>,
    /// The gateway's inside addresses (ARP/ND answered for them).
    #[serde(default)]
    pub inside: Vec<IpAddr>,
    /// Next hop on the outside (default route for ESP), if not on-link.
    #[serde(default)]
    pub outside_gateway: Option<IpAddr>,
    /// Next hop on the inside, if not on-link.
    #[serde(default)]
    pub inside_gateway: Option<IpAddr>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SaTable {
    #[serde(default = "default_table_path")]
    pub path: PathBuf,
    #[serde(default = "default_capacity")]
    pub capacity: u32,
}

impl Default for SaTable {
    fn default() -> Self {
        SaTable { path: default_table_path(), capacity: default_capacity() }
    }
}

fn default_table_path() -> PathBuf {
    PathBuf::from("/dev/shm/esprit/default")
}
fn default_capacity() -> u32 {
    65536
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Where `/metrics` is served; `null` turns the endpoint off.
    #[serde(default = "default_listen")]
    pub listen: Option<SocketAddr>,
    /// Per-SA series (label cardinality: off by default).
    #[serde(default)]
    pub per_sa: bool,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics { listen: default_listen(), per_sa: false }
    }
}

fn default_listen() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 9464)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Tunnel,
    Transport,
}

/// ESP suites by their usual names; key length follows from the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum SuiteName {
    #[serde(rename = "aes-128-gcm")]
    Aes128Gcm,
    /// RFC 4106 with a 192-bit key.
    #[serde(rename = "aes-192-gcm")]
    Aes192Gcm,
    #[serde(rename = "aes-256-gcm")]
    Aes256Gcm,
    #[serde(rename = "chacha20-poly1305")]
    Chacha20Poly1305,
}

impl SuiteName {
    /// Key bytes without the 4-byte salt.
    pub fn key_len(self) -> usize {
        match self {
            SuiteName::Aes128Gcm => 16,
            SuiteName::Aes192Gcm => 24,
            SuiteName::Aes256Gcm | SuiteName::Chacha20Poly1305 => 32,
        }
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UdpEncap {
    #[serde(default = "nat_t_port")]
    pub sport: u16,
    #[serde(default = "nat_t_port")]
    pub dport: u16,
}

fn nat_t_port() -> u16 {
    4500
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StaticSa {
    pub spi: u32,
    pub direction: Direction,
    pub suite: SuiteName,
    /// Key then 4-byte salt, hex (colons allowed, as ipsec-secgw writes them).
    pub key: HexKey,
    #[serde(default = "tunnel")]
    pub mode: Mode,
    /// Outer source and destination: the tunnel endpoints, or in transport
    /// mode the two hosts.
    #[serde(default)]
    pub src: Option<IpAddr>,
    #[serde(default)]
    pub dst: Option<IpAddr>,
    #[serde(default)]
    pub udp_encap: Option<UdpEncap>,
    #[serde(default)]
    pub esn: bool,
    /// RFC 8750 implicit IV.
    #[serde(default)]
    pub iiv: bool,
    #[serde(default = "default_window")]
    pub replay_window: u32,
    /// Outbound: the first sequence number sent. Inbound: the first one
    /// expected from the peer (the receive window starts just before it,
    /// so with ESN the high half is inferred from there). 0 or 1: a new SA.
    #[serde(default)]
    pub initial_seq: u64,
    /// Inner prefixes of the remote side (at most 2): outbound, the
    /// destinations this SA protects; inbound, the sources that may come out
    /// of it. `10.2.0.0/16`, `2001:db8::/32`.
    #[serde(default)]
    pub selectors: Vec<String>,
    /// Inner prefixes of our side (at most 2; default: any address).
    #[serde(default)]
    pub local_selectors: Vec<String>,
    /// RFC 9478 security label (one of `dataplane.labels`): the SA carries
    /// only that label's segment.
    #[serde(default)]
    pub sec_label: Option<String>,
    /// Diet-ESP header compression (draft-ietf-ipsecme-diet-esp-07), the
    /// values both peers configured alike (no IKE here to negotiate them).
    #[serde(default)]
    pub compression: Option<StaticCompression>,
}

/// A static SA's Diet-ESP Attributes for Rule Generation (diet-esp-07
/// §4.2; names as in ikev2-diet-esp-extension-04 §8.5). Unset fields take
/// the extension's defaults (§7): nothing compressed in the inner header,
/// 64-bit alignment, an optional trailer, the full SPI and SN. The inner
/// header is compressed only when `selectors` and `local_selectors` each
/// hold exactly one prefix of one family (§4.2 "iipc_diet-esp").
#[derive(Debug, Clone, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StaticCompression {
    #[serde(default)]
    pub dscp_cda: Option<String>,
    #[serde(default)]
    pub ecn_cda: Option<String>,
    #[serde(default)]
    pub flow_label_cda: Option<String>,
    #[serde(default)]
    pub alignment: Option<String>,
    #[serde(default)]
    pub esp_trailer: Option<String>,
    #[serde(default)]
    pub esp_spi_lsb: Option<u8>,
    #[serde(default)]
    pub esp_sn_lsb: Option<u8>,
    /// DSCP values for the `sa` DSCP CDA (at most 7).
    #[serde(default)]
    pub dscp_list: Vec<u8>,
}

impl StaticCompression {
    /// The slot fields; `Err((field, message))` names what is wrong.
    pub fn to_slot(&self) -> Result<sa_table::Compression, (&'static str, String)> {
        use esp::diet::{Alignment, DscpCda, EcnCda, EspTrailer, FlowLabelCda};
        fn pick<T: Copy>(
            field: &'static str,
            v: &Option<String>,
            default: T,
            parse: fn(&str) -> Option<T>,
            all: &[T],
            name: fn(T) -> &'static str,
        ) -> Result<T, (&'static str, String)> {
            match v {
                None => Ok(default),
                Some(s) => parse(s).ok_or_else(|| {
                    let names: Vec<&str> = all.iter().map(|&x| name(x)).collect();
                    (field, format!("`{s}` is not one of {}", names.join(", ")))
                }),
            }
        }
        let d = esp::DietAttrs::defaults();
        let dscp = pick("dscp_cda", &self.dscp_cda, d.dscp_cda, DscpCda::from_name, DscpCda::ALL, DscpCda::name)?;
        let ecn = pick("ecn_cda", &self.ecn_cda, d.ecn_cda, EcnCda::from_name, EcnCda::ALL, EcnCda::name)?;
        let flow = pick("flow_label_cda", &self.flow_label_cda, d.flow_label_cda, FlowLabelCda::from_name, FlowLabelCda::ALL, FlowLabelCda::name)?;
        let align = pick("alignment", &self.alignment, d.alignment, Alignment::from_name, Alignment::ALL, Alignment::name)?;
        let trailer = pick("esp_trailer", &self.esp_trailer, d.esp_trailer, EspTrailer::from_name, EspTrailer::ALL, EspTrailer::name)?;
        let spi_lsb = self.esp_spi_lsb.unwrap_or(d.esp_spi_lsb);
        let sn_lsb = self.esp_sn_lsb.unwrap_or(d.esp_sn_lsb);
        if spi_lsb > 32 {
            return Err(("esp_spi_lsb", format!("{spi_lsb} is more than 32 bits")));
        }
        if sn_lsb > 32 {
            return Err(("esp_sn_lsb", format!("{sn_lsb} is more than 32 bits")));
        }
        if !(spi_lsb + sn_lsb).is_multiple_of(8) {
            return Err(("esp_sn_lsb", "esp_spi_lsb + esp_sn_lsb must be a multiple of 8 (diet-esp-07 §5.3)".into()));
        }
        if self.dscp_list.len() > sa_table::MAX_DSCP_LIST || self.dscp_list.iter().any(|&v| v > 63) {
            return Err(("dscp_list", format!("at most {} DSCP values, each 0 to 63", sa_table::MAX_DSCP_LIST)));
        }
        // A list with the `sa` CDA and only with it.
        if (dscp == DscpCda::Sa) == self.dscp_list.is_empty() {
            return Err(("dscp_list", "a DSCP list goes with dscp_cda sa, and only with it".into()));
        }
        let mut c = sa_table::Compression {
            profile: 1,
            dscp_cda: dscp as u8,
            ecn_cda: ecn as u8,
            flow_label_cda: flow as u8,
            alignment: align as u8,
            esp_trailer: trailer as u8,
            esp_spi_lsb: spi_lsb,
            esp_sn_lsb: sn_lsb,
            dscp_list_len: self.dscp_list.len() as u8,
            ..sa_table::Compression::default()
        };
        c.dscp_list[..self.dscp_list.len()].copy_from_slice(&self.dscp_list);
        Ok(c)
    }
}

/// A static SA's key and salt as written in the file: printed as
/// `[redacted]` by `Debug`, zeroed when dropped.
#[derive(Clone, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct HexKey(String);

impl std::ops::Deref for HexKey {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for HexKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Drop for HexKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

fn tunnel() -> Mode {
    Mode::Tunnel
}
fn default_window() -> u32 {
    1024
}

/// Largest anti-replay window accepted, in packets: what the SA table's
/// state lines persist (DESIGN: the window lives in the table, so a restart
/// or an owner change resumes it). The ESP engine could run larger windows
/// (`esp::MAX_REPLAY_WINDOW`), but one the table cannot keep would reopen
/// every old sequence number to a replay after a restart.
pub const MAX_REPLAY_WINDOW: u32 = sa_table::MAX_REPLAY_WINDOW_PKTS;

/// A parsed prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl std::str::FromStr for Prefix {
    type Err = String;
    fn from_str(s: &str) -> Result<Prefix, String> {
        let (a, l) = s.split_once('/').ok_or_else(|| format!("`{s}` is not a prefix (want address/length)"))?;
        let addr: IpAddr = a.parse().map_err(|_| format!("`{a}` is not an IP address"))?;
        let len: u8 = l.parse().map_err(|_| format!("`{l}` is not a prefix length"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(format!("prefix length {len} is longer than {max}"));
        }
        Ok(Prefix { addr, len })
    }
}

impl StaticSa {
    /// Key and salt bytes (validated at load), zeroed when dropped.
    pub fn key_and_salt(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let hex_digits = zeroize::Zeroizing::new(self.key.replace(':', ""));
        zeroize::Zeroizing::new(hex::decode(&*hex_digits).unwrap_or_default())
    }

    /// The remote-side prefixes (validated at load).
    pub fn prefixes(&self) -> Vec<Prefix> {
        self.selectors.iter().filter_map(|s| s.parse().ok()).collect()
    }

    /// Our side's prefixes (validated at load); empty = any.
    pub fn local_prefixes(&self) -> Vec<Prefix> {
        self.local_selectors.iter().filter_map(|s| s.parse().ok()).collect()
    }
}

/// Largest SPD accepted: the classifier's tables grow with the square of
/// the entry count (see the `spd` crate).
pub const MAX_SPD_ENTRIES: usize = 4096;

/// `10.1.0.0/16`, `10.1.0.5-10.1.0.9` or `10.1.0.5` (either family).
pub fn parse_addr_range(s: &str) -> Result<spd::AddrRange, String> {
    let s = s.trim();
    if s.contains('/') {
        let p: Prefix = s.parse()?;
        return Ok(spd::AddrRange::prefix(p.addr, p.len));
    }
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let lo: IpAddr = a.trim().parse().map_err(|_| format!("`{}` is not an IP address", a.trim()))?;
    let hi: IpAddr = b.trim().parse().map_err(|_| format!("`{}` is not an IP address", b.trim()))?;
    spd::AddrRange::new(lo, hi).ok_or_else(|| format!("`{s}` is not a range (same family, low end first)"))
}

/// A protocol by name or number.
pub fn parse_proto(p: &NumOrText) -> Result<u8, String> {
    match p {
        NumOrText::Num(n) => u8::try_from(*n).map_err(|_| format!("{n} is not a protocol number (0..=255)")),
        NumOrText::Text(t) => match t.to_ascii_lowercase().as_str() {
            "tcp" => Ok(6),
            "udp" => Ok(17),
            "icmp" => Ok(1),
            "icmpv6" | "ipv6-icmp" => Ok(58),
            "sctp" => Ok(132),
            "gre" => Ok(47),
            other => other.parse::<u8>().map_err(|_| format!("`{t}` is not tcp, udp, icmp, icmpv6, sctp, gre or a number")),
        },
    }
}

/// A port (`53`) or an inclusive range (`1000-1999`).
pub fn parse_ports(p: &NumOrText) -> Result<spd::PortRange, String> {
    let port = |s: &str| s.trim().parse::<u16>().map_err(|_| format!("`{}` is not a port (0..=65535)", s.trim()));
    match p {
        NumOrText::Num(n) => {
            let n = u16::try_from(*n).map_err(|_| format!("{n} is not a port (0..=65535)"))?;
            Ok(spd::PortRange { lo: n, hi: n })
        }
        NumOrText::Text(t) => {
            let (a, b) = t.split_once('-').unwrap_or((t, t));
            let (lo, hi) = (port(a)?, port(b)?);
            if lo > hi {
                return Err(format!("`{t}`: the low end comes first"));
            }
            Ok(spd::PortRange { lo, hi })
        }
    }
}

/// A label as compared: without the NUL terminator RFC 9478 labels
/// usually carry (strongSwan sends one, a YAML string has none).
pub fn label_bytes(l: &[u8]) -> &[u8] {
    let mut n = l.len();
    while n > 0 && l[n - 1] == 0 {
        n -= 1;
    }
    &l[..n]
}

impl Dataplane {
    /// The VLAN of the segment of `label` (bytes as in the SA table).
    pub fn vlan_of_label(&self, label: &[u8]) -> Option<u16> {
        let l = label_bytes(label);
        self.labels.iter().find(|s| label_bytes(s.label.as_bytes()) == l).map(|s| s.vlan)
    }
}

impl SpdEntry {
    /// The entry's selectors (validated at load; `segment` from `labels`).
    pub fn selector(&self, d: &Dataplane) -> spd::Selector {
        spd::Selector {
            local: self.local.iter().filter_map(|s| parse_addr_range(s).ok()).collect(),
            remote: self.remote.iter().filter_map(|s| parse_addr_range(s).ok()).collect(),
            proto: self.proto.as_ref().and_then(|p| parse_proto(p).ok()),
            local_ports: self.local_ports.as_ref().and_then(|p| parse_ports(p).ok()).unwrap_or(spd::PortRange::ANY),
            remote_ports: self.remote_ports.as_ref().and_then(|p| parse_ports(p).ok()).unwrap_or(spd::PortRange::ANY),
            // An unknown label cannot pass validation; u16::MAX is no segment.
            segment: self.label.as_ref().map(|l| d.vlan_of_label(l.as_bytes()).unwrap_or(u16::MAX)),
        }
    }

    fn validate(&self, path: &str, d: &Dataplane) -> Result<(), ConfigError> {
        for (field, list) in [("local", &self.local), ("remote", &self.remote)] {
            for (j, s) in list.iter().enumerate() {
                parse_addr_range(s).map_err(|m| err(format!("{path}.{field}[{j}]"), m))?;
            }
        }
        if let Some(p) = &self.proto {
            parse_proto(p).map_err(|m| err(format!("{path}.proto"), m))?;
        }
        for (field, p) in [("local_ports", &self.local_ports), ("remote_ports", &self.remote_ports)] {
            if let Some(p) = p {
                parse_ports(p).map_err(|m| err(format!("{path}.{field}"), m))?;
            }
        }
        if let Some(l) = &self.label {
            if d.vlan_of_label(l.as_bytes()).is_none() {
                return Err(err(format!("{path}.label"), format!("`{l}` is not one of dataplane.labels")));
            }
        }
        if let Some(spi) = self.spi {
            if self.action != SpdAction::Protect {
                return Err(err(format!("{path}.spi"), "only a protect entry names an SA"));
            }
            if !d.static_sas.iter().any(|sa| sa.spi == spi && sa.direction == Direction::Out) {
                return Err(err(format!("{path}.spi"), format!("{spi:#x} is not the SPI of an outbound static SA")));
            }
        }
        Ok(())
    }
}

impl Config {
    /// Parses and checks a configuration.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        let de = serde_yaml::Deserializer::from_str(text);
        let cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            err(path, e.into_inner().to_string())
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads, parses and checks a configuration file.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| err("", format!("cannot read {}: {e}", path.display())))?;
        Config::from_yaml(&text)
    }

    /// The checks serde cannot express, each naming its field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let d = &self.dataplane;
        for (name, p) in [("outside", Some(&d.ports.outside)), ("inside", Some(&d.ports.inside)), ("punt", d.ports.punt.as_ref())] {
            let Some(p) = p else { continue };
            let path = format!("dataplane.ports.{name}");
            if p.device.trim().is_empty() {
                return Err(err(format!("{path}.device"), "must name a DPDK device (PCI address or vdev string)"));
            }
            for (f, v) in [("rx_desc", p.rx_desc), ("tx_desc", p.tx_desc)] {
                if !(32..=8192).contains(&v) || !v.is_power_of_two() {
                    return Err(err(format!("{path}.{f}"), format!("{v} is not a power of two in 32..=8192")));
                }
            }
        }
        let devs: Vec<&str> = [Some(&d.ports.outside), Some(&d.ports.inside), d.ports.punt.as_ref()]
            .into_iter()
            .flatten()
            .map(|p| p.device.split(',').next().unwrap_or(""))
            .collect();
        if devs.iter().collect::<HashSet<_>>().len() != devs.len() {
            return Err(err("dataplane.ports", "two ports name the same device"));
        }
        let w = &d.workers;
        if !(1..=64).contains(&w.count) {
            return Err(err("dataplane.workers.count", format!("{} is not in 1..=64", w.count)));
        }
        if !w.cpus.is_empty() && w.cpus.len() != w.count as usize {
            return Err(err(
                "dataplane.workers.cpus",
                format!("lists {} CPUs for {} workers (give one per worker, or none)", w.cpus.len(), w.count),
            ));
        }
        if w.cpus.iter().collect::<HashSet<_>>().len() != w.cpus.len() {
            return Err(err("dataplane.workers.cpus", "a CPU is listed twice"));
        }
        if !(1..=64).contains(&w.burst_pkts) {
            return Err(err("dataplane.workers.burst_pkts", format!("{} is not in 1..=64", w.burst_pkts)));
        }
        if !w.handoff_queue_pkts.is_power_of_two() || w.handoff_queue_pkts < 64 {
            return Err(err("dataplane.workers.handoff_queue_pkts", "must be a power of two >= 64"));
        }
        if crate::crypto::BackendChoice::from_name(&d.crypto.backend).is_none() {
            return Err(err(
                "dataplane.crypto.backend",
                format!("`{}` is not one of auto, ring, rustcrypto, ipsec-mb", d.crypto.backend),
            ));
        }
        if d.crypto.sessions == 0 {
            return Err(err("dataplane.crypto.sessions", "must be at least 1"));
        }
        if d.addresses.outside.is_empty() {
            return Err(err("dataplane.addresses.outside", "needs at least one address"));
        }
        if d.sa_table.capacity == 0 {
            return Err(err("dataplane.sa_table.capacity", "must be at least 1"));
        }
        for (i, n) in d.neighbours.iter().enumerate() {
            if parse_mac(&n.mac).is_none() {
                return Err(err(format!("dataplane.neighbours[{i}].mac"), format!("`{}` is not a MAC address (aa:bb:cc:dd:ee:ff)", n.mac)));
            }
        }
        let (mut vlans, mut names) = (HashSet::new(), HashSet::new());
        for (i, l) in d.labels.iter().enumerate() {
            let path = format!("dataplane.labels[{i}]");
            if l.vlan > 4094 {
                return Err(err(format!("{path}.vlan"), format!("{} is not a VLAN ID (1..=4094, or 0: untagged)", l.vlan)));
            }
            if !vlans.insert(l.vlan) {
                return Err(err(format!("{path}.vlan"), format!("VLAN {} carries two labels", l.vlan)));
            }
            let b = label_bytes(l.label.as_bytes());
            if b.is_empty() || b.len() >= sa_table::MAX_SEC_LABEL_BYTES {
                return Err(err(
                    format!("{path}.label"),
                    format!("{} octets; a label has 1 to {} (and its NUL)", b.len(), sa_table::MAX_SEC_LABEL_BYTES - 1),
                ));
            }
            if !names.insert(b.to_vec()) {
                return Err(err(format!("{path}.label"), "this label is listed twice"));
            }
        }
        if let Some(spd) = &d.spd {
            if spd.len() > MAX_SPD_ENTRIES {
                return Err(err("dataplane.spd", format!("{} entries; at most {MAX_SPD_ENTRIES}", spd.len())));
            }
            for (i, e) in spd.iter().enumerate() {
                e.validate(&format!("dataplane.spd[{i}]"), d)?;
            }
        }
        let mut seen = HashSet::new();
        for (i, sa) in d.static_sas.iter().enumerate() {
            if let Some(l) = &sa.sec_label {
                if d.vlan_of_label(l.as_bytes()).is_none() {
                    return Err(err(format!("dataplane.static_sas[{i}].sec_label"), format!("`{l}` is not one of dataplane.labels")));
                }
            }
            sa.validate(&format!("dataplane.static_sas[{i}]"))?;
            if !seen.insert((sa.spi, sa.direction == Direction::In, sa.dst)) {
                return Err(err(format!("dataplane.static_sas[{i}].spi"), format!("SPI {:#x} is used twice in this direction", sa.spi)));
            }
        }
        Ok(())
    }
}

impl StaticSa {
    fn validate(&self, path: &str) -> Result<(), ConfigError> {
        // RFC 4303 §2.1: SPI 0 is reserved for local use, 1-255 for IANA.
        if self.spi < 256 {
            return Err(err(format!("{path}.spi"), format!("{} is reserved (RFC 4303 §2.1: SPIs 0-255)", self.spi)));
        }
        let hex_digits = zeroize::Zeroizing::new(self.key.replace(':', ""));
        let key = zeroize::Zeroizing::new(
            hex::decode(&*hex_digits).map_err(|e| err(format!("{path}.key"), format!("not hex: {e}")))?,
        );
        let want = self.suite.key_len() + 4;
        if key.len() != want {
            return Err(err(
                format!("{path}.key"),
                format!("{} bytes; {:?} needs {} key bytes and a 4-byte salt ({want})", key.len(), self.suite, self.suite.key_len()),
            ));
        }
        {
            // Tunnel mode: the outer header; transport mode: the two hosts.
            let (Some(src), Some(dst)) = (self.src, self.dst) else {
                return Err(err(format!("{path}.src"), "an SA needs src and dst (the tunnel endpoints, or the two hosts in transport mode)"));
            };
            if src.is_ipv4() != dst.is_ipv4() {
                return Err(err(format!("{path}.dst"), "src and dst are of different address families"));
            }
        }
        if self.replay_window > MAX_REPLAY_WINDOW {
            return Err(err(format!("{path}.replay_window"), format!("{} is larger than {MAX_REPLAY_WINDOW}", self.replay_window)));
        }
        if !self.esn && self.initial_seq > u32::MAX as u64 {
            return Err(err(format!("{path}.initial_seq"), "exceeds 32 bits without ESN"));
        }
        if let Some(u) = &self.udp_encap {
            if u.sport == 0 || u.dport == 0 {
                return Err(err(format!("{path}.udp_encap"), "ports must not be 0"));
            }
        }
        for (field, list) in [("selectors", &self.selectors), ("local_selectors", &self.local_selectors)] {
            if list.len() > 2 {
                return Err(err(format!("{path}.{field}"), format!("{} prefixes; an SA carries at most 2 per side", list.len())));
            }
            for (j, s) in list.iter().enumerate() {
                s.parse::<Prefix>().map_err(|m| err(format!("{path}.{field}[{j}]"), m))?;
            }
        }
        if self.direction == Direction::Out && self.selectors.is_empty() {
            return Err(err(format!("{path}.selectors"), "an outbound SA needs at least one inner prefix to protect"));
        }
        if let Some(c) = &self.compression {
            c.to_slot().map_err(|(f, m)| err(format!("{path}.compression.{f}"), m))?;
            // What the ESP engine would refuse (an SPI unfit for UDP
            // encapsulation, say) is a config error, not an unusable SA.
            let mut slot = crate::statics::slot_params(0, self);
            slot.wipe_key();
            let a = crate::pipeline::diet_attrs(&slot).map_err(|m| err(format!("{path}.compression"), m))?;
            esp::DietProfile::new(&a, self.mode == Mode::Tunnel, self.udp_encap.is_some(), 1, self.spi)
                .map_err(|m| err(format!("{path}.compression"), m.to_string()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
dataplane:
  eal_args: ["-l", "0-1", "--no-huge", "-m", "512", "--no-pci"]
  ports:
    outside: { device: "net_pcap0,rx_pcap=/tmp/in.pcap,tx_pcap=/tmp/out.pcap" }
    inside: { device: "net_null0" }
  workers: { count: 1, cpus: [1] }
  addresses:
    outside: [172.16.1.5]
    inside: [192.168.105.1]
  static_sas:
    - spi: 5
      direction: out
      suite: aes-128-gcm
      key: "2b:7e:15:16:28:ae:d2:a6:ab:f7:15:88:09:cf:4f:3c:de:ad:be:ef"
      src: 172.16.1.5
      dst: 172.16.2.5
      selectors: ["192.168.105.0/24"]
metrics:
  listen: 127.0.0.1:9464
ike:
  anything: goes here
"#;

    fn with(find: &str, replace: &str) -> Result<Config, ConfigError> {
        assert!(GOOD.contains(find), "test edit `{find}` does not apply");
        Config::from_yaml(&GOOD.replace(find, replace))
    }

    #[test]
    fn a_replay_window_the_table_cannot_keep_is_refused_with_its_path() {
        let window = |w: u32| {
            let sel = "selectors: [\"192.168.105.0/24\"]\n";
            Config::from_yaml(&GOOD.replace("spi: 5\n", "spi: 0x1005\n").replace(sel, &format!("{sel}      replay_window: {w}\n")))
        };
        assert_eq!(window(4096).unwrap().dataplane.static_sas[0].replay_window, 4096);
        let e = window(4097).unwrap_err();
        assert_eq!(e.path, "dataplane.static_sas[0].replay_window");
        assert!(e.msg.contains("4096"), "{e}");
    }

    #[test]
    fn reserved_spi_is_refused_with_its_path() {
        let e = with("spi: 5\n", "spi: 5\n").unwrap_err();
        assert_eq!(e.path, "dataplane.static_sas[0].spi");
        assert!(e.msg.contains("reserved"), "{e}");
    }

    #[test]
    fn a_static_sa_never_prints_its_key() {
        let c = with("spi: 5\n", "spi: 0x1005\n").unwrap();
        let text = format!("{:?} {:#?}", c.dataplane.static_sas[0], c);
        for needle in ["2b:7e", "2b7e", "de:ad:be:ef", "deadbeef"] {
            assert!(!text.contains(needle), "`{needle}` in {text}");
        }
        assert!(text.contains("key: [redacted]"), "{text}");
    }

    #[test]
    fn loads_a_complete_file() {
        let c = with("spi: 5\n", "spi: 0x1005\n").unwrap();
        assert_eq!(c.dataplane.static_sas[0].spi, 0x1005);
        assert_eq!(c.dataplane.static_sas[0].key_and_salt().len(), 20);
        assert_eq!(c.dataplane.workers.cpus, vec![1]);
        assert!(c.ike.is_some());
    }

    #[test]
    fn unknown_field_is_named_with_its_path() {
        let e = with("spi: 5\n", "spi: 0x1005\n      colour: blue\n").unwrap_err();
        assert_eq!(e.path, "dataplane.static_sas[0].colour");
        assert!(e.msg.contains("colour"), "{e}");
    }

    #[test]
    fn wrong_type_is_named_with_its_path() {
        let e = with("count: 1", "count: many").unwrap_err();
        assert_eq!(e.path, "dataplane.workers.count");
    }

    #[test]
    fn short_key_names_the_key_field() {
        let text = GOOD.replace("spi: 5\n", "spi: 4101\n").replace(":de:ad:be:ef\"", "\"");
        let e = Config::from_yaml(&text).unwrap_err();
        assert_eq!(e.path, "dataplane.static_sas[0].key");
        assert!(e.msg.contains("4-byte salt"), "{e}");
    }

    #[test]
    fn aes_192_gcm_takes_a_24_byte_key_and_its_salt() {
        let text = GOOD.replace("spi: 5\n", "spi: 4101\n").replace("aes-128-gcm", "aes-192-gcm");
        let e = Config::from_yaml(&text).unwrap_err();
        assert_eq!(e.path, "dataplane.static_sas[0].key");
        assert!(e.msg.contains("needs 24 key bytes and a 4-byte salt (28)"), "{e}");
        let c = Config::from_yaml(&text.replace(":de:ad:be:ef\"", ":00:01:02:03:04:05:06:07:de:ad:be:ef\"")).unwrap();
        let sa = &c.dataplane.static_sas[0];
        assert_eq!((sa.suite, sa.key_and_salt().len()), (SuiteName::Aes192Gcm, 28));
        let slot = crate::statics::slot_params(0, sa);
        assert_eq!(crate::pipeline::esp_params(&slot).unwrap().suite, esp::Suite::AES192_GCM_16);
    }

    #[test]
    fn bad_selector_and_cpu_count_are_named() {
        let text = GOOD.replace("spi: 5\n", "spi: 4101\n").replace("192.168.105.0/24", "192.168.105.0/33");
        assert_eq!(Config::from_yaml(&text).unwrap_err().path, "dataplane.static_sas[0].selectors[0]");
        let text = GOOD.replace("spi: 5\n", "spi: 4101\n").replace("cpus: [1]", "cpus: [1, 0]");
        assert_eq!(Config::from_yaml(&text).unwrap_err().path, "dataplane.workers.cpus");
    }

    #[test]
    fn missing_section_is_named() {
        let e = Config::from_yaml("metrics: {}\n").unwrap_err();
        assert!(e.msg.contains("dataplane"), "{e}");
        let e = Config::from_yaml("dataplane: [").unwrap_err();
        assert!(!e.msg.is_empty());
    }

    const SPD: &str = r#"
  labels:
    - { label: "system_u:object_r:red_t:s0", vlan: 100 }
    - { label: "system_u:object_r:blue_t:s0", vlan: 200 }
  spd:
    - { action: bypass, remote: ["10.9.0.0/16"], proto: udp, remote_ports: 53 }
    - { action: discard, remote: ["192.168.105.5-192.168.105.9"] }
    - { action: protect, remote: ["192.168.105.0/24"], proto: tcp, remote_ports: "1000-1999", spi: 0x1005, label: "system_u:object_r:red_t:s0" }
    - { action: protect }
metrics:"#;

    fn with_spd(find: &str, replace: &str) -> Result<Config, ConfigError> {
        let text = GOOD.replace("spi: 5\n", "spi: 0x1005\n").replace("metrics:", SPD);
        assert!(text.contains(find), "test edit `{find}` does not apply");
        Config::from_yaml(&text.replace(find, replace))
    }

    #[test]
    fn an_spd_with_ranges_ports_protocols_and_labels_loads() {
        let c = with_spd("", "").unwrap();
        let d = &c.dataplane;
        let spd = d.spd.as_ref().unwrap();
        assert_eq!(spd.len(), 4);
        let s = spd[0].selector(d);
        assert_eq!((s.proto, s.remote_ports), (Some(17), spd::PortRange { lo: 53, hi: 53 }));
        let s = spd[1].selector(d);
        assert_eq!((s.remote[0].lo, s.remote[0].hi), (0xc0a8_6905, 0xc0a8_6909), "a range stays a range");
        let s = spd[2].selector(d);
        assert_eq!((s.remote_ports, s.segment), (spd::PortRange { lo: 1000, hi: 1999 }, Some(100)));
        assert_eq!(spd[3].selector(d), spd::Selector::any());
        assert_eq!(d.vlan_of_label(b"system_u:object_r:blue_t:s0\0"), Some(200), "the NUL terminator is ignored");
    }

    #[test]
    fn bad_spd_entries_are_named_with_their_path() {
        let e = with_spd("proto: udp", "proto: udpp").unwrap_err();
        assert_eq!(e.path, "dataplane.spd[0].proto");
        let e = with_spd("192.168.105.5-192.168.105.9", "192.168.105.9-192.168.105.5").unwrap_err();
        assert_eq!(e.path, "dataplane.spd[1].remote[0]");
        let e = with_spd("\"1000-1999\"", "\"1999-1000\"").unwrap_err();
        assert_eq!(e.path, "dataplane.spd[2].remote_ports");
        let e = with_spd("spi: 0x1005, label", "spi: 0x1006, label").unwrap_err();
        assert_eq!(e.path, "dataplane.spd[2].spi");
        let e = with_spd("label: \"system_u:object_r:red_t:s0\" }", "label: \"green\" }").unwrap_err();
        assert_eq!(e.path, "dataplane.spd[2].label");
        let e = with_spd("action: bypass,", "action: allow,").unwrap_err();
        assert_eq!(e.path, "dataplane.spd[0].action");
        let e = with_spd("vlan: 200", "vlan: 100").unwrap_err();
        assert_eq!(e.path, "dataplane.labels[1].vlan");
        let e = with_spd("vlan: 200", "vlan: 4095").unwrap_err();
        assert_eq!(e.path, "dataplane.labels[1].vlan");
        let e = with_spd("- { action: protect }", "- { action: discard, spi: 0x1005 }").unwrap_err();
        assert_eq!(e.path, "dataplane.spd[3].spi");
    }

    #[test]
    fn a_static_sa_label_must_be_a_configured_one() {
        let e = with_spd("selectors: [\"192.168.105.0/24\"]", "selectors: [\"192.168.105.0/24\"]\n      sec_label: nope").unwrap_err();
        assert_eq!(e.path, "dataplane.static_sas[0].sec_label");
        with_spd("selectors: [\"192.168.105.0/24\"]", "selectors: [\"192.168.105.0/24\"]\n      sec_label: \"system_u:object_r:red_t:s0\"").unwrap();
    }

    #[test]
    fn sa_without_its_addresses_is_refused() {
        let text = GOOD.replace("spi: 5\n", "spi: 4101\n").replace("      src: 172.16.1.5\n", "");
        assert_eq!(Config::from_yaml(&text).unwrap_err().path, "dataplane.static_sas[0].src");
    }

    #[test]
    fn static_compression_maps_to_the_slot_and_bad_values_name_their_field() {
        let sel = "      selectors: [\"192.168.105.0/24\"]\n";
        let yaml = |c: &str| GOOD.replace("spi: 5\n", "spi: 0x1005\n").replace(sel, &format!("{sel}      compression: {c}\n"));
        let c = Config::from_yaml(&yaml("{ dscp_cda: lower, flow_label_cda: zero, alignment: 8bit, esp_spi_lsb: 8, esp_sn_lsb: 8 }")).unwrap();
        let slot = crate::statics::slot_params(0, &c.dataplane.static_sas[0]);
        assert_eq!(
            (slot.compression.profile, slot.compression.dscp_cda, slot.compression.flow_label_cda, slot.compression.alignment),
            (1, 1, 3, 0)
        );
        assert_eq!((slot.compression.esp_spi_lsb, slot.compression.esp_sn_lsb, slot.compression.esp_trailer), (8, 8, 1));
        // Unset: the defaults of ikev2-diet-esp-extension §7 (full SPI and SN).
        let c = Config::from_yaml(&yaml("{}")).unwrap();
        let slot = crate::statics::slot_params(0, &c.dataplane.static_sas[0]);
        assert_eq!((slot.compression.profile, slot.compression.esp_spi_lsb, slot.compression.alignment), (1, 32, 3));
        let e = Config::from_yaml(&yaml("{ dscp_cda: lowest }")).unwrap_err();
        assert_eq!(e.path, "dataplane.static_sas[0].compression.dscp_cda");
        assert!(e.msg.contains("not_compressed, lower, sa"), "{e}");
        let e = Config::from_yaml(&yaml("{ esp_spi_lsb: 8, esp_sn_lsb: 4 }")).unwrap_err();
        assert_eq!(e.path, "dataplane.static_sas[0].compression.esp_sn_lsb");
        let e = Config::from_yaml(&yaml("{ dscp_cda: sa }")).unwrap_err();
        assert_eq!(e.path, "dataplane.static_sas[0].compression.dscp_list");
        let e = Config::from_yaml(&yaml("{ colour: blue }")).unwrap_err();
        assert_eq!(e.path, "dataplane.static_sas[0].compression.colour");
        // Over UDP encapsulation the SPI's sent octet must not be zero (RFC 3948 §2.2).
        let udp = yaml("{ esp_spi_lsb: 8, esp_sn_lsb: 8 }").replace(sel, &format!("{sel}      udp_encap: {{ sport: 4500, dport: 4500 }}\n"));
        let e = Config::from_yaml(&udp.replace("0x1005", "0x1100")).unwrap_err();
        assert_eq!(e.path, "dataplane.static_sas[0].compression");
        assert!(Config::from_yaml(&udp).is_ok());
    }
}
