//! IKE_AUTH with RFC 7427 digital signatures and certificate chains
//! validated against configured CAs at the injected time.
use std::path::PathBuf;
use std::sync::Arc;

use ike_crypto::cert::Certificate;
use ike_crypto::sig::PrivateKey;
use ike_crypto::Secret;
use ike_wire::ExchangeType;

use super::util::*;
use crate::{DownReason, Event, Identity, LocalAuth, RemoteAuth};

pub(super) fn crypto_pki(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ike-crypto/testdata/pki").join(name)
}

pub(super) fn our_pki(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/pki").join(name)
}

pub(super) fn cert(path: PathBuf) -> Certificate {
    Certificate::load(&path).expect("certificate")
}

/// Local auth by `key` + `leaf` (with the intermediate), identity = the
/// leaf's subject DN.
pub(super) fn signer(key: PathBuf, leaf: PathBuf) -> (LocalAuth, Identity) {
    let leaf = cert(leaf);
    let id = Identity::Dn(leaf.subject_der());
    let key = PrivateKey::load(&key).expect("key");
    (LocalAuth::PubKey { signer: Arc::new(key), certs: vec![leaf, cert(crypto_pki("intermediate.pem"))] }, id)
}

pub(super) fn trust(ca: &str) -> RemoteAuth {
    RemoteAuth::PubKey { cas: vec![cert(crypto_pki(ca))] }
}

fn cert_pair(seed: u64, client_key: &str, client_cert: &str, client_trusts: &str) -> Pair {
    let (ca, cb) = cert_conns(client_key, client_cert, client_trusts);
    Pair::new(seed, endpoint_config(ca), endpoint_config(cb))
}

pub(super) fn cert_conns(client_key: &str, client_cert: &str, client_trusts: &str) -> (crate::ConnectionConfig, crate::ConnectionConfig) {
    let (gw_auth, gw_id) = signer(crypto_pki("leaf.key"), crypto_pki("leaf.pem"));
    let (cl_auth, cl_id) = signer(our_pki(client_key), our_pki(client_cert));
    let mut ca = psk_conn("site", "unused", "unused", b"unused", true);
    ca.local_id = cl_id.clone();
    ca.remote_id = Some(gw_id.clone());
    ca.local_auth = cl_auth;
    ca.remote_auth = trust(client_trusts);
    let mut cb = psk_conn("site", "unused", "unused", b"unused", false);
    cb.local_id = gw_id;
    cb.remote_id = Some(cl_id);
    cb.local_auth = gw_auth;
    cb.remote_auth = trust("root.pem");
    (ca, cb)
}

/// IKE_AUTH datagrams on the wire and the longest of them.
fn ike_auth_datagrams(p: &Pair) -> (usize, usize) {
    let lens: Vec<usize> = p
        .wire
        .iter()
        .filter(|(_, _, d)| d.header().is_some_and(|h| h.exchange_type == ExchangeType::IKE_AUTH))
        .map(|(_, _, d)| d.ike_bytes().len())
        .collect();
    (lens.len(), lens.into_iter().max().unwrap_or(0))
}

#[test]
fn ecdsa_gateway_and_ed25519_client_authenticate_with_certificates() {
    let mut p = cert_pair(700, "ed25519-client.key", "ed25519-client.pem", "root.pem");
    p.connect();
    // Two certificates each way do not fit 1228 octets: IKE_AUTH went in
    // RFC 7383 fragments, none longer than the limit.
    let (n, longest) = ike_auth_datagrams(&p);
    assert!(n > 2 && longest <= 1228, "{n} datagrams, longest {longest}");
    assert_eq!((p.installs(Side::A).len(), p.installs(Side::B).len()), (1, 1));
    let remote = p.events(Side::B).iter().find_map(|e| match e {
        Event::IkeSaUp { remote_id, .. } => Some(remote_id.clone()),
        _ => None,
    });
    assert_eq!(remote, Some(Identity::Dn(cert(our_pki("ed25519-client.pem")).subject_der())));
}

#[test]
fn rsa_pss_client_authenticates_with_a_certificate() {
    let mut p = cert_pair(701, "rsa-client.key", "rsa-client.pem", "root.pem");
    p.connect();
    assert_eq!(p.installs(Side::B).len(), 1);
}

#[test]
fn a_gateway_certificate_from_an_untrusted_ca_fails_authentication() {
    let mut p = cert_pair(702, "ed25519-client.key", "ed25519-client.pem", "other-root.pem");
    p.initiate(Side::A, "site");
    p.drive();
    // B accepted A (it trusts root.pem) but A refuses B's chain and tells
    // B so (§2.21.2), which takes B's IKE SA and Child SA down too.
    assert_eq!(p.downs(Side::A), vec![DownReason::AuthenticationFailed]);
    assert_eq!(p.ups(Side::A), 0);
    assert_eq!(p.downs(Side::B), vec![DownReason::AuthenticationFailed]);
    assert_eq!(p.count(Side::B, |e| matches!(e, Event::ChildSaDelete { .. })), 1);
}

#[test]
fn certificates_outside_their_validity_at_the_injected_time_fail() {
    // The same pair, but the wall clock says 2050: every certificate expired.
    let mut p = cert_pair(703, "ed25519-client.key", "ed25519-client.pem", "root.pem");
    p.wall_offset_secs = 2_540_000_000 - 1_800_000_000;
    p.initiate(Side::A, "site");
    p.drive();
    assert_eq!(p.downs(Side::B), vec![DownReason::AuthenticationFailed]);
    assert_eq!(p.downs(Side::A), vec![DownReason::AuthenticationFailed]);
}

/// A client (A) proving itself with `client_psk`, a gateway (B) with its
/// ECDSA certificate; the gateway checks the PSK `gateway_psk`.
pub(super) fn psk_client_cert_gateway(client_psk: &[u8], gateway_psk: &[u8]) -> (crate::ConnectionConfig, crate::ConnectionConfig) {
    let (gw_auth, gw_id) = signer(crypto_pki("leaf.key"), crypto_pki("leaf.pem"));
    let mut ca = psk_conn("site", "client.esprit.test", "unused", b"unused", true);
    ca.remote_id = Some(gw_id.clone());
    ca.local_auth = LocalAuth::Psk(Secret::new(client_psk.to_vec()));
    ca.remote_auth = trust("root.pem");
    let mut cb = psk_conn("site", "unused", "client.esprit.test", b"unused", false);
    cb.local_id = gw_id;
    cb.local_auth = gw_auth;
    cb.remote_auth = RemoteAuth::Psk(Secret::new(gateway_psk.to_vec()));
    (ca, cb)
}

#[test]
fn psk_one_way_and_certificate_the_other_way_works() {
    let (ca, cb) = psk_client_cert_gateway(b"client secret", b"client secret");
    let mut p = Pair::new(704, endpoint_config(ca), endpoint_config(cb));
    p.connect();
    assert_eq!(p.installs(Side::A).len(), 1);
}

#[test]
fn certreq_names_the_trusted_ca_by_the_sha1_of_its_public_key_info() {
    // Known answers from OpenSSL: `openssl x509 -in root.pem -pubkey -noout
    // | openssl pkey -pubin -outform DER | sha1sum` (and intermediate.pem).
    let root = "870d9aa6d6a76821953756f512d6da32987668b6";
    let intermediate = "828b4edec73aa6f5e1f644336a2719e6539d8a12";
    let auth = RemoteAuth::PubKey { cas: vec![cert(crypto_pki("root.pem")), cert(crypto_pki("intermediate.pem"))] };
    let req = crate::sa::certreq(&auth).expect("a CERTREQ");
    assert_eq!(hex::encode(&req.authorities), format!("{root}{intermediate}"));
    assert!(crate::sa::certreq(&RemoteAuth::Psk(Secret::new(b"k".to_vec()))).is_none());
    // And the responder sends it in its IKE_SA_INIT answer (RFC 7296 §1.2).
    let mut p = cert_pair(705, "ed25519-client.key", "ed25519-client.pem", "root.pem");
    p.connect();
    let init_response = p
        .wire
        .iter()
        .find(|(_, s, d)| *s == Side::B && d.header().is_some_and(|h| h.exchange_type == ExchangeType::IKE_SA_INIT))
        .expect("IKE_SA_INIT response");
    let m = ike_wire::Message::parse(init_response.2.ike_bytes()).expect("parses");
    let certreq = m.payloads.iter().find_map(|p| match p {
        ike_wire::Payload::CertReq(c) => Some(hex::encode(&c.authorities)),
        _ => None,
    });
    assert_eq!(certreq.as_deref(), Some(root));
}

#[test]
fn subject_alt_names_are_read_as_openssl_shows_them() {
    // `openssl x509 -in leaf.pem -noout -ext subjectAltName` prints
    // "DNS:gw.esprit.test"; the CAs and our client certificates have none.
    let leaf = cert(crypto_pki("leaf.pem"));
    assert_eq!(leaf.subject_alt_names(), vec![(0x82u8, b"gw.esprit.test".to_vec())]);
    assert!(cert(crypto_pki("root.pem")).subject_alt_names().is_empty());
    assert!(cert(our_pki("ed25519-client.pem")).subject_alt_names().is_empty());
    assert!(crate::sa::identity_in_certificate(&Identity::Fqdn("GW.esprit.test".into()), &leaf));
    assert!(!crate::sa::identity_in_certificate(&Identity::Fqdn("mail.esprit.test".into()), &leaf));
    assert!(!crate::sa::identity_in_certificate(&Identity::Email("gw.esprit.test".into()), &leaf));
}

fn fqdn_gateway_pair(seed: u64, gateway_claims: &str) -> Pair {
    let mut p = cert_pair(seed, "ed25519-client.key", "ed25519-client.pem", "root.pem");
    let mut ca = (*p.a.ep.config().connections[0]).clone();
    let mut cb = (*p.b.ep.config().connections[0]).clone();
    ca.remote_id = Some(Identity::Fqdn(gateway_claims.into()));
    cb.local_id = Identity::Fqdn(gateway_claims.into());
    p = Pair::new(seed, endpoint_config(ca), endpoint_config(cb));
    p
}

#[test]
fn a_gateway_identified_by_fqdn_is_bound_through_its_subject_alt_name() {
    let mut p = fqdn_gateway_pair(706, "gw.esprit.test");
    p.connect();
    assert_eq!(p.installs(Side::A).len(), 1);
    // The same certificate cannot vouch for a name it does not carry.
    let mut p = fqdn_gateway_pair(707, "mail.esprit.test");
    p.initiate(Side::A, "site");
    p.drive();
    assert_eq!(p.downs(Side::A), vec![DownReason::AuthenticationFailed]);
}

/// RFC 8784 with signatures: the mixed SK_pi/SK_pr go into the signed
/// octets, and NO_PPK_AUTH carries a second signature (RFC 7427 data, same
/// method as the AUTH payload) over the unmixed ones.
#[test]
fn ppks_work_with_signature_authentication_including_no_ppk_auth() {
    let ppk = |id: &str, required: bool| {
        Some(crate::PpkConfig {
            keys: vec![crate::Ppk { id_type: crate::PPK_ID_FIXED, id: id.as_bytes().to_vec(), secret: Secret::new(vec![0x5a; 32]) }],
            required,
            exchange: crate::PpkExchange::IkeAuth,
        })
    };
    let up_with_ppk = |p: &Pair, side: Side| {
        p.events(side).iter().find_map(|e| match e {
            Event::IkeSaUp { ppk, .. } => Some(*ppk),
            _ => None,
        })
    };
    // Mandatory on both: the PPK is used.
    let (mut ca, mut cb) = cert_conns("ed25519-client.key", "ed25519-client.pem", "root.pem");
    (ca.ppk, cb.ppk) = (ppk("pqc", true), ppk("pqc", true));
    let mut p = Pair::new(741, endpoint_config(ca), endpoint_config(cb));
    p.connect();
    assert_eq!((up_with_ppk(&p, Side::A), up_with_ppk(&p, Side::B)), (Some(true), Some(true)));
    // Optional, and the gateway has no PPK for that PPK_ID: it verifies the
    // client's NO_PPK_AUTH signature instead.
    let (mut ca, mut cb) = cert_conns("ed25519-client.key", "ed25519-client.pem", "root.pem");
    (ca.ppk, cb.ppk) = (ppk("pqc", false), ppk("other", false));
    let mut p = Pair::new(742, endpoint_config(ca), endpoint_config(cb));
    p.connect();
    assert_eq!((up_with_ppk(&p, Side::A), up_with_ppk(&p, Side::B)), (Some(false), Some(false)));
    assert_eq!((p.installs(Side::A).len(), p.installs(Side::B).len()), (1, 1));
}

// ---- RFC 9593 SUPPORTED_AUTH_METHODS ------------------------------------

use ike_crypto::sig::SignatureScheme;

fn info(p: &Pair, side: Side) -> crate::ike_sa::ExtState {
    let ep = if side == Side::A { &p.a.ep } else { &p.b.ep };
    ep.ike_sas().into_iter().next().expect("an IKE SA").ext
}

/// A pair where each side signs with its own key/cert and trusts root.pem.
fn signed_pair(seed: u64, a: (PathBuf, PathBuf), b: (PathBuf, PathBuf)) -> Pair {
    let (a_auth, a_id) = signer(a.0, a.1);
    let (b_auth, b_id) = signer(b.0, b.1);
    let mut ca = psk_conn("site", "unused", "unused", b"unused", true);
    (ca.local_id, ca.remote_id, ca.local_auth, ca.remote_auth) = (a_id.clone(), Some(b_id.clone()), a_auth, trust("root.pem"));
    let mut cb = psk_conn("site", "unused", "unused", b"unused", false);
    (cb.local_id, cb.remote_id, cb.local_auth, cb.remote_auth) = (b_id, Some(a_id), b_auth, trust("root.pem"));
    Pair::new(seed, endpoint_config(ca), endpoint_config(cb))
}

fn rsa() -> (PathBuf, PathBuf) {
    (our_pki("rsa-client.key"), our_pki("rsa-client.pem"))
}

fn gw() -> (PathBuf, PathBuf) {
    (crypto_pki("leaf.key"), crypto_pki("leaf.pem"))
}

fn set_schemes(p: &mut Pair, side: Side, schemes: Vec<SignatureScheme>, announce: bool) {
    let node = p.node(side);
    let mut c = (*node.ep.config().connections[0]).clone();
    c.ext.signature_schemes = schemes;
    c.ext.announce_auth_methods = announce;
    node.ep.set_connections(vec![Arc::new(c)]);
}

#[test]
fn an_rsa_initiator_signs_with_what_the_responder_announced() {
    // Default: the responder accepts every scheme; RSA-PSS is our first.
    let mut p = signed_pair(720, rsa(), gw());
    p.connect();
    assert_eq!(info(&p, Side::A).auth_scheme, Some(SignatureScheme::RsaPssSha256));
    assert!(info(&p, Side::A).peer_auth_methods.is_some());
    let b_heard = info(&p, Side::B).peer_auth_methods.expect("the initiator announced in IKE_AUTH");
    assert_eq!(crate::auth_methods::schemes(&b_heard), SignatureScheme::ALL.to_vec());
    // The responder takes PKCS#1 v1.5 only and says so: the initiator signs
    // with it and gets through.
    let mut p = signed_pair(721, rsa(), gw());
    set_schemes(&mut p, Side::B, vec![SignatureScheme::RsaPkcs1Sha256], true);
    p.connect();
    assert_eq!(info(&p, Side::A).auth_scheme, Some(SignatureScheme::RsaPkcs1Sha256));
    assert_eq!(p.installs(Side::B).len(), 1);
    // Without the announcement the initiator guesses RSA-PSS from the
    // RFC 7427 hashes and the same responder refuses it.
    let mut p = signed_pair(722, rsa(), gw());
    set_schemes(&mut p, Side::B, vec![SignatureScheme::RsaPkcs1Sha256], false);
    p.initiate(Side::A, "site");
    p.drive();
    assert_eq!(p.downs(Side::A), vec![DownReason::AuthenticationFailed]);
    assert_eq!(p.ups(Side::B), 0);
}

#[test]
fn an_rsa_responder_signs_with_what_the_initiator_announced() {
    let mut p = signed_pair(723, gw(), rsa());
    set_schemes(&mut p, Side::A, vec![SignatureScheme::RsaPkcs1Sha384, SignatureScheme::EcdsaP256Sha256], true);
    p.connect();
    assert_eq!(info(&p, Side::B).auth_scheme, Some(SignatureScheme::RsaPkcs1Sha384));
    assert_eq!(p.installs(Side::A).len(), 1);
}

#[test]
fn a_psk_responder_announces_psk_in_ike_sa_init_and_a_silent_one_gets_no_list() {
    let mut p = Pair::psk(724);
    p.connect();
    let notify = p
        .wire
        .iter()
        .filter(|(_, s, d)| *s == Side::B && d.header().is_some_and(|h| h.exchange_type == ExchangeType::IKE_SA_INIT))
        .find_map(|(_, _, d)| {
            let m = ike_wire::Message::parse(d.ike_bytes()).ok()?;
            m.notify(ike_wire::NotifyType::SUPPORTED_AUTH_METHODS).map(|n| n.data.to_vec())
        })
        .expect("N(SUPPORTED_AUTH_METHODS) in the IKE_SA_INIT response");
    assert_eq!(notify, [2, 2], "RFC 9593 2-octet announcement: Length 2, Auth Method 2 (PSK)");
    assert_eq!(info(&p, Side::B).peer_auth_methods, Some(vec![crate::auth_methods::Announcement::Method(2)]));
    // A responder that does not announce: the initiator sends no list.
    let mut p = Pair::psk(725);
    set_schemes(&mut p, Side::B, Vec::new(), false);
    p.connect();
    assert_eq!(info(&p, Side::A).peer_auth_methods, None);
    assert_eq!(info(&p, Side::B).peer_auth_methods, None);
}
