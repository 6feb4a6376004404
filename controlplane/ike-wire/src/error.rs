//! Why bytes are not an IKEv2 message, and which Notify answers it.
//!
//! The enum is small and `Copy`; [`Error::notify_type`] is the one place that
//! maps a syntax failure to the Notify an endpoint would send (RFC 7296 §2.21.1,
//! §3.10.1). Whether to send it at all (never in reply to a response, never
//! unprotected after IKE_SA_INIT, ...) is a protocol decision taken in
//! `ike-proto`, not here.
use crate::payload::Notify;
use crate::registry::{NotifyType, PayloadType, ProtocolId};

/// A parse (or emit) failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Error {
    /// The data ends before a field, or before the end a length field promises.
    #[error("truncated")]
    Truncated,
    /// Bytes are left after a structure that should have ended (a length field
    /// larger than its contents, a count smaller than the list, data after the
    /// last payload).
    #[error("trailing bytes")]
    TrailingBytes,
    /// A field holds a value the format forbids; the text names the field.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// The IKE header's major version is not 2 (RFC 7296 §2.5, §3.1).
    #[error("unsupported major version {0}")]
    UnsupportedMajorVersion(u8),
    /// The IKE header's Length field is not the datagram length (RFC 7296 §3.1).
    #[error("IKE header length {header} but {datagram} octets received")]
    LengthMismatch { header: u32, datagram: usize },
    /// SPIi is zero, or SPIr is non-zero in an IKE_SA_INIT request (RFC 7296 §3.1).
    #[error("invalid IKE SPI")]
    InvalidIkeSpi,
    /// IKE_SA_INIT with a Message ID other than 0 (RFC 7296 §2.2).
    #[error("invalid message ID")]
    InvalidMessageId,
    /// A payload type this crate does not know, sent with the critical bit
    /// (RFC 7296 §2.5): the whole message is rejected.
    #[error("unsupported critical payload {0:?}")]
    UnsupportedCriticalPayload(PayloadType),
    /// An SK or SKF payload that is not the last payload (RFC 7296 §3.14,
    /// RFC 7383 §2.5).
    #[error("encrypted payload is not the last payload")]
    EncryptedNotLast,
    /// SK or SKF inside decrypted content (RFC 7296 §3: "MUST NOT contain
    /// another Encrypted payload").
    #[error("nested encrypted payload")]
    NestedEncrypted,
    /// SKF numbering out of range (RFC 7383 §2.6: zero, or Number > Total).
    #[error("invalid fragment numbering")]
    InvalidFragment,
    /// A UDP 4500 datagram that does not start with the non-ESP marker
    /// (RFC 3948 §2.2): ESP or a NAT-keepalive, not IKE.
    #[error("not an IKE message (no non-ESP marker)")]
    NotIke,
    /// Emitting: a value does not fit its length or count field.
    #[error("value too long for its length field")]
    TooLong,
}

/// Result with this crate's [`Error`].
pub type Result<T> = core::result::Result<T, Error>;

impl Error {
    /// The Notify type to answer this error with, or `None` where the RFCs say
    /// to drop the message silently (or the error is local).
    pub fn notify_type(&self) -> Option<NotifyType> {
        match self {
            Error::Truncated
            | Error::TrailingBytes
            | Error::Malformed(_)
            | Error::LengthMismatch { .. }
            | Error::EncryptedNotLast
            | Error::NestedEncrypted => Some(NotifyType::INVALID_SYNTAX),
            // RFC 7296 §2.5: "reply with INVALID_MAJOR_VERSION".
            Error::UnsupportedMajorVersion(_) => Some(NotifyType::INVALID_MAJOR_VERSION),
            // RFC 7296 §2.5 / §3.2.
            Error::UnsupportedCriticalPayload(_) => Some(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD),
            // RFC 7296 §2.21.1: there is no IKE SA to answer for; drop.
            Error::InvalidIkeSpi | Error::InvalidMessageId => None,
            // RFC 7383 §2.6: invalid fragments are silently discarded.
            Error::InvalidFragment => None,
            Error::NotIke | Error::TooLong => None,
        }
    }

    /// The whole Notify payload to send, with its data where the RFC defines
    /// one: UNSUPPORTED_CRITICAL_PAYLOAD carries the one-octet payload type
    /// (RFC 7296 §3.10.1); INVALID_MAJOR_VERSION and INVALID_SYNTAX carry none.
    pub fn notify(&self) -> Option<Notify<'static>> {
        let notify_type = self.notify_type()?;
        let data = match self {
            Error::UnsupportedCriticalPayload(t) => vec![t.0],
            _ => Vec::new(),
        };
        Some(Notify {
            protocol_id: ProtocolId::NONE,
            spi: Vec::new().into(),
            notify_type,
            data: data.into(),
        })
    }
}
