//! RFC 9593 SUPPORTED_AUTH_METHODS (status notify 16443): the
//! authentication methods a peer accepts, and our choice of signature
//! scheme from them.
//!
//! Notification data is a list of announcements (layouts as RFC 9593 §3.2
//! and libreswan's implementation give them; Length counts the whole
//! announcement, itself included):
//! * `Length (=2) | Auth Method` for methods without parameters (PSK 2,
//!   NULL 13);
//! * `Length (=3) | Auth Method | Cert Link` for methods tied to a
//!   certificate type (RSA 1, ECDSA 9/10/11);
//! * `Length (>3) | Auth Method (=14) | Cert Link | AlgorithmIdentifier`
//!   for RFC 7427 digital signatures: the DER AlgorithmIdentifier of the
//!   AUTH payload without its length octet, which is what tells RSASSA-PSS
//!   from PKCS#1 v1.5.
//!
//! Flow (RFC 9593 §3.1): the responder sends its list in the IKE_SA_INIT
//! response; an initiator that received one sends its own in the IKE_AUTH
//! request. Peers that do not know the notify ignore it (a status type).
//! Cert Link is sent as 0 (not tied to a particular CERTREQ CA).
use ike_crypto::sig::SignatureScheme;
use ike_wire::AuthMethod;

use crate::config::RemoteAuth;

/// One announcement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Announcement {
    /// A 2-octet announcement (PSK, NULL, ...).
    Method(u8),
    /// A 3-octet announcement.
    WithCertLink { method: u8, cert_link: u8 },
    /// Method 14 with an AlgorithmIdentifier; `scheme` if we know it.
    Signature { cert_link: u8, algorithm_identifier: Vec<u8>, scheme: Option<SignatureScheme> },
}

impl Announcement {
    pub fn signature(scheme: SignatureScheme) -> Self {
        Announcement::Signature { cert_link: 0, algorithm_identifier: scheme.algorithm_identifier().to_vec(), scheme: Some(scheme) }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Announcement::Method(m) => out.extend_from_slice(&[2, *m]),
            Announcement::WithCertLink { method, cert_link } => out.extend_from_slice(&[3, *method, *cert_link]),
            Announcement::Signature { cert_link, algorithm_identifier, .. } => {
                // Every AlgorithmIdentifier we know is far below 252 octets.
                out.push((3 + algorithm_identifier.len()) as u8);
                out.push(AuthMethod::DIGITAL_SIGNATURE.0);
                out.push(*cert_link);
                out.extend_from_slice(algorithm_identifier);
            }
        }
    }
}

/// The notification data for `anns`.
pub fn encode(anns: &[Announcement]) -> Vec<u8> {
    let mut out = Vec::new();
    for a in anns {
        a.write(&mut out);
    }
    out
}

/// Parses notification data; `None` if an announcement is truncated or
/// its Length is below 2 (the notify is then ignored as a whole).
pub fn parse(data: &[u8]) -> Option<Vec<Announcement>> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let len = usize::from(rest[0]);
        if len < 2 || rest.len() < len {
            return None;
        }
        let (a, tail) = rest.split_at(len);
        rest = tail;
        out.push(match len {
            2 => Announcement::Method(a[1]),
            3 => Announcement::WithCertLink { method: a[1], cert_link: a[2] },
            _ if a[1] == AuthMethod::DIGITAL_SIGNATURE.0 => Announcement::Signature {
                cert_link: a[2],
                algorithm_identifier: a[3..].to_vec(),
                scheme: SignatureScheme::from_algorithm_identifier(&a[3..]),
            },
            // A longer announcement of another method: skipped, as RFC
            // 9593 lets future methods define their own parameters.
            _ => continue,
        });
    }
    Some(out)
}

/// What we accept from the peer, as announcements: PSK, or the signature
/// schemes `accepted` (every scheme we can verify when empty).
pub fn ours(remote: &RemoteAuth, accepted: &[SignatureScheme]) -> Vec<Announcement> {
    match remote {
        // EAP ends with an MSK-based shared-key AUTH (RFC 7296 §2.16).
        RemoteAuth::Psk(_) | RemoteAuth::Eap(_) => vec![Announcement::Method(AuthMethod::SHARED_KEY_MESSAGE_INTEGRITY_CODE.0)],
        RemoteAuth::PubKey { .. } => {
            let schemes: &[SignatureScheme] = if accepted.is_empty() { &SignatureScheme::ALL } else { accepted };
            schemes.iter().copied().map(Announcement::signature).collect()
        }
    }
}

/// The signature schemes a peer announced (method 14 with an
/// AlgorithmIdentifier we know).
pub fn schemes(anns: &[Announcement]) -> Vec<SignatureScheme> {
    anns.iter()
        .filter_map(|a| match a {
            Announcement::Signature { scheme, .. } => *scheme,
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ike_crypto::Secret;

    #[test]
    fn announcement_layouts() {
        // PSK: Length 2 | Auth Method 2.
        assert_eq!(encode(&ours(&RemoteAuth::Psk(Secret::new(b"k".to_vec())), &[])), [2, 2]);
        // ECDSA P-256 by AlgorithmIdentifier: Length 3 + 12 | 14 | Cert Link 0
        // | ecdsa-with-SHA256 (RFC 7427 A.3.2).
        let b = encode(&[Announcement::signature(SignatureScheme::EcdsaP256Sha256)]);
        assert_eq!(b, [15, 14, 0, 0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]);
        // RSASSA-PSS SHA-256: the 67-octet RFC 7427 A.4.3 identifier.
        let b = encode(&[Announcement::signature(SignatureScheme::RsaPssSha256)]);
        assert_eq!((b[0], b[1], b[2], b.len()), (70, 14, 0, 70));
        // A 3-octet RSA announcement (method 1) and Ed25519 (RFC 8420).
        let b = encode(&[Announcement::WithCertLink { method: 1, cert_link: 0 }, Announcement::signature(SignatureScheme::Ed25519)]);
        assert_eq!(b, [3, 1, 0, 10, 14, 0, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70]);
    }

    #[test]
    fn parsing_round_trips_and_refuses_truncation() {
        let all = ours(&RemoteAuth::PubKey { cas: Vec::new() }, &[]);
        let mut anns = vec![Announcement::Method(2), Announcement::WithCertLink { method: 9, cert_link: 1 }];
        anns.extend(all);
        let b = encode(&anns);
        let back = parse(&b).expect("parses");
        assert_eq!(back, anns);
        assert_eq!(schemes(&back), SignatureScheme::ALL.to_vec());
        assert_eq!(parse(&b[..b.len() - 1]), None);
        assert_eq!(parse(&[1]), None);
        assert_eq!(parse(&[]), Some(Vec::new()), "the empty notify of RFC 9593 §3.1");
        // An unknown AlgorithmIdentifier is kept, without a scheme.
        let unknown = parse(&[6, 14, 0, 0x30, 0x01, 0x00]).expect("parses");
        assert!(matches!(&unknown[0], Announcement::Signature { scheme: None, .. }));
        // A long announcement of another method is skipped.
        assert_eq!(parse(&[5, 99, 0, 1, 2, 2, 2]), Some(vec![Announcement::Method(2)]));
    }

    proptest::proptest! {
        /// Any notify data parses or is refused without panicking, and what
        /// parses re-encodes to the same octets (skipped unknown long
        /// announcements aside).
        #[test]
        fn arbitrary_notify_data(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80)) {
            if let Some(anns) = parse(&data) {
                let again = parse(&encode(&anns)).expect("re-encoded data parses");
                proptest::prop_assert_eq!(again, anns);
            }
        }
    }
}
