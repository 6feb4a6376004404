use std::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::client::{Client, Config, Outcome, Server};

const SECRET: &[u8] = b"xyzzy5461";

/// A vector of `testdata/*.txt` by name (hex, spaces ignored).
fn vector(file: &str, name: &str) -> Vec<u8> {
    let text = match file {
        "rfc2865" => include_str!("../testdata/rfc2865.txt"),
        "freeradius" => include_str!("../testdata/freeradius.txt"),
        _ => panic!("no file {file}"),
    };
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no vector {name} in {file}"));
    hex::decode(line.replace(' ', "")).expect("hex")
}

fn auth_of(p: &[u8]) -> [u8; 16] {
    p[4..20].try_into().expect("16 octets")
}

#[test]
fn rfc2865_7_1_access_request_decodes_and_reencodes() {
    let bytes = vector("rfc2865", "7.1-request");
    let p = Packet::decode(&bytes).expect("decodes");
    assert_eq!((p.code, p.identifier), (code::ACCESS_REQUEST, 0));
    assert_eq!(p.get(attr::USER_NAME), Some(&b"nemo"[..]));
    assert_eq!(p.get(attr::NAS_IP_ADDRESS), Some(&[192, 168, 1, 16][..]));
    assert_eq!(p.get_u32(attr::NAS_PORT), Some(3));
    let hidden = p.get(attr::USER_PASSWORD).expect("User-Password");
    assert_eq!(unhide_password(hidden, &p.authenticator, SECRET).expect("unhides"), b"arctangent");
    assert_eq!(hide_password(b"arctangent", &p.authenticator, SECRET).expect("hides"), hidden);
    assert_eq!(p.encode().expect("encodes"), bytes);
}

#[test]
fn every_truncated_prefix_is_refused() {
    for name in ["7.1-request", "7.1-accept", "7.2-request"] {
        let bytes = vector("rfc2865", name);
        for n in 0..bytes.len() {
            assert!(Packet::decode(&bytes[..n]).is_err(), "{name}: {n} octets decoded");
        }
        // Octets past Length are padding (RFC 2865 §3), ignored.
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[0; 7]);
        assert_eq!(Packet::decode(&padded).expect("decodes"), Packet::decode(&bytes).expect("decodes"));
    }
}

#[test]
fn rfc2865_7_1_reply_verifies_against_its_request() {
    // §7.2's printed authenticator does not verify (testdata/rfc2865.txt).
    let (req, rep) = ("7.1-request", "7.1-accept");
    {
        let request = vector("rfc2865", req);
        let reply = vector("rfc2865", rep);
        let ra = auth_of(&request);
        let p = verify_reply(&reply, &ra, SECRET).unwrap_or_else(|e| panic!("{rep}: {e}"));
        assert_eq!(p.code, code::ACCESS_ACCEPT);
        assert_eq!(p.identifier, request[1]);
        // Any other secret, request or octet fails.
        assert_eq!(verify_reply(&reply, &ra, b"xyzzy5462").unwrap_err(), Error::ResponseAuthenticator);
        let mut other = ra;
        other[0] ^= 1;
        assert_eq!(verify_reply(&reply, &other, SECRET).unwrap_err(), Error::ResponseAuthenticator);
        let mut bad = reply.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(verify_reply(&bad, &ra, SECRET).unwrap_err(), Error::ResponseAuthenticator);
    }
    let p = Packet::decode(&vector("rfc2865", "7.2-accept")).expect("decodes");
    assert_eq!(p.get_u32(attr::FRAMED_MTU), Some(1500));
    assert_eq!(p.get(attr::FRAMED_IP_ADDRESS), Some(&[255, 255, 255, 254][..]));
}

/// FreeRADIUS 3.2.1's own packets (testdata/freeradius.txt): an
/// Access-Request with a Message-Authenticator made by radclient, and an
/// Access-Accept with MS-MPPE keys hidden by the server.
#[test]
fn freeradius_message_authenticator_and_mppe_keys() {
    let secret = b"testing123";
    let request = vector("freeradius", "radclient-request");
    verify_request_message_authenticator(&request, secret).expect("radclient's Message-Authenticator verifies");
    assert!(verify_request_message_authenticator(&request, b"testing124").is_err());
    let accept = vector("freeradius", "accept-mppe");
    let p = verify_reply(&accept, &auth_of(&request), secret).expect("the reply verifies");
    assert_eq!(p.code, code::ACCESS_ACCEPT);
    let recv = hex::decode("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f").expect("hex");
    let send = hex::decode("202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f").expect("hex");
    let m = msk(&p, &auth_of(&request), secret).expect("both keys");
    assert_eq!(&m[..32], &recv[..]);
    assert_eq!(&m[32..], &send[..]);
    // With another secret the keys do not come out (or come out wrong).
    let wrong = msk(&p, &auth_of(&request), b"testing124");
    assert!(wrong.map_or(true, |w| w[..] != m[..]));
}

#[test]
fn access_request_message_authenticator_is_hmac_md5_over_the_zeroed_packet() {
    let attrs = vec![Attribute::new(attr::USER_NAME, b"alice".to_vec())];
    let ra = [7u8; 16];
    let bytes = access_request(9, ra, &attrs, SECRET).expect("builds");
    verify_request_message_authenticator(&bytes, SECRET).expect("verifies");
    let mut tampered = bytes.clone();
    tampered[HEADER_LEN + 2] ^= 1;
    assert!(verify_request_message_authenticator(&tampered, SECRET).is_err());
    let p = Packet::decode(&bytes).expect("decodes");
    assert_eq!(p.attributes.len(), 2);
    assert_eq!(p.attributes[1].typ, attr::MESSAGE_AUTHENTICATOR);
}

/// A server's reply as FreeRADIUS builds it: Message-Authenticator over the
/// reply with the request's authenticator, then the Response Authenticator.
fn server_reply(code: u8, id: u8, request_auth: &[u8; 16], mut attrs: Vec<Attribute>, secret: &[u8]) -> Vec<u8> {
    attrs.push(Attribute::new(attr::MESSAGE_AUTHENTICATOR, vec![0; 16]));
    let mut bytes = Packet { code, identifier: id, authenticator: *request_auth, attributes: attrs }.encode().expect("encodes");
    let at = message_authenticator_at(&bytes).expect("MA");
    let mac = hmac_md5(secret, &bytes);
    bytes[at..at + 16].copy_from_slice(&mac);
    let ra = response_authenticator(&bytes, request_auth, secret);
    bytes[4..20].copy_from_slice(&ra);
    bytes
}

#[test]
fn eap_messages_split_and_reassemble_and_need_a_message_authenticator() {
    let eap: Vec<u8> = (0..600u32).map(|i| i as u8).collect();
    let mut attrs = Vec::new();
    push_eap_message(&mut attrs, &eap);
    assert_eq!(attrs.iter().map(|a| a.value.len()).collect::<Vec<_>>(), [253, 253, 94]);
    let ra = [3u8; 16];
    let reply = server_reply(code::ACCESS_CHALLENGE, 1, &ra, attrs.clone(), SECRET);
    let p = verify_reply(&reply, &ra, SECRET).expect("verifies");
    assert_eq!(p.eap_message().expect("EAP"), eap);
    // The same reply without its Message-Authenticator is refused.
    let mut plain = Packet { code: code::ACCESS_CHALLENGE, identifier: 1, authenticator: ra, attributes: attrs }.encode().expect("encodes");
    let resp = response_authenticator(&plain, &ra, SECRET);
    plain[4..20].copy_from_slice(&resp);
    assert_eq!(verify_reply(&plain, &ra, SECRET).unwrap_err(), Error::MissingMessageAuthenticator);
    // A Message-Authenticator computed with another secret is refused even
    // when the Response Authenticator is right.
    let mut wrong = server_reply(code::ACCESS_CHALLENGE, 1, &ra, vec![Attribute::new(attr::EAP_MESSAGE, vec![1, 1, 0, 4])], b"other");
    let resp = response_authenticator(&wrong, &ra, SECRET);
    wrong[4..20].copy_from_slice(&resp);
    assert_eq!(verify_reply(&wrong, &ra, SECRET).unwrap_err(), Error::MessageAuthenticator);
}

#[test]
fn mppe_keys_round_trip_and_refuse_bad_salts_and_lengths() {
    let ra = [9u8; 16];
    let key: Vec<u8> = (0..32).collect();
    let hidden = encrypt_mppe_key(&key, [0x80, 0x01], &ra, SECRET).expect("hides");
    assert_eq!(hidden.len(), 2 + 48);
    assert_eq!(&decrypt_mppe_key(&hidden, &ra, SECRET).expect("unhides")[..], &key[..]);
    let mut low = hidden.clone();
    low[0] = 0x00;
    assert_eq!(decrypt_mppe_key(&low, &ra, SECRET).unwrap_err(), Error::Hidden);
    assert_eq!(decrypt_mppe_key(&hidden[..20], &ra, SECRET).unwrap_err(), Error::Hidden);
}

#[test]
fn accounting_request_authenticator_is_md5_over_zeroes_and_secret() {
    let attrs = vec![Attribute::u32(attr::ACCT_STATUS_TYPE, 1), Attribute::new(attr::ACCT_SESSION_ID, b"s1".to_vec())];
    let (bytes, auth) = accounting_request(4, &attrs, SECRET).expect("builds");
    let mut zeroed = bytes.clone();
    zeroed[4..20].fill(0);
    assert_eq!(md5(&[&zeroed, SECRET]), auth);
    assert_eq!(auth_of(&bytes), auth);
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn two_servers() -> Config {
    Config {
        servers: vec![
            Server { addr: addr(1812), secret: zeroize::Zeroizing::new(b"one".to_vec()) },
            Server { addr: addr(1813), secret: zeroize::Zeroizing::new(b"two".to_vec()) },
        ],
        timeout: Duration::from_secs(1),
        retries: 1,
    }
}

#[test]
fn client_retransmits_then_fails_over_then_times_out() {
    let mut c = Client::new(two_servers());
    let t0 = Duration::ZERO;
    c.send(t0, 42, code::ACCESS_REQUEST, vec![Attribute::new(attr::USER_NAME, b"u".to_vec())], [1; 16]).expect("sends");
    let first = c.poll_transmit().expect("sent");
    assert_eq!(first.to, addr(1812));
    verify_request_message_authenticator(&first.bytes, b"one").expect("signed for server one");
    assert_eq!(c.poll_timeout(), Some(Duration::from_secs(1)));
    // Retransmitted unchanged after the timeout.
    assert!(c.handle_timeout(Duration::from_secs(1)).is_empty());
    assert_eq!(c.poll_transmit().expect("again"), first);
    // Then to the second server, signed with its secret.
    assert!(c.handle_timeout(Duration::from_secs(2)).is_empty());
    let second = c.poll_transmit().expect("failover");
    assert_eq!(second.to, addr(1813));
    verify_request_message_authenticator(&second.bytes, b"two").expect("signed for server two");
    assert_eq!(c.current_server(), 1);
    assert!(c.handle_timeout(Duration::from_secs(3)).is_empty());
    assert!(c.poll_transmit().is_some());
    let done = c.handle_timeout(Duration::from_secs(4));
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].tag, 42);
    assert!(matches!(done[0].outcome, Outcome::Timeout));
    assert_eq!(c.pending(), 0);
    let s = c.stats();
    assert_eq!((s.requests, s.retransmits, s.failovers, s.timeouts), (1, 2, 1, 1));
}

#[test]
fn client_takes_only_verified_replies_from_the_right_server() {
    let mut c = Client::new(two_servers());
    c.send(Duration::ZERO, 7, code::ACCESS_REQUEST, vec![], [5; 16]).expect("sends");
    let tx = c.poll_transmit().expect("sent");
    let id = tx.bytes[1];
    let good = server_reply(code::ACCESS_ACCEPT, id, &[5; 16], vec![], b"one");
    // From the wrong address, with the wrong secret, with another id.
    assert!(c.handle_datagram(Duration::ZERO, addr(1813), &good).is_none());
    let forged = server_reply(code::ACCESS_ACCEPT, id, &[5; 16], vec![], b"two");
    assert!(c.handle_datagram(Duration::ZERO, addr(1812), &forged).is_none());
    let other = server_reply(code::ACCESS_ACCEPT, id.wrapping_add(1), &[5; 16], vec![], b"one");
    assert!(c.handle_datagram(Duration::ZERO, addr(1812), &other).is_none());
    assert_eq!(c.stats().bad_replies, 3);
    let done = c.handle_datagram(Duration::ZERO, addr(1812), &good).expect("completes");
    assert_eq!(done.tag, 7);
    assert!(matches!(done.outcome, Outcome::Reply { server: 0, ref packet, .. } if packet.code == code::ACCESS_ACCEPT));
    // A duplicate of the reply completes nothing.
    assert!(c.handle_datagram(Duration::ZERO, addr(1812), &good).is_none());
}

#[test]
fn client_queues_beyond_256_in_flight() {
    let mut c = Client::new(two_servers());
    for tag in 0..300 {
        c.send(Duration::ZERO, tag, code::ACCESS_REQUEST, vec![], [0; 16]).expect("sends");
    }
    let sent: Vec<_> = std::iter::from_fn(|| c.poll_transmit()).collect();
    assert_eq!(sent.len(), 256);
    assert_eq!(c.pending(), 300);
    let id = sent[0].bytes[1];
    let reply = server_reply(code::ACCESS_REJECT, id, &[0; 16], vec![], b"one");
    assert!(c.handle_datagram(Duration::ZERO, addr(1812), &reply).is_some());
    // One slot freed, one waiting request sent.
    assert_eq!(std::iter::from_fn(|| c.poll_transmit()).count(), 1);
    assert_eq!(c.pending(), 299);
}

proptest! {
    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Packet::decode(&bytes);
        let _ = verify_reply(&bytes, &[0; 16], SECRET);
        if bytes.len() >= 2 {
            let _ = decrypt_mppe_key(&bytes, &[0; 16], SECRET);
        }
    }

    #[test]
    fn encode_decode_round_trip(code in any::<u8>(), id in any::<u8>(), attrs in proptest::collection::vec((any::<u8>(), proptest::collection::vec(any::<u8>(), 0..253)), 0..10)) {
        let p = Packet { code, identifier: id, authenticator: [1; 16], attributes: attrs.into_iter().map(|(t, v)| Attribute::new(t, v)).collect() };
        if let Ok(bytes) = p.encode() {
            prop_assert_eq!(Packet::decode(&bytes).expect("decodes"), p);
        }
    }
}
