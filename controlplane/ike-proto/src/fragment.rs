//! IKE fragmentation (RFC 7383): splitting protected messages into SKF
//! payloads and reassembling received ones.
//!
//! Guarantees:
//! * Only messages that carry SK are fragmented (§2.5: never IKE_SA_INIT),
//!   and only when both peers announced IKEV2_FRAGMENTATION_SUPPORTED
//!   (§2.3). The plaintext inner chain is split and each chunk protected on
//!   its own (§2.5), with the IKE header and the SKF header as associated
//!   data; fragment 1 carries the first inner payload type, the others 0.
//!   Every fragment, headers included, fits the configured size.
//! * Reassembly (§2.6) verifies each fragment's ICV before keeping it,
//!   drops duplicates, restarts when a larger Total arrives and ignores a
//!   smaller one, refuses more than `max_fragments` fragments or more than
//!   `max_reassembled_len` octets, and is abandoned after
//!   `reassembly_timeout`; failures are silent.
use std::collections::BTreeMap;

use ike_crypto::sk::SkProtection;
use ike_crypto::Rng;
use ike_wire::{emit_inner, Header, Message, Payload, PayloadType, Skf, HEADER_LEN};

use crate::config::FragmentationConfig;
use crate::error::ProtoError;
use crate::message;
use crate::time::Time;

/// Generic payload header (4) plus Fragment Number and Total Fragments (4).
const SKF_HEADER_LEN: usize = 8;

/// Protects `inner`: one SK message, or SKF fragments of at most `max_len`
/// octets each when the SK message would be longer.
pub fn seal(
    header: Header,
    inner: &[Payload<'_>],
    out: &mut dyn SkProtection,
    rng: &mut dyn Rng,
    max_len: Option<usize>,
) -> Result<Vec<Vec<u8>>, ProtoError> {
    let whole = message::seal(header, inner, out, rng)?;
    let Some(max_len) = max_len.filter(|m| whole.len() > *m) else { return Ok(vec![whole]) };
    let (first_inner, plain) = emit_inner(inner)?;
    // Room for plaintext in one fragment: what is left after the headers
    // and the cipher's IV, padding and ICV (the worst case of one block).
    let overhead = HEADER_LEN + SKF_HEADER_LEN + out.sealed_len(0) + 16;
    let chunk_len = max_len.checked_sub(overhead).filter(|c| *c > 0).ok_or(ProtoError::Invalid("fragment size"))?;
    let chunks: Vec<&[u8]> = plain.chunks(chunk_len).collect();
    let total = u16::try_from(chunks.len()).map_err(|_| ProtoError::Invalid("too many fragments"))?;
    let mut fragments = Vec::with_capacity(chunks.len());
    for (i, chunk) in chunks.iter().enumerate() {
        let number = u16::try_from(i + 1).map_err(|_| ProtoError::Invalid("too many fragments"))?;
        let skf = Skf {
            first_inner: if number == 1 { first_inner } else { PayloadType::NONE },
            flags: 0,
            fragment_number: number,
            total_fragments: total,
            body: vec![0u8; out.sealed_len(chunk.len())].into(),
        };
        let mut bytes = Message::new(header, vec![Payload::Skf(skf)]).emit()?;
        let aad_end = HEADER_LEN + SKF_HEADER_LEN;
        let body = out.seal(&bytes[..aad_end], chunk, rng)?;
        if aad_end + body.len() != bytes.len() {
            return Err(ProtoError::Invalid("sealed fragment length"));
        }
        bytes[aad_end..].copy_from_slice(&body);
        fragments.push(bytes);
    }
    Ok(fragments)
}

/// A verified, decrypted fragment.
pub struct Fragment {
    pub number: u16,
    pub total: u16,
    pub first_inner: PayloadType,
    pub plain: Vec<u8>,
}

/// Verifies and decrypts the SKF payload of `bytes` (parsed as `msg`).
pub fn open(bytes: &[u8], msg: &Message<'_>, inbound: &dyn SkProtection) -> Result<Fragment, ProtoError> {
    let skf = msg.skf().ok_or(ProtoError::PayloadCount(PayloadType::SKF))?;
    let aad_end = bytes.len().checked_sub(skf.body.len()).ok_or(ProtoError::Integrity)?;
    let plain = inbound.open(&bytes[..aad_end], &skf.body).map_err(|_| ProtoError::Integrity)?;
    Ok(Fragment { number: skf.fragment_number, total: skf.total_fragments, first_inner: skf.first_inner, plain })
}

/// One message being reassembled.
struct Partial {
    total: u16,
    started: Time,
    first_inner: PayloadType,
    /// The datagram of fragment 1: a retransmitted request is recognised by
    /// it (§2.6.1).
    first_bytes: Vec<u8>,
    len: usize,
    fragments: BTreeMap<u16, Vec<u8>>,
}

/// A reassembled message: the inner chain and fragment 1's datagram.
pub struct Assembled {
    pub first_inner: PayloadType,
    pub plain: Vec<u8>,
    pub first_bytes: Vec<u8>,
}

/// Reassembly state of one IKE SA, per (is response, Message ID).
#[derive(Default)]
pub struct Reassembly {
    partial: BTreeMap<(bool, u32), Partial>,
}

impl Reassembly {
    /// Adds a verified fragment; the whole message once every fragment is in.
    pub fn add(&mut self, cfg: &FragmentationConfig, now: Time, key: (bool, u32), bytes: &[u8], f: Fragment) -> Option<Assembled> {
        if f.total > cfg.max_fragments || f.number == 0 || f.number > f.total {
            return None;
        }
        let restart = match self.partial.get(&key) {
            None => true,
            // §2.6.2: a larger Total means the sender re-fragmented
            // (smaller PMTU); start over. A smaller one is stale.
            Some(p) if f.total > p.total => true,
            Some(p) if f.total < p.total => return None,
            Some(_) => false,
        };
        if restart {
            // At most one message per direction is in flight (window 1):
            // anything older of the same direction is abandoned.
            self.partial.retain(|k, _| k.0 != key.0);
            self.partial.insert(
                key,
                Partial { total: f.total, started: now, first_inner: PayloadType::NONE, first_bytes: Vec::new(), len: 0, fragments: BTreeMap::new() },
            );
        }
        let p = self.partial.get_mut(&key)?;
        if p.fragments.contains_key(&f.number) {
            return None;
        }
        p.len += f.plain.len();
        if p.len > cfg.max_reassembled_len {
            self.partial.remove(&key);
            return None;
        }
        if f.number == 1 {
            p.first_inner = f.first_inner;
            p.first_bytes = bytes.to_vec();
        }
        p.fragments.insert(f.number, f.plain);
        if p.fragments.len() < usize::from(p.total) {
            return None;
        }
        let p = self.partial.remove(&key)?;
        let plain = p.fragments.into_values().flatten().collect();
        Some(Assembled { first_inner: p.first_inner, plain, first_bytes: p.first_bytes })
    }

    /// Drops reassemblies older than the timeout.
    pub fn expire(&mut self, cfg: &FragmentationConfig, now: Time) {
        self.partial.retain(|_, p| p.started + cfg.reassembly_timeout > now);
    }

    pub fn deadline(&self, cfg: &FragmentationConfig) -> Option<Time> {
        self.partial.values().map(|p| p.started + cfg.reassembly_timeout).min()
    }
}
