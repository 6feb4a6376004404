//! The bytes both processes agree on: every type here is `#[repr(C)]`, holds only
//! integers (or atomics over integers) and byte arrays, and is valid for every bit
//! pattern, so a copy taken out of shared memory can never be an invalid Rust value.
//!
//! Registries (transform IDs, direction, mode, …) are newtypes over integers with
//! named constants, never closed enums: an unknown value written by a newer control
//! plane round-trips instead of being undefined behaviour.
//!
//! The layout is fingerprinted by [`LAYOUT_HASH`], an FNV-1a hash over every field's
//! name, offset and size and over the capacity constants below; a process built from
//! a different layout refuses to attach (see [`crate::AttachError`]).

use std::mem::{offset_of, size_of};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::AtomicU64;

/// Bumped by hand on any deliberate layout change; the hash catches forgotten bumps.
/// 2: `Header::txn_pid` (writers take the table in short transactions).
/// 3: `SaState::backends` (which AEAD backends the dataplane runs an SA on).
/// 4: `DROP_REASONS` 16 -> 24 (the ESP engine has 21 reasons: Diet-ESP's and
/// RFC 5374's `AddressMismatch` were clamped before).
pub const LAYOUT_VERSION: u64 = 4;
/// "ESPRITSA" in ASCII, big-endian.
pub const MAGIC: u64 = u64::from_be_bytes(*b"ESPRITSA");

/// Longest ESP key: AES-256-GCM and ChaCha20-Poly1305 (RFC 4106 §8.1, RFC 7634 §2).
pub const MAX_KEY_BYTES: usize = 32;
/// AEAD salt carried in KEYMAT after the key (RFC 4106 §8.1, RFC 7634 §2).
pub const SALT_BYTES: usize = 4;
/// Traffic selectors stored per side. A concentrator negotiates one in practice;
/// the second leaves room for split IPv4+IPv6 selectors. More is refused at install.
pub const MAX_TS_PER_SIDE: usize = 2;
/// Inner destination prefixes an outbound SA can serve explicitly.
pub const MAX_SERVED_PREFIXES: usize = 2;
/// Security label bytes (RFC 9478 labels such as SELinux contexts).
pub const MAX_SEC_LABEL_BYTES: usize = 64;
/// Largest anti-replay window the slot has storage for, in packets.
pub const MAX_REPLAY_WINDOW_PKTS: u32 = 4096;
/// 64-bit words of replay bitmap storage (`MAX_REPLAY_WINDOW_PKTS / 64`).
pub const REPLAY_WORDS: usize = (MAX_REPLAY_WINDOW_PKTS / 64) as usize;
/// Drop counters per SA, indexed by the dataplane's drop reason (0..DROP_REASONS).
pub const DROP_REASONS: usize = 24;
/// DSCP values a Diet-ESP "sa" DSCP CDA can index (diet-esp-07 IIPC).
pub const MAX_DSCP_LIST: usize = 7;
/// Largest table: slot indexes travel in 24 bits inside journal entries' check word.
pub const MAX_CAPACITY: u32 = 1 << 24;

/// IANA "Transform Type 1 - Encryption Algorithm Transform IDs".
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TransformId(pub u16);

impl TransformId {
    /// ENCR_AES_GCM_16 (RFC 4106), explicit IV.
    pub const AES_GCM_16: Self = Self(20);
    /// ENCR_CHACHA20_POLY1305 (RFC 7634), explicit IV.
    pub const CHACHA20_POLY1305: Self = Self(28);
    /// ENCR_AES_GCM_16_IIV (RFC 8750).
    pub const AES_GCM_16_IIV: Self = Self(30);
    /// ENCR_CHACHA20_POLY1305_IIV (RFC 8750).
    pub const CHACHA20_POLY1305_IIV: Self = Self(31);

    /// RFC 8750: the IV is not carried, it is derived from the sequence number.
    pub fn implicit_iv(self) -> bool {
        self == Self::AES_GCM_16_IIV || self == Self::CHACHA20_POLY1305_IIV
    }

    /// Key lengths (bytes, salt excluded) this transform accepts; empty if unknown.
    pub fn key_lens(self) -> &'static [u8] {
        match self {
            Self::AES_GCM_16 | Self::AES_GCM_16_IIV => &[16, 24, 32],
            Self::CHACHA20_POLY1305 | Self::CHACHA20_POLY1305_IIV => &[32],
            _ => &[],
        }
    }
}

/// Which way the SA carries traffic, seen from this gateway.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Direction(pub u8);

impl Direction {
    pub const INBOUND: Self = Self(1);
    pub const OUTBOUND: Self = Self(2);
}

/// RFC 4301 §4.1 modes.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Mode(pub u8);

impl Mode {
    pub const TRANSPORT: Self = Self(1);
    pub const TUNNEL: Self = Self(2);
}

/// Boolean SA attributes as bits.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SaFlags(pub u8);

impl SaFlags {
    /// RFC 4303 §2.2.1 extended sequence numbers.
    pub const ESN: Self = Self(1);
    /// RFC 3948 UDP encapsulation (ports in `udp_src_port`/`udp_dst_port`).
    pub const UDP_ENCAP: Self = Self(2);
    /// RFC 5374 §3.1 AP-L: copy the inner source into the outer header.
    pub const PRESERVE_SRC: Self = Self(4);
    /// RFC 5374 §3.1 AP-R: copy the inner destination into the outer header.
    pub const PRESERVE_DST: Self = Self(8);

    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for SaFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// RFC 4303 §2.1 / RFC 5374 §5.2: which outer fields an inbound SA is keyed on.
/// Group SAs (G-IKEv2) are keyed on more than the SPI because a GCKS picks SPIs
/// without coordinating with our unicast SPIs.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct InboundMatch(pub u8);

impl InboundMatch {
    /// Unicast: the SPI alone.
    pub const SPI: Self = Self(0);
    /// ASM group: SPI and outer destination (the group address).
    pub const SPI_DST: Self = Self(1);
    /// SSM group: SPI, outer destination and outer source (the sender).
    pub const SPI_DST_SRC: Self = Self(2);
}

/// Address family tag of an address field; addresses are stored in 16 bytes,
/// IPv4 in the first four.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Family(pub u8);

impl Family {
    pub const NONE: Self = Self(0);
    pub const V4: Self = Self(4);
    pub const V6: Self = Self(6);
}

/// Store an address in the 16-byte form with its family.
pub fn addr_bytes(addr: IpAddr) -> (Family, [u8; 16]) {
    match addr {
        IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            (Family::V4, b)
        }
        IpAddr::V6(a) => (Family::V6, a.octets()),
    }
}

/// Read back an address stored with [`addr_bytes`].
pub fn addr_from_bytes(family: Family, b: &[u8; 16]) -> Option<IpAddr> {
    match family {
        Family::V4 => Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
        Family::V6 => Some(IpAddr::V6(Ipv6Addr::from(*b))),
        _ => None,
    }
}

/// An address prefix such as 10.1.0.0/16.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IpPrefix {
    pub addr: [u8; 16],
    pub len: u8,
    pub family: Family,
}

impl IpPrefix {
    /// A prefix of `len` bits (clamped to the family's width) over `addr`.
    pub fn new(addr: IpAddr, len: u8) -> Self {
        let (family, addr) = addr_bytes(addr);
        let max = if family == Family::V4 { 32 } else { 128 };
        Self {
            addr,
            len: len.min(max),
            family,
        }
    }
}

/// RFC 7296 §3.13.1 traffic selector, one address range plus protocol and ports.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TrafficSelector {
    pub start_addr: [u8; 16],
    pub end_addr: [u8; 16],
    pub start_port: u16,
    pub end_port: u16,
    /// IP protocol number; 0 = any.
    pub ip_proto: u8,
    /// RFC 7296 TS Type: 7 = TS_IPV4_ADDR_RANGE, 8 = TS_IPV6_ADDR_RANGE.
    pub ts_type: u8,
    pub reserved: [u8; 2],
}

impl TrafficSelector {
    pub const TS_IPV4_ADDR_RANGE: u8 = 7;
    pub const TS_IPV6_ADDR_RANGE: u8 = 8;

    /// A selector over `start..=end` (same family), any protocol and port.
    pub fn range(start: IpAddr, end: IpAddr) -> Self {
        let (f, start_addr) = addr_bytes(start);
        let (_, end_addr) = addr_bytes(end);
        let ts_type = if f == Family::V4 {
            Self::TS_IPV4_ADDR_RANGE
        } else {
            Self::TS_IPV6_ADDR_RANGE
        };
        Self {
            start_addr,
            end_addr,
            start_port: 0,
            end_port: 0xffff,
            ip_proto: 0,
            ts_type,
            reserved: [0; 2],
        }
    }

    pub fn family(&self) -> Family {
        match self.ts_type {
            Self::TS_IPV4_ADDR_RANGE => Family::V4,
            Self::TS_IPV6_ADDR_RANGE => Family::V6,
            _ => Family::NONE,
        }
    }

    /// Does the packet's (address, protocol, port) fall inside this selector?
    /// ICMP and protocols without ports pass `port = 0` (RFC 7296 §3.13.1 puts
    /// ICMP type/code in the port fields; callers pass them there).
    pub fn contains(&self, addr: IpAddr, ip_proto: u8, port: u16) -> bool {
        let (f, a) = addr_bytes(addr);
        f == self.family()
            && a >= self.start_addr
            && a <= self.end_addr
            && (self.ip_proto == 0 || self.ip_proto == ip_proto)
            && port >= self.start_port
            && port <= self.end_port
    }
}

/// Soft and hard lifetimes (RFC 4301 §4.4.2.1); 0 = no limit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Lifetimes {
    pub soft_bytes: u64,
    pub hard_bytes: u64,
    pub soft_pkts: u64,
    pub hard_pkts: u64,
    pub soft_secs: u64,
    pub hard_secs: u64,
}

/// Negotiated ESP header compression (draft-ietf-ipsecme-diet-esp-07, with the
/// code points of ikev2-diet-esp-extension-04 §7; `profile` 0 = none).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Compression {
    /// 0 = no compression, 1 = Diet-ESP (HCP Name 0 on the wire, offset by one here
    /// so that an all-zero slot means "none").
    pub profile: u8,
    pub dscp_cda: u8,
    pub ecn_cda: u8,
    pub flow_label_cda: u8,
    pub alignment: u8,
    pub esp_trailer: u8,
    /// Bits of SPI sent (0..=32); `esp_spi_lsb + esp_sn_lsb` is a multiple of 8.
    pub esp_spi_lsb: u8,
    pub esp_sn_lsb: u8,
    pub dscp_list_len: u8,
    pub dscp_list: [u8; MAX_DSCP_LIST],
}

/// Everything a worker needs to process packets for one SA, as stored in a slot.
///
/// Fields are ordered by alignment so the struct has no padding (checked at compile
/// time): the whole value is copied in and out of shared memory as 64-bit words.
/// Fields marked "writer-stamped" are overwritten by the writer on every write.
///
/// It holds the key and salt, and it is `Copy`: a plain-data record copied
/// in and out of shared memory as words cannot be anything else. So its
/// `Debug` prints neither (`[redacted]`), and whoever keeps a private copy
/// wipes it when done ([`SaParams::wipe_key`]; the dataplane's workers hold
/// theirs in a zeroing box).
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SaParams {
    /// Writer-stamped: table generation of this slot's last change.
    pub gen: u64,
    /// Writer-stamped: table generation at install; with the slot index it names
    /// this SA ([`crate::SaId`]) and orders rekeyed outbound SAs (newest wins).
    pub install_gen: u64,
    /// Writer-stamped: integrity check over every other word of the record.
    pub checksum: u64,
    /// The control plane's own tag (IKE SA and Child SA ids), for reconciliation.
    pub cookie: u64,
    /// Outbound: the first sequence number to send (RFC 4303 §3.3.3: 1 for a new SA).
    /// Inbound: the first one expected from the peer; the receive window starts with
    /// T = `initial_seq - 1`, everything up to T taken as seen (0 and 1 both mean a
    /// new SA). At most 2^32 - 1 without ESN.
    pub initial_seq: u64,
    pub lifetime: Lifetimes,
    pub spi: u32,
    /// Anti-replay window in packets (0 = no replay check, e.g. multi-sender group SAs).
    pub replay_window_pkts: u32,
    /// G-IKEv2 Sender-ID (RFC 9838 §2.5, RFC 6054), right-aligned in `sender_id_bits`.
    pub sender_id: u32,
    pub transform: TransformId,
    pub udp_src_port: u16,
    pub udp_dst_port: u16,
    pub ts_local: [TrafficSelector; MAX_TS_PER_SIDE],
    pub ts_remote: [TrafficSelector; MAX_TS_PER_SIDE],
    /// Writer-stamped: [`SLOT_FREE`] or [`SLOT_LIVE`].
    pub slot_state: u8,
    pub direction: Direction,
    pub mode: Mode,
    pub flags: SaFlags,
    pub key_len: u8,
    pub key: [u8; MAX_KEY_BYTES],
    pub salt: [u8; SALT_BYTES],
    pub outer_family: Family,
    /// Outer (tunnel) source; for an inbound group SA also the SSM sender matched.
    pub outer_src: [u8; 16],
    /// Outer (tunnel) destination; for an inbound group SA also the group matched.
    pub outer_dst: [u8; 16],
    pub inbound_match: InboundMatch,
    /// Sender-ID field width: 0 (none), 8, 12 or 16 bits (RFC 9838 §2.5).
    pub sender_id_bits: u8,
    pub ts_local_count: u8,
    pub ts_remote_count: u8,
    /// Inner destination prefixes served (outbound LPM keys). When 0, the reader
    /// keys the SA on the prefixes covering its remote traffic selectors.
    pub served_count: u8,
    pub served: [IpPrefix; MAX_SERVED_PREFIXES],
    pub sec_label_len: u8,
    pub sec_label: [u8; MAX_SEC_LABEL_BYTES],
    pub compression: Compression,
    /// Zero; room for fields added without moving the others.
    pub reserved: [u8; 42],
}

/// `slot_state` of a free slot (all other fields zero, keys included).
pub const SLOT_FREE: u8 = 0;
/// `slot_state` of a slot holding an SA.
pub const SLOT_LIVE: u8 = 1;

/// 64-bit words in a slot record.
pub const RECORD_WORDS: usize = size_of::<SaParams>() / 8;
/// Index of `checksum` among the record words.
pub(crate) const CHECKSUM_WORD: usize = offset_of!(SaParams, checksum) / 8;

impl core::fmt::Debug for SaParams {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never the key or the salt (RFC 4106 §8.1: both are KEYMAT).
        f.debug_struct("SaParams")
            .field("gen", &self.gen)
            .field("install_gen", &self.install_gen)
            .field("checksum", &self.checksum)
            .field("cookie", &self.cookie)
            .field("initial_seq", &self.initial_seq)
            .field("lifetime", &self.lifetime)
            .field("spi", &self.spi)
            .field("replay_window_pkts", &self.replay_window_pkts)
            .field("sender_id", &self.sender_id)
            .field("transform", &self.transform)
            .field("udp_src_port", &self.udp_src_port)
            .field("udp_dst_port", &self.udp_dst_port)
            .field("ts_local", &self.ts_local())
            .field("ts_remote", &self.ts_remote())
            .field("slot_state", &self.slot_state)
            .field("direction", &self.direction)
            .field("mode", &self.mode)
            .field("flags", &self.flags)
            .field("key_len", &self.key_len)
            .field("key", &format_args!("[redacted]"))
            .field("salt", &format_args!("[redacted]"))
            .field("outer_src", &self.outer_src_addr())
            .field("outer_dst", &self.outer_dst_addr())
            .field("inbound_match", &self.inbound_match)
            .field("sender_id_bits", &self.sender_id_bits)
            .field("served", &self.served())
            .field("sec_label", &self.sec_label())
            .field("compression", &self.compression)
            .finish_non_exhaustive()
    }
}

impl SaParams {
    /// Zeroes the key and the salt of this copy (volatile writes, so not
    /// dropped as dead stores when the copy dies right after).
    pub fn wipe_key(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
        zeroize::Zeroize::zeroize(&mut self.salt);
    }

    /// All zero: a free slot; also the starting point for building one.
    pub const fn zeroed() -> Self {
        // Built from words rather than field by field so no field can be forgotten.
        from_words(&[0u64; RECORD_WORDS])
    }

    pub fn outer_src_addr(&self) -> Option<IpAddr> {
        addr_from_bytes(self.outer_family, &self.outer_src)
    }

    pub fn outer_dst_addr(&self) -> Option<IpAddr> {
        addr_from_bytes(self.outer_family, &self.outer_dst)
    }

    /// Set both outer addresses; they must be of the same family.
    pub fn set_outer(&mut self, src: IpAddr, dst: IpAddr) {
        let (f, s) = addr_bytes(src);
        let (_, d) = addr_bytes(dst);
        self.outer_family = f;
        self.outer_src = s;
        self.outer_dst = d;
    }

    pub fn key(&self) -> &[u8] {
        &self.key[..usize::from(self.key_len).min(MAX_KEY_BYTES)]
    }

    pub fn set_key(&mut self, key: &[u8], salt: [u8; SALT_BYTES]) {
        let n = key.len().min(MAX_KEY_BYTES);
        self.key = [0; MAX_KEY_BYTES];
        self.key[..n].copy_from_slice(&key[..n]);
        self.key_len = n as u8;
        self.salt = salt;
    }

    pub fn ts_local(&self) -> &[TrafficSelector] {
        &self.ts_local[..usize::from(self.ts_local_count).min(MAX_TS_PER_SIDE)]
    }

    pub fn ts_remote(&self) -> &[TrafficSelector] {
        &self.ts_remote[..usize::from(self.ts_remote_count).min(MAX_TS_PER_SIDE)]
    }

    pub fn served(&self) -> &[IpPrefix] {
        &self.served[..usize::from(self.served_count).min(MAX_SERVED_PREFIXES)]
    }

    pub fn sec_label(&self) -> &[u8] {
        &self.sec_label[..usize::from(self.sec_label_len).min(MAX_SEC_LABEL_BYTES)]
    }

    pub fn is_live(&self) -> bool {
        self.slot_state == SLOT_LIVE
    }

    /// Does the writer-stamped checksum match the rest of the record?
    pub fn checksum_ok(&self) -> bool {
        let w = to_words(self);
        w[CHECKSUM_WORD] == record_checksum(&w)
    }

    /// RFC 4301 §5.2: does an inner packet from `local` to `remote` fall inside the
    /// SA's selectors? For an outbound SA `local` is the inner source; for an
    /// inbound SA it is the inner destination (selectors are from our point of view).
    pub fn selectors_match(
        &self,
        local: IpAddr,
        remote: IpAddr,
        ip_proto: u8,
        local_port: u16,
        remote_port: u16,
    ) -> bool {
        self.ts_local()
            .iter()
            .any(|t| t.contains(local, ip_proto, local_port))
            && self
                .ts_remote()
                .iter()
                .any(|t| t.contains(remote, ip_proto, remote_port))
    }
}

/// The record as words, as it is stored.
pub(crate) const fn to_words(p: &SaParams) -> [u64; RECORD_WORDS] {
    // SAFETY: SaParams is repr(C) with no padding (checked by `NO_PADDING` below),
    // so every byte is initialised; both types have the same size (checked by
    // transmute_copy's caller contract via the assert below) and u64 accepts every
    // bit pattern. Alignment: we read through a byte copy, not a reference cast.
    unsafe { std::mem::transmute_copy::<SaParams, [u64; RECORD_WORDS]>(p) }
}

/// The record from its stored words.
pub(crate) const fn from_words(w: &[u64; RECORD_WORDS]) -> SaParams {
    // SAFETY: same size (asserted below); every field of SaParams is an integer,
    // an integer newtype or an array of them, so every bit pattern is a valid value.
    unsafe { std::mem::transmute_copy::<[u64; RECORD_WORDS], SaParams>(w) }
}

const _: () = assert!(size_of::<SaParams>() == RECORD_WORDS * 8);

/// Dataplane-written per-SA state, each group on its own cache line(s) so workers
/// updating one never invalidate the line another worker or the control plane is
/// reading. All fields are atomics: any process may read them at any time.
#[repr(C, align(64))]
pub struct SaState {
    /// Next outbound sequence number; a worker reserves a burst with one
    /// `fetch_add` ([`SaState::reserve_seq`]). Any worker may send on the SA.
    pub(crate) seq_next: AtomicU64,
    _pad0: [u64; 7],
    pub(crate) pkts: AtomicU64,
    pub(crate) bytes: AtomicU64,
    /// Seconds (dataplane clock, caller's choice of epoch) of the last packet.
    pub(crate) last_use_secs: AtomicU64,
    /// Sequence numbers handed out beyond what the SA may use (see `reserve_seq`).
    pub(crate) seq_exhausted: AtomicU64,
    /// The dataplane run (high 16 bits) and the [`crate::Backends`] its workers
    /// built the SA's crypto on (low bits); see `SaState::note_backend`.
    pub(crate) backends: AtomicU64,
    _pad1: [u64; 3],
    pub(crate) drops: [AtomicU64; DROP_REASONS],
    /// T, the highest sequence number accepted (64-bit, ESN-inferred); set at install,
    /// then owner worker only.
    pub(crate) replay_top: AtomicU64,
    _pad2: [u64; 7],
    /// Replay bitmap storage, `MAX_REPLAY_WINDOW_PKTS` bits: word `b % REPLAY_WORDS`
    /// holds block `b` (sequence numbers `64 b ..= 64 b + 63`) of the newest blocks up
    /// to T's; all set at an inbound install, then owner worker only.
    pub(crate) replay_bitmap: [AtomicU64; REPLAY_WORDS],
}

const _: () = assert!(offset_of!(SaState, pkts) % 64 == 0);
const _: () = assert!(offset_of!(SaState, drops) % 64 == 0);
const _: () = assert!(offset_of!(SaState, replay_top) % 64 == 0);
const _: () = assert!(offset_of!(SaState, replay_bitmap) % 64 == 0);
const _: () = assert!(size_of::<SaState>() / 64 * 64 == size_of::<SaState>());

/// One slot: the seqlock word and the record it guards, eight cache lines.
#[repr(C, align(64))]
pub(crate) struct Slot {
    /// Even = stable, odd = a write is in progress (or the writer died during one).
    pub(crate) seq: AtomicU64,
    pub(crate) words: [AtomicU64; RECORD_WORDS],
}

const _: () = assert!(size_of::<Slot>() == 512);

/// "Slot `slot` changed at generation `gen`".
#[repr(C)]
pub(crate) struct JournalEntry {
    /// Written last (release): a reader that sees the generation it expects may
    /// trust `check_slot`, unless that was already overwritten by a later lap
    /// (then its check half names another generation).
    pub(crate) gen: AtomicU64,
    /// Low 32 bits of `gen` << 32 | slot index.
    pub(crate) check_slot: AtomicU64,
}

/// A registered reader's progress, so the writer reuses a freed slot only after
/// every live reader has moved past the generation that freed it.
#[repr(C, align(64))]
pub(crate) struct ReaderEntry {
    /// Owning process id (0 = free entry).
    pub(crate) pid: AtomicU64,
    /// Every change up to this generation has been applied and no reference taken
    /// before it is still in use by this reader.
    pub(crate) acked_gen: AtomicU64,
    _pad: [u64; 6],
}

/// Readers that can register for slot reuse protection.
pub const MAX_READERS: usize = 64;

/// The first page of the file.
///
/// The immutable part is written once by the creator before the file appears at its
/// path (it is renamed into place) and never again, so plain reads are race-free.
#[repr(C, align(64))]
pub(crate) struct Header {
    pub(crate) magic: u64,
    pub(crate) layout_version: u64,
    pub(crate) layout_hash: u64,
    pub(crate) header_bytes: u64,
    pub(crate) slot_bytes: u64,
    pub(crate) state_bytes: u64,
    pub(crate) journal_entry_bytes: u64,
    pub(crate) capacity: u64,
    pub(crate) journal_len: u64,
    pub(crate) instance_id: u64,
    pub(crate) created_unix_nanos: u64,
    pub(crate) slots_offset: u64,
    pub(crate) states_offset: u64,
    pub(crate) journal_offset: u64,
    pub(crate) total_bytes: u64,
    _pad0: [u64; 1],
    /// Last generation whose slot and journal entry are both written.
    pub(crate) generation: AtomicU64,
    _pad1: [u64; 7],
    /// Incremented by every writer that attaches (creation counts as the first).
    pub(crate) writer_epoch: AtomicU64,
    /// The process of the last write transaction (diagnostics).
    pub(crate) writer_pid: AtomicU64,
    pub(crate) live_count: AtomicU64,
    /// Times a writer found a slot mid-write (odd seqlock) and repaired it.
    pub(crate) repairs: AtomicU64,
    /// Non-zero (the pid of its writer) from the start of a write transaction
    /// to its end. Only the holder of the table's lock writes it, so a writer
    /// that takes the lock and finds it non-zero knows the last holder died
    /// inside its transaction (the kernel dropped its lock) and repairs.
    pub(crate) txn_pid: AtomicU64,
    _pad2: [u64; 3],
    pub(crate) readers: [ReaderEntry; MAX_READERS],
}

pub(crate) const HEADER_BYTES: usize = 8192;
const _: () = assert!(size_of::<Header>() <= HEADER_BYTES);
const _: () = assert!(offset_of!(Header, generation) % 64 == 0);

/// One field of the layout fingerprint.
#[derive(Clone, Copy)]
pub(crate) struct FieldDesc {
    pub(crate) name: &'static str,
    pub(crate) offset: usize,
    pub(crate) size: usize,
}

const fn field_size<T, F>(_: fn(&T) -> &F) -> usize {
    size_of::<F>()
}

macro_rules! fields {
    ($ty:ty { $($f:ident),* $(,)? }) => {
        &[$(FieldDesc {
            name: concat!(stringify!($ty), ".", stringify!($f)),
            offset: offset_of!($ty, $f),
            size: field_size(|v: &$ty| &v.$f),
        }),*]
    };
}

const SA_PARAMS_FIELDS: &[FieldDesc] = fields!(SaParams {
    gen,
    install_gen,
    checksum,
    cookie,
    initial_seq,
    lifetime,
    spi,
    replay_window_pkts,
    sender_id,
    transform,
    udp_src_port,
    udp_dst_port,
    ts_local,
    ts_remote,
    slot_state,
    direction,
    mode,
    flags,
    key_len,
    key,
    salt,
    outer_family,
    outer_src,
    outer_dst,
    inbound_match,
    sender_id_bits,
    ts_local_count,
    ts_remote_count,
    served_count,
    served,
    sec_label_len,
    sec_label,
    compression,
    reserved,
});
const NESTED_FIELDS: &[&[FieldDesc]] = &[
    fields!(TrafficSelector {
        start_addr,
        end_addr,
        start_port,
        end_port,
        ip_proto,
        ts_type,
        reserved
    }),
    fields!(Lifetimes {
        soft_bytes,
        hard_bytes,
        soft_pkts,
        hard_pkts,
        soft_secs,
        hard_secs
    }),
    fields!(IpPrefix { addr, len, family }),
    fields!(Compression {
        profile,
        dscp_cda,
        ecn_cda,
        flow_label_cda,
        alignment,
        esp_trailer,
        esp_spi_lsb,
        esp_sn_lsb,
        dscp_list_len,
        dscp_list,
    }),
];
const SHARED_FIELDS: &[&[FieldDesc]] = &[
    fields!(SaState {
        seq_next,
        pkts,
        bytes,
        last_use_secs,
        seq_exhausted,
        backends,
        drops,
        replay_top,
        replay_bitmap
    }),
    fields!(Slot { seq, words }),
    fields!(JournalEntry { gen, check_slot }),
    fields!(ReaderEntry { pid, acked_gen }),
    fields!(Header {
        magic,
        layout_version,
        layout_hash,
        header_bytes,
        slot_bytes,
        state_bytes,
        journal_entry_bytes,
        capacity,
        journal_len,
        instance_id,
        created_unix_nanos,
        slots_offset,
        states_offset,
        journal_offset,
        total_bytes,
        generation,
        writer_epoch,
        writer_pid,
        live_count,
        repairs,
        txn_pid,
        readers,
    }),
];

/// Do the fields cover `size` bytes exactly, in order, with no gap?
const fn tiles(fields: &[FieldDesc], size: usize) -> bool {
    let mut end = 0;
    let mut i = 0;
    while i < fields.len() {
        if fields[i].offset != end {
            return false;
        }
        end += fields[i].size;
        i += 1;
    }
    end == size
}

// No padding anywhere in the record: it is moved as words, and padding bytes
// would be uninitialised.
const _: () = assert!(tiles(SA_PARAMS_FIELDS, size_of::<SaParams>()));
const _: () = assert!(tiles(NESTED_FIELDS[0], size_of::<TrafficSelector>()));
const _: () = assert!(tiles(NESTED_FIELDS[1], size_of::<Lifetimes>()));
const _: () = assert!(tiles(NESTED_FIELDS[2], size_of::<IpPrefix>()));
const _: () = assert!(tiles(NESTED_FIELDS[3], size_of::<Compression>()));

const fn fnv_bytes(mut h: u64, b: &[u8]) -> u64 {
    let mut i = 0;
    while i < b.len() {
        h ^= b[i] as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
        i += 1;
    }
    h
}

const fn fnv_fields(mut h: u64, f: &[FieldDesc]) -> u64 {
    let mut i = 0;
    while i < f.len() {
        h = fnv_bytes(h, f[i].name.as_bytes());
        h = fnv_bytes(h, &(f[i].offset as u64).to_le_bytes());
        h = fnv_bytes(h, &(f[i].size as u64).to_le_bytes());
        i += 1;
    }
    h
}

const fn layout_hash() -> u64 {
    // The checksum algorithm is part of the contract too.
    let mut h = fnv_bytes(0xcbf2_9ce4_8422_2325, b"esprit-sa-table checksum=4-lane-v1");
    h = fnv_bytes(h, &LAYOUT_VERSION.to_le_bytes());
    h = fnv_fields(h, SA_PARAMS_FIELDS);
    let mut i = 0;
    while i < NESTED_FIELDS.len() {
        h = fnv_fields(h, NESTED_FIELDS[i]);
        i += 1;
    }
    i = 0;
    while i < SHARED_FIELDS.len() {
        h = fnv_fields(h, SHARED_FIELDS[i]);
        i += 1;
    }
    let consts = [
        MAX_KEY_BYTES as u64,
        SALT_BYTES as u64,
        MAX_TS_PER_SIDE as u64,
        MAX_SERVED_PREFIXES as u64,
        MAX_SEC_LABEL_BYTES as u64,
        MAX_REPLAY_WINDOW_PKTS as u64,
        DROP_REASONS as u64,
        MAX_DSCP_LIST as u64,
        MAX_READERS as u64,
        HEADER_BYTES as u64,
    ];
    i = 0;
    while i < consts.len() {
        h = fnv_bytes(h, &consts[i].to_le_bytes());
        i += 1;
    }
    h
}

/// Fingerprint of this build's layout (fields, offsets, sizes, capacity constants).
pub const LAYOUT_HASH: u64 = layout_hash();

/// Integrity check over a record's words (the checksum word itself excluded).
/// Catches a torn copy should the seqlock ever be bypassed, and a slot scribbled
/// on by anything but the writer. Four independent lanes, so the multiply chain
/// does not serialise a reader scanning a million slots at attach.
pub(crate) fn record_checksum(w: &[u64; RECORD_WORDS]) -> u64 {
    const K: u64 = 0xff51_afd7_ed55_8ccd;
    let mut lanes = [
        0x9e37_79b9_7f4a_7c15u64,
        0xc2b2_ae3d_27d4_eb4f,
        0x1656_67b1_9e37_79f9,
        0x27d4_eb2f_1656_67c5,
    ];
    for (i, &x) in w.iter().enumerate() {
        let x = if i == CHECKSUM_WORD { 0 } else { x };
        let l = &mut lanes[i % 4];
        *l = (*l ^ x).wrapping_mul(K);
        *l ^= *l >> 32;
    }
    let mut h = lanes[0];
    for &l in &lanes[1..] {
        h = (h.rotate_left(23) ^ l).wrapping_mul(K);
    }
    h ^ (h >> 29)
}

/// Byte offsets of the regions of a table of `capacity` slots and `journal_len`
/// journal entries: (slots, states, journal, total). Pages keep regions apart.
pub(crate) fn region_offsets(capacity: u64, journal_len: u64) -> (u64, u64, u64, u64) {
    let page = 4096u64;
    let up = |x: u64| x.div_ceil(page) * page;
    let slots = HEADER_BYTES as u64;
    let states = up(slots + capacity * size_of::<Slot>() as u64);
    let journal = up(states + capacity * size_of::<SaState>() as u64);
    let total = up(journal + journal_len * size_of::<JournalEntry>() as u64);
    (slots, states, journal, total)
}

/// Bytes of slot + dataplane state per SA (the table's per-SA footprint).
pub const BYTES_PER_SA: usize = size_of::<Slot>() + size_of::<SaState>();
