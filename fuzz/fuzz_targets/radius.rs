//! RADIUS replies as esprit-ike's client meets them (radius-wire): any
//! datagram from a server address must be decoded, verified or refused
//! without a panic, and the hidden MS-MPPE keys decrypted or refused.
#![no_main]
use std::net::SocketAddr;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use radius_wire::client::{Client, Config, Server};
use radius_wire::{attr, code, Attribute, Packet};

fuzz_target!(|data: &[u8]| {
    let secret = b"fuzz-secret";
    let ra = [7u8; 16];
    if let Ok(p) = Packet::decode(data) {
        let _ = p.eap_message();
        let _ = p.encode();
        let _ = radius_wire::msk(&p, &ra, secret);
        for v in p.all(attr::VENDOR_SPECIFIC) {
            let _ = radius_wire::decrypt_mppe_key(v, &ra, secret);
        }
    }
    let _ = radius_wire::verify_reply(data, &ra, secret);
    let _ = radius_wire::unhide_password(data, &ra, secret);
    // Through the client: a request in flight, the input as its reply.
    let server: SocketAddr = ([127, 0, 0, 1], 1812).into();
    let mut c = Client::new(Config {
        servers: vec![Server { addr: server, secret: zeroize::Zeroizing::new(secret.to_vec()) }],
        timeout: Duration::from_secs(1),
        retries: 1,
    });
    let mut attrs = Vec::new();
    radius_wire::push_eap_message(&mut attrs, &[2, 1, 0, 6, 1, b'a']);
    attrs.push(Attribute::new(attr::USER_NAME, b"a".to_vec()));
    if c.send(Duration::ZERO, 1, code::ACCESS_REQUEST, attrs, ra).is_ok() {
        let _ = c.poll_transmit();
        let _ = c.handle_datagram(Duration::ZERO, server, data);
    }
});
