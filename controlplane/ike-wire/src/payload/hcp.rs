//! The data of the HCP_PROPOSAL status notify (draft-ietf-ipsecme-ikev2-
//! diet-esp-extension-04 §4, §5): a list of Header Compression Profile
//! proposals, each a list of Attributes for Rules Generation in the
//! RFC 7296 §3.3.5 transform-attribute format.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Proposal ID  |   HCP Name    |       Proposal Length         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ~          Proposal Data (AfRGs, transform-attribute format)    ~
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Proposal Length counts the Proposal Data only (§4: "The length in octets
//! of the Proposal Data"). The notify type, the HCP Name and the attribute
//! types are not assigned by IANA: this codec carries them as plain
//! integers, the control plane gives them meaning.

use crate::codec::{Reader, Writer};
use crate::payload::sa::{Attribute, AttributeValue};
use crate::{Error, Result};

/// One HCP proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HcpProposal<'a> {
    pub id: u8,
    pub hcp_name: u8,
    /// AfRG types are 15 bits; the AF bit comes from the value's form.
    pub attributes: Vec<Attribute<'a, u16>>,
}

impl<'a> HcpProposal<'a> {
    /// Parse a whole notify data field; trailing octets are refused and so
    /// is an empty list.
    pub fn read_list(data: &'a [u8]) -> Result<Vec<Self>> {
        let mut r = Reader::new(data);
        let mut out = Vec::new();
        while !r.is_empty() {
            let id = r.u8()?;
            let hcp_name = r.u8()?;
            let len = usize::from(r.u16()?);
            let mut p = r.sub(len)?;
            let mut attributes = Vec::new();
            while !p.is_empty() {
                attributes.push(Attribute::read(&mut p)?);
            }
            out.push(Self { id, hcp_name, attributes });
        }
        if out.is_empty() {
            return Err(Error::Malformed("HCP_PROPOSAL without a proposal"));
        }
        Ok(out)
    }

    pub fn write_list(list: &[Self]) -> Result<Vec<u8>> {
        let mut w = Writer::new();
        for p in list {
            w.u8(p.id);
            w.u8(p.hcp_name);
            let mut body = Writer::new();
            for a in &p.attributes {
                a.write(&mut body)?;
            }
            let body = body.into_vec();
            w.u16(u16::try_from(body.len()).map_err(|_| Error::Malformed("Proposal Length"))?);
            w.bytes(&body);
        }
        Ok(w.into_vec())
    }

    /// A run of attributes filling `data` (the Attribute Data of
    /// `range_afrg_proposal`, ext-04 §5.1: AfRG_min | AfRG_max).
    pub fn read_list_attrs(data: &'a [u8]) -> Result<Vec<Attribute<'a, u16>>> {
        let mut r = Reader::new(data);
        let mut out = Vec::new();
        while !r.is_empty() {
            out.push(Attribute::read(&mut r)?);
        }
        Ok(out)
    }

    /// A TV attribute (AF = 1).
    pub fn tv(attr_type: u16, value: u16) -> Attribute<'static, u16> {
        Attribute { attr_type, value: AttributeValue::Tv(value) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_a_proposal_list() {
        let range = {
            let mut d = Writer::new();
            HcpProposal::tv(4, 6).write(&mut d).unwrap();
            HcpProposal::tv(4, 8).write(&mut d).unwrap();
            Attribute { attr_type: 0x7fff, value: AttributeValue::Tlv(d.into_vec().into()) }
        };
        let list = vec![
            HcpProposal { id: 1, hcp_name: 0, attributes: vec![HcpProposal::tv(0, 1), HcpProposal::tv(3, 0)] },
            HcpProposal { id: 2, hcp_name: 0, attributes: vec![range] },
        ];
        let bytes = HcpProposal::write_list(&list).unwrap();
        // ext-04 §5.1 Figure 5: a range of SPI LSB 6..8 is 12 octets.
        assert_eq!(
            hex::encode(&bytes),
            concat!(
                "01", "00", "0008", "80000001", "80030000",
                "02", "00", "000c", "7fff", "0008", "80040006", "80040008",
            )
        );
        assert_eq!(HcpProposal::read_list(&bytes).unwrap(), list);
        for n in 0..bytes.len() {
            // Cut at the proposal boundary (12) the first proposal alone is
            // a valid list; every other cut is refused.
            match HcpProposal::read_list(&bytes[..n]) {
                Ok(l) => assert!(n == 12 && l == list[..1], "{n}"),
                Err(_) => assert_ne!(n, 12),
            }
        }
    }
}
