//! The one error type of the crate. Every variant is something a peer or a
//! configuration can cause; none of them is a bug in this crate (those would
//! be panics, and there are none on untrusted input).

/// Errors from key exchanges, key derivation, SK payload protection,
/// signatures and certificates.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The transform ID is not implemented (or is not valid for this role).
    #[error("unsupported {kind} transform ID {id}")]
    Unsupported { kind: &'static str, id: u16 },
    /// A key length attribute that this transform does not allow.
    #[error("invalid key length {bits} bits for transform ID {id}")]
    KeyLengthAttribute { id: u16, bits: u16 },
    /// The peer's KE data is malformed: wrong length, not on the curve,
    /// out of range (RFC 7296 §2.7 INVALID_SYNTAX / RFC 6989 checks).
    #[error("invalid peer key exchange data: {0}")]
    InvalidPeerPublic(&'static str),
    /// A key exchange step was used out of order (e.g. decapsulating twice).
    #[error("key exchange state: {0}")]
    KeyExchangeState(&'static str),
    /// A key (our own, from configuration or from the key schedule) has the
    /// wrong length or encoding.
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    /// prf+ cannot produce that many octets (RFC 7296 §2.13: 255 blocks).
    #[error("prf+ output of {0} octets exceeds 255 blocks")]
    PrfPlusTooLong(usize),
    /// The SK payload body is too short or not a whole number of blocks.
    #[error("malformed encrypted payload: {0}")]
    MalformedSk(&'static str),
    /// The integrity check (ICV or AEAD tag) did not verify.
    #[error("integrity check failed")]
    IntegrityCheckFailed,
    /// The pad length octet is larger than the decrypted data allows.
    #[error("invalid padding")]
    InvalidPadding,
    /// A signature did not verify.
    #[error("signature verification failed")]
    BadSignature,
    /// A signature scheme does not match the key type.
    #[error("signature scheme does not match the key")]
    SchemeKeyMismatch,
    /// A private key, public key or certificate could not be decoded.
    #[error("cannot decode {0}")]
    Decode(&'static str),
    /// Certificate chain validation failed.
    #[error("certificate chain rejected: {0}")]
    Certificate(#[from] crate::cert::CertError),
    /// Reading a key or certificate file failed.
    #[error("cannot read {path}: {reason}")]
    Io { path: String, reason: String },
}
