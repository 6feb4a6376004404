//! Proposals: building SA payloads from configuration and choosing one
//! (RFC 7296 §2.7, §3.3).
//!
//! Guarantees:
//! * The responder picks by its own preference: its proposals in order, for
//!   each the peer's proposals in order; within a transform type, its own
//!   preferred value that the peer also offered.
//! * A peer proposal is acceptable only if every transform type it carries
//!   gets a value. A type the peer offers that we do not configure is
//!   accepted only if the peer also offers NONE for it (ESP KE = no PFS,
//!   RFC 9370 ADDKEn = none).
//! * RFC 9370 ADDKE1..7 are chosen independently, each like any other
//!   type, never the same method twice (NONE excepted, §2.2.2); proposals
//!   with ADDKE are offered with a classic fallback ([`with_fallbacks`]).
//! * The initiator accepts a response SA only if it carries exactly one
//!   proposal with exactly one transform per type, all of which one of its
//!   own proposals offered (§2.7: "the responder MUST NOT change").
use std::collections::BTreeMap;

use ike_wire::{
    AttributeValue, EncrId, EsnId, IntegId, KeId, PrfId, Proposal, ProtocolId, Sa, Transform, TransformAttrType,
    TransformType,
};

use crate::config::{EspProposal, IkeProposal};
use crate::error::ProtoError;

/// One transform value: ID and Key Length attribute (bits).
type Value = (u16, Option<u16>);

/// A proposal as sets of acceptable values per transform type, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Offer {
    by_type: BTreeMap<TransformType, Vec<Value>>,
}

impl Offer {
    fn from_wire(p: &Proposal<'_>) -> Self {
        let mut by_type: BTreeMap<TransformType, Vec<Value>> = BTreeMap::new();
        for t in &p.transforms {
            let v = (t.transform_id, key_length(t));
            let e = by_type.entry(t.transform_type).or_default();
            if !e.contains(&v) {
                e.push(v);
            }
        }
        Self { by_type }
    }

    fn ike(p: &IkeProposal) -> Self {
        let mut by_type = BTreeMap::new();
        by_type.insert(TransformType::ENCR, vec![(p.encr.0, p.key_bits)]);
        by_type.insert(TransformType::PRF, vec![(p.prf.0, None)]);
        if p.integ != IntegId::NONE {
            by_type.insert(TransformType::INTEG, vec![(p.integ.0, None)]);
        }
        by_type.insert(TransformType::KE, p.ke.iter().map(|k| (k.0, None)).collect());
        for (i, slot) in p.additional_ke.iter().enumerate().filter(|(_, s)| !s.is_empty()) {
            let Some(t) = u8::try_from(i + 1).ok().and_then(TransformType::addke) else { continue };
            by_type.insert(t, slot.iter().map(|k| (k.0, None)).collect());
        }
        if !p.kwa.is_empty() {
            by_type.insert(TransformType::KWA, p.kwa.iter().map(|k| (k.0, None)).collect());
        }
        Self { by_type }
    }

    fn esp(p: &EspProposal, with_ke: bool) -> Self {
        let mut by_type = BTreeMap::new();
        by_type.insert(TransformType::ENCR, vec![(p.encr.0, p.key_bits)]);
        if p.integ != IntegId::NONE {
            by_type.insert(TransformType::INTEG, vec![(p.integ.0, None)]);
        }
        by_type.insert(TransformType::ESN, p.esn.iter().map(|e| (e.0, None)).collect());
        if with_ke && !p.pfs.is_empty() {
            by_type.insert(TransformType::KE, p.pfs.iter().map(|k| (k.0, None)).collect());
        }
        if with_ke {
            for (i, slot) in p.additional_ke.iter().enumerate().filter(|(_, s)| !s.is_empty()) {
                let Some(t) = u8::try_from(i + 1).ok().and_then(TransformType::addke) else { continue };
                by_type.insert(t, slot.iter().map(|k| (k.0, None)).collect());
            }
        }
        Self { by_type }
    }

    fn to_transforms(&self) -> Vec<Transform<'static>> {
        let mut out = Vec::new();
        for (t, values) in &self.by_type {
            for &(id, bits) in values {
                let mut tr = Transform::new(*t, id);
                if let Some(bits) = bits {
                    tr.attributes.push(ike_wire::Attribute {
                        attr_type: TransformAttrType::KEY_LENGTH,
                        value: AttributeValue::Tv(bits),
                    });
                }
                out.push(tr);
            }
        }
        out
    }
}

fn key_length(t: &Transform<'_>) -> Option<u16> {
    t.attributes.iter().find_map(|a| match a.value {
        AttributeValue::Tv(v) if a.attr_type == TransformAttrType::KEY_LENGTH => Some(v),
        _ => None,
    })
}

/// NONE is transform ID 0 for INTEG, KE and ADDKE (RFC 7296 §3.3.2, RFC 9370).
const NONE: u16 = 0;

fn is_addke(t: TransformType) -> bool {
    (TransformType::ADDKE1.0..=TransformType::ADDKE7.0).contains(&t.0)
}

/// Whether every transform type of `theirs` got a value in `c`, or is a
/// lone NONE (an optional type we left out).
fn covers(c: &BTreeMap<TransformType, Value>, theirs: &Offer) -> bool {
    theirs.by_type.iter().all(|(t, v)| c.contains_key(t) || v.iter().all(|v| v.0 == NONE))
}

/// Our choice for each transform type, or `None` if `theirs` is not
/// acceptable under `ours`.
fn choose(ours: &Offer, theirs: &Offer) -> Option<BTreeMap<TransformType, Value>> {
    let mut chosen = BTreeMap::new();
    // ADDKE slots: the candidates in our order, assigned together below.
    let mut slots: Vec<(TransformType, Vec<Value>)> = Vec::new();
    for (t, their_values) in &theirs.by_type {
        match ours.by_type.get(t) {
            Some(our_values) if is_addke(*t) => {
                slots.push((*t, our_values.iter().filter(|v| their_values.contains(v)).copied().collect()));
            }
            Some(our_values) => {
                let v = our_values.iter().find(|v| their_values.contains(v))?;
                chosen.insert(*t, *v);
            }
            None if their_values.iter().any(|v| v.0 == NONE) && *t != TransformType::ENCR && *t != TransformType::PRF => {
                // Optional for us: leave it out of the answer (NONE).
            }
            None => return None,
        }
    }
    for (t, our_values) in &ours.by_type {
        if !theirs.by_type.contains_key(t) && !our_values.iter().any(|v| v.0 == NONE) {
            return None;
        }
    }
    let mut picked = Vec::with_capacity(slots.len());
    if !assign_addke(&slots, &mut picked) {
        return None;
    }
    for ((t, _), v) in slots.iter().zip(picked) {
        chosen.insert(*t, v);
    }
    Some(chosen)
}

/// RFC 9370 §2.2.2: one value per ADDKE slot, never the same method in two
/// slots (NONE excepted); the first such assignment in our preference
/// order, slot by slot (at most 7 slots of a few values each).
fn assign_addke(slots: &[(TransformType, Vec<Value>)], picked: &mut Vec<Value>) -> bool {
    let Some((_, candidates)) = slots.get(picked.len()) else { return true };
    for v in candidates {
        if v.0 != NONE && picked.contains(v) {
            continue;
        }
        picked.push(*v);
        if assign_addke(slots, picked) {
            return true;
        }
        picked.pop();
    }
    false
}

/// The negotiated IKE SA algorithms.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IkeSuite {
    pub encr: EncrId,
    pub key_bits: Option<u16>,
    pub prf: PrfId,
    pub integ: IntegId,
    pub ke: KeId,
    /// RFC 9370 ADDKE1..7 methods chosen (NONE left out), in transform
    /// type order: the order of the additional key exchanges.
    pub additional_ke: Vec<KeId>,
    /// RFC 9838: the Key Wrap Algorithm of a G-IKEv2 registration SA.
    pub kwa: Option<ike_wire::KwaId>,
}

impl IkeSuite {
    /// Whether any of its key exchanges is ML-KEM (FIPS 203): a
    /// post-quantum IKE SA.
    pub fn has_pq_ke(&self) -> bool {
        std::iter::once(&self.ke).chain(&self.additional_ke).any(|k| matches!(*k, KeId::ML_KEM_512 | KeId::ML_KEM_768 | KeId::ML_KEM_1024))
    }
}

/// The negotiated Child SA algorithms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EspSuite {
    pub encr: EncrId,
    pub key_bits: Option<u16>,
    pub integ: IntegId,
    pub esn: bool,
    /// The PFS key exchange of a CREATE_CHILD_SA, if any.
    pub ke: Option<KeId>,
    /// RFC 9370 ADDKE1..7 of a CREATE_CHILD_SA, in slot order; `KeId::NONE`
    /// where none was chosen.
    pub additional_ke: [KeId; 7],
}

impl EspSuite {
    /// The additional key exchanges to run, in order.
    pub fn additional(&self) -> impl Iterator<Item = KeId> + '_ {
        self.additional_ke.iter().copied().filter(|k| *k != KeId::NONE)
    }
}

impl EspSuite {
    /// RFC 8750 implicit IV: the 8-octet IV is the sequence number and is
    /// not sent, so the SA must be rekeyed before the sequence number
    /// could repeat (the SA table's exhaustion-driven rekey does that).
    pub fn implicit_iv(&self) -> bool {
        ike_crypto::sk::is_implicit_iv(self.encr.0)
    }
}

fn ike_suite(c: &BTreeMap<TransformType, Value>) -> Option<IkeSuite> {
    let (encr, key_bits) = *c.get(&TransformType::ENCR)?;
    if ike_crypto::sk::is_implicit_iv(encr) {
        // RFC 8750 §4: "Not Allowed" for IKEv2, whatever a peer offers.
        return None;
    }
    let mut additional_ke = Vec::new();
    for n in 1..=7 {
        if let Some(v) = TransformType::addke(n).and_then(|t| c.get(&t)) {
            if v.0 != NONE {
                additional_ke.push(KeId(v.0));
            }
        }
    }
    Some(IkeSuite {
        encr: EncrId(encr),
        key_bits,
        prf: PrfId(c.get(&TransformType::PRF)?.0),
        integ: IntegId(c.get(&TransformType::INTEG).map_or(NONE, |v| v.0)),
        ke: KeId(c.get(&TransformType::KE)?.0),
        additional_ke,
        kwa: c.get(&TransformType::KWA).map(|v| ike_wire::KwaId(v.0)),
    })
}

fn esp_suite(c: &BTreeMap<TransformType, Value>) -> Option<EspSuite> {
    let (encr, key_bits) = *c.get(&TransformType::ENCR)?;
    Some(EspSuite {
        encr: EncrId(encr),
        key_bits,
        integ: IntegId(c.get(&TransformType::INTEG).map_or(NONE, |v| v.0)),
        esn: c.get(&TransformType::ESN).map_or(0, |v| v.0) == EsnId::ESN.0,
        ke: c.get(&TransformType::KE).filter(|v| v.0 != NONE).map(|v| KeId(v.0)),
        additional_ke: std::array::from_fn(|i| {
            u8::try_from(i + 1).ok().and_then(TransformType::addke).and_then(|t| c.get(&t)).map_or(KeId::NONE, |v| KeId(v.0))
        }),
    })
}

/// The SA payload offering our IKE proposals (numbered from 1); `spi` is
/// empty in IKE_SA_INIT and the new 8-octet SPI in an IKE rekey (§1.3.2).
///
/// A proposal with ADDKE transforms is followed by the same proposal without
/// them, unless one like that is configured anyway: a responder that
/// predates RFC 9370 refuses a proposal with unknown transform types
/// (RFC 7296 §3.3.6), and must still find one it can take.
pub fn ike_sa_payload(proposals: &[IkeProposal], spi: &[u8]) -> Sa<'static> {
    Sa {
        proposals: with_fallbacks(proposals)
            .iter()
            .enumerate()
            .map(|(i, p)| Proposal {
                proposal_num: u8::try_from(i + 1).unwrap_or(u8::MAX),
                protocol_id: ProtocolId::IKE,
                spi: spi.to_vec().into(),
                transforms: Offer::ike(p).to_transforms(),
            })
            .collect(),
    }
}

/// Our IKE proposals as offered: each one with ADDKE transforms followed by
/// its classic fallback (if not configured already).
pub fn with_fallbacks(proposals: &[IkeProposal]) -> Vec<IkeProposal> {
    let mut out: Vec<IkeProposal> = Vec::with_capacity(proposals.len());
    for p in proposals {
        out.push(p.clone());
        if p.has_additional_ke() {
            let classic = IkeProposal { additional_ke: Vec::new(), ..p.clone() };
            if !proposals.contains(&classic) && !out.contains(&classic) {
                out.push(classic);
            }
        }
    }
    out
}

/// Our ESP proposals as offered in CREATE_CHILD_SA (`with_pfs`): each one
/// with ADDKE followed by its fallback without (like [`with_fallbacks`]).
fn esp_with_fallbacks(proposals: &[EspProposal], with_pfs: bool) -> Vec<EspProposal> {
    let mut out: Vec<EspProposal> = Vec::with_capacity(proposals.len());
    for p in proposals {
        if !with_pfs || !p.has_additional_ke() {
            let plain = EspProposal { additional_ke: Vec::new(), ..p.clone() };
            if !out.contains(&plain) {
                out.push(plain);
            }
            continue;
        }
        out.push(p.clone());
        let classic = EspProposal { additional_ke: Vec::new(), ..p.clone() };
        if !proposals.contains(&classic) && !out.contains(&classic) {
            out.push(classic);
        }
    }
    out
}

/// Our IKE proposals with their ADDKE transforms left out (deduplicated):
/// for the exchanges that cannot run additional key exchanges.
pub fn without_addke(proposals: &[IkeProposal]) -> Vec<IkeProposal> {
    let mut out: Vec<IkeProposal> = Vec::with_capacity(proposals.len());
    for p in proposals {
        let classic = IkeProposal { additional_ke: Vec::new(), ..p.clone() };
        if !out.contains(&classic) {
            out.push(classic);
        }
    }
    out
}

/// The SA payload offering our ESP proposals with our inbound SPI;
/// `with_pfs` adds the KE transforms (CREATE_CHILD_SA only: the Child SA of
/// IKE_AUTH never has its own key exchange, §1.2).
pub fn esp_sa_payload(proposals: &[EspProposal], spi_in: u32, with_pfs: bool) -> Sa<'static> {
    Sa {
        proposals: esp_with_fallbacks(proposals, with_pfs)
            .iter()
            .enumerate()
            .map(|(i, p)| Proposal {
                proposal_num: u8::try_from(i + 1).unwrap_or(u8::MAX),
                protocol_id: ProtocolId::ESP,
                spi: spi_in.to_be_bytes().to_vec().into(),
                transforms: Offer::esp(p, with_pfs).to_transforms(),
            })
            .collect(),
    }
}

/// Responder: choose an IKE proposal. Returns the suite and the answer SA
/// payload (one proposal, its number kept, with `spi`).
/// `addke` false refuses outcomes with additional key exchanges (the peer
/// did not announce IKE_INTERMEDIATE, RFC 9370 §2.2.1).
pub fn select_ike(ours: &[IkeProposal], theirs: &Sa<'_>, spi: &[u8], addke: bool) -> Result<(IkeSuite, Sa<'static>), ProtoError> {
    // Our classic fallbacks count too: a peer whose ADDKE we cannot run
    // may still match one of our proposals without them.
    for o in &with_fallbacks(ours) {
        let our_offer = Offer::ike(o);
        for p in theirs.proposals.iter().filter(|p| p.protocol_id == ProtocolId::IKE) {
            let Some(c) = choose(&our_offer, &Offer::from_wire(p)) else { continue };
            let Some(suite) = ike_suite(&c) else { continue };
            if !addke && !suite.additional_ke.is_empty() {
                continue;
            }
            return Ok((suite, answer(p.proposal_num, ProtocolId::IKE, spi, &c)));
        }
    }
    Err(ProtoError::NoProposalChosen)
}

/// Responder: choose an ESP proposal. Returns the suite, the peer's SPI
/// (its inbound, our outbound) and the answer SA payload.
pub fn select_esp(
    ours: &[EspProposal],
    theirs: &Sa<'_>,
    spi_in: u32,
    with_pfs: bool,
) -> Result<(EspSuite, u32, Sa<'static>), ProtoError> {
    for o in &esp_with_fallbacks(ours, with_pfs) {
        let our_offer = Offer::esp(o, with_pfs);
        for p in theirs.proposals.iter().filter(|p| p.protocol_id == ProtocolId::ESP) {
            let Ok(spi) = <[u8; 4]>::try_from(&p.spi[..]) else { continue };
            let Some(c) = choose(&our_offer, &Offer::from_wire(p)) else { continue };
            let Some(suite) = esp_suite(&c) else { continue };
            return Ok((suite, u32::from_be_bytes(spi), answer(p.proposal_num, ProtocolId::ESP, &spi_in.to_be_bytes(), &c)));
        }
    }
    Err(ProtoError::NoProposalChosen)
}

fn answer(num: u8, protocol_id: ProtocolId, spi: &[u8], c: &BTreeMap<TransformType, Value>) -> Sa<'static> {
    let by_type = c.iter().map(|(t, v)| (*t, vec![*v])).collect();
    Sa {
        proposals: vec![Proposal {
            proposal_num: num,
            protocol_id,
            spi: spi.to_vec().into(),
            transforms: Offer { by_type }.to_transforms(),
        }],
    }
}

/// The single proposal of a response SA, checked to carry one transform
/// per type.
fn single<'p>(sa: &'p Sa<'_>, protocol_id: ProtocolId) -> Result<(&'p Proposal<'p>, Offer), ProtoError> {
    let [p] = &sa.proposals[..] else { return Err(ProtoError::NoProposalChosen) };
    if p.protocol_id != protocol_id {
        return Err(ProtoError::NoProposalChosen);
    }
    let offer = Offer::from_wire(p);
    if offer.by_type.values().any(|v| v.len() != 1) || offer.by_type.values().map(Vec::len).sum::<usize>() != p.transforms.len() {
        return Err(ProtoError::NoProposalChosen);
    }
    Ok((p, offer))
}

/// Initiator: the IKE suite the responder chose, if we offered it; also the
/// responder's SPI from the proposal (IKE rekey) as raw octets.
pub fn accept_ike(ours: &[IkeProposal], sa: &Sa<'_>) -> Result<(IkeSuite, Vec<u8>), ProtoError> {
    let (p, theirs) = single(sa, ProtocolId::IKE)?;
    for o in &with_fallbacks(ours) {
        if let Some(c) = choose(&Offer::ike(o), &theirs) {
            if covers(&c, &theirs) {
                if let Some(s) = ike_suite(&c) {
                    return Ok((s, p.spi.to_vec()));
                }
            }
        }
    }
    Err(ProtoError::NoProposalChosen)
}

/// Initiator: the ESP suite the responder chose and its SPI.
pub fn accept_esp(ours: &[EspProposal], sa: &Sa<'_>, with_pfs: bool) -> Result<(EspSuite, u32), ProtoError> {
    let (p, theirs) = single(sa, ProtocolId::ESP)?;
    let spi = <[u8; 4]>::try_from(&p.spi[..]).map_err(|_| ProtoError::NoProposalChosen)?;
    for o in &esp_with_fallbacks(ours, with_pfs) {
        if let Some(c) = choose(&Offer::esp(o, with_pfs), &theirs) {
            if covers(&c, &theirs) {
                if let Some(s) = esp_suite(&c) {
                    return Ok((s, u32::from_be_bytes(spi)));
                }
            }
        }
    }
    Err(ProtoError::NoProposalChosen)
}

/// Whether the peer's proposal `num` (in its request SA) offers KE method
/// `ke` — used to accept the initiator's KEi group without an
/// INVALID_KE_PAYLOAD round trip when it is acceptable.
pub fn offers_ke(theirs: &Sa<'_>, ke: KeId) -> bool {
    theirs
        .proposals
        .iter()
        .any(|p| p.transforms.iter().any(|t| t.transform_type == TransformType::KE && t.transform_id == ke.0))
}

/// Responder: like [`select_ike`] but preferring, among acceptable
/// outcomes, the one whose KE method equals the initiator's KE payload
/// (RFC 7296 §1.2: the group of KEi "MUST" be in the proposal; picking it
/// saves the INVALID_KE_PAYLOAD round trip).
pub fn select_ike_for_ke(
    ours: &[IkeProposal],
    theirs: &Sa<'_>,
    spi: &[u8],
    kei: KeId,
    addke: bool,
) -> Result<(IkeSuite, Sa<'static>), ProtoError> {
    for o in &with_fallbacks(ours) {
        if !o.ke.contains(&kei) {
            continue;
        }
        let mut pinned = o.clone();
        pinned.ke = vec![kei];
        if let Ok(r) = select_ike(std::slice::from_ref(&pinned), theirs, spi, addke) {
            return Ok(r);
        }
    }
    select_ike(ours, theirs, spi, addke)
}
