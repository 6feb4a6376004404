//! The Configuration payload (RFC 7296 §3.15) and its attributes (§3.15.1),
//! including RFC 8598 split-DNS attributes (INTERNAL_DNS_DOMAIN 25,
//! INTERNAL_DNSSEC_TA 26).
//!
//! Guarantees: each attribute's Length lies inside the payload. The R bit is
//! reserved: ignored on receipt, sent as zero. Per-attribute value lengths
//! (e.g. INTERNAL_IP4_ADDRESS is 0 or 4 octets) are checked by the consumer,
//! which knows which attributes it accepts.
use crate::codec::{Reader, Writer};
use crate::error::{Error, Result};
use crate::registry::{CfgAttrType, CfgType};
use crate::Bytes;

/// Configuration payload body.
///
/// ```text
/// | Next Payload  |C| RESERVED    |         Payload Length        |
/// |   CFG Type    |                    RESERVED                   |
/// ~                   Configuration Attributes                    ~
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cp<'a> {
    pub cfg_type: CfgType,
    pub attributes: Vec<CfgAttribute<'a>>,
}

/// Configuration attribute.
///
/// ```text
/// |R|         Attribute Type      |            Length             |
/// ~                             Value                             ~
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CfgAttribute<'a> {
    /// 15 bits.
    pub attr_type: CfgAttrType,
    pub value: Bytes<'a>,
}

impl<'a> CfgAttribute<'a> {
    pub fn new(attr_type: CfgAttrType, value: impl Into<Bytes<'a>>) -> Self {
        Self {
            attr_type,
            value: value.into(),
        }
    }
}

impl<'a> Cp<'a> {
    pub fn read(r: &mut Reader<'a>) -> Result<Self> {
        let cfg_type = CfgType(r.u8()?);
        let _reserved = r.take(3)?;
        let mut attributes = Vec::new();
        while !r.is_empty() {
            let attr_type = CfgAttrType(r.u16()? & 0x7fff);
            let len = usize::from(r.u16()?);
            attributes.push(CfgAttribute {
                attr_type,
                value: r.take(len)?.into(),
            });
        }
        Ok(Self {
            cfg_type,
            attributes,
        })
    }

    pub fn write(&self, w: &mut Writer) -> Result<()> {
        w.u8(self.cfg_type.0);
        w.bytes(&[0; 3]);
        for a in &self.attributes {
            if a.attr_type.0 > 0x7fff {
                return Err(Error::TooLong);
            }
            w.u16(a.attr_type.0);
            w.u16_len(a.value.len())?;
            w.bytes(&a.value);
        }
        Ok(())
    }
}
