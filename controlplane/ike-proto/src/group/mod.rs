//! G-IKEv2 group keying (RFC 9838, which obsoletes GDOI, RFC 6407): the
//! group controller/key server (GCKS) and the group member (GM) roles.
//!
//! ```text
//! GM                                                   GCKS
//! IKE_SA_INIT (SA with a KWA transform, type 13) <->
//! [IKE_INTERMEDIATE ...]                         <->
//! GSA_AUTH  SK{IDi, AUTH, IDg, [N(GROUP_SENDER)]} -->
//!                 <-- SK{IDr, AUTH, GSA, KD}       (§2.3.1)
//! GSA_REGISTRATION SK{IDg, [N(GROUP_SENDER)]}   -->
//!                 <-- SK{GSA, KD}                  (§2.3.2)
//! GCKS ==> GMs  GSA_REKEY  HDR(Rekey SA SPI, MsgID n), SK{GSA, KD, [D], AUTH}
//!                                                  (§2.4.1, multicast)
//! GCKS -> GM    GSA_INBAND_REKEY SK{GSA, KD | D}   (§2.4.2, unicast)
//! ```
//!
//! What lives where:
//! * [`config`]: the groups a GCKS serves and a GM's membership;
//! * [`policy`]: GSA policies and KD key bags to and from the wire
//!   (§4.4, §4.5), wrapped keys (§4.5.4, RFC 5649 via `ike_crypto::keywrap`);
//! * [`rekey`]: the GSA_REKEY message: sealing with the KEK, the GCAUTH
//!   digital signature over `A | P` (§2.4.1.1), and the GM's checks in the
//!   RFC's order (ICV, signature, Message ID);
//! * [`gcks`]: group state on the GCKS: TEK and KEK generations, members,
//!   Sender-IDs, scheduled rekeys, exclusion;
//! * [`gm`]: group state on a GM: the registration's SAs, the Rekey SA,
//!   replay protection of GSA_REKEY, TEK rollover with ATD/DTD, lost-rekey
//!   detection;
//! * the registration exchanges run on an IKE SA (`ike_sa::gsa_auth`,
//!   `ike_sa::gsa_registration`, `ike_sa::gsa_inband_rekey`).
//!
//! Keys (§3.1.1, §3.4): the registration IKE SA's default key-wrap key is
//! `GSK_w = prf+(SK_d, "Key Wrap for G-IKEv2")`; a Rekey SA's keying material
//! splits as `GSK_e | GSK_a | GSK_w`; a TEK's keying material is its ESP
//! encryption key (with the AEAD salt) then its integrity key (RFC 7296
//! §2.17). Every SA_KEY travels wrapped (Key ID 0), under GSK_w (KWK ID 0) or
//! under a member's own WRAP_KEY (KWK ID = its Key ID), which is how a rekey
//! leaves an excluded member out.
pub mod config;
pub mod gcks;
pub mod gm;
pub mod policy;
pub mod rekey;

use ike_crypto::prf::Prf;
use ike_crypto::Secret;

use crate::error::ProtoError;

pub use config::{GcauthKey, GroupConfig, GroupMembership, KekPolicy, MemberPolicy, MemberRole, SequenceMode, TekPolicy};
pub use gcks::{Gcks, GcksGroup, GroupInfo, MemberInfo};
pub use gm::{GmGroup, GroupMember, RekeyRejected};

/// Both roles' group state, as the endpoint holds it.
#[derive(Default)]
pub struct GroupState {
    pub gcks: Gcks,
    pub gm: GroupMember,
}

/// RFC 9838 §3.1.1: "Key Wrap for G-IKEv2", 20 ASCII octets, no NUL.
pub const GSK_W_LABEL: &[u8] = b"Key Wrap for G-IKEv2";

/// The default KWK of a registration IKE SA (§3.1.1):
/// `GSK_w = prf+(SK_d, "Key Wrap for G-IKEv2")`, `len` octets (the KWA's
/// key size).
pub fn registration_kwk(prf: &dyn Prf, sk_d: &[u8], len: usize) -> Result<Secret, ProtoError> {
    Ok(ike_crypto::prf::prf_plus(prf, sk_d, &[GSK_W_LABEL], len)?)
}

/// A group's name as both roles know it: the IDg payload's type and data.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId {
    pub id_type: ike_wire::IdType,
    pub data: Vec<u8>,
}

impl GroupId {
    /// ID_KEY_ID (RFC 9838 §4.2: MUST be supported).
    pub fn key_id(data: impl Into<Vec<u8>>) -> Self {
        Self { id_type: ike_wire::IdType::ID_KEY_ID, data: data.into() }
    }

    pub fn to_wire(&self) -> ike_wire::Id<'static> {
        ike_wire::Id { id_type: self.id_type, data: self.data.clone().into() }
    }

    pub fn from_wire(id: &ike_wire::Id<'_>) -> Self {
        Self { id_type: id.id_type, data: id.data.to_vec() }
    }
}

impl std::fmt::Display for GroupId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match std::str::from_utf8(&self.data) {
            Ok(s) if s.chars().all(|c| c.is_ascii_graphic()) => f.write_str(s),
            _ => {
                for b in &self.data {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }
    }
}

/// Which way a GM uses a Data-Security SA (receivers inbound only,
/// senders both unless configured not to receive their own traffic;
/// §2.3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupSaDirection {
    Inbound,
    Outbound,
    Both,
}

/// A Data-Security SA (TEK) for the SA table: what a GM installs, and what a
/// GCKS reports for the operator (keys only in test builds' logs).
#[derive(Clone)]
pub struct GroupSaInstall {
    pub group: GroupId,
    /// Which generation of the group's TEKs this is (0 = registration).
    pub generation: u32,
    pub spi: u32,
    pub suite: crate::proposal::EspSuite,
    /// Encryption key with the AEAD salt, then the integrity key (§3.4).
    pub keys: crate::event::ChildKeys,
    /// §4.4.2: source and destination selectors of the policy.
    pub src: crate::ts::TrafficSelector,
    pub dst: crate::ts::TrafficSelector,
    pub direction: GroupSaDirection,
    /// RFC 5374 §3.1 tunnel mode with address preservation, or transport
    /// (USE_TRANSPORT_MODE in the registration response).
    pub transport: bool,
    /// §4.4.2.1 sequence numbers: replay checks only for "32-bit
    /// Sequential" SAs (a single sender); "Unspecified" SAs have several.
    pub sequence: SequenceMode,
    /// RFC 6054 / RFC 9838 §2.5: this GM's Sender-IDs for counter-mode IVs
    /// and the width of the SID field (0 when it sends nothing).
    pub sender_ids: Vec<u32>,
    pub sender_id_bits: u8,
    pub lifetime_secs: u64,
    /// §4.4.3.1 GWP_ATD: senders start using the SA this long after it was
    /// installed (receivers install it at once).
    pub activation_delay_secs: u16,
}

impl std::fmt::Debug for GroupSaInstall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the keys.
        f.debug_struct("GroupSaInstall")
            .field("group", &self.group)
            .field("generation", &self.generation)
            .field("spi", &format_args!("{:08x}", self.spi))
            .field("direction", &self.direction)
            .field("sequence", &self.sequence)
            .field("sender_ids", &self.sender_ids)
            .finish_non_exhaustive()
    }
}
