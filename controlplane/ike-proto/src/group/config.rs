//! What a GCKS serves and what a GM asks for: plain values, built by the
//! daemon from its YAML.
use std::net::SocketAddr;
use std::sync::Arc;

use ike_crypto::sig::{SignatureScheme, Signer};
use ike_wire::{EncrId, IntegId, KwaId};

use super::GroupId;
use crate::config::Identity;
use crate::proposal::EspSuite;
use crate::ts::TrafficSelector;

/// §4.4.2.1 Sequence Numbers transform of a Data-Security SA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceMode {
    /// "32-bit Sequential Numbers" (ID 0): one sender; receivers may check
    /// replay. RFC 9838 SHOULD for single-sender SAs.
    Sequential,
    /// "32-bit Unspecified Numbers" (ID 2 [S], IANA; draft-23 said TBA):
    /// MUST for multi-sender SAs; no replay protection is possible.
    Unspecified,
}

impl SequenceMode {
    pub fn transform_id(self) -> u16 {
        match self {
            SequenceMode::Sequential => ike_wire::EsnId::NO_ESN.0,
            SequenceMode::Unspecified => ike_wire::EsnId::UNSPECIFIED_32.0,
        }
    }

    /// ESN ("Partially Transmitted 64-bit", ID 1) MUST NOT be used for
    /// multicast (§4.4.2.1): refused.
    pub fn from_transform_id(id: u16) -> Option<Self> {
        match id {
            x if x == ike_wire::EsnId::NO_ESN.0 => Some(SequenceMode::Sequential),
            x if x == ike_wire::EsnId::UNSPECIFIED_32.0 => Some(SequenceMode::Unspecified),
            _ => None,
        }
    }
}

/// One Data-Security SA policy (TEK) of a group.
#[derive(Clone, Debug)]
pub struct TekPolicy {
    /// ESP algorithms (AEAD: AES-GCM-16 or ChaCha20-Poly1305; never IIV
    /// unless single-sender and sequential, §2.7; never ESN).
    pub suite: EspSuite,
    /// §4.4.2: the policy's source and destination selectors (site prefixes
    /// for a mesh, a 239/8 address for multicast).
    pub src: TrafficSelector,
    pub dst: TrafficSelector,
    pub sequence: SequenceMode,
    /// TEK lifetime (GSA_KEY_LIFETIME); a new TEK is sent `rekey_margin_secs`
    /// before it ends.
    pub lifetime_secs: u32,
}

/// The signing key of GCAUTH Digital Signature (§4.4.2.1, AUTH method 14).
#[derive(Clone)]
pub struct GcauthKey {
    pub signer: Arc<dyn Signer>,
    pub scheme: SignatureScheme,
    /// DER SubjectPublicKeyInfo of the signer, sent as AUTH_KEY (§4.5.3.2).
    pub spki: Vec<u8>,
}

impl std::fmt::Debug for GcauthKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcauthKey").field("scheme", &self.scheme).finish_non_exhaustive()
    }
}

/// The Rekey SA (KEK) policy: how GSA_REKEY is protected and where it goes.
#[derive(Clone, Debug)]
pub struct KekPolicy {
    /// SK payload protection of GSA_REKEY with GSK_e / GSK_a.
    pub encr: EncrId,
    pub key_bits: Option<u16>,
    pub integ: IntegId,
    /// Wraps SA_KEYs of later rekeys (GSK_w of the Rekey SA) and members'
    /// WRAP_KEYs.
    pub kwa: KwaId,
    /// GCAUTH Digital Signature (RECOMMENDED); `None` is Implicit (NOT
    /// RECOMMENDED, §2.4.1.1: no source authentication).
    pub gcauth: Option<GcauthKey>,
    /// Where GSA_REKEY is sent: the multicast group and UDP port (§4.4.2:
    /// the KEK's destination selector is one multicast address, UDP, one
    /// port), and the source it is sent from.
    pub destination: SocketAddr,
    pub source: SocketAddr,
    /// KEK lifetime (GSA_KEY_LIFETIME of the KEK policy).
    pub lifetime_secs: u32,
    /// §2.4.1: copies of each GSA_REKEY (bitwise identical) sent within a
    /// few seconds to ride out loss.
    pub retransmits: u8,
    pub retransmit_interval: std::time::Duration,
}

/// What a member may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberRole {
    Receiver,
    Sender,
}

/// One authorized member (or a wildcard: `identity: None`).
#[derive(Clone, Debug)]
pub struct MemberPolicy {
    pub identity: Option<Identity>,
    pub role: MemberRole,
}

/// One group served by a GCKS.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    pub name: String,
    pub id: GroupId,
    /// Who may join and as what; a GM not listed gets AUTHORIZATION_FAILED.
    pub members: Vec<MemberPolicy>,
    pub teks: Vec<TekPolicy>,
    /// `None`: no multicast rekey; TEKs are renewed by GSA_INBAND_REKEY.
    pub kek: Option<KekPolicy>,
    /// Keep registration IKE SAs for GSA_INBAND_REKEY (small groups).
    pub inband_rekey: bool,
    /// How long before a TEK's lifetime ends the GCKS sends its successor.
    pub rekey_margin_secs: u32,
    /// §4.4.3.1 GWP_ATD / GWP_DTD (seconds).
    pub activation_delay_secs: u16,
    pub deactivation_delay_secs: u16,
    /// §2.5 / §4.4.3.1 GWP_SENDER_ID_BITS: 8, 12 or 16 (MUST be supported).
    pub sender_id_bits: u8,
    /// Sender-IDs a member may hold at once (it may ask for fewer).
    pub max_sids_per_member: u32,
    /// USE_TRANSPORT_MODE in the responses; otherwise tunnel mode with
    /// address preservation (RFC 5374 §3.1).
    pub transport: bool,
    /// Refuse registrations above this many members (REGISTRATION_FAILED).
    pub max_members: usize,
    /// How long the GCKS keeps a registration IKE SA when it is not kept for
    /// in-band rekeys (§2.3.4: "after a short period of time").
    pub registration_linger: std::time::Duration,
}

impl GroupConfig {
    /// The role policy for an authenticated identity, if it may join.
    pub fn authorize(&self, id: &Identity) -> Option<MemberRole> {
        self.members.iter().find(|m| m.identity.as_ref().map_or(true, |i| i == id)).map(|m| m.role)
    }

    /// The SID space: 2^bits values.
    pub fn sid_space(&self) -> u64 {
        1u64 << self.sender_id_bits.min(32)
    }
}

/// A GM's membership in one group (on its connection to the GCKS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMembership {
    pub group: GroupId,
    /// Sender-IDs to ask for in N(GROUP_SENDER): one per encryption engine
    /// installing the outbound TEK (§2.5.1); 0 = receiver only.
    pub sender_ids: u32,
    /// A sender that also receives group traffic (a mesh site) installs the
    /// TEKs both ways; a sender only, outbound only (§2.3.3).
    pub receive: bool,
}

/// All groups a GCKS serves.
pub type Groups = Vec<Arc<GroupConfig>>;
