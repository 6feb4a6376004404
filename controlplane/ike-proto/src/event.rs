//! What the endpoint tells its owner (`poll_event`, `poll_transmit`) and
//! what the owner asks of it (`handle_command`).
//!
//! Guarantees: for a rekeyed Child SA the [`Event::ChildSaInstall`] of the
//! new SA always comes before the [`Event::ChildSaDelete`] of the old one
//! (make-before-break); every Child SA installed is deleted by an event
//! before or together with the [`Event::IkeSaDown`] of its IKE SA.
use std::net::{IpAddr, SocketAddr};

use ike_crypto::Secret;
use ike_wire::NotifyType;

use crate::config::{Identity, Lifetimes, Mode};
use crate::proposal::EspSuite;
use crate::ts::TrafficSelector;

/// The endpoint's name for an IKE SA (a new one after an IKE SA rekey).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IkeSaHandle(pub u64);

/// The endpoint's name for a Child SA; stable while the Child SA lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChildSaHandle(pub u64);

/// A datagram to send: from `local` (the daemon's socket) to `remote`.
/// `payload` is the UDP payload, with the non-ESP marker when `local` is
/// the NAT-T port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub payload: Vec<u8>,
}

/// Keys of one direction of a Child SA (RFC 7296 §2.17). For AES-GCM and
/// ChaCha20-Poly1305 `encr` ends with the 4-octet salt (RFC 4106 §8.1,
/// RFC 7634 §2) and `integ` is empty.
#[derive(Clone)]
pub struct ChildKeys {
    pub encr: Secret,
    pub integ: Secret,
}

impl core::fmt::Debug for ChildKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never print key material.
        f.debug_struct("ChildKeys").field("encr_len", &self.encr.len()).field("integ_len", &self.integ.len()).finish()
    }
}

/// Everything the daemon needs to program both directions of a Child SA.
#[derive(Clone, Debug)]
pub struct ChildSaInstall {
    pub ike_sa: IkeSaHandle,
    pub child_sa: ChildSaHandle,
    /// SPI of inbound ESP (we chose it).
    pub spi_in: u32,
    /// SPI of outbound ESP (the peer chose it).
    pub spi_out: u32,
    pub keys_in: ChildKeys,
    pub keys_out: ChildKeys,
    pub suite: EspSuite,
    pub mode: Mode,
    pub ts_local: Vec<TrafficSelector>,
    pub ts_remote: Vec<TrafficSelector>,
    pub lifetime: Lifetimes,
    /// Outer addresses: ours and the peer's, with ports.
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// ESP goes in UDP (RFC 3948) between these ports when a NAT was
    /// detected (RFC 7296 §2.23).
    pub udp_encap: bool,
    /// The Child SA this one replaces (rekey); delete it only after this
    /// one is installed.
    pub rekey_of: Option<ChildSaHandle>,
    /// RFC 9478 security label of both directions (NUL-terminated, as on
    /// the wire), if one was negotiated.
    pub sec_label: Option<Vec<u8>>,
    /// The Diet-ESP profile of both directions, if N(HCP_PROPOSAL) agreed one.
    pub compression: Option<crate::compression::DietProfile>,
}

/// Why an IKE SA went down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DownReason {
    /// Deleted by us (command) or by the peer (Delete payload).
    Deleted,
    /// Retransmissions exhausted: the peer is gone (§2.4).
    Timeout,
    /// Authentication failed, on our side or the peer's.
    AuthenticationFailed,
    /// The peer answered the initial exchanges with this error notify, or
    /// we refused its message with it.
    Refused(NotifyType),
    /// Replaced by a rekeyed IKE SA; its Child SAs live on there.
    Rekeyed,
    /// Another IKE SA of the same identity sent INITIAL_CONTACT (§2.4).
    Replaced,
}

/// Something the owner must act on or may log.
#[derive(Clone, Debug)]
pub enum Event {
    /// The initial exchanges completed.
    IkeSaUp {
        ike_sa: IkeSaHandle,
        connection: String,
        local: SocketAddr,
        remote: SocketAddr,
        local_id: Identity,
        remote_id: Identity,
        /// Initiator: the addresses and DNS servers we were given (CP);
        /// responder: the addresses we gave out.
        virtual_ips: Vec<IpAddr>,
        dns: Vec<IpAddr>,
        /// NAT detection (RFC 7296 §2.23): whether we / the peer are behind
        /// a NAT.
        nat_local: bool,
        nat_remote: bool,
        /// An RFC 8784 PPK was mixed into SK_d, SK_pi and SK_pr.
        ppk: bool,
    },
    IkeSaDown { ike_sa: IkeSaHandle, reason: DownReason },
    /// Responder: the AAA server accepted this EAP identity and the
    /// initiator's MSK-based AUTH verified (RFC 7296 §2.16); the IkeSaUp
    /// follows.
    EapAuthenticated { ike_sa: IkeSaHandle, identity: Vec<u8> },
    /// RFC 4555: the Child SAs of `ike_sa` now send to `remote` from
    /// `local` (UDP-encapsulated when `udp_encap`); their inbound SAs keep
    /// accepting from anywhere (the SPI finds them). Update every Child
    /// SA's outer addresses in place: no new SPIs, no new keys.
    IkeSaMoved { ike_sa: IkeSaHandle, local: SocketAddr, remote: SocketAddr, udp_encap: bool, nat_local: bool, nat_remote: bool },
    /// RFC 4555: what an address update (or our check of one) came to, for
    /// counting.
    Mobike { ike_sa: IkeSaHandle, outcome: crate::ike_sa::MobikeOutcome },
    /// An IKE SA rekey completed (§2.18): `new` carries on.
    IkeSaRekeyed { old: IkeSaHandle, new: IkeSaHandle },
    ChildSaInstall(Box<ChildSaInstall>),
    /// Remove both directions of a Child SA from the dataplane.
    ChildSaDelete { ike_sa: IkeSaHandle, child_sa: ChildSaHandle, spi_in: u32, spi_out: u32 },
    /// A Child SA could not be created; the IKE SA stays.
    ChildSaFailed { ike_sa: IkeSaHandle, notify: NotifyType },
    /// RFC 8598 split DNS, right after `IkeSaUp`: initiator, the domains
    /// (and trust anchors) accepted under the connection's policy and
    /// what was refused; responder, what it pushed. Only sent when there
    /// is something to report. The domains apply until `IkeSaDown`.
    SplitDns {
        ike_sa: IkeSaHandle,
        domains: Vec<crate::split_dns::DnsDomain>,
        refused: Vec<(String, crate::split_dns::Refusal)>,
    },
    /// G-IKEv2 GM: install a group Data-Security SA (TEK) in the directions
    /// it names; senders start using it after `activation_delay_secs`.
    GroupSaInstall(Box<crate::group::GroupSaInstall>),
    /// G-IKEv2 GM: remove a group SA (GWP_DTD already waited).
    GroupSaDelete { group: crate::group::GroupId, spi: u32 },
    /// G-IKEv2 GM: registered (GSA_AUTH or GSA_REGISTRATION answered).
    GroupRegistered { group: crate::group::GroupId, ike_sa: IkeSaHandle, sender_ids: Vec<u32> },
    /// G-IKEv2 GM: a GSA_REKEY passed every check and was applied.
    GroupRekeyAccepted { group: crate::group::GroupId, message_id: u32 },
    /// G-IKEv2 GM: a GSA_REKEY was refused (counted by reason).
    GroupRekeyRejected { group: Option<crate::group::GroupId>, reason: crate::group::RekeyRejected },
    /// G-IKEv2 GM: excluded from the group (Delete GIKE_UPDATE SPI 0, or a
    /// new KEK it cannot unwrap); it registers again after a random delay.
    GroupExcluded { group: crate::group::GroupId },
    /// G-IKEv2 GCKS: a member registered (or was refused, `notify` set).
    GroupMemberRegistration { group: Option<crate::group::GroupId>, member: Identity, sender_ids: Vec<u32>, notify: Option<NotifyType> },
}

/// What the owner asks of the GCKS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupCommand {
    /// New TEKs now (multicast, or in-band to every member).
    Rekey { group: crate::group::GroupId },
    /// Exclude a member (§3.2.1): a new KEK it cannot read, then new TEKs.
    Exclude { group: crate::group::GroupId, member: Identity },
}

/// What the owner asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Start connection `connection` from `local` to `remote` (port 500).
    Initiate { connection: String, local: SocketAddr, remote: SocketAddr },
    /// Delete an IKE SA and its Child SAs (INFORMATIONAL Delete).
    Terminate { ike_sa: IkeSaHandle },
    /// Create one more Child SA with the connection's child policy.
    CreateChild { ike_sa: IkeSaHandle },
    /// Rekey a Child SA (CREATE_CHILD_SA with REKEY_SA).
    RekeyChild { ike_sa: IkeSaHandle, child_sa: ChildSaHandle },
    /// Delete one Child SA.
    DeleteChild { ike_sa: IkeSaHandle, child_sa: ChildSaHandle },
    /// Rekey the IKE SA (§2.18).
    RekeyIke { ike_sa: IkeSaHandle },
    /// Send a liveness check now (§2.4).
    Dpd { ike_sa: IkeSaHandle },
}

/// Why a command was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("no connection named {0}")]
    UnknownConnection(String),
    #[error("no such IKE SA")]
    UnknownIkeSa,
    #[error("no such Child SA")]
    UnknownChildSa,
    #[error("the IKE SA is not established")]
    NotEstablished,
    #[error("cannot start: {0}")]
    Failed(String),
}
