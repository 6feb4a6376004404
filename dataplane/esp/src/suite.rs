//! ESP AEAD suites: AES-GCM with a 16-octet ICV and a 128, 192 or 256-bit
//! key (RFC 4106, transform 20; the Key Length attribute of RFC 5282 §7.2),
//! ChaCha20-Poly1305 (RFC 7634, transform 28), and their implicit-IV forms
//! (RFC 8750, transforms 30 and 31). For all of them: KEYMAT = key | 4-octet
//! salt, nonce = salt | IV (8), AAD = SPI | SN or SPI | SN-high | SN-low,
//! ICV 16 octets, block size 1 so padding only serves the 4-octet alignment
//! of RFC 4303 §2.4.

/// IKEv2 Transform Type 1 (Encryption Algorithm) identifier. A newtype so
/// unknown values round-trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransformId(pub u16);

impl TransformId {
    /// RFC 4106 / RFC 5282 §7.2.
    pub const ENCR_AES_GCM_16: Self = Self(20);
    /// RFC 7634 §4.
    pub const ENCR_CHACHA20_POLY1305: Self = Self(28);
    /// RFC 8750 §4.
    pub const ENCR_AES_GCM_16_IIV: Self = Self(30);
    /// RFC 8750 §4.
    pub const ENCR_CHACHA20_POLY1305_IIV: Self = Self(31);
}

/// The AEAD primitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cipher {
    Aes128Gcm,
    Aes192Gcm,
    Aes256Gcm,
    ChaCha20Poly1305,
}

impl Cipher {
    pub const fn key_len(self) -> usize {
        match self {
            Cipher::Aes128Gcm => 16,
            Cipher::Aes192Gcm => 24,
            Cipher::Aes256Gcm | Cipher::ChaCha20Poly1305 => 32,
        }
    }
}

/// A negotiated ESP suite: a cipher and whether the IV is implicit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Suite {
    pub cipher: Cipher,
    /// RFC 8750 implicit IV: no IV on the wire, nonce built from the SN.
    pub iiv: bool,
}

/// Length of the salt at the end of KEYMAT (RFC 4106 §8.1, RFC 7634 §3).
pub const SALT_LEN: usize = 4;
/// Explicit IV length (RFC 4106 §3.1, RFC 7634 §2).
pub const EXPLICIT_IV_LEN: usize = 8;
/// ICV length of every suite here.
pub const ICV_LEN: usize = 16;
/// AEAD nonce length: salt | IV.
pub const NONCE_LEN: usize = 12;

impl Suite {
    pub const AES128_GCM_16: Self = Self {
        cipher: Cipher::Aes128Gcm,
        iiv: false,
    };
    pub const AES192_GCM_16: Self = Self {
        cipher: Cipher::Aes192Gcm,
        iiv: false,
    };
    pub const AES256_GCM_16: Self = Self {
        cipher: Cipher::Aes256Gcm,
        iiv: false,
    };
    pub const CHACHA20_POLY1305: Self = Self {
        cipher: Cipher::ChaCha20Poly1305,
        iiv: false,
    };
    pub const AES128_GCM_16_IIV: Self = Self {
        cipher: Cipher::Aes128Gcm,
        iiv: true,
    };
    pub const AES192_GCM_16_IIV: Self = Self {
        cipher: Cipher::Aes192Gcm,
        iiv: true,
    };
    pub const AES256_GCM_16_IIV: Self = Self {
        cipher: Cipher::Aes256Gcm,
        iiv: true,
    };
    pub const CHACHA20_POLY1305_IIV: Self = Self {
        cipher: Cipher::ChaCha20Poly1305,
        iiv: true,
    };

    /// Every suite implemented.
    pub const ALL: [Suite; 8] = [
        Self::AES128_GCM_16,
        Self::AES192_GCM_16,
        Self::AES256_GCM_16,
        Self::CHACHA20_POLY1305,
        Self::AES128_GCM_16_IIV,
        Self::AES192_GCM_16_IIV,
        Self::AES256_GCM_16_IIV,
        Self::CHACHA20_POLY1305_IIV,
    ];

    /// From an IKEv2 transform and its Key Length attribute (bits; AES only).
    pub fn from_transform(id: TransformId, key_bits: Option<u16>) -> Option<Self> {
        let aes = |iiv| match key_bits {
            Some(128) => Some(Self {
                cipher: Cipher::Aes128Gcm,
                iiv,
            }),
            Some(192) => Some(Self {
                cipher: Cipher::Aes192Gcm,
                iiv,
            }),
            Some(256) => Some(Self {
                cipher: Cipher::Aes256Gcm,
                iiv,
            }),
            _ => None,
        };
        match (id, key_bits) {
            (TransformId::ENCR_AES_GCM_16, _) => aes(false),
            (TransformId::ENCR_AES_GCM_16_IIV, _) => aes(true),
            (TransformId::ENCR_CHACHA20_POLY1305, None | Some(256)) => {
                Some(Self::CHACHA20_POLY1305)
            }
            (TransformId::ENCR_CHACHA20_POLY1305_IIV, None | Some(256)) => {
                Some(Self::CHACHA20_POLY1305_IIV)
            }
            _ => None,
        }
    }

    pub const fn transform_id(self) -> TransformId {
        match (self.cipher, self.iiv) {
            (Cipher::ChaCha20Poly1305, false) => TransformId::ENCR_CHACHA20_POLY1305,
            (Cipher::ChaCha20Poly1305, true) => TransformId::ENCR_CHACHA20_POLY1305_IIV,
            (_, false) => TransformId::ENCR_AES_GCM_16,
            (_, true) => TransformId::ENCR_AES_GCM_16_IIV,
        }
    }

    pub const fn key_len(self) -> usize {
        self.cipher.key_len()
    }

    /// Key plus salt.
    pub const fn keymat_len(self) -> usize {
        self.cipher.key_len() + SALT_LEN
    }

    /// IV octets carried on the wire: 8, or 0 with RFC 8750.
    pub const fn iv_len(self) -> usize {
        if self.iiv {
            0
        } else {
            EXPLICIT_IV_LEN
        }
    }

    pub const fn icv_len(self) -> usize {
        ICV_LEN
    }

    /// Padding alignment (RFC 4303 §2.4: block size 1, so 4-octet alignment).
    pub const fn align(self) -> usize {
        4
    }

    pub const fn name(self) -> &'static str {
        match (self.cipher, self.iiv) {
            (Cipher::Aes128Gcm, false) => "aes128gcm16",
            (Cipher::Aes192Gcm, false) => "aes192gcm16",
            (Cipher::Aes256Gcm, false) => "aes256gcm16",
            (Cipher::ChaCha20Poly1305, false) => "chacha20poly1305",
            (Cipher::Aes128Gcm, true) => "aes128gcm16-iiv",
            (Cipher::Aes192Gcm, true) => "aes192gcm16-iiv",
            (Cipher::Aes256Gcm, true) => "aes256gcm16-iiv",
            (Cipher::ChaCha20Poly1305, true) => "chacha20poly1305-iiv",
        }
    }
}

/// Key material for one direction of a Child SA: key | salt. Zeroed on drop
/// (volatile writes, `zeroize`); its `Debug` shows only the length.
#[derive(Clone)]
pub struct Keymat {
    bytes: [u8; 36],
    len: u8,
}

impl Keymat {
    /// `bytes` must be `suite.keymat_len()` long.
    pub fn new(suite: Suite, bytes: &[u8]) -> Option<Self> {
        if bytes.len() != suite.keymat_len() {
            return None;
        }
        let mut k = Self {
            bytes: [0; 36],
            len: bytes.len() as u8,
        };
        k.bytes[..bytes.len()].copy_from_slice(bytes);
        Some(k)
    }

    pub fn key(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len) - SALT_LEN]
    }

    pub fn salt(&self) -> [u8; SALT_LEN] {
        let l = usize::from(self.len);
        let mut s = [0u8; SALT_LEN];
        s.copy_from_slice(&self.bytes[l - SALT_LEN..l]);
        s
    }
}

impl core::fmt::Debug for Keymat {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Keymat({} octets, redacted)", self.len)
    }
}

impl Drop for Keymat {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.bytes);
    }
}

impl zeroize::ZeroizeOnDrop for Keymat {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_transform_ids_both_ways() {
        for s in Suite::ALL {
            let bits = match s.cipher {
                Cipher::Aes128Gcm => Some(128),
                Cipher::Aes192Gcm => Some(192),
                Cipher::Aes256Gcm => Some(256),
                Cipher::ChaCha20Poly1305 => None,
            };
            assert_eq!(Suite::from_transform(s.transform_id(), bits), Some(s));
        }
        // RFC 5282 §7.2: 128, 192 or 256 bits, nothing else.
        assert_eq!(
            Suite::from_transform(TransformId::ENCR_AES_GCM_16, Some(192)),
            Some(Suite::AES192_GCM_16)
        );
        assert_eq!(
            Suite::from_transform(TransformId::ENCR_AES_GCM_16_IIV, Some(192)),
            Some(Suite::AES192_GCM_16_IIV)
        );
        for bits in [None, Some(0), Some(64), Some(160), Some(512)] {
            assert_eq!(Suite::from_transform(TransformId::ENCR_AES_GCM_16, bits), None);
        }
        assert_eq!(Suite::AES192_GCM_16.keymat_len(), 28);
        assert_eq!(Suite::from_transform(TransformId(18), Some(128)), None);
        assert_eq!(Suite::AES128_GCM_16_IIV.transform_id().0, 30);
        assert_eq!(Suite::CHACHA20_POLY1305_IIV.transform_id().0, 31);
    }

    #[test]
    fn splits_keymat_into_key_and_salt() {
        let k = Keymat::new(Suite::AES128_GCM_16, &[7; 20]).unwrap();
        assert_eq!(k.key(), &[7; 16]);
        assert_eq!(k.salt(), [7; 4]);
        assert!(Keymat::new(Suite::AES128_GCM_16, &[7; 16]).is_none());
        assert!(!format!("{k:?}").contains('7'));
    }
}
