//! The Security Association payload and its substructures (RFC 7296 §3.3):
//! proposals, transforms and transform attributes. G-IKEv2's SAg uses the same
//! format (RFC 9838, payload type 33).
//!
//! Guarantees (RFC 7296 §3.3: "an implementation MUST check that the total
//! Payload Length is consistent with the payload's internal lengths and
//! counts"): every Proposal Length, Transform Length and attribute length lies
//! inside its parent, Num Transforms equals the transforms present, the "Last
//! Substruc" octets say 2 / 3 exactly when more follow and 0 on the last one.
//! Proposal numbering and which transforms a protocol needs are semantics,
//! checked in `ike-proto`.
use crate::codec::{Reader, Writer};
use crate::error::{Error, Result};
use crate::registry::{
    EncrId, EsnId, IntegId, KeId, PrfId, ProtocolId, TransformAttrType, TransformType,
};
use crate::Bytes;

/// "Last Substruc" of a proposal that is followed by another (RFC 7296 §3.3.1).
const MORE_PROPOSALS: u8 = 2;
/// "Last Substruc" of a transform that is followed by another (RFC 7296 §3.3.2).
const MORE_TRANSFORMS: u8 = 3;

/// Security Association payload body.
///
/// ```text
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Next Payload  |C|  RESERVED   |         Payload Length        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ~                          <Proposals>                          ~
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sa<'a> {
    /// "One or more proposal substructures".
    pub proposals: Vec<Proposal<'a>>,
}

/// Proposal substructure (RFC 7296 §3.3.1).
///
/// ```text
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Last Substruc |   RESERVED    |         Proposal Length       |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Proposal Num  |  Protocol ID  |    SPI Size   |Num  Transforms|
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ~                        SPI (variable)                         ~
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ~                        <Transforms>                           ~
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal<'a> {
    pub proposal_num: u8,
    pub protocol_id: ProtocolId,
    /// Empty in IKE_SA_INIT; 8 octets for IKE rekeys, 4 for ESP/AH, 16 for
    /// G-IKEv2 GIKE_UPDATE.
    pub spi: Bytes<'a>,
    pub transforms: Vec<Transform<'a>>,
}

/// Transform substructure (RFC 7296 §3.3.2).
///
/// ```text
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Last Substruc |   RESERVED    |        Transform Length       |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |Transform Type |   RESERVED    |          Transform ID         |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ~                      Transform Attributes                     ~
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// `transform_id` is kept as the raw number because its registry depends on
/// `transform_type`; the typed accessors ([`Transform::encr_id`], ...) pick it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transform<'a> {
    pub transform_type: TransformType,
    pub transform_id: u16,
    pub attributes: Vec<Attribute<'a>>,
}

/// Data Attribute (RFC 7296 §3.3.5), TV when AF = 1, TLV when AF = 0.
///
/// ```text
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |A|       Attribute Type        |    AF=0  Attribute Length     |
/// |F|                             |    AF=1  Attribute Value      |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                   AF=0  Attribute Value                       |
/// |                   AF=1  Not Transmitted                       |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// The same format carries G-IKEv2's GSA, group-wide policy and key bag
/// attributes, each with its own type registry: `T` is that registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute<'a, T = TransformAttrType> {
    /// 15 bits; the AF bit is given by `value`.
    pub attr_type: T,
    pub value: AttributeValue<'a>,
}

/// The two attribute formats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeValue<'a> {
    /// Type/Value: the two-octet value in the header (AF = 1).
    Tv(u16),
    /// Type/Length/Value (AF = 0).
    Tlv(Bytes<'a>),
}

impl<'a> Sa<'a> {
    pub fn read(r: &mut Reader<'a>) -> Result<Self> {
        let mut proposals = Vec::new();
        loop {
            let last_substruc = r.u8()?;
            let _reserved = r.u8()?;
            let len = usize::from(r.u16()?);
            // 8 = the fixed part of the proposal header.
            if len < 8 {
                return Err(Error::Malformed("Proposal Length"));
            }
            let mut p = r.sub(len - 4)?;
            proposals.push(Proposal::read(&mut p)?);
            p.expect_empty()?;
            match last_substruc {
                0 if r.is_empty() => break,
                0 => return Err(Error::TrailingBytes),
                MORE_PROPOSALS if r.is_empty() => return Err(Error::Truncated),
                MORE_PROPOSALS => continue,
                _ => return Err(Error::Malformed("Last Substruc of a proposal")),
            }
        }
        Ok(Self { proposals })
    }

    pub fn write(&self, w: &mut Writer) -> Result<()> {
        if self.proposals.is_empty() {
            return Err(Error::Malformed("SA without proposals"));
        }
        let n = self.proposals.len();
        for (i, p) in self.proposals.iter().enumerate() {
            let start = w.len();
            w.u8(if i + 1 == n { 0 } else { MORE_PROPOSALS });
            w.u8(0);
            let len = w.u16_placeholder(start);
            p.write(w)?;
            w.patch_u16(len)?;
        }
        Ok(())
    }
}

impl<'a> Proposal<'a> {
    /// Reads from "Proposal Num" on; `r` ends where Proposal Length says.
    fn read(r: &mut Reader<'a>) -> Result<Self> {
        let proposal_num = r.u8()?;
        let protocol_id = ProtocolId(r.u8()?);
        let spi_size = usize::from(r.u8()?);
        let num_transforms = r.u8()?;
        let spi = r.take(spi_size)?.into();
        let mut transforms = Vec::with_capacity(usize::from(num_transforms));
        for i in 0..num_transforms {
            let (last_substruc, t) = Transform::read_substruc(r)?;
            let expected = if i + 1 == num_transforms {
                0
            } else {
                MORE_TRANSFORMS
            };
            if last_substruc != expected {
                return Err(Error::Malformed("Last Substruc of a transform"));
            }
            transforms.push(t);
        }
        Ok(Self {
            proposal_num,
            protocol_id,
            spi,
            transforms,
        })
    }

    fn write(&self, w: &mut Writer) -> Result<()> {
        w.u8(self.proposal_num);
        w.u8(self.protocol_id.0);
        w.u8_len(self.spi.len())?;
        w.u8_len(self.transforms.len())?;
        w.bytes(&self.spi);
        Transform::write_substrucs(&self.transforms, w)?;
        Ok(())
    }
}

impl<'a> Transform<'a> {
    /// Reads one transform substructure with its header; returns its Last
    /// Substruc octet (0 on the last transform, 3 before another) for the
    /// caller to check against its own count or list end.
    pub(crate) fn read_substruc(r: &mut Reader<'a>) -> Result<(u8, Self)> {
        let last_substruc = r.u8()?;
        let _reserved = r.u8()?;
        let len = usize::from(r.u16()?);
        if len < 8 {
            return Err(Error::Malformed("Transform Length"));
        }
        let mut t = r.sub(len - 4)?;
        Ok((last_substruc, Self::read(&mut t)?))
    }

    /// Writes transform substructures, Last Substruc 3 on all but the last.
    pub(crate) fn write_substrucs(transforms: &[Self], w: &mut Writer) -> Result<()> {
        let n = transforms.len();
        for (i, t) in transforms.iter().enumerate() {
            let start = w.len();
            w.u8(if i + 1 == n { 0 } else { MORE_TRANSFORMS });
            w.u8(0);
            let len = w.u16_placeholder(start);
            t.write(w)?;
            w.patch_u16(len)?;
        }
        Ok(())
    }

    /// Reads from "Transform Type" on; consumes all of `r`.
    fn read(r: &mut Reader<'a>) -> Result<Self> {
        let transform_type = TransformType(r.u8()?);
        let _reserved = r.u8()?;
        let transform_id = r.u16()?;
        let mut attributes = Vec::new();
        while !r.is_empty() {
            attributes.push(Attribute::read(r)?);
        }
        Ok(Self {
            transform_type,
            transform_id,
            attributes,
        })
    }

    fn write(&self, w: &mut Writer) -> Result<()> {
        w.u8(self.transform_type.0);
        w.u8(0);
        w.u16(self.transform_id);
        for a in &self.attributes {
            a.write(w)?;
        }
        Ok(())
    }

    pub fn new(transform_type: TransformType, transform_id: u16) -> Self {
        Self {
            transform_type,
            transform_id,
            attributes: Vec::new(),
        }
    }

    /// ENCR with an optional Key Length attribute in bits (RFC 7296 §3.3.5).
    pub fn encr(id: EncrId, key_length_bits: Option<u16>) -> Self {
        let mut t = Self::new(TransformType::ENCR, id.0);
        if let Some(bits) = key_length_bits {
            t.attributes.push(Attribute {
                attr_type: TransformAttrType::KEY_LENGTH,
                value: AttributeValue::Tv(bits),
            });
        }
        t
    }

    pub fn prf(id: PrfId) -> Self {
        Self::new(TransformType::PRF, id.0)
    }

    pub fn integ(id: IntegId) -> Self {
        Self::new(TransformType::INTEG, id.0)
    }

    pub fn ke(id: KeId) -> Self {
        Self::new(TransformType::KE, id.0)
    }

    /// ADDKE`n` (n in 1..=7, RFC 9370), or `None` for another n.
    pub fn addke(n: u8, id: KeId) -> Option<Self> {
        TransformType::addke(n).map(|t| Self::new(t, id.0))
    }

    pub fn esn(id: EsnId) -> Self {
        Self::new(TransformType::ESN, id.0)
    }

    pub fn encr_id(&self) -> Option<EncrId> {
        (self.transform_type == TransformType::ENCR).then_some(EncrId(self.transform_id))
    }

    pub fn prf_id(&self) -> Option<PrfId> {
        (self.transform_type == TransformType::PRF).then_some(PrfId(self.transform_id))
    }

    pub fn integ_id(&self) -> Option<IntegId> {
        (self.transform_type == TransformType::INTEG).then_some(IntegId(self.transform_id))
    }

    /// The KE method of a KE or ADDKE transform.
    pub fn ke_id(&self) -> Option<KeId> {
        self.transform_type
            .uses_ke_ids()
            .then_some(KeId(self.transform_id))
    }

    pub fn esn_id(&self) -> Option<EsnId> {
        (self.transform_type == TransformType::ESN).then_some(EsnId(self.transform_id))
    }

    /// The Key Length attribute (bits), if present in TV form.
    pub fn key_length(&self) -> Option<u16> {
        self.attributes.iter().find_map(|a| match a.value {
            AttributeValue::Tv(v) if a.attr_type == TransformAttrType::KEY_LENGTH => Some(v),
            _ => None,
        })
    }
}

impl<'a, T: Copy + From<u16> + Into<u16>> Attribute<'a, T> {
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self> {
        let t = r.u16()?;
        let attr_type = T::from(t & 0x7fff);
        let value = if t & 0x8000 != 0 {
            AttributeValue::Tv(r.u16()?)
        } else {
            let len = usize::from(r.u16()?);
            AttributeValue::Tlv(r.take(len)?.into())
        };
        Ok(Self { attr_type, value })
    }

    pub(crate) fn write(&self, w: &mut Writer) -> Result<()> {
        let attr_type: u16 = self.attr_type.into();
        if attr_type > 0x7fff {
            return Err(Error::TooLong);
        }
        match &self.value {
            AttributeValue::Tv(v) => {
                w.u16(0x8000 | attr_type);
                w.u16(*v);
            }
            AttributeValue::Tlv(v) => {
                w.u16(attr_type);
                w.u16_len(v.len())?;
                w.bytes(v);
            }
        }
        Ok(())
    }
}
