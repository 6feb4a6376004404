//! Signatures for IKEv2 authentication (AUTH payload).
//!
//! Implements RFC 7427 "Digital Signature" authentication (method 14): the
//! AUTH data is `ASN.1 Length (1 octet) | AlgorithmIdentifier | Signature
//! Value` ([`auth_data`], [`parse_auth_data`]), with the AlgorithmIdentifier
//! blobs of RFC 7427 Appendix A (A.1 PKCS#1 v1.5, A.3 ECDSA, A.4.3
//! RSASSA-PSS with SHA-2: hash = MGF1 hash, salt = hash length) and RFC 8420
//! for Ed25519 (pure EdDSA, hash "Identity"). ECDSA signature values are the
//! DER Ecdsa-Sig-Value, as RFC 7427 peers (strongSwan, libreswan) send.
//!
//! [`Signer`] and [`Verifier`] are the traits the protocol core holds; the
//! implementations are [`PrivateKey`] (Ed25519, ECDSA P-256/P-384, RSA)
//! loaded from PKCS#8 PEM/DER, and [`PublicKey`] from a SubjectPublicKeyInfo
//! (e.g. a peer certificate, see [`crate::cert`]).
//!
//! Guarantees: verification of untrusted signatures returns
//! [`Error::BadSignature`] or [`Error::SchemeKeyMismatch`], never panics;
//! the AlgorithmIdentifier lookup is an exact byte match, so an unknown or
//! differently-parameterised algorithm is refused rather than guessed.
//! RSA private-key operations use blinding (rsa crate); ECDSA nonces are
//! RFC 6979 deterministic (p256/p384; signing stays there for that, DESIGN.md
//! §5); P-256 signatures with SHA-256 or SHA-384 are verified by ring, the
//! rest by RustCrypto; private keys zeroize on drop.

use std::path::Path;

use pkcs8::{DecodePrivateKey, DecodePublicKey};
use rand_core::CryptoRngCore;
use rsa::signature::hazmat::PrehashVerifier as _;
use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer as _, Verifier as _};
use sha2::{Sha256, Sha384, Sha512};

use crate::{ids, Error};

/// A signature scheme usable for IKEv2 AUTH, named by its RFC 7427
/// AlgorithmIdentifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignatureScheme {
    /// Ed25519, pure (RFC 8420).
    Ed25519,
    /// ECDSA on P-256 with SHA-256 (ecdsa-with-SHA256).
    EcdsaP256Sha256,
    /// ECDSA on P-384 with SHA-384 (ecdsa-with-SHA384).
    EcdsaP384Sha384,
    /// RSASSA-PKCS1-v1_5 (sha256WithRSAEncryption etc.).
    RsaPkcs1Sha256,
    RsaPkcs1Sha384,
    RsaPkcs1Sha512,
    /// RSASSA-PSS, MGF1 with the same hash, salt length = hash length.
    RsaPssSha256,
    RsaPssSha384,
    RsaPssSha512,
    /// ECDSA with SHA-512 (ecdsa-with-SHA512) on either curve. RFC 7427's
    /// AlgorithmIdentifier names the hash only, the curve is the key's:
    /// libreswan signs P-256 with SHA-512 when SHA2_512 was announced. Only
    /// verified; we sign with the curve's own hash.
    EcdsaSha512,
}

/// RFC 7427 Appendix A.1.2-A.1.4: sha{256,384,512}WithRSAEncryption.
const RSA_PKCS1_SHA256: &[u8] = &[0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00];
const RSA_PKCS1_SHA384: &[u8] = &[0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c, 0x05, 0x00];
const RSA_PKCS1_SHA512: &[u8] = &[0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d, 0x05, 0x00];
/// RFC 7427 Appendix A.3.2-A.3.3: ecdsa-with-SHA256/384.
const ECDSA_SHA256: &[u8] = &[0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
const ECDSA_SHA384: &[u8] = &[0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
/// ecdsa-with-SHA512 (OID 1.2.840.10045.4.3.4, RFC 5758 §3.2) in the form of
/// RFC 7427 Appendix A.3.
const ECDSA_SHA512: &[u8] = &[0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04];
/// RFC 8420 §2 (RFC 8410 id-Ed25519, no parameters).
const ED25519: &[u8] = &[0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];

/// RFC 7427 Appendix A.4.3 RSASSA-PSS with SHA-256 (hashAlgorithm
/// sha256 with NULL parameters, maskGenAlgorithm MGF1 with sha256,
/// saltLength 32); the SHA-384/512 forms differ only in the hash OID's last
/// octet and the salt length (48, 64), as libreswan's ietf_constants.h
/// carries them.
const fn pss(hash_oid_last: u8, salt: u8) -> [u8; 67] {
    [
        0x30, 0x41, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a, 0x30, 0x34, 0xa0, 0x0f, 0x30,
        0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, hash_oid_last, 0x05, 0x00, 0xa1, 0x1c,
        0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08, 0x30, 0x0d, 0x06, 0x09, 0x60,
        0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, hash_oid_last, 0x05, 0x00, 0xa2, 0x03, 0x02, 0x01, salt,
    ]
}
const RSA_PSS_SHA256: [u8; 67] = pss(0x01, 32);
const RSA_PSS_SHA384: [u8; 67] = pss(0x02, 48);
const RSA_PSS_SHA512: [u8; 67] = pss(0x03, 64);

impl SignatureScheme {
    /// Every scheme, in a stable order.
    pub const ALL: [SignatureScheme; 10] = [
        SignatureScheme::Ed25519,
        SignatureScheme::EcdsaP256Sha256,
        SignatureScheme::EcdsaP384Sha384,
        SignatureScheme::RsaPkcs1Sha256,
        SignatureScheme::RsaPkcs1Sha384,
        SignatureScheme::RsaPkcs1Sha512,
        SignatureScheme::RsaPssSha256,
        SignatureScheme::RsaPssSha384,
        SignatureScheme::RsaPssSha512,
        SignatureScheme::EcdsaSha512,
    ];

    /// The DER AlgorithmIdentifier (RFC 7427 Appendix A, RFC 8420), without
    /// the AUTH payload's length octet.
    pub fn algorithm_identifier(self) -> &'static [u8] {
        match self {
            SignatureScheme::Ed25519 => ED25519,
            SignatureScheme::EcdsaP256Sha256 => ECDSA_SHA256,
            SignatureScheme::EcdsaP384Sha384 => ECDSA_SHA384,
            SignatureScheme::RsaPkcs1Sha256 => RSA_PKCS1_SHA256,
            SignatureScheme::RsaPkcs1Sha384 => RSA_PKCS1_SHA384,
            SignatureScheme::RsaPkcs1Sha512 => RSA_PKCS1_SHA512,
            SignatureScheme::RsaPssSha256 => &RSA_PSS_SHA256,
            SignatureScheme::RsaPssSha384 => &RSA_PSS_SHA384,
            SignatureScheme::RsaPssSha512 => &RSA_PSS_SHA512,
            SignatureScheme::EcdsaSha512 => ECDSA_SHA512,
        }
    }

    /// The scheme whose AlgorithmIdentifier is exactly `der`, if any.
    pub fn from_algorithm_identifier(der: &[u8]) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.algorithm_identifier() == der)
    }

    /// The RFC 7427 §7 hash algorithm ID to announce in
    /// SIGNATURE_HASH_ALGORITHMS (Identity = 5 for Ed25519, RFC 8420).
    pub fn hash_algorithm_id(self) -> u16 {
        match self {
            SignatureScheme::Ed25519 => ids::hash::IDENTITY,
            SignatureScheme::EcdsaP256Sha256 | SignatureScheme::RsaPkcs1Sha256 | SignatureScheme::RsaPssSha256 => ids::hash::SHA2_256,
            SignatureScheme::EcdsaP384Sha384 | SignatureScheme::RsaPkcs1Sha384 | SignatureScheme::RsaPssSha384 => ids::hash::SHA2_384,
            SignatureScheme::RsaPkcs1Sha512 | SignatureScheme::RsaPssSha512 | SignatureScheme::EcdsaSha512 => ids::hash::SHA2_512,
        }
    }
}

/// RFC 7427 §3 AUTH data for method 14: `len(AlgId) | AlgId | signature`.
pub fn auth_data(scheme: SignatureScheme, signature: &[u8]) -> Vec<u8> {
    let alg = scheme.algorithm_identifier();
    let mut out = Vec::with_capacity(1 + alg.len() + signature.len());
    // Every AlgorithmIdentifier above is shorter than 256 octets.
    out.push(alg.len() as u8);
    out.extend_from_slice(alg);
    out.extend_from_slice(signature);
    out
}

/// Split RFC 7427 AUTH data into the scheme and the signature value.
pub fn parse_auth_data(data: &[u8]) -> Result<(SignatureScheme, &[u8]), Error> {
    let (&len, rest) = data.split_first().ok_or(Error::Decode("empty RFC 7427 AUTH data"))?;
    let len = usize::from(len);
    if rest.len() < len {
        return Err(Error::Decode("RFC 7427 AlgorithmIdentifier longer than the AUTH data"));
    }
    let (alg, sig) = rest.split_at(len);
    let scheme = SignatureScheme::from_algorithm_identifier(alg).ok_or(Error::Decode("unknown RFC 7427 AlgorithmIdentifier"))?;
    Ok((scheme, sig))
}

/// Something that can sign AUTH octets: a local private key, or (later) an
/// HSM or a remote signer.
pub trait Signer: Send + Sync {
    /// The schemes this key can produce, preferred first.
    fn schemes(&self) -> Vec<SignatureScheme>;
    /// Sign `message` (the InitiatorSignedOctets or ResponderSignedOctets).
    fn sign(&self, scheme: SignatureScheme, message: &[u8], rng: &mut dyn CryptoRngCore) -> Result<Vec<u8>, Error>;
}

/// Something that can check a peer's AUTH signature.
pub trait Verifier: Send + Sync {
    /// Check `signature` over `message` with `scheme`.
    fn verify(&self, scheme: SignatureScheme, message: &[u8], signature: &[u8]) -> Result<(), Error>;
}

/// A private key loaded from PKCS#8.
pub enum PrivateKey {
    Ed25519(ed25519_dalek::SigningKey),
    /// The key, and the same scalar for p256 0.14, which signs (see
    /// Cargo.toml: a tabled k·G, the same RFC 6979 signatures).
    EcdsaP256(p256::ecdsa::SigningKey, Box<p256_sign::ecdsa::SigningKey>),
    EcdsaP384(p384::ecdsa::SigningKey),
    Rsa(Box<rsa::RsaPrivateKey>),
}

impl core::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let kind = match self {
            PrivateKey::Ed25519(_) => "Ed25519",
            PrivateKey::EcdsaP256(..) => "ECDSA P-256",
            PrivateKey::EcdsaP384(_) => "ECDSA P-384",
            PrivateKey::Rsa(_) => "RSA",
        };
        write!(f, "PrivateKey({kind})")
    }
}

/// Read a file, mapping the error to [`Error::Io`].
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::Io { path: path.display().to_string(), reason: e.to_string() })
}

/// PEM (any label) or raw DER: returns DER.
pub(crate) fn pem_or_der(bytes: &[u8], expected_label: &[&str]) -> Result<Vec<u8>, Error> {
    if bytes.starts_with(b"-----BEGIN") {
        let (label, der) = der::pem::decode_vec(bytes).map_err(|_| Error::Decode("PEM"))?;
        if !expected_label.contains(&label) {
            return Err(Error::Decode("unexpected PEM label"));
        }
        Ok(der)
    } else {
        Ok(bytes.to_vec())
    }
}

impl PrivateKey {
    /// From a PKCS#8 PrivateKeyInfo (DER). RSA, EC (P-256, P-384) and
    /// Ed25519 keys are recognised by their algorithm OIDs.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, Error> {
        let info = pkcs8::PrivateKeyInfo::try_from(der).map_err(|_| Error::Decode("PKCS#8 private key"))?;
        let oid = info.algorithm.oid;
        if oid == pkcs8::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1") {
            let key = rsa::RsaPrivateKey::from_pkcs8_der(der).map_err(|_| Error::Decode("RSA private key"))?;
            return Ok(PrivateKey::Rsa(Box::new(key)));
        }
        if oid == pkcs8::ObjectIdentifier::new_unwrap("1.3.101.112") {
            let key = ed25519_dalek::SigningKey::from_pkcs8_der(der).map_err(|_| Error::Decode("Ed25519 private key"))?;
            return Ok(PrivateKey::Ed25519(key));
        }
        if let Ok(k) = p256::SecretKey::from_pkcs8_der(der) {
            let signer = p256_sign::ecdsa::SigningKey::from_slice(&zeroize::Zeroizing::new(k.to_bytes())).map_err(|_| Error::Decode("EC private key"))?;
            return Ok(PrivateKey::EcdsaP256(k.into(), Box::new(signer)));
        }
        if let Ok(k) = p384::SecretKey::from_pkcs8_der(der) {
            return Ok(PrivateKey::EcdsaP384(k.into()));
        }
        Err(Error::Decode("unsupported private key algorithm (RSA, P-256, P-384, Ed25519)"))
    }

    /// From PKCS#8 in PEM ("PRIVATE KEY") or DER.
    pub fn from_pkcs8(bytes: &[u8]) -> Result<Self, Error> {
        Self::from_pkcs8_der(&zeroize::Zeroizing::new(pem_or_der(bytes, &["PRIVATE KEY"])?))
    }

    /// Load a PKCS#8 PEM or DER file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, Error> {
        let bytes = zeroize::Zeroizing::new(read_file(path.as_ref())?);
        Self::from_pkcs8(&bytes)
    }

    /// An Ed25519 key from its 32-octet secret (RFC 8032 test vectors).
    pub fn ed25519_from_secret(secret: &[u8]) -> Result<Self, Error> {
        let bytes: [u8; 32] = secret.try_into().map_err(|_| Error::InvalidKey("Ed25519 secret must be 32 octets"))?;
        Ok(PrivateKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&bytes)))
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        match self {
            PrivateKey::Ed25519(k) => PublicKey::Ed25519(k.verifying_key()),
            PrivateKey::EcdsaP256(k, _) => PublicKey::EcdsaP256(*k.verifying_key()),
            PrivateKey::EcdsaP384(k) => PublicKey::EcdsaP384(*k.verifying_key()),
            PrivateKey::Rsa(k) => PublicKey::Rsa(Box::new(k.to_public_key())),
        }
    }
}

impl Signer for PrivateKey {
    fn schemes(&self) -> Vec<SignatureScheme> {
        use SignatureScheme::*;
        match self {
            PrivateKey::Ed25519(_) => vec![Ed25519],
            PrivateKey::EcdsaP256(..) => vec![EcdsaP256Sha256],
            PrivateKey::EcdsaP384(_) => vec![EcdsaP384Sha384],
            PrivateKey::Rsa(_) => vec![RsaPssSha256, RsaPssSha384, RsaPssSha512, RsaPkcs1Sha256, RsaPkcs1Sha384, RsaPkcs1Sha512],
        }
    }

    fn sign(&self, scheme: SignatureScheme, message: &[u8], rng: &mut dyn CryptoRngCore) -> Result<Vec<u8>, Error> {
        use SignatureScheme as S;
        let fail = |_| Error::InvalidKey("signing failed");
        let mut rng = &mut *rng;
        Ok(match (self, scheme) {
            (PrivateKey::Ed25519(k), S::Ed25519) => k.try_sign(message).map_err(fail)?.to_vec(),
            (PrivateKey::EcdsaP256(_, k), S::EcdsaP256Sha256) => {
                use p256_sign::ecdsa::signature::Signer as _;
                let sig: p256_sign::ecdsa::Signature = k.try_sign(message).map_err(|_| Error::InvalidKey("signing failed"))?;
                sig.to_der().as_bytes().to_vec()
            }
            (PrivateKey::EcdsaP384(k), S::EcdsaP384Sha384) => {
                let sig: p384::ecdsa::Signature = k.try_sign(message).map_err(fail)?;
                sig.to_der().as_bytes().to_vec()
            }
            (PrivateKey::Rsa(k), S::RsaPkcs1Sha256) => {
                // With an RNG the rsa crate blinds the private-key operation.
                rsa::pkcs1v15::SigningKey::<Sha256>::new((**k).clone()).try_sign_with_rng(&mut rng, message).map_err(fail)?.to_vec()
            }
            (PrivateKey::Rsa(k), S::RsaPkcs1Sha384) => {
                // With an RNG the rsa crate blinds the private-key operation.
                rsa::pkcs1v15::SigningKey::<Sha384>::new((**k).clone()).try_sign_with_rng(&mut rng, message).map_err(fail)?.to_vec()
            }
            (PrivateKey::Rsa(k), S::RsaPkcs1Sha512) => {
                // With an RNG the rsa crate blinds the private-key operation.
                rsa::pkcs1v15::SigningKey::<Sha512>::new((**k).clone()).try_sign_with_rng(&mut rng, message).map_err(fail)?.to_vec()
            }
            (PrivateKey::Rsa(k), S::RsaPssSha256) => {
                rsa::pss::BlindedSigningKey::<Sha256>::new((**k).clone()).try_sign_with_rng(&mut rng, message).map_err(fail)?.to_vec()
            }
            (PrivateKey::Rsa(k), S::RsaPssSha384) => {
                rsa::pss::BlindedSigningKey::<Sha384>::new((**k).clone()).try_sign_with_rng(&mut rng, message).map_err(fail)?.to_vec()
            }
            (PrivateKey::Rsa(k), S::RsaPssSha512) => {
                rsa::pss::BlindedSigningKey::<Sha512>::new((**k).clone()).try_sign_with_rng(&mut rng, message).map_err(fail)?.to_vec()
            }
            _ => return Err(Error::SchemeKeyMismatch),
        })
    }
}

/// A public key for verifying AUTH signatures and certificate signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey {
    Ed25519(ed25519_dalek::VerifyingKey),
    EcdsaP256(p256::ecdsa::VerifyingKey),
    EcdsaP384(p384::ecdsa::VerifyingKey),
    Rsa(Box<rsa::RsaPublicKey>),
}

impl PublicKey {
    /// From a DER SubjectPublicKeyInfo.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, Error> {
        let info = spki::SubjectPublicKeyInfoRef::try_from(der).map_err(|_| Error::Decode("SubjectPublicKeyInfo"))?;
        let oid = info.algorithm.oid;
        if oid == spki::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1") {
            let key = rsa::RsaPublicKey::from_public_key_der(der).map_err(|_| Error::Decode("RSA public key"))?;
            return Ok(PublicKey::Rsa(Box::new(key)));
        }
        if oid == spki::ObjectIdentifier::new_unwrap("1.3.101.112") {
            let key = ed25519_dalek::VerifyingKey::from_public_key_der(der).map_err(|_| Error::Decode("Ed25519 public key"))?;
            return Ok(PublicKey::Ed25519(key));
        }
        if let Ok(k) = p256::PublicKey::from_public_key_der(der) {
            return Ok(PublicKey::EcdsaP256(k.into()));
        }
        if let Ok(k) = p384::PublicKey::from_public_key_der(der) {
            return Ok(PublicKey::EcdsaP384(k.into()));
        }
        Err(Error::Decode("unsupported public key algorithm (RSA, P-256, P-384, Ed25519)"))
    }

    /// The DER SubjectPublicKeyInfo (RFC 5280 §4.1.2.7), e.g. for the
    /// G-IKEv2 AUTH_KEY attribute (RFC 9838 §4.5.3.2).
    pub fn to_spki_der(&self) -> Result<Vec<u8>, Error> {
        use pkcs8::EncodePublicKey;
        let der = match self {
            PublicKey::Ed25519(k) => k.to_public_key_der(),
            PublicKey::EcdsaP256(k) => p256::PublicKey::from(k).to_public_key_der(),
            PublicKey::EcdsaP384(k) => p384::PublicKey::from(k).to_public_key_der(),
            PublicKey::Rsa(k) => k.to_public_key_der(),
        };
        der.map(|d| d.as_bytes().to_vec()).map_err(|_| Error::Decode("SubjectPublicKeyInfo"))
    }

    /// An Ed25519 public key from its 32 octets.
    pub fn ed25519_from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let b: [u8; 32] = bytes.try_into().map_err(|_| Error::Decode("Ed25519 public key must be 32 octets"))?;
        Ok(PublicKey::Ed25519(ed25519_dalek::VerifyingKey::from_bytes(&b).map_err(|_| Error::Decode("Ed25519 public key"))?))
    }
}

impl Verifier for PublicKey {
    fn verify(&self, scheme: SignatureScheme, message: &[u8], signature: &[u8]) -> Result<(), Error> {
        use SignatureScheme as S;
        let bad = |_| Error::BadSignature;
        match (self, scheme) {
            (PublicKey::Ed25519(k), S::Ed25519) => {
                let sig = ed25519_dalek::Signature::from_slice(signature).map_err(bad)?;
                // verify_strict: reject small-order keys and malleable encodings.
                k.verify_strict(message, &sig).map_err(bad)
            }
            // ECDSA: the hash is the AlgorithmIdentifier's, the curve the
            // key's, in any combination (RFC 7427 §3; a digest longer than
            // the curve order is truncated, FIPS 186-5 §6.4.2).
            // P-256 with SHA-256 or SHA-384: ring (see Cargo.toml); the
            // same checks (DER, 0 < r, s < n), at a fraction of the cost.
            (PublicKey::EcdsaP256(k), S::EcdsaP256Sha256 | S::EcdsaP384Sha384) => {
                let alg = if scheme == S::EcdsaP256Sha256 { &ring::signature::ECDSA_P256_SHA256_ASN1 } else { &ring::signature::ECDSA_P256_SHA384_ASN1 };
                let point = k.to_encoded_point(false);
                ring::signature::UnparsedPublicKey::new(alg, point.as_bytes()).verify(message, signature).map_err(|_| Error::BadSignature)
            }
            (PublicKey::EcdsaP256(k), S::EcdsaSha512) => {
                let sig = p256::ecdsa::Signature::from_der(signature).map_err(bad)?;
                k.verify_prehash(&ecdsa_digest(scheme, message), &sig).map_err(bad)
            }
            (PublicKey::EcdsaP384(k), S::EcdsaP256Sha256 | S::EcdsaP384Sha384 | S::EcdsaSha512) => {
                let sig = p384::ecdsa::Signature::from_der(signature).map_err(bad)?;
                k.verify_prehash(&ecdsa_digest(scheme, message), &sig).map_err(bad)
            }
            (PublicKey::Rsa(k), S::RsaPkcs1Sha256) => {
                rsa::pkcs1v15::VerifyingKey::<Sha256>::new((**k).clone()).verify(message, &rsa_pkcs1_sig(signature)?).map_err(bad)
            }
            (PublicKey::Rsa(k), S::RsaPkcs1Sha384) => {
                rsa::pkcs1v15::VerifyingKey::<Sha384>::new((**k).clone()).verify(message, &rsa_pkcs1_sig(signature)?).map_err(bad)
            }
            (PublicKey::Rsa(k), S::RsaPkcs1Sha512) => {
                rsa::pkcs1v15::VerifyingKey::<Sha512>::new((**k).clone()).verify(message, &rsa_pkcs1_sig(signature)?).map_err(bad)
            }
            (PublicKey::Rsa(k), S::RsaPssSha256) => {
                rsa::pss::VerifyingKey::<Sha256>::new((**k).clone()).verify(message, &rsa_pss_sig(signature)?).map_err(bad)
            }
            (PublicKey::Rsa(k), S::RsaPssSha384) => {
                rsa::pss::VerifyingKey::<Sha384>::new((**k).clone()).verify(message, &rsa_pss_sig(signature)?).map_err(bad)
            }
            (PublicKey::Rsa(k), S::RsaPssSha512) => {
                rsa::pss::VerifyingKey::<Sha512>::new((**k).clone()).verify(message, &rsa_pss_sig(signature)?).map_err(bad)
            }
            _ => Err(Error::SchemeKeyMismatch),
        }
    }
}

/// The digest an ECDSA scheme signs.
fn ecdsa_digest(scheme: SignatureScheme, message: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    match scheme {
        SignatureScheme::EcdsaP384Sha384 => Sha384::digest(message).to_vec(),
        SignatureScheme::EcdsaSha512 => Sha512::digest(message).to_vec(),
        _ => Sha256::digest(message).to_vec(),
    }
}

/// RFC 4754 (auth methods 9/10/11) carries ECDSA as fixed-length `r | s`
/// instead of the DER Ecdsa-Sig-Value of RFC 7427: convert DER to that form.
pub fn ecdsa_der_to_fixed(scheme: SignatureScheme, der: &[u8]) -> Result<Vec<u8>, Error> {
    match scheme {
        SignatureScheme::EcdsaP256Sha256 => Ok(p256::ecdsa::Signature::from_der(der).map_err(|_| Error::BadSignature)?.to_bytes().to_vec()),
        SignatureScheme::EcdsaP384Sha384 => Ok(p384::ecdsa::Signature::from_der(der).map_err(|_| Error::BadSignature)?.to_bytes().to_vec()),
        _ => Err(Error::SchemeKeyMismatch),
    }
}

/// The inverse of [`ecdsa_der_to_fixed`]: RFC 4754 `r | s` (64 or 96
/// octets) to the DER form [`Verifier::verify`] takes.
pub fn ecdsa_fixed_to_der(scheme: SignatureScheme, fixed: &[u8]) -> Result<Vec<u8>, Error> {
    match scheme {
        SignatureScheme::EcdsaP256Sha256 => Ok(p256::ecdsa::Signature::from_slice(fixed).map_err(|_| Error::BadSignature)?.to_der().as_bytes().to_vec()),
        SignatureScheme::EcdsaP384Sha384 => Ok(p384::ecdsa::Signature::from_slice(fixed).map_err(|_| Error::BadSignature)?.to_der().as_bytes().to_vec()),
        _ => Err(Error::SchemeKeyMismatch),
    }
}

fn rsa_pkcs1_sig(s: &[u8]) -> Result<rsa::pkcs1v15::Signature, Error> {
    rsa::pkcs1v15::Signature::try_from(s).map_err(|_| Error::BadSignature)
}

fn rsa_pss_sig(s: &[u8]) -> Result<rsa::pss::Signature, Error> {
    rsa::pss::Signature::try_from(s).map_err(|_| Error::BadSignature)
}
