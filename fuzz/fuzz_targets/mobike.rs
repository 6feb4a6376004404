//! RFC 4555 MOBIKE notifies from arbitrary bytes: the input is a decrypted
//! payload chain (its first octet the first payload's type, as
//! `ike_decode` takes it); whatever parses goes through the MOBIKE check
//! (`ike_proto::ike_sa::parse_mobike`). It never panics, and what it
//! accepts keeps RFC 4555 §4.2's bounds: COOKIE2 of 8 to 64 octets, at most
//! 16 additional addresses, and an address list only with its notifies.
#![no_main]

use ike_proto::ike_sa::{parse_mobike, MobikeError};
use ike_wire::{parse_inner, NotifyType, Payload, PayloadType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let Ok(chain) = parse_inner(PayloadType(first), rest) else {
        return;
    };
    let notifies: Vec<_> = chain
        .iter()
        .filter_map(|p| match p {
            Payload::Notify(n) => Some(n),
            _ => None,
        })
        .collect();
    match parse_mobike(notifies.iter().copied()) {
        Ok(r) => {
            if let Some(c) = &r.cookie2 {
                assert!((8..=64).contains(&c.len()), "COOKIE2 of {} octets accepted", c.len());
            }
            let additional = notifies
                .iter()
                .filter(|n| matches!(n.notify_type, NotifyType::ADDITIONAL_IP4_ADDRESS | NotifyType::ADDITIONAL_IP6_ADDRESS))
                .count();
            let listed = r.addresses.as_ref().map_or(0, Vec::len);
            assert_eq!(listed, additional, "address list and notifies disagree");
            assert!(listed <= 16);
            assert_eq!(r.update, notifies.iter().any(|n| n.notify_type == NotifyType::UPDATE_SA_ADDRESSES));
        }
        Err(e) => {
            // Every refusal has a message for the log.
            let _: &MobikeError = &e;
            assert!(!e.to_string().is_empty());
        }
    }
});
