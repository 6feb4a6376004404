//! X.509 certificates for IKEv2 CERT payloads and chain validation.
//!
//! Loads certificates from PEM (one or many) or DER files, and validates a
//! peer's end-entity certificate, with the intermediates it sent, against
//! configured trust anchors ([`validate_chain`]):
//!
//! * each certificate's signature verifies under its issuer's public key
//!   (issuer found by exact Name match, RFC 5280 §6.1.3 (a)(1) and (a)(4));
//! * every certificate, anchors included, is within its validity period at
//!   the injected `now` (§6.1.3 (a)(2)): the caller owns the clock, so the
//!   protocol core stays deterministic;
//! * every issuer other than the anchor itself has basicConstraints cA =
//!   TRUE (§6.1.4 (k)), a keyUsage, if present, with keyCertSign (§6.1.4
//!   (n)), and a pathLenConstraint, if present, that the path respects;
//! * the path is at most [`MAX_DEPTH`] certificates long.
//!
//! Signature algorithms are matched through the RFC 7427 AlgorithmIdentifier
//! table of [`crate::sig`] (an X.509 signatureAlgorithm has the same DER), so
//! certificates signed with sha256/384/512WithRSAEncryption, RSASSA-PSS
//! (RFC 7427 A.4.3 parameters), ecdsa-with-SHA256/384 or Ed25519 verify.
//!
//! Not implemented (see the crate report): revocation (CRL/OCSP), name
//! constraints, policy processing, critical extensions other than
//! basicConstraints and keyUsage are rejected rather than ignored.

use std::path::Path;

use der::{Decode, Encode, Tagged};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};

use crate::sig::{pem_or_der, read_file, PublicKey, SignatureScheme, Verifier};
use crate::Error;

/// Longest accepted path, leaf and anchor included.
pub const MAX_DEPTH: usize = 8;

const OID_BASIC_CONSTRAINTS: der::asn1::ObjectIdentifier = der::asn1::ObjectIdentifier::new_unwrap("2.5.29.19");
const OID_KEY_USAGE: der::asn1::ObjectIdentifier = der::asn1::ObjectIdentifier::new_unwrap("2.5.29.15");

/// Why a chain was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("no certificate (intermediate or trust anchor) has the issuer name of {0}")]
    IssuerNotFound(String),
    #[error("the signature of {0} does not verify under its issuer's key")]
    BadSignature(String),
    #[error("{0} is not valid at the given time")]
    NotValidAtTime(String),
    #[error("{0} issues certificates but is not a CA (basicConstraints)")]
    NotCa(String),
    #[error("{0} issues certificates but its keyUsage lacks keyCertSign")]
    KeyUsage(String),
    #[error("path length constraint of {0} exceeded")]
    PathLength(String),
    #[error("{0} has an unsupported critical extension")]
    UnsupportedCriticalExtension(String),
    #[error("signature algorithm of {0} is not supported")]
    UnsupportedAlgorithm(String),
    #[error("public key of {0} is not supported")]
    UnsupportedKey(String),
    #[error("path longer than {MAX_DEPTH} certificates")]
    TooLong,
}

/// A parsed certificate, keeping its original DER.
#[derive(Clone, Debug)]
pub struct Certificate {
    der: Vec<u8>,
    cert: x509_cert::Certificate,
}

impl PartialEq for Certificate {
    fn eq(&self, other: &Self) -> bool {
        self.der == other.der
    }
}

impl Certificate {
    /// From DER (e.g. a CERT payload with encoding 4, "X.509 Certificate -
    /// Signature").
    pub fn from_der(der: &[u8]) -> Result<Self, Error> {
        let cert = x509_cert::Certificate::from_der(der).map_err(|_| Error::Decode("X.509 certificate"))?;
        Ok(Self { der: der.to_vec(), cert })
    }

    /// One certificate from PEM ("CERTIFICATE") or DER.
    pub fn from_pem_or_der(bytes: &[u8]) -> Result<Self, Error> {
        Self::from_der(&pem_or_der(bytes, &["CERTIFICATE"])?)
    }

    /// All certificates in a file: a PEM bundle or a single DER certificate.
    pub fn load_all(path: impl AsRef<Path>) -> Result<Vec<Self>, Error> {
        let bytes = read_file(path.as_ref())?;
        if bytes.starts_with(b"-----BEGIN") {
            let certs = x509_cert::Certificate::load_pem_chain(&bytes).map_err(|_| Error::Decode("PEM certificate bundle"))?;
            certs
                .into_iter()
                .map(|c| {
                    let der = c.to_der().map_err(|_| Error::Decode("X.509 certificate"))?;
                    Ok(Self { der, cert: c })
                })
                .collect()
        } else {
            Ok(vec![Self::from_der(&bytes)?])
        }
    }

    /// Exactly one certificate from a file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, Error> {
        let mut all = Self::load_all(path)?;
        if all.len() != 1 {
            return Err(Error::Decode("expected exactly one certificate"));
        }
        Ok(all.remove(0))
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The subject Name, DER-encoded (the form ID_DER_ASN1_DN compares).
    pub fn subject_der(&self) -> Vec<u8> {
        self.cert.tbs_certificate.subject.to_der().unwrap_or_default()
    }

    /// The subject as text, for logs and errors.
    pub fn subject(&self) -> String {
        self.cert.tbs_certificate.subject.to_string()
    }

    /// The DER SubjectPublicKeyInfo (RFC 5280 §4.1): what a CERTREQ's
    /// authority hash covers (RFC 7296 §3.7).
    pub fn spki_der(&self) -> Vec<u8> {
        self.cert.tbs_certificate.subject_public_key_info.to_der().unwrap_or_default()
    }

    /// The subjectAltName entries (RFC 5280 §4.2.1.6) as (GeneralName
    /// context tag, contents): 0x81 rfc822Name, 0x82 dNSName, 0x87
    /// iPAddress; other forms are returned with their own tag. Empty when
    /// the certificate has none (or an undecodable one).
    pub fn subject_alt_names(&self) -> Vec<(u8, Vec<u8>)> {
        let Some(exts) = &self.cert.tbs_certificate.extensions else { return Vec::new() };
        let Some(san) = exts.iter().find(|e| e.extn_id == <x509_cert::ext::pkix::SubjectAltName as der::oid::AssociatedOid>::OID) else {
            return Vec::new();
        };
        // GeneralNames ::= SEQUENCE OF GeneralName (each implicitly tagged).
        Vec::<der::Any>::from_der(san.extn_value.as_bytes())
            .map(|names| names.iter().map(|n| (n.tag().octet(), n.value().to_vec())).collect())
            .unwrap_or_default()
    }

    /// The subject public key.
    pub fn public_key(&self) -> Result<PublicKey, Error> {
        let spki = self.cert.tbs_certificate.subject_public_key_info.to_der().map_err(|_| Error::Decode("SubjectPublicKeyInfo"))?;
        PublicKey::from_spki_der(&spki)
    }

    /// notBefore and notAfter as seconds since the Unix epoch.
    pub fn validity_unix_secs(&self) -> (u64, u64) {
        let v = &self.cert.tbs_certificate.validity;
        (v.not_before.to_unix_duration().as_secs(), v.not_after.to_unix_duration().as_secs())
    }

    fn valid_at(&self, now_unix_secs: u64) -> bool {
        let (nb, na) = self.validity_unix_secs();
        nb <= now_unix_secs && now_unix_secs <= na
    }

    /// The raw tbsCertificate octets: the first element of the outer
    /// SEQUENCE, sliced from the original DER (never re-encoded).
    fn tbs_der(&self) -> Option<&[u8]> {
        let (_, content) = der_tlv(&self.der)?;
        let (tbs, _) = der_tlv(content)?;
        Some(tbs)
    }

    /// Check this certificate's signature with `issuer_key`.
    fn verify_signed_by(&self, issuer_key: &PublicKey) -> Result<(), CertError> {
        let alg = self.cert.signature_algorithm.to_der().map_err(|_| CertError::UnsupportedAlgorithm(self.subject()))?;
        let scheme = SignatureScheme::from_algorithm_identifier(&alg).ok_or_else(|| CertError::UnsupportedAlgorithm(self.subject()))?;
        let sig = self.cert.signature.as_bytes().ok_or_else(|| CertError::BadSignature(self.subject()))?;
        let tbs = self.tbs_der().ok_or_else(|| CertError::BadSignature(self.subject()))?;
        issuer_key.verify(scheme, tbs, sig).map_err(|_| CertError::BadSignature(self.subject()))
    }

    fn extension<'a>(&'a self, oid: &der::asn1::ObjectIdentifier) -> Option<&'a x509_cert::ext::Extension> {
        self.cert.tbs_certificate.extensions.as_ref()?.iter().find(|e| &e.extn_id == oid)
    }

    fn check_critical_extensions(&self) -> Result<(), CertError> {
        for e in self.cert.tbs_certificate.extensions.iter().flatten() {
            if e.critical && e.extn_id != OID_BASIC_CONSTRAINTS && e.extn_id != OID_KEY_USAGE {
                return Err(CertError::UnsupportedCriticalExtension(self.subject()));
            }
        }
        Ok(())
    }

    fn basic_constraints(&self) -> Option<BasicConstraints> {
        BasicConstraints::from_der(self.extension(&OID_BASIC_CONSTRAINTS)?.extn_value.as_bytes()).ok()
    }

    /// RFC 5280 §6.1.4 (k), (n), (m): may this certificate issue others,
    /// with `below` non-self-issued certificates under it in the path?
    fn check_issuer(&self, below: usize) -> Result<(), CertError> {
        let bc = self.basic_constraints().ok_or_else(|| CertError::NotCa(self.subject()))?;
        if !bc.ca {
            return Err(CertError::NotCa(self.subject()));
        }
        if let Some(max) = bc.path_len_constraint {
            // `below` counts the leaf too; pathLen counts only intermediates.
            if below.saturating_sub(1) > usize::from(max) {
                return Err(CertError::PathLength(self.subject()));
            }
        }
        if let Some(ext) = self.extension(&OID_KEY_USAGE) {
            let ku = KeyUsage::from_der(ext.extn_value.as_bytes()).map_err(|_| CertError::KeyUsage(self.subject()))?;
            if !ku.0.contains(KeyUsages::KeyCertSign) {
                return Err(CertError::KeyUsage(self.subject()));
            }
        }
        Ok(())
    }
}

/// One DER TLV at the start of `input`: (the whole TLV, its contents).
fn der_tlv(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let first_len = *input.get(1)?;
    let (header, len) = if first_len < 0x80 {
        (2usize, usize::from(first_len))
    } else {
        let n = usize::from(first_len & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | usize::from(*input.get(2 + i)?);
        }
        (2 + n, len)
    };
    let end = header.checked_add(len)?;
    let tlv = input.get(..end)?;
    Some((tlv, &tlv[header..]))
}

/// Validate `leaf` up to one of `anchors`, using `intermediates` (the
/// peer's other CERT payloads, in any order) at time `now_unix_secs`.
/// Returns the leaf's public key, to verify the AUTH payload with.
pub fn validate_chain(
    leaf: &Certificate,
    intermediates: &[Certificate],
    anchors: &[Certificate],
    now_unix_secs: u64,
) -> Result<PublicKey, CertError> {
    let leaf_key = leaf.public_key().map_err(|_| CertError::UnsupportedKey(leaf.subject()))?;
    let mut current = leaf;
    for below in 1..MAX_DEPTH {
        current.check_critical_extensions()?;
        if !current.valid_at(now_unix_secs) {
            return Err(CertError::NotValidAtTime(current.subject()));
        }
        let issuer_name = &current.cert.tbs_certificate.issuer;
        // A trusted anchor that signed `current` ends the path.
        let mut name_matched = false;
        for anchor in anchors.iter().filter(|a| &a.cert.tbs_certificate.subject == issuer_name) {
            name_matched = true;
            let Ok(key) = anchor.public_key() else { continue };
            if current.verify_signed_by(&key).is_ok() {
                if !anchor.valid_at(now_unix_secs) {
                    return Err(CertError::NotValidAtTime(anchor.subject()));
                }
                anchor.check_issuer(below)?;
                return Ok(leaf_key);
            }
        }
        // Otherwise an intermediate that signed it, and that may issue.
        let mut next = None;
        for cand in intermediates.iter().filter(|c| &c.cert.tbs_certificate.subject == issuer_name && *c != current) {
            name_matched = true;
            let Ok(key) = cand.public_key() else { continue };
            if current.verify_signed_by(&key).is_ok() {
                next = Some(cand);
                break;
            }
        }
        match next {
            Some(issuer) => {
                issuer.check_issuer(below)?;
                current = issuer;
            }
            None if name_matched => return Err(CertError::BadSignature(current.subject())),
            None => return Err(CertError::IssuerNotFound(current.subject())),
        }
    }
    Err(CertError::TooLong)
}
