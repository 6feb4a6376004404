//! GSA policies (§4.4) and KD key bags (§4.5) between their wire form and
//! the values both roles work with.
//!
//! Guarantees:
//! * Building: a KEK policy carries ENCR, INTEG only for a non-AEAD cipher,
//!   GCAUTH only in registrations (§4.4.2.1: "the authentication method never
//!   changes"), KWA, and GSA_KEY_LIFETIME; a TEK policy carries ENCR and the
//!   Sequence Numbers transform (MUST for every Data-Security SA) and never
//!   ESN; every SA_KEY is wrapped (Key ID 0).
//! * Parsing (GM): every mandatory transform exactly once, ESP or
//!   GIKE_UPDATE only, SPI sizes 4 and 16, ESN refused, key bags matched to
//!   policies by (protocol, SPI); anything else is a [`ProtoError`] and
//!   nothing of the message is used.
use ike_crypto::Secret;
use ike_wire::{
    Attribute, AttributeValue, EncrId, GcauthId, GroupKeyBagAttrType, GroupPolicy, Gsa, GsaAttrType, GsaPolicy, GwpAttrType, IntegId, Kd, KeyBag,
    KwaId, MemberKeyBagAttrType, ProtocolId, Transform, TransformAttrType, TransformType,
};

use super::config::SequenceMode;
use crate::error::ProtoError;
use crate::proposal::EspSuite;
use crate::ts::TrafficSelector;

/// §4.5.4 wrapped key: `Key ID (4) | KWK ID (4) | Encrypted Key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedKey {
    /// 0 = the SA's keying material (SA_KEY); non-zero = a KWK (WRAP_KEY).
    pub key_id: u32,
    /// 0 = wrapped with the default KWK GSK_w; else a WRAP_KEY's Key ID.
    pub kwk_id: u32,
    pub wrapped: Vec<u8>,
}

impl WrappedKey {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(8 + self.wrapped.len());
        v.extend_from_slice(&self.key_id.to_be_bytes());
        v.extend_from_slice(&self.kwk_id.to_be_bytes());
        v.extend_from_slice(&self.wrapped);
        v
    }

    pub fn decode(b: &[u8]) -> Result<Self, ProtoError> {
        if b.len() < 8 + 16 {
            return Err(ProtoError::Invalid("wrapped key"));
        }
        let id = |r: &[u8]| u32::from_be_bytes([r[0], r[1], r[2], r[3]]);
        Ok(Self { key_id: id(&b[..4]), kwk_id: id(&b[4..8]), wrapped: b[8..].to_vec() })
    }

    /// Wraps `key` under `kwk` with `kwa`.
    pub fn wrap(kwa: KwaId, key_id: u32, kwk_id: u32, kwk: &[u8], key: &[u8]) -> Result<Self, ProtoError> {
        Ok(Self { key_id, kwk_id, wrapped: ike_crypto::keywrap::wrap(kwa.0, kwk, key)? })
    }

    pub fn unwrap(&self, kwa: KwaId, kwk: &[u8]) -> Result<Secret, ProtoError> {
        ike_crypto::keywrap::unwrap(kwa.0, kwk, &self.wrapped).map_err(|_| ProtoError::Invalid("key unwrap"))
    }
}

/// The KEK (Rekey SA) policy as sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KekWire {
    pub spi: [u8; 16],
    pub src: TrafficSelector,
    pub dst: TrafficSelector,
    pub encr: EncrId,
    pub key_bits: Option<u16>,
    pub integ: IntegId,
    pub kwa: KwaId,
    /// Registration only: GCAUTH and, for signatures, the DER
    /// AlgorithmIdentifier (Signature Algorithm Identifier attribute).
    pub gcauth: Option<(GcauthId, Option<Vec<u8>>)>,
    pub lifetime_secs: u32,
    pub initial_message_id: Option<u32>,
    pub next_spis: Vec<[u8; 16]>,
}

/// A TEK (Data-Security SA) policy as sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TekWire {
    pub spi: u32,
    pub src: TrafficSelector,
    pub dst: TrafficSelector,
    pub suite: EspSuite,
    pub sequence: SequenceMode,
    pub lifetime_secs: Option<u32>,
    pub next_spis: Vec<u32>,
}

/// The group-wide policy (§4.4.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GwpWire {
    pub atd_secs: Option<u16>,
    pub dtd_secs: Option<u16>,
    pub sender_id_bits: Option<u16>,
}

/// A GSA payload's content.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GsaContent {
    pub kek: Option<KekWire>,
    pub teks: Vec<TekWire>,
    pub gwp: Option<GwpWire>,
}

fn key_length_attr(bits: Option<u16>) -> Vec<Attribute<'static>> {
    bits.map(|b| Attribute { attr_type: TransformAttrType::KEY_LENGTH, value: AttributeValue::Tv(b) }).into_iter().collect()
}

fn tlv<T>(attr_type: T, data: Vec<u8>) -> Attribute<'static, T> {
    Attribute { attr_type, value: AttributeValue::Tlv(data.into()) }
}

fn tv<T>(attr_type: T, v: u16) -> Attribute<'static, T> {
    Attribute { attr_type, value: AttributeValue::Tv(v) }
}

impl GsaContent {
    pub fn to_wire(&self) -> Gsa<'static> {
        let mut policies = Vec::new();
        if let Some(k) = &self.kek {
            let mut transforms = vec![Transform { transform_type: TransformType::ENCR, transform_id: k.encr.0, attributes: key_length_attr(k.key_bits) }];
            if k.integ != IntegId::NONE {
                transforms.push(Transform::new(TransformType::INTEG, k.integ.0));
            }
            if let Some((id, alg)) = &k.gcauth {
                let attributes = alg.iter().map(|a| tlv(TransformAttrType::SIGNATURE_ALGORITHM_IDENTIFIER, a.clone())).collect();
                transforms.push(Transform { transform_type: TransformType::GCAUTH, transform_id: id.0, attributes });
            }
            transforms.push(Transform::new(TransformType::KWA, k.kwa.0));
            let mut attributes = vec![tlv(GsaAttrType::GSA_KEY_LIFETIME, k.lifetime_secs.to_be_bytes().to_vec())];
            if let Some(m) = k.initial_message_id {
                attributes.push(tlv(GsaAttrType::GSA_INITIAL_MESSAGE_ID, m.to_be_bytes().to_vec()));
            }
            attributes.extend(k.next_spis.iter().map(|s| tlv(GsaAttrType::GSA_NEXT_SPI, s.to_vec())));
            policies.push(GroupPolicy::Sa(GsaPolicy {
                protocol_id: ProtocolId::GIKE_UPDATE,
                spi: k.spi.to_vec().into(),
                src_ts: k.src.to_wire(),
                dst_ts: k.dst.to_wire(),
                transforms,
                attributes,
            }));
        }
        for t in &self.teks {
            let mut transforms =
                vec![Transform { transform_type: TransformType::ENCR, transform_id: t.suite.encr.0, attributes: key_length_attr(t.suite.key_bits) }];
            if t.suite.integ != IntegId::NONE {
                transforms.push(Transform::new(TransformType::INTEG, t.suite.integ.0));
            }
            // §4.4.2.1: the Sequence Numbers transform (type 5) MUST be
            // present for every Data-Security SA.
            transforms.push(Transform::new(TransformType::ESN, t.sequence.transform_id()));
            let mut attributes: Vec<_> = t.lifetime_secs.map(|l| tlv(GsaAttrType::GSA_KEY_LIFETIME, l.to_be_bytes().to_vec())).into_iter().collect();
            attributes.extend(t.next_spis.iter().map(|s| tlv(GsaAttrType::GSA_NEXT_SPI, s.to_be_bytes().to_vec())));
            policies.push(GroupPolicy::Sa(GsaPolicy {
                protocol_id: ProtocolId::ESP,
                spi: t.spi.to_be_bytes().to_vec().into(),
                src_ts: t.src.to_wire(),
                dst_ts: t.dst.to_wire(),
                transforms,
                attributes,
            }));
        }
        if let Some(g) = &self.gwp {
            let mut attributes = Vec::new();
            if let Some(v) = g.atd_secs {
                attributes.push(tv(GwpAttrType::GWP_ATD, v));
            }
            if let Some(v) = g.dtd_secs {
                attributes.push(tv(GwpAttrType::GWP_DTD, v));
            }
            if let Some(v) = g.sender_id_bits {
                attributes.push(tv(GwpAttrType::GWP_SENDER_ID_BITS, v));
            }
            policies.push(GroupPolicy::GroupWide { attributes });
        }
        Gsa { policies }
    }

    /// The GM's reading of a GSA payload (§4.4): syntax already checked by
    /// ike-wire; this checks what each protocol needs.
    pub fn from_wire(gsa: &Gsa<'_>) -> Result<Self, ProtoError> {
        let mut out = GsaContent::default();
        for p in &gsa.policies {
            match p {
                GroupPolicy::GroupWide { attributes } => {
                    if out.gwp.is_some() {
                        return Err(ProtoError::Invalid("two GW policies"));
                    }
                    let mut g = GwpWire::default();
                    for a in attributes {
                        let AttributeValue::Tv(v) = a.value else { return Err(ProtoError::Invalid("GW policy attribute format")) };
                        match a.attr_type {
                            GwpAttrType::GWP_ATD => g.atd_secs = Some(v),
                            GwpAttrType::GWP_DTD => g.dtd_secs = Some(v),
                            GwpAttrType::GWP_SENDER_ID_BITS => g.sender_id_bits = Some(v),
                            _ => {}
                        }
                    }
                    out.gwp = Some(g);
                }
                GroupPolicy::Sa(p) if p.protocol_id == ProtocolId::GIKE_UPDATE => {
                    if out.kek.is_some() {
                        return Err(ProtoError::Invalid("two KEK policies"));
                    }
                    out.kek = Some(parse_kek(p)?);
                }
                GroupPolicy::Sa(p) if p.protocol_id == ProtocolId::ESP => out.teks.push(parse_tek(p)?),
                // AH TEKs are not implemented: refused rather than ignored
                // (a GM must not believe it holds a policy it cannot use).
                GroupPolicy::Sa(_) => return Err(ProtoError::NoProposalChosen),
            }
        }
        if out.kek.is_none() && out.teks.is_empty() {
            // §4.4.1: at least one KEK or TEK policy.
            return Err(ProtoError::Invalid("GSA without policies"));
        }
        Ok(out)
    }
}

/// Exactly one transform of `t` (§4.4.2.1: each mandatory type once, each
/// optional type at most once).
fn once<'p>(p: &'p GsaPolicy<'_>, t: TransformType, mandatory: bool) -> Result<Option<&'p Transform<'p>>, ProtoError> {
    let mut it = p.transforms.iter().filter(|x| x.transform_type == t);
    let first = it.next();
    if it.next().is_some() || (mandatory && first.is_none()) {
        return Err(ProtoError::Invalid("GSA transform count"));
    }
    Ok(first)
}

fn key_bits(t: &Transform<'_>) -> Option<u16> {
    t.attributes.iter().find_map(|a| match a.value {
        AttributeValue::Tv(v) if a.attr_type == TransformAttrType::KEY_LENGTH => Some(v),
        _ => None,
    })
}

fn tlv_data<'p, T>(attrs: &'p [Attribute<'_, T>], t: T) -> impl Iterator<Item = &'p [u8]> + 'p
where
    T: PartialEq + Copy + 'p,
{
    attrs.iter().filter(move |a| a.attr_type == t).filter_map(|a| match &a.value {
        AttributeValue::Tlv(b) => Some(&b[..]),
        AttributeValue::Tv(_) => None,
    })
}

fn u32_of(b: &[u8]) -> Result<u32, ProtoError> {
    <[u8; 4]>::try_from(b).map(u32::from_be_bytes).map_err(|_| ProtoError::Invalid("GSA attribute length"))
}

fn selectors(p: &GsaPolicy<'_>) -> Result<(TrafficSelector, TrafficSelector), ProtoError> {
    let src = TrafficSelector::from_wire(&p.src_ts).ok_or(ProtoError::Invalid("GSA source selector"))?;
    let dst = TrafficSelector::from_wire(&p.dst_ts).ok_or(ProtoError::Invalid("GSA destination selector"))?;
    Ok((src, dst))
}

fn parse_kek(p: &GsaPolicy<'_>) -> Result<KekWire, ProtoError> {
    let spi: [u8; 16] = p.spi.as_ref().try_into().map_err(|_| ProtoError::Invalid("KEK SPI size"))?;
    let (src, dst) = selectors(p)?;
    let encr = once(p, TransformType::ENCR, true)?.ok_or(ProtoError::Invalid("KEK ENCR"))?;
    let integ = once(p, TransformType::INTEG, false)?.map_or(IntegId::NONE, |t| IntegId(t.transform_id));
    let kwa = once(p, TransformType::KWA, true)?.ok_or(ProtoError::Invalid("KEK KWA"))?;
    let gcauth = once(p, TransformType::GCAUTH, false)?
        .map(|t| (GcauthId(t.transform_id), tlv_data(&t.attributes, TransformAttrType::SIGNATURE_ALGORITHM_IDENTIFIER).next().map(<[u8]>::to_vec)));
    if p.transforms.iter().any(|t| ![TransformType::ENCR, TransformType::INTEG, TransformType::KWA, TransformType::GCAUTH].contains(&t.transform_type)) {
        return Err(ProtoError::Invalid("KEK transform type"));
    }
    let lifetime_secs = tlv_data(&p.attributes, GsaAttrType::GSA_KEY_LIFETIME).next().map(u32_of).transpose()?.unwrap_or(0);
    let initial_message_id = tlv_data(&p.attributes, GsaAttrType::GSA_INITIAL_MESSAGE_ID).next().map(u32_of).transpose()?;
    let next_spis = tlv_data(&p.attributes, GsaAttrType::GSA_NEXT_SPI)
        .map(|b| <[u8; 16]>::try_from(b).map_err(|_| ProtoError::Invalid("GSA_NEXT_SPI size")))
        .collect::<Result<_, _>>()?;
    Ok(KekWire {
        spi,
        src,
        dst,
        encr: EncrId(encr.transform_id),
        key_bits: key_bits(encr),
        integ,
        kwa: KwaId(kwa.transform_id),
        gcauth,
        lifetime_secs,
        initial_message_id,
        next_spis,
    })
}

fn parse_tek(p: &GsaPolicy<'_>) -> Result<TekWire, ProtoError> {
    let spi = u32_of(&p.spi).map_err(|_| ProtoError::Invalid("TEK SPI size"))?;
    if spi < 256 {
        // RFC 4303 §2.1: 1-255 reserved, 0 local use only.
        return Err(ProtoError::Invalid("TEK SPI"));
    }
    let (src, dst) = selectors(p)?;
    let encr = once(p, TransformType::ENCR, true)?.ok_or(ProtoError::Invalid("TEK ENCR"))?;
    let integ = once(p, TransformType::INTEG, false)?.map_or(IntegId::NONE, |t| IntegId(t.transform_id));
    let sn = once(p, TransformType::ESN, true)?.ok_or(ProtoError::Invalid("TEK SN"))?;
    // §4.4.2.1: "Partially Transmitted 64-bit Sequential Numbers" (ESN)
    // MUST NOT be used for multicast: refused.
    let sequence = SequenceMode::from_transform_id(sn.transform_id).ok_or(ProtoError::NoProposalChosen)?;
    if p.transforms.iter().any(|t| ![TransformType::ENCR, TransformType::INTEG, TransformType::ESN].contains(&t.transform_type)) {
        return Err(ProtoError::Invalid("TEK transform type"));
    }
    let suite = EspSuite { encr: EncrId(encr.transform_id), key_bits: key_bits(encr), integ, esn: false, ke: None, additional_ke: [ike_wire::KeId::NONE; 7] };
    if suite.implicit_iv() && sequence != SequenceMode::Sequential {
        // §2.7: IIV only where sequence numbers are unique: one sender.
        return Err(ProtoError::NoProposalChosen);
    }
    let lifetime_secs = tlv_data(&p.attributes, GsaAttrType::GSA_KEY_LIFETIME).next().map(u32_of).transpose()?;
    let next_spis = tlv_data(&p.attributes, GsaAttrType::GSA_NEXT_SPI).map(u32_of).collect::<Result<_, _>>()?;
    Ok(TekWire { spi, src, dst, suite, sequence, lifetime_secs, next_spis })
}

/// A KD payload's content.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KdContent {
    /// Group key bags: (protocol, SPI, SA_KEY attributes).
    pub group: Vec<(ProtocolId, Vec<u8>, Vec<WrappedKey>)>,
    /// The member key bag (registration only).
    pub wrap_keys: Vec<WrappedKey>,
    pub auth_key: Option<Vec<u8>>,
    pub sender_ids: Vec<u32>,
}

impl KdContent {
    pub fn to_wire(&self) -> Kd<'static> {
        let mut key_bags: Vec<KeyBag<'static>> = self
            .group
            .iter()
            .map(|(protocol_id, spi, keys)| KeyBag::Group {
                protocol_id: *protocol_id,
                spi: spi.clone().into(),
                attributes: keys.iter().map(|k| tlv(GroupKeyBagAttrType::SA_KEY, k.encode())).collect(),
            })
            .collect();
        if !self.wrap_keys.is_empty() || self.auth_key.is_some() || !self.sender_ids.is_empty() {
            let mut attributes: Vec<Attribute<'static, MemberKeyBagAttrType>> =
                self.wrap_keys.iter().map(|k| tlv(MemberKeyBagAttrType::WRAP_KEY, k.encode())).collect();
            if let Some(a) = &self.auth_key {
                attributes.push(tlv(MemberKeyBagAttrType::AUTH_KEY, a.clone()));
            }
            // GM_SENDER_ID: one Sender-ID per attribute, 4 octets big-endian
            // (RFC 9838 gives no length; the SID field is at most 32 bits).
            attributes.extend(self.sender_ids.iter().map(|s| tlv(MemberKeyBagAttrType::GM_SENDER_ID, s.to_be_bytes().to_vec())));
            key_bags.push(KeyBag::Member { attributes });
        }
        Kd { key_bags }
    }

    pub fn from_wire(kd: &Kd<'_>) -> Result<Self, ProtoError> {
        let mut out = KdContent::default();
        let mut members = 0;
        for bag in &kd.key_bags {
            match bag {
                KeyBag::Group { protocol_id, spi, attributes } => {
                    let keys = tlv_data(attributes, GroupKeyBagAttrType::SA_KEY).map(WrappedKey::decode).collect::<Result<Vec<_>, _>>()?;
                    // §4.5.2.1: SA_KEY Key ID MUST be 0.
                    if keys.is_empty() || keys.iter().any(|k| k.key_id != 0) {
                        return Err(ProtoError::Invalid("SA_KEY"));
                    }
                    out.group.push((*protocol_id, spi.to_vec(), keys));
                }
                KeyBag::Member { attributes } => {
                    members += 1;
                    out.wrap_keys = tlv_data(attributes, MemberKeyBagAttrType::WRAP_KEY).map(WrappedKey::decode).collect::<Result<_, _>>()?;
                    // §4.5.3.1: a WRAP_KEY's Key ID MUST NOT be zero.
                    if out.wrap_keys.iter().any(|k| k.key_id == 0) {
                        return Err(ProtoError::Invalid("WRAP_KEY Key ID"));
                    }
                    out.auth_key = tlv_data(attributes, MemberKeyBagAttrType::AUTH_KEY).next().map(<[u8]>::to_vec);
                    out.sender_ids = tlv_data(attributes, MemberKeyBagAttrType::GM_SENDER_ID).map(u32_of).collect::<Result<_, _>>()?;
                }
            }
        }
        if members > 1 {
            return Err(ProtoError::Invalid("two member key bags"));
        }
        Ok(out)
    }

    /// The SA_KEYs of the group SA (`protocol`, `spi`).
    pub fn sa_keys(&self, protocol: ProtocolId, spi: &[u8]) -> Option<&[WrappedKey]> {
        self.group.iter().find(|(p, s, _)| *p == protocol && s == spi).map(|(_, _, k)| &k[..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn ts(a: [u8; 4], len: u8) -> TrafficSelector {
        TrafficSelector::prefix(IpAddr::V4(Ipv4Addr::from(a)), len).unwrap()
    }

    fn sample() -> GsaContent {
        let suite = EspSuite { encr: EncrId::ENCR_AES_GCM_16, key_bits: Some(256), integ: IntegId::NONE, esn: false, ke: None, additional_ke: [ike_wire::KeId::NONE; 7] };
        GsaContent {
            kek: Some(KekWire {
                spi: [7; 16],
                src: ts([192, 0, 2, 1], 32),
                dst: ts([239, 192, 0, 1], 32),
                encr: EncrId::ENCR_AES_GCM_16,
                key_bits: Some(256),
                integ: IntegId::NONE,
                kwa: KwaId::KW_5649_256,
                gcauth: Some((GcauthId::DIGITAL_SIGNATURE, Some(vec![0x30, 5, 6, 3, 0x2b, 0x65, 0x70]))),
                lifetime_secs: 3600,
                initial_message_id: Some(5),
                next_spis: vec![[9; 16]],
            }),
            teks: vec![TekWire {
                spi: 0x1000_0001,
                src: ts([10, 0, 0, 0], 8),
                dst: ts([239, 1, 1, 0], 24),
                suite,
                sequence: SequenceMode::Unspecified,
                lifetime_secs: Some(900),
                next_spis: vec![0x1000_0002],
            }],
            gwp: Some(GwpWire { atd_secs: Some(2), dtd_secs: Some(5), sender_id_bits: Some(16) }),
        }
    }

    #[test]
    fn round_trips_gsa_content() {
        let c = sample();
        let wire = c.to_wire();
        assert_eq!(GsaContent::from_wire(&wire).unwrap(), c);
    }

    #[test]
    fn refuses_esn_and_missing_sequence_transform() {
        let c = sample();
        let edit = |f: &dyn Fn(&mut GsaPolicy<'static>)| {
            let mut wire = c.to_wire();
            let GroupPolicy::Sa(p) = &mut wire.policies[1] else { panic!("TEK policy") };
            f(p);
            wire
        };
        let esn = edit(&|p| p.transforms.iter_mut().filter(|t| t.transform_type == TransformType::ESN).for_each(|t| t.transform_id = ike_wire::EsnId::ESN.0));
        assert!(GsaContent::from_wire(&esn).is_err());
        let none = edit(&|p| p.transforms.retain(|t| t.transform_type != TransformType::ESN));
        assert!(GsaContent::from_wire(&none).is_err());
        let two = edit(&|p| p.transforms.push(Transform::new(TransformType::ENCR, 20)));
        assert!(GsaContent::from_wire(&two).is_err());
    }

    #[test]
    fn round_trips_kd_content_and_refuses_nonzero_sa_key_id() {
        let k = KdContent {
            group: vec![(ProtocolId::ESP, vec![1, 2, 3, 4], vec![WrappedKey { key_id: 0, kwk_id: 0, wrapped: vec![5; 24] }])],
            wrap_keys: vec![WrappedKey { key_id: 7, kwk_id: 0, wrapped: vec![6; 40] }],
            auth_key: Some(vec![0x30, 0x2a]),
            sender_ids: vec![1, 2],
        };
        assert_eq!(KdContent::from_wire(&k.to_wire()).unwrap(), k);
        let mut bad = k.clone();
        bad.group[0].2[0].key_id = 1;
        assert!(KdContent::from_wire(&bad.to_wire()).is_err());
    }
}
