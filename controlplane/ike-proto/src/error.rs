//! Why a message was refused, and the one place that decides which Notify
//! answers it (RFC 7296 §2.21, §3.10.1).
//!
//! Guarantees: every refusal is a [`ProtoError`]; [`ProtoError::notify`] is
//! the only mapping from an error to a Notify payload, and returns `None`
//! exactly where the RFC asks for silence (integrity failures §2.21.2,
//! unknown SPIs and stale Message IDs §2.21.4 / §2.3, fragments RFC 7383 §2.6).
use ike_wire::{KeId, Notify, NotifyType, PayloadType};

/// A protocol-level refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// The bytes are not a well-formed IKE message (ike-wire).
    #[error("syntax: {0}")]
    Wire(#[from] ike_wire::Error),
    /// The SK payload did not verify or decrypt.
    #[error("integrity check failed")]
    Integrity,
    /// A payload the exchange requires is missing, or appears too often.
    #[error("payload {0:?} missing or repeated")]
    PayloadCount(PayloadType),
    /// A payload the exchange does not allow.
    #[error("payload {0:?} not allowed here")]
    UnexpectedPayload(PayloadType),
    /// A payload's content is inconsistent (e.g. a KE whose method is not in
    /// the chosen proposal, an ID of an unknown type).
    #[error("invalid {0}")]
    Invalid(&'static str),
    #[error("no acceptable proposal")]
    NoProposalChosen,
    /// The KE payload uses another method than the one the responder picks
    /// (RFC 7296 §1.2); carries the method it wants.
    #[error("KE method refused; want {0:?}")]
    InvalidKePayload(KeId),
    #[error("authentication failed")]
    AuthenticationFailed,
    #[error("traffic selectors unacceptable")]
    TsUnacceptable,
    #[error("no internal address available")]
    InternalAddressFailure,
    /// RFC 8983: none of the requested address families is supported; the
    /// IP4_ALLOWED or IP6_ALLOWED status names the one that is.
    #[error("address family not supported; {0:?}")]
    AddressFamilyNotAllowed(NotifyType),
    /// The responder demands a cookie (RFC 7296 §2.6); carries it.
    #[error("cookie required")]
    CookieRequired(Vec<u8>),
    /// Busy with a conflicting exchange (RFC 7296 §2.25).
    #[error("temporary failure")]
    TemporaryFailure,
    /// A rekey for a Child SA we do not have (RFC 7296 §2.25).
    #[error("child SA not found")]
    ChildSaNotFound,
    /// RFC 9370 §2.2.4: an IKE_FOLLOWUP_KE for no pending exchange.
    #[error("no pending exchange for this IKE_FOLLOWUP_KE")]
    StateNotFound,
    /// A key exchange value or key derivation failed (ike-crypto).
    #[error("crypto: {0}")]
    Crypto(#[from] ike_crypto::Error),
    /// A Message ID outside the window, or a response to nothing.
    #[error("unexpected message ID")]
    MessageId,
    /// Sent to an IKE SA we do not have.
    #[error("unknown IKE SPI")]
    UnknownSpi,
    /// RFC 9838 §4.7.1: the group named in IDg is unknown.
    #[error("invalid group ID")]
    InvalidGroupId,
    /// RFC 9838 §4.7.2: the member may not join the group.
    #[error("authorization failed")]
    AuthorizationFailed,
    /// RFC 9838 §4.7.3: the group cannot take the member (e.g. full).
    #[error("registration failed")]
    RegistrationFailed,
    /// Refused without answer: over the half-open limit.
    #[error("over the half-open limit")]
    Overloaded,
}

impl ProtoError {
    /// The Notify to send in the response, or `None` to stay silent.
    pub fn notify(&self) -> Option<Notify<'static>> {
        let (notify_type, data): (NotifyType, Vec<u8>) = match self {
            ProtoError::Wire(e) => return e.notify(),
            ProtoError::Integrity | ProtoError::MessageId | ProtoError::UnknownSpi | ProtoError::Overloaded => {
                return None;
            }
            ProtoError::PayloadCount(_) | ProtoError::UnexpectedPayload(_) | ProtoError::Invalid(_) => {
                (NotifyType::INVALID_SYNTAX, Vec::new())
            }
            ProtoError::NoProposalChosen => (NotifyType::NO_PROPOSAL_CHOSEN, Vec::new()),
            // RFC 7296 §3.10.1: the data is the accepted group, 2 octets.
            ProtoError::InvalidKePayload(ke) => (NotifyType::INVALID_KE_PAYLOAD, ke.0.to_be_bytes().to_vec()),
            ProtoError::AuthenticationFailed => (NotifyType::AUTHENTICATION_FAILED, Vec::new()),
            ProtoError::TsUnacceptable => (NotifyType::TS_UNACCEPTABLE, Vec::new()),
            ProtoError::InternalAddressFailure => (NotifyType::INTERNAL_ADDRESS_FAILURE, Vec::new()),
            // RFC 8983 §5: the status type says which family to ask for,
            // instead of the catch-all INTERNAL_ADDRESS_FAILURE.
            ProtoError::AddressFamilyNotAllowed(t) => (*t, Vec::new()),
            ProtoError::CookieRequired(c) => (NotifyType::COOKIE, c.clone()),
            ProtoError::TemporaryFailure => (NotifyType::TEMPORARY_FAILURE, Vec::new()),
            ProtoError::ChildSaNotFound => (NotifyType::CHILD_SA_NOT_FOUND, Vec::new()),
            ProtoError::StateNotFound => (NotifyType::STATE_NOT_FOUND, Vec::new()),
            ProtoError::InvalidGroupId => (NotifyType::INVALID_GROUP_ID, Vec::new()),
            ProtoError::AuthorizationFailed => (NotifyType::AUTHORIZATION_FAILED, Vec::new()),
            ProtoError::RegistrationFailed => (NotifyType::REGISTRATION_FAILED, Vec::new()),
            ProtoError::Crypto(ike_crypto::Error::InvalidPeerPublic(_)) => (NotifyType::INVALID_SYNTAX, Vec::new()),
            // Our own key derivation failing is not the peer's fault, but
            // the exchange cannot complete: §2.21 leaves the code to us.
            ProtoError::Crypto(_) => (NotifyType::NO_PROPOSAL_CHOSEN, Vec::new()),
        };
        Some(Notify::new(notify_type, data))
    }

    /// Whether the error ends the IKE SA when it happens in the initial
    /// exchanges (RFC 7296 §2.21.2: any IKE_AUTH failure other than the
    /// Child SA's leaves no IKE SA).
    pub fn is_child_only(&self) -> bool {
        matches!(
            self,
            ProtoError::NoProposalChosen
                | ProtoError::TsUnacceptable
                | ProtoError::InternalAddressFailure
                | ProtoError::AddressFamilyNotAllowed(_)
        )
    }
}
