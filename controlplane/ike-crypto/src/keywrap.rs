//! Key wrap for G-IKEv2 Key Download (RFC 9838 §4.5.2, the Key Wrap
//! Algorithm transform, type 13): AES Key Wrap with Padding, RFC 5649, with
//! 128-, 192- and 256-bit key-encryption keys (KW_5649_128/192/256 = 1/2/3).
//!
//! Guarantees: [`wrap`] accepts any key of 1 to [`MAX_WRAPPED_KEY`] octets
//! (RFC 9838: every KWA must wrap up to 256 octets); [`unwrap`] returns the
//! key only when RFC 5649's integrity check (the alternative IV and the
//! padding) passes, so a wrapped key made under another KWK, or altered on the
//! way, is refused. The unwrapped key is a [`Secret`] (zeroized on drop).
//!
//! KW_ARX (4, ARX-KW-8-2-4-GX for ChaCha groups) is not implemented: no kept
//! crate provides it; groups configure an AES KWA.
use aes_kw::{KekAes128, KekAes192, KekAes256};

use crate::error::Error;
use crate::Secret;

/// RFC 9838 §4.4.2.2.3: "Any KWA MUST be able to wrap keys of up to 256
/// octets".
pub const MAX_WRAPPED_KEY: usize = 256;

/// The KWA transform IDs this module implements (RFC 9838 §4.4.2.2.3,
/// IANA "Transform Type 13 - Key Wrap Algorithm Transform IDs").
pub mod kwa {
    pub const KW_5649_128: u16 = 1;
    pub const KW_5649_192: u16 = 2;
    pub const KW_5649_256: u16 = 3;
}

/// The KWK length in octets of a KWA, `None` if it is not implemented here.
pub fn kwk_len(kwa_id: u16) -> Option<usize> {
    match kwa_id {
        kwa::KW_5649_128 => Some(16),
        kwa::KW_5649_192 => Some(24),
        kwa::KW_5649_256 => Some(32),
        _ => None,
    }
}

/// The wrapped length RFC 5649 produces for a key of `key_len` octets: the
/// key padded to a multiple of 8, plus the 8-octet AIV.
pub fn wrapped_len(key_len: usize) -> usize {
    key_len.div_ceil(8) * 8 + 8
}

/// Wraps `key` under `kwk` with KWA `kwa_id` (RFC 5649 §4.1).
pub fn wrap(kwa_id: u16, kwk: &[u8], key: &[u8]) -> Result<Vec<u8>, Error> {
    if key.is_empty() || key.len() > MAX_WRAPPED_KEY {
        return Err(Error::InvalidKey("key to wrap"));
    }
    if kwk_len(kwa_id) != Some(kwk.len()) {
        return Err(Error::InvalidKey("key wrap KWK"));
    }
    let r = match kwa_id {
        kwa::KW_5649_128 => KekAes128::try_from(kwk).map_err(|_| Error::InvalidKey("KWK"))?.wrap_with_padding_vec(key),
        kwa::KW_5649_192 => KekAes192::try_from(kwk).map_err(|_| Error::InvalidKey("KWK"))?.wrap_with_padding_vec(key),
        kwa::KW_5649_256 => KekAes256::try_from(kwk).map_err(|_| Error::InvalidKey("KWK"))?.wrap_with_padding_vec(key),
        _ => return Err(Error::Unsupported { kind: "KWA", id: kwa_id }),
    };
    r.map_err(|_| Error::InvalidKey("key to wrap"))
}

/// Unwraps `wrapped` under `kwk` (RFC 5649 §4.2); fails when the integrity
/// check does not pass.
pub fn unwrap(kwa_id: u16, kwk: &[u8], wrapped: &[u8]) -> Result<Secret, Error> {
    if kwk_len(kwa_id) != Some(kwk.len()) {
        return Err(Error::InvalidKey("key wrap KWK"));
    }
    if wrapped.len() < 16 || wrapped.len() & 7 != 0 || wrapped.len() > wrapped_len(MAX_WRAPPED_KEY) {
        return Err(Error::InvalidKey("wrapped key"));
    }
    let r = match kwa_id {
        kwa::KW_5649_128 => KekAes128::try_from(kwk).map_err(|_| Error::InvalidKey("KWK"))?.unwrap_with_padding_vec(wrapped),
        kwa::KW_5649_192 => KekAes192::try_from(kwk).map_err(|_| Error::InvalidKey("KWK"))?.unwrap_with_padding_vec(wrapped),
        kwa::KW_5649_256 => KekAes256::try_from(kwk).map_err(|_| Error::InvalidKey("KWK"))?.unwrap_with_padding_vec(wrapped),
        _ => return Err(Error::Unsupported { kind: "KWA", id: kwa_id }),
    };
    r.map(Secret::new).map_err(|_| Error::IntegrityCheckFailed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    /// RFC 5649 §6, first example: a 20-octet key under a 192-bit KEK.
    #[test]
    fn rfc5649_section6_20_octets() {
        let kek = h("5840df6e29b02af1 ab493b705bf16ea1 ae8338f4dcc176a8");
        let key = h("c37b7e6492584340 bed1220780894115 5068f738");
        let wrapped = h("138bdeaa9b8fa7fc 61f97742e72248ee 5ae6ae5360d1ae6a 5f54f373fa543b6a");
        assert_eq!(wrap(kwa::KW_5649_192, &kek, &key).unwrap(), wrapped);
        assert_eq!(unwrap(kwa::KW_5649_192, &kek, &wrapped).unwrap().as_slice(), &key[..]);
    }

    /// RFC 5649 §6, second example: a 7-octet key (one 64-bit block).
    #[test]
    fn rfc5649_section6_7_octets() {
        let kek = h("5840df6e29b02af1 ab493b705bf16ea1 ae8338f4dcc176a8");
        let key = h("466f7250617369");
        let wrapped = h("afbeb0f07dfbf541 9200f2ccb50bb24f");
        assert_eq!(wrap(kwa::KW_5649_192, &kek, &key).unwrap(), wrapped);
        assert_eq!(unwrap(kwa::KW_5649_192, &kek, &wrapped).unwrap().as_slice(), &key[..]);
    }

    #[test]
    fn refuses_a_key_wrapped_under_another_kwk_or_altered() {
        let kwk = [7u8; 32];
        let key = [9u8; 36];
        let mut w = wrap(kwa::KW_5649_256, &kwk, &key).unwrap();
        assert_eq!(w.len(), wrapped_len(36));
        assert!(unwrap(kwa::KW_5649_256, &[8u8; 32], &w).is_err());
        w[5] ^= 1;
        assert!(unwrap(kwa::KW_5649_256, &kwk, &w).is_err());
    }

    #[test]
    fn wraps_up_to_256_octets_in_every_size() {
        for (id, len) in [(kwa::KW_5649_128, 16), (kwa::KW_5649_192, 24), (kwa::KW_5649_256, 32)] {
            let kwk = vec![3u8; len];
            for n in [1, 8, 20, 36, 255, MAX_WRAPPED_KEY] {
                let key: Vec<u8> = (0..n).map(|i| i as u8).collect();
                let w = wrap(id, &kwk, &key).unwrap();
                assert_eq!(unwrap(id, &kwk, &w).unwrap().as_slice(), &key[..]);
            }
            assert!(wrap(id, &kwk, &[0u8; MAX_WRAPPED_KEY + 1]).is_err());
            assert!(wrap(id, &kwk, &[]).is_err());
        }
        assert!(wrap(kwa::KW_5649_128, &[0u8; 32], &[1u8; 16]).is_err());
    }
}
