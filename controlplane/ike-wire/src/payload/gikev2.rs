//! G-IKEv2 (RFC 9838) payload bodies: the Group Security Association payload
//! GSA (51) with its GSA and group-wide (GW) policy substructures, and the
//! Key Download payload KD (52) with its group and member key bags. IDg (50)
//! uses the ID payload ([`crate::Id`]) and SAg the SA payload ([`crate::Sa`]).
//!
//! Layouts are those of draft-ietf-ipsecme-g-ikev2-23 §4.4-§4.5 (the author's
//! final XML, github.com/smyslov/G-IKEv2, which became RFC 9838); the RFC text
//! itself was not read. Substructures embed RFC 7296 traffic selectors
//! (§3.13.1), transform substructures (§3.3.2) and data attributes (§3.3.5).
//!
//! Guarantees: every substructure Length lies inside its payload and covers
//! its header; a GSA policy's transform list ends with Last Substruc 0 and
//! uses 3 before; the first octet of a substructure selects its kind (0 = GW
//! policy / member key bag, otherwise a security protocol ID) as the draft
//! says. Which transforms and attributes each protocol needs is semantics.
use crate::codec::{Reader, Writer};
use crate::error::{Error, Result};
use crate::payload::sa::{Attribute, Transform};
use crate::payload::ts::TrafficSelector;
use crate::registry::{
    GroupKeyBagAttrType, GsaAttrType, GwpAttrType, MemberKeyBagAttrType, ProtocolId,
};
use crate::Bytes;

/// "Last Substruc" of a transform followed by another (RFC 7296 §3.3.2).
const MORE_TRANSFORMS: u8 = 3;

/// GSA payload body: a list of group policies.
///
/// ```text
/// | Next Payload  |C|   RESERVED  |         Payload Length        |
/// ~                       <Group Policies>                        ~
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gsa<'a> {
    pub policies: Vec<GroupPolicy<'a>>,
}

/// One group policy substructure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupPolicy<'a> {
    /// A KEK (GIKE_UPDATE) or TEK (AH / ESP) policy.
    Sa(GsaPolicy<'a>),
    /// Group-wide policy.
    ///
    /// ```text
    /// |  Protocol=0   |   RESERVED    |            Length             |
    /// ~                    <GW Policy Attributes>                     ~
    /// ```
    GroupWide {
        attributes: Vec<Attribute<'a, GwpAttrType>>,
    },
}

/// GSA policy substructure.
///
/// ```text
/// |    Protocol   |   SPI Size    |            Length             |
/// ~                              SPI                              ~
/// ~                  Source Traffic Selector                      ~
/// ~                Destination Traffic Selector                   ~
/// ~                        <GSA Transforms>                       ~
/// ~                        <GSA Attributes>                       ~
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GsaPolicy<'a> {
    /// Non-zero: GIKE_UPDATE, AH or ESP.
    pub protocol_id: ProtocolId,
    /// 16 octets for GIKE_UPDATE (SPIi | SPIr of GSA_REKEY), 4 for AH / ESP.
    pub spi: Bytes<'a>,
    pub src_ts: TrafficSelector<'a>,
    pub dst_ts: TrafficSelector<'a>,
    /// At least one (every protocol has mandatory transforms).
    pub transforms: Vec<Transform<'a>>,
    pub attributes: Vec<Attribute<'a, GsaAttrType>>,
}

/// KD payload body: a list of key bags.
///
/// ```text
/// | Next Payload  |C|  RESERVED   |            Length             |
/// ~                          <Key Bags>                           ~
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kd<'a> {
    pub key_bags: Vec<KeyBag<'a>>,
}

/// One key bag substructure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyBag<'a> {
    /// Keys of one group SA.
    ///
    /// ```text
    /// |    Protocol   |   SPI Size    |            Length             |
    /// ~                              SPI                              ~
    /// ~                 <Group Key Bag Attributes>                    ~
    /// ```
    Group {
        /// Non-zero: GIKE_UPDATE, AH or ESP.
        protocol_id: ProtocolId,
        spi: Bytes<'a>,
        attributes: Vec<Attribute<'a, GroupKeyBagAttrType>>,
    },
    /// Keys and parameters of one group member.
    ///
    /// ```text
    /// |  Protocol=0   |   RESERVED    |            Length             |
    /// ~                 <Member Key Bag Attributes>                   ~
    /// ```
    Member {
        attributes: Vec<Attribute<'a, MemberKeyBagAttrType>>,
    },
}

/// Protocol, SPI Size / RESERVED, Length.
const SUBSTRUC_HEADER_LEN: usize = 4;

/// Reads one substructure header; returns the protocol, the second octet
/// and a reader over the rest of the substructure.
fn read_substruc<'a>(r: &mut Reader<'a>) -> Result<(u8, u8, Reader<'a>)> {
    let protocol = r.u8()?;
    let second = r.u8()?;
    let len = usize::from(r.u16()?);
    if len < SUBSTRUC_HEADER_LEN {
        return Err(Error::Malformed("G-IKEv2 substructure Length"));
    }
    Ok((protocol, second, r.sub(len - SUBSTRUC_HEADER_LEN)?))
}

fn read_attributes<'a, T: Copy + From<u16> + Into<u16>>(
    r: &mut Reader<'a>,
) -> Result<Vec<Attribute<'a, T>>> {
    let mut attributes = Vec::new();
    while !r.is_empty() {
        attributes.push(Attribute::read(r)?);
    }
    Ok(attributes)
}

fn write_attributes<T: Copy + From<u16> + Into<u16>>(
    attributes: &[Attribute<'_, T>],
    w: &mut Writer,
) -> Result<()> {
    attributes.iter().try_for_each(|a| a.write(w))
}

impl<'a> Gsa<'a> {
    pub fn read(r: &mut Reader<'a>) -> Result<Self> {
        let mut policies = Vec::new();
        while !r.is_empty() {
            let (protocol, spi_size, mut s) = read_substruc(r)?;
            let policy = if protocol == 0 {
                GroupPolicy::GroupWide {
                    attributes: read_attributes(&mut s)?,
                }
            } else {
                let spi = s.take(usize::from(spi_size))?.into();
                let src_ts = TrafficSelector::read(&mut s)?;
                let dst_ts = TrafficSelector::read(&mut s)?;
                let mut transforms = Vec::new();
                loop {
                    let (last, t) = Transform::read_substruc(&mut s)?;
                    transforms.push(t);
                    match last {
                        0 => break,
                        MORE_TRANSFORMS => continue,
                        _ => return Err(Error::Malformed("Last Substruc of a GSA transform")),
                    }
                }
                let attributes = read_attributes(&mut s)?;
                GroupPolicy::Sa(GsaPolicy {
                    protocol_id: ProtocolId(protocol),
                    spi,
                    src_ts,
                    dst_ts,
                    transforms,
                    attributes,
                })
            };
            policies.push(policy);
        }
        Ok(Self { policies })
    }

    pub fn write(&self, w: &mut Writer) -> Result<()> {
        for policy in &self.policies {
            let start = w.len();
            match policy {
                GroupPolicy::GroupWide { attributes } => {
                    w.u8(0);
                    w.u8(0);
                    let len = w.u16_placeholder(start);
                    write_attributes(attributes, w)?;
                    w.patch_u16(len)?;
                }
                GroupPolicy::Sa(p) => {
                    if p.protocol_id == ProtocolId::NONE {
                        return Err(Error::Malformed("GSA policy with Protocol 0"));
                    }
                    if p.transforms.is_empty() {
                        return Err(Error::Malformed("GSA policy without transforms"));
                    }
                    w.u8(p.protocol_id.0);
                    w.u8_len(p.spi.len())?;
                    let len = w.u16_placeholder(start);
                    w.bytes(&p.spi);
                    p.src_ts.write(w)?;
                    p.dst_ts.write(w)?;
                    Transform::write_substrucs(&p.transforms, w)?;
                    write_attributes(&p.attributes, w)?;
                    w.patch_u16(len)?;
                }
            }
        }
        Ok(())
    }
}

impl<'a> Kd<'a> {
    pub fn read(r: &mut Reader<'a>) -> Result<Self> {
        let mut key_bags = Vec::new();
        while !r.is_empty() {
            let (protocol, spi_size, mut s) = read_substruc(r)?;
            key_bags.push(if protocol == 0 {
                KeyBag::Member {
                    attributes: read_attributes(&mut s)?,
                }
            } else {
                let spi = s.take(usize::from(spi_size))?.into();
                KeyBag::Group {
                    protocol_id: ProtocolId(protocol),
                    spi,
                    attributes: read_attributes(&mut s)?,
                }
            });
        }
        Ok(Self { key_bags })
    }

    pub fn write(&self, w: &mut Writer) -> Result<()> {
        for bag in &self.key_bags {
            let start = w.len();
            match bag {
                KeyBag::Member { attributes } => {
                    w.u8(0);
                    w.u8(0);
                    let len = w.u16_placeholder(start);
                    write_attributes(attributes, w)?;
                    w.patch_u16(len)?;
                }
                KeyBag::Group {
                    protocol_id,
                    spi,
                    attributes,
                } => {
                    if *protocol_id == ProtocolId::NONE {
                        return Err(Error::Malformed("Group Key Bag with Protocol 0"));
                    }
                    w.u8(protocol_id.0);
                    w.u8_len(spi.len())?;
                    let len = w.u16_placeholder(start);
                    w.bytes(spi);
                    write_attributes(attributes, w)?;
                    w.patch_u16(len)?;
                }
            }
        }
        Ok(())
    }
}
