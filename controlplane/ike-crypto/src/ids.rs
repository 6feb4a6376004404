//! IANA "Internet Key Exchange Version 2 (IKEv2) Parameters" transform IDs
//! used by this crate, as plain `u16` constants so callers can match the
//! values their codec decodes without this crate depending on the codec.
//!
//! Sources: RFC 7296 §3.3.2, RFC 4868 (PRF/INTEG SHA-2), RFC 5282 (GCM),
//! RFC 7634 (ChaCha20-Poly1305), RFC 3526 (group 14), RFC 5903 (19-21),
//! RFC 8031 (31), draft-ietf-ipsecme-ikev2-mlkem (35-37; strongSwan and
//! libreswan use the same values).

/// Transform Type 1 (ENCR).
pub mod encr {
    pub const AES_CBC: u16 = 12;
    pub const AES_GCM_16: u16 = 20;
    pub const CHACHA20_POLY1305: u16 = 28;
    /// RFC 8750 implicit-IV variants: ESP only, never IKE SK payloads.
    pub const AES_GCM_16_IIV: u16 = 30;
    pub const CHACHA20_POLY1305_IIV: u16 = 31;
}

/// Transform Type 2 (PRF).
pub mod prf {
    pub const HMAC_SHA2_256: u16 = 5;
    pub const HMAC_SHA2_384: u16 = 6;
    pub const HMAC_SHA2_512: u16 = 7;
}

/// Transform Type 3 (INTEG).
pub mod integ {
    pub const NONE: u16 = 0;
    pub const HMAC_SHA2_256_128: u16 = 12;
    pub const HMAC_SHA2_384_192: u16 = 13;
    pub const HMAC_SHA2_512_256: u16 = 14;
}

/// Transform Type 4 (Key Exchange Method), also used by ADDKE1-7 (RFC 9370).
pub mod ke {
    pub const MODP_2048: u16 = 14;
    pub const ECP_256: u16 = 19;
    pub const ECP_384: u16 = 20;
    pub const ECP_521: u16 = 21;
    pub const CURVE25519: u16 = 31;
    pub const ML_KEM_512: u16 = 35;
    pub const ML_KEM_768: u16 = 36;
    pub const ML_KEM_1024: u16 = 37;
}

/// IKEv2 Authentication Method (RFC 7296 §3.8, RFC 7427).
pub mod auth {
    pub const RSA_DIGITAL_SIGNATURE: u16 = 1;
    pub const SHARED_KEY_MIC: u16 = 2;
    pub const ECDSA_SHA256_P256: u16 = 9;
    pub const ECDSA_SHA384_P384: u16 = 10;
    pub const ECDSA_SHA512_P521: u16 = 11;
    pub const DIGITAL_SIGNATURE: u16 = 14;
}

/// RFC 7427 §7 hash algorithm IDs (SIGNATURE_HASH_ALGORITHMS), plus RFC
/// 8420 Identity.
pub mod hash {
    pub const SHA2_256: u16 = 2;
    pub const SHA2_384: u16 = 3;
    pub const SHA2_512: u16 = 4;
    pub const IDENTITY: u16 = 5;
}
