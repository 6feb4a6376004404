//! ESP header compression negotiated with N(HCP_PROPOSAL)
//! (draft-ietf-ipsecme-ikev2-diet-esp-extension-04, the newest revision
//! whose body text could be read) for the Diet-ESP profile
//! (draft-ietf-ipsecme-diet-esp-07, the newest revision found).
//!
//! Revisions -05 (March 2025), -06 and -07 (15 February 2026) of the
//! extension exist, but only their front pages could be read (title,
//! authors and abstract, unchanged from -04 except that -07's abstract says
//! "Attributes for Rule Derivation" where -04 says "Attributes for Rules
//! Generation"). Their notify layout, attribute types, values and defaults
//! were NOT checked; nothing here is taken from them. The authors' GitHub
//! repository has a commit titled "version 5" (March 2025) that is not -05:
//! it pastes back the -00 text (EHC_SUPPORTED, bit-mask parameters) over
//! the Markdown while the .txt/.xml there stay -04. docs/diet-esp.md lists
//! what was searched.
//!
//! * The initiator of IKE_AUTH or CREATE_CHILD_SA lists its proposals, each
//!   an HCP Name and the Attributes for Rules Generation it restricts (an
//!   AfRG left out may take any value; a repeated one lists values; a range
//!   uses `range_afrg_proposal`, §5.1). A rekey proposes exactly the profile
//!   of the SA it replaces, so the profile survives rekeys.
//! * The responder discards a proposal with an unknown HCP Name or an
//!   unknown AfRG (§3), picks the first of the initiator's proposals its own
//!   policy accepts and answers with that one proposal, one value per AfRG,
//!   no ranges. When every proposal it understood failed on a value it
//!   refuses the Child SA with NO_PROPOSAL_CHOSEN (§3 SHOULD); when it
//!   understood none, it ignores the notify: the Child SA is uncompressed.
//! * The initiator checks that the answer is one of its proposals with
//!   values it offered, or fails the Child SA. No answer: uncompressed (a
//!   peer that does not know the notify ignores it, RFC 7296 §3.10.1).
//!
//! No value here is assigned by IANA yet. Every one of them lives in
//! [`HcpCodePoints`] (YAML `ike.diet_esp_code_points`), with the draft's
//! proposed values where it proposes one and private-use values otherwise.

use ike_wire::payload::hcp::HcpProposal;
use ike_wire::payload::sa::{Attribute, AttributeValue};
use ike_wire::{Notify, NotifyType, Payload};

use crate::error::ProtoError;

/// The revision of the IKEv2 extension implemented.
pub const EXTENSION_REVISION: &str = "draft-ietf-ipsecme-ikev2-diet-esp-extension-04";
/// The revision of the compression profile implemented.
pub const PROFILE_REVISION: &str = "draft-ietf-ipsecme-diet-esp-07";

/// Every code point the drafts leave unassigned, in one place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HcpCodePoints {
    /// Notify status type HCP_PROPOSAL (ext-04 §8.1: TBA1). Default from the
    /// RFC 7296 §3.10.1 private-use status range 40960-65535, clear of the
    /// private notifies strongSwan (40960-40970) and libreswan use.
    pub hcp_proposal: NotifyType,
    /// HCP Name "Diet-ESP" (ext-04 §8.3 proposes 0).
    pub diet_esp: u8,
    /// AfRG types (ext-04 §8.4 proposes 0-5; its table names the SN one
    /// "esp_spi_sn").
    pub dscp_cda: u16,
    pub ecn_cda: u16,
    pub flow_label_cda: u16,
    pub alignment: u16,
    pub esp_spi_lsb: u16,
    pub esp_sn_lsb: u16,
    /// `esp_trailer`: ext-04 §7 defines it and §8.6 its values but Table 3
    /// gives it no code point. Default: 16384, the first of the RFC 7296
    /// §3.3.5 private-use attribute types.
    pub esp_trailer: u16,
    /// `range_afrg_proposal` (ext-04 §8.2 proposes 65535, which does not fit
    /// the 15-bit attribute type; default 32767, the largest that does).
    pub range_afrg: u16,
}

impl Default for HcpCodePoints {
    fn default() -> Self {
        Self {
            hcp_proposal: NotifyType(0xd1e5),
            diet_esp: 0,
            dscp_cda: 0,
            ecn_cda: 1,
            flow_label_cda: 2,
            alignment: 3,
            esp_spi_lsb: 4,
            esp_sn_lsb: 5,
            esp_trailer: 16384,
            range_afrg: 0x7fff,
        }
    }
}

/// The Diet-ESP AfRGs the extension negotiates, in a fixed order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Afrg {
    DscpCda = 0,
    EcnCda = 1,
    FlowLabelCda = 2,
    Alignment = 3,
    EspTrailer = 4,
    EspSpiLsb = 5,
    EspSnLsb = 6,
}

impl Afrg {
    pub const ALL: [Afrg; 7] =
        [Afrg::DscpCda, Afrg::EcnCda, Afrg::FlowLabelCda, Afrg::Alignment, Afrg::EspTrailer, Afrg::EspSpiLsb, Afrg::EspSnLsb];

    pub fn name(self) -> &'static str {
        ["dscp_cda", "ecn_cda", "flow_label_cda", "alignment", "esp_trailer", "esp_spi_lsb", "esp_sn_lsb"][self as usize]
    }

    /// Largest value of the AfRG's registry (ext-04 §8.5, §8.6; LSBs 0-32).
    fn max(self) -> u16 {
        [2, 1, 3, 3, 1, 32, 32][self as usize]
    }

    /// Default when left out (ext-04 §7): not_compressed, 64 bit,
    /// Optional, 32 bits of SPI and SN.
    pub fn default_value(self) -> u8 {
        [0, 0, 0, 3, 1, 32, 32][self as usize]
    }

    fn code(self, cp: &HcpCodePoints) -> u16 {
        match self {
            Afrg::DscpCda => cp.dscp_cda,
            Afrg::EcnCda => cp.ecn_cda,
            Afrg::FlowLabelCda => cp.flow_label_cda,
            Afrg::Alignment => cp.alignment,
            Afrg::EspTrailer => cp.esp_trailer,
            Afrg::EspSpiLsb => cp.esp_spi_lsb,
            Afrg::EspSnLsb => cp.esp_sn_lsb,
        }
    }

    fn from_code(t: u16, cp: &HcpCodePoints) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.code(cp) == t)
    }

    /// Value names for YAML and `list-sas` (the drafts' designations).
    pub fn value_name(self, v: u8) -> String {
        let names: &[&str] = match self {
            Afrg::DscpCda => &["not_compressed", "lower", "sa"],
            Afrg::EcnCda => &["not_compressed", "lower"],
            Afrg::FlowLabelCda => &["not_compressed", "lower", "generated", "zero"],
            Afrg::Alignment => &["8bit", "16bit", "32bit", "64bit"],
            Afrg::EspTrailer => &["mandatory", "optional"],
            Afrg::EspSpiLsb | Afrg::EspSnLsb => return v.to_string(),
        };
        names.get(usize::from(v)).map_or_else(|| v.to_string(), |s| (*s).to_string())
    }

    /// Parse a value as written in YAML: a designation or, for LSBs, a number.
    pub fn parse_value(self, s: &str) -> Option<u8> {
        (0..=self.max() as u8).find(|&v| self.value_name(v) == s)
    }
}

/// A negotiated Diet-ESP profile: one registry value per AfRG, applying to
/// both directions of the Child SA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DietProfile {
    pub values: [u8; 7],
}

impl DietProfile {
    pub fn get(&self, a: Afrg) -> u8 {
        self.values[a as usize]
    }

    /// `dscp_cda=lower,ecn_cda=lower,...` for `list-sas` and logs.
    pub fn describe(&self) -> String {
        Afrg::ALL.iter().map(|a| format!("{}={}", a.name(), a.value_name(self.get(*a)))).collect::<Vec<_>>().join(",")
    }
}

/// One proposal of our policy: per AfRG the acceptable values, most
/// preferred first; an empty list leaves that AfRG to the peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HcpPolicy {
    pub values: [Vec<u8>; 7],
}

impl HcpPolicy {
    fn allowed(&self, a: Afrg) -> Vec<u8> {
        let v = &self.values[a as usize];
        if v.is_empty() {
            // Left open: the default (ext-04 §7) first, then the others.
            let d = a.default_value();
            std::iter::once(d).chain((0..=a.max() as u8).filter(|&x| x != d)).filter(|&x| acceptable_value(a, x)).collect()
        } else {
            v.clone()
        }
    }
}

/// Values this implementation can run: everything but the `sa` DSCP CDA,
/// whose DSCP list would come from a DSCP notify we do not implement
/// (draft-mglt-ipsecme-dscp-np, diet-esp-07 §4.2).
fn acceptable_value(a: Afrg, v: u8) -> bool {
    u16::from(v) <= a.max() && !(a == Afrg::DscpCda && v == 2)
}

/// A connection's compression policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompressionConfig {
    pub proposals: Vec<HcpPolicy>,
    pub code_points: HcpCodePoints,
}

/// What one received proposal allows: per AfRG a set of values (bit i =
/// value i; absent AfRG = every value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Offer {
    id: u8,
    sets: [u64; 7],
}

enum Parsed {
    Offer(Offer),
    /// Unknown HCP Name or AfRG: the whole proposal is discarded (§3).
    Unknown,
    /// A value outside the registries.
    BadValue,
}

fn full(a: Afrg) -> u64 {
    (1u64 << (a.max() + 1)) - 1
}

fn parse_offer(p: &HcpProposal<'_>, cp: &HcpCodePoints, allow_ranges: bool) -> Parsed {
    if p.hcp_name != cp.diet_esp {
        return Parsed::Unknown;
    }
    let mut sets = [0u64; 7];
    let mut seen = [false; 7];
    for attr in &p.attributes {
        let (a, set) = match &attr.value {
            AttributeValue::Tv(v) => {
                let Some(a) = Afrg::from_code(attr.attr_type, cp) else { return Parsed::Unknown };
                if *v > a.max() {
                    return Parsed::BadValue;
                }
                (a, 1u64 << v)
            }
            AttributeValue::Tlv(d) if attr.attr_type == cp.range_afrg && allow_ranges => {
                // §5.1: AfRG_min | AfRG_max, both TV of the same type.
                let Ok(bounds) = HcpProposal::read_list_attrs(d) else { return Parsed::Unknown };
                let [lo, hi] = &bounds[..] else { return Parsed::Unknown };
                let (AttributeValue::Tv(l), AttributeValue::Tv(h)) = (&lo.value, &hi.value) else { return Parsed::Unknown };
                let Some(a) = Afrg::from_code(lo.attr_type, cp).filter(|_| lo.attr_type == hi.attr_type) else {
                    return Parsed::Unknown;
                };
                if l > h || *h > a.max() {
                    return Parsed::BadValue;
                }
                (a, ((1u64 << (h + 1)) - 1) & !((1u64 << l) - 1))
            }
            _ => return Parsed::Unknown,
        };
        sets[a as usize] |= set;
        seen[a as usize] = true;
    }
    for a in Afrg::ALL {
        if !seen[a as usize] {
            sets[a as usize] = full(a);
        }
    }
    Parsed::Offer(Offer { id: p.id, sets })
}

/// A proposal's AfRGs: TV for one value, repeated for a few, a range for a
/// run of three or more LSB widths.
fn policy_attrs(pol: &HcpPolicy, cp: &HcpCodePoints) -> Vec<Attribute<'static, u16>> {
    let mut out = Vec::new();
    for a in Afrg::ALL {
        let vals = &pol.values[a as usize];
        if vals.is_empty() {
            continue;
        }
        let (lo, hi) = (*vals.iter().min().unwrap_or(&0), *vals.iter().max().unwrap_or(&0));
        let contiguous = usize::from(hi - lo) + 1 == vals.len();
        if matches!(a, Afrg::EspSpiLsb | Afrg::EspSnLsb) && contiguous && vals.len() >= 3 {
            let mut d = Vec::with_capacity(8);
            d.extend_from_slice(&(0x8000 | a.code(cp)).to_be_bytes());
            d.extend_from_slice(&u16::from(lo).to_be_bytes());
            d.extend_from_slice(&(0x8000 | a.code(cp)).to_be_bytes());
            d.extend_from_slice(&u16::from(hi).to_be_bytes());
            out.push(Attribute { attr_type: cp.range_afrg, value: AttributeValue::Tlv(d.into()) });
        } else {
            out.extend(vals.iter().map(|&v| HcpProposal::tv(a.code(cp), v.into())));
        }
    }
    out
}

fn notify(cp: &HcpCodePoints, list: &[HcpProposal<'_>]) -> Result<Payload<'static>, ProtoError> {
    let data = HcpProposal::write_list(list).map_err(|_| ProtoError::Invalid("HCP_PROPOSAL too long"))?;
    Ok(Payload::Notify(Notify::new(cp.hcp_proposal, data)))
}

fn profile_proposal(id: u8, prof: &DietProfile, cp: &HcpCodePoints) -> HcpProposal<'static> {
    HcpProposal {
        id,
        hcp_name: cp.diet_esp,
        attributes: Afrg::ALL.iter().map(|a| HcpProposal::tv(a.code(cp), prof.get(*a).into())).collect(),
    }
}

impl CompressionConfig {
    /// The initiator's N(HCP_PROPOSAL): our proposals, numbered from 1, or
    /// for a rekey exactly the profile of the SA it replaces (`keep`).
    pub fn request(&self, keep: Option<&DietProfile>) -> Result<Payload<'static>, ProtoError> {
        let cp = &self.code_points;
        let list: Vec<_> = match keep {
            Some(prof) => vec![profile_proposal(1, prof, cp)],
            None => self
                .proposals
                .iter()
                .enumerate()
                .map(|(i, pol)| HcpProposal { id: (i + 1) as u8, hcp_name: cp.diet_esp, attributes: policy_attrs(pol, cp) })
                .collect(),
        };
        notify(cp, &list)
    }

    /// The responder's choice. `data` is the initiator's notify data;
    /// `udp_encap` whether ESP goes in UDP (then the SPI keeps at least 8
    /// bits, so no packet starts like the RFC 3948 Non-ESP Marker).
    /// `Ok(None)`: nothing we understood, no compression and no answer.
    pub fn respond(&self, data: &[u8], udp_encap: bool) -> Result<Option<(Payload<'static>, DietProfile)>, ProtoError> {
        let cp = &self.code_points;
        let Ok(list) = HcpProposal::read_list(data) else { return Ok(None) };
        let mut value_refused = false;
        for p in &list {
            let offer = match parse_offer(p, cp, true) {
                Parsed::Offer(o) => o,
                Parsed::Unknown => continue,
                Parsed::BadValue => {
                    value_refused = true;
                    continue;
                }
            };
            match self.proposals.iter().find_map(|pol| choose(pol, &offer, udp_encap)) {
                Some(prof) => return Ok(Some((notify(cp, &[profile_proposal(offer.id, &prof, cp)])?, prof))),
                None => value_refused = true,
            }
        }
        if value_refused {
            Err(ProtoError::NoProposalChosen)
        } else {
            Ok(None)
        }
    }

    /// The initiator's check of the answer against what it sent (`keep`
    /// as given to [`Self::request`]).
    pub fn accept(&self, keep: Option<&DietProfile>, data: &[u8]) -> Result<DietProfile, ProtoError> {
        let cp = &self.code_points;
        let bad = ProtoError::Invalid("HCP_PROPOSAL answer");
        let list = HcpProposal::read_list(data).map_err(|_| bad.clone())?;
        let [p] = &list[..] else { return Err(bad) };
        // §3: one value per AfRG, each at most once, no ranges.
        let Parsed::Offer(answer) = parse_offer(p, cp, false) else { return Err(bad) };
        let mut seen = [0u8; 7];
        for attr in &p.attributes {
            if let Some(a) = Afrg::from_code(attr.attr_type, cp) {
                seen[a as usize] += 1;
            }
        }
        if seen.iter().any(|&n| n > 1) {
            return Err(bad);
        }
        let mut values = [0u8; 7];
        for a in Afrg::ALL {
            values[a as usize] = if seen[a as usize] == 1 {
                answer.sets[a as usize].trailing_zeros() as u8
            } else {
                a.default_value()
            };
        }
        let prof = DietProfile { values };
        let offered = match keep {
            Some(k) => (p.id == 1 && *k == prof).then_some(()),
            None => {
                let pol = self.proposals.get(usize::from(p.id).wrapping_sub(1)).ok_or(bad.clone())?;
                Afrg::ALL.iter().all(|a| pol.allowed(*a).contains(&prof.get(*a))).then_some(())
            }
        };
        if offered.is_none() || (prof.get(Afrg::EspSpiLsb) + prof.get(Afrg::EspSnLsb)) % 8 != 0 {
            return Err(bad);
        }
        Ok(prof)
    }

    /// The notify data of HCP_PROPOSAL among a message's payloads.
    pub fn find<'p>(&self, payloads: &'p [Payload<'_>]) -> Option<&'p [u8]> {
        payloads.iter().find_map(|p| match p {
            Payload::Notify(n) if n.notify_type == self.code_points.hcp_proposal => Some(&n.data[..]),
            _ => None,
        })
    }
}

/// Our values for an offer: per AfRG our most preferred value the offer
/// allows; the SPI/SN widths as the first pair (in our preference) whose
/// sum is whole octets (diet-esp-07 §5.3).
fn choose(pol: &HcpPolicy, offer: &Offer, udp_encap: bool) -> Option<DietProfile> {
    let mut values = [0u8; 7];
    for a in [Afrg::DscpCda, Afrg::EcnCda, Afrg::FlowLabelCda, Afrg::Alignment, Afrg::EspTrailer] {
        values[a as usize] = pol.allowed(a).into_iter().find(|&v| offer.sets[a as usize] & (1 << v) != 0)?;
    }
    let ok = |a: Afrg| -> Vec<u8> {
        pol.allowed(a).into_iter().filter(|&v| offer.sets[a as usize] & (1 << v) != 0).collect()
    };
    let (spis, sns) = (ok(Afrg::EspSpiLsb), ok(Afrg::EspSnLsb));
    let (spi, sn) = spis
        .iter()
        // Over UDP: whole SPI octets, at least one (the SPI's octets are
        // never zero, so the compressed header never starts with one).
        .filter(|&&s| !udp_encap || (s >= 8 && s % 8 == 0))
        .find_map(|&s| sns.iter().find(|&&n| (s + n) % 8 == 0).map(|&n| (s, n)))?;
    values[Afrg::EspSpiLsb as usize] = spi;
    values[Afrg::EspSnLsb as usize] = sn;
    Some(DietProfile { values })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pol(pairs: &[(Afrg, &[u8])]) -> HcpPolicy {
        let mut p = HcpPolicy::default();
        for (a, v) in pairs {
            p.values[*a as usize] = v.to_vec();
        }
        p
    }

    fn cfg(p: Vec<HcpPolicy>) -> CompressionConfig {
        CompressionConfig { proposals: p, code_points: HcpCodePoints::default() }
    }

    fn data(p: &Payload<'_>) -> Vec<u8> {
        match p {
            Payload::Notify(n) => n.data.to_vec(),
            _ => panic!("not a notify"),
        }
    }

    #[test]
    fn responder_picks_its_preference_inside_the_offer() {
        let init = cfg(vec![pol(&[(Afrg::DscpCda, &[1]), (Afrg::Alignment, &[0, 3]), (Afrg::EspSpiLsb, &[8, 9, 10, 11, 12, 16]), (Afrg::EspSnLsb, &[8, 16])])]);
        let resp = cfg(vec![pol(&[(Afrg::DscpCda, &[1, 0]), (Afrg::Alignment, &[0]), (Afrg::EspSpiLsb, &[12, 8]), (Afrg::EspSnLsb, &[8, 12])])]);
        let req = data(&init.request(None).unwrap());
        let (ans, prof) = resp.respond(&req, false).unwrap().unwrap();
        // SPI 12 has no SN partner in whole octets inside the offer: 8 + 8.
        assert_eq!(
            prof.describe(),
            "dscp_cda=lower,ecn_cda=not_compressed,flow_label_cda=not_compressed,alignment=8bit,esp_trailer=optional,esp_spi_lsb=8,esp_sn_lsb=8"
        );
        assert_eq!(init.accept(None, &data(&ans)).unwrap(), prof);
    }

    #[test]
    fn unknown_names_and_afrgs_void_a_proposal_values_refuse_it() {
        let resp = cfg(vec![pol(&[(Afrg::EspSpiLsb, &[8])])]);
        let cp = HcpCodePoints::default();
        // An unknown HCP Name, and an unknown AfRG: ignored, no compression.
        let unknown = HcpProposal::write_list(&[
            HcpProposal { id: 1, hcp_name: 9, attributes: vec![] },
            HcpProposal { id: 2, hcp_name: 0, attributes: vec![HcpProposal::tv(77, 1)] },
        ])
        .unwrap();
        assert_eq!(resp.respond(&unknown, false).unwrap(), None);
        // A known proposal whose SPI width we refuse: NO_PROPOSAL_CHOSEN.
        let refuse = HcpProposal::write_list(&[HcpProposal { id: 1, hcp_name: 0, attributes: vec![HcpProposal::tv(cp.esp_spi_lsb, 16)] }]).unwrap();
        assert_eq!(resp.respond(&refuse, false).unwrap_err(), ProtoError::NoProposalChosen);
        // The `sa` DSCP CDA alone: refused (no DSCP list to index).
        let sa = HcpProposal::write_list(&[HcpProposal { id: 1, hcp_name: 0, attributes: vec![HcpProposal::tv(cp.dscp_cda, 2)] }]).unwrap();
        assert_eq!(cfg(vec![HcpPolicy::default()]).respond(&sa, false).unwrap_err(), ProtoError::NoProposalChosen);
        // Malformed data: ignored like an unknown notify.
        assert_eq!(resp.respond(&[1, 0, 0], false).unwrap(), None);
    }

    #[test]
    fn nat_keeps_eight_spi_bits() {
        let init = cfg(vec![pol(&[(Afrg::EspSpiLsb, &[0, 8]), (Afrg::EspSnLsb, &[8])])]);
        let resp = cfg(vec![pol(&[(Afrg::EspSpiLsb, &[0, 8])])]);
        let req = data(&init.request(None).unwrap());
        assert_eq!(resp.respond(&req, false).unwrap().unwrap().1.get(Afrg::EspSpiLsb), 0);
        assert_eq!(resp.respond(&req, true).unwrap().unwrap().1.get(Afrg::EspSpiLsb), 8);
    }

    #[test]
    fn initiator_refuses_answers_it_did_not_offer() {
        let init = cfg(vec![pol(&[(Afrg::Alignment, &[0])])]);
        let cp = HcpCodePoints::default();
        let answer = |id, attrs: Vec<Attribute<'static, u16>>| HcpProposal::write_list(&[HcpProposal { id, hcp_name: 0, attributes: attrs }]).unwrap();
        assert!(init.accept(None, &answer(1, vec![HcpProposal::tv(cp.alignment, 0)])).is_ok());
        // Another value, another proposal id, a repeated AfRG, two proposals.
        assert!(init.accept(None, &answer(1, vec![HcpProposal::tv(cp.alignment, 3)])).is_err());
        assert!(init.accept(None, &answer(2, vec![HcpProposal::tv(cp.alignment, 0)])).is_err());
        assert!(init.accept(None, &answer(1, vec![HcpProposal::tv(cp.alignment, 0), HcpProposal::tv(cp.alignment, 0)])).is_err());
        // Left out, alignment defaults to 64 bit, which we did not offer.
        assert!(init.accept(None, &answer(1, vec![])).is_err());
    }

    #[test]
    fn a_rekey_proposes_the_old_profile_only() {
        let c = cfg(vec![pol(&[(Afrg::EspSpiLsb, &[8, 16]), (Afrg::EspSnLsb, &[8, 16])])]);
        let old = DietProfile { values: [1, 1, 1, 0, 1, 16, 16] };
        let req = data(&c.request(Some(&old)).unwrap());
        let list = HcpProposal::read_list(&req).unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].attributes.len(), 7);
        let resp = cfg(vec![HcpPolicy::default()]);
        let (ans, prof) = resp.respond(&req, false).unwrap().unwrap();
        assert_eq!(prof, old);
        assert_eq!(c.accept(Some(&old), &data(&ans)).unwrap(), old);
    }

    #[test]
    fn ranges_of_lsb_widths_go_out_as_range_afrg() {
        let c = cfg(vec![pol(&[(Afrg::EspSpiLsb, &[6, 7, 8])])]);
        let req = data(&c.request(None).unwrap());
        // ext-04 §5.1 Figure 5: range 6..8 of esp_spi_lsb.
        assert_eq!(hex::encode(&req), "0100000c7fff00088004000680040008");
    }
}
