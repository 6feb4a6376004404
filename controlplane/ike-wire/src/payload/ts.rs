//! Traffic Selector payloads TSi/TSr (RFC 7296 §3.13) and their selectors:
//! IPv4 and IPv6 address ranges (§3.13.1) and security labels (RFC 9478,
//! TS_SECLABEL, layout as implemented by libreswan and strongSwan [I]).
//!
//! Guarantees: Number of TSs equals the selectors present, every Selector
//! Length lies inside the payload, address-range selectors have exactly their
//! RFC length (16 / 40 octets). Unknown TS types are kept as opaque bytes;
//! whether a selector is acceptable (start <= end, TS_UNACCEPTABLE) is a
//! protocol decision.
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::codec::{Reader, Writer};
use crate::error::{Error, Result};
use crate::registry::TsType;
use crate::Bytes;

/// Traffic Selector payload body.
///
/// ```text
/// | Next Payload  |C|  RESERVED   |         Payload Length        |
/// | Number of TSs |                 RESERVED                      |
/// ~                       <Traffic Selectors>                     ~
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ts<'a> {
    pub selectors: Vec<TrafficSelector<'a>>,
}

/// One traffic selector substructure.
///
/// ```text
/// |   TS Type     |IP Protocol ID |       Selector Length         |
/// |           Start Port          |           End Port            |
/// ~                         Starting Address                      ~
/// ~                         Ending Address                        ~
///
/// TS_SECLABEL (RFC 9478):
/// |   TS Type=10  |   Reserved    |       Selector Length         |
/// ~                         Security Label                        ~
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrafficSelector<'a> {
    Ipv4 {
        ip_protocol: u8,
        start_port: u16,
        end_port: u16,
        start_addr: Ipv4Addr,
        end_addr: Ipv4Addr,
    },
    Ipv6 {
        ip_protocol: u8,
        start_port: u16,
        end_port: u16,
        start_addr: Ipv6Addr,
        end_addr: Ipv6Addr,
    },
    SecLabel {
        label: Bytes<'a>,
    },
    /// A TS type this crate does not know: the second octet and everything
    /// after Selector Length, kept for re-emission.
    Unknown {
        ts_type: TsType,
        ip_protocol: u8,
        data: Bytes<'a>,
    },
}

/// TS Type, IP Protocol ID / Reserved, Selector Length.
const TS_HEADER_LEN: usize = 4;
const IPV4_LEN: usize = 16;
const IPV6_LEN: usize = 40;

impl<'a> Ts<'a> {
    pub fn read(r: &mut Reader<'a>) -> Result<Self> {
        let count = r.u8()?;
        let _reserved = r.take(3)?;
        let mut selectors = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            selectors.push(TrafficSelector::read(r)?);
        }
        r.expect_empty()?;
        Ok(Self { selectors })
    }

    pub fn write(&self, w: &mut Writer) -> Result<()> {
        w.u8_len(self.selectors.len())?;
        w.bytes(&[0; 3]);
        for s in &self.selectors {
            s.write(w)?;
        }
        Ok(())
    }
}

impl<'a> TrafficSelector<'a> {
    pub fn ts_type(&self) -> TsType {
        match self {
            Self::Ipv4 { .. } => TsType::TS_IPV4_ADDR_RANGE,
            Self::Ipv6 { .. } => TsType::TS_IPV6_ADDR_RANGE,
            Self::SecLabel { .. } => TsType::TS_SECLABEL,
            Self::Unknown { ts_type, .. } => *ts_type,
        }
    }

    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self> {
        let ts_type = TsType(r.u8()?);
        let ip_protocol = r.u8()?;
        let len = usize::from(r.u16()?);
        if len < TS_HEADER_LEN {
            return Err(Error::Malformed("Selector Length"));
        }
        let mut s = r.sub(len - TS_HEADER_LEN)?;
        let ts = match ts_type {
            TsType::TS_IPV4_ADDR_RANGE | TsType::TS_IPV6_ADDR_RANGE => {
                let want = if ts_type == TsType::TS_IPV4_ADDR_RANGE {
                    IPV4_LEN
                } else {
                    IPV6_LEN
                };
                if len != want {
                    return Err(Error::Malformed("Selector Length of an address range"));
                }
                let start_port = s.u16()?;
                let end_port = s.u16()?;
                if ts_type == TsType::TS_IPV4_ADDR_RANGE {
                    let start_addr = Ipv4Addr::from(s.array::<4>()?);
                    let end_addr = Ipv4Addr::from(s.array::<4>()?);
                    Self::Ipv4 {
                        ip_protocol,
                        start_port,
                        end_port,
                        start_addr,
                        end_addr,
                    }
                } else {
                    let start_addr = Ipv6Addr::from(s.array::<16>()?);
                    let end_addr = Ipv6Addr::from(s.array::<16>()?);
                    Self::Ipv6 {
                        ip_protocol,
                        start_port,
                        end_port,
                        start_addr,
                        end_addr,
                    }
                }
            }
            TsType::TS_SECLABEL => Self::SecLabel {
                label: s.rest().into(),
            },
            _ => Self::Unknown {
                ts_type,
                ip_protocol,
                data: s.rest().into(),
            },
        };
        s.expect_empty()?;
        Ok(ts)
    }

    pub(crate) fn write(&self, w: &mut Writer) -> Result<()> {
        let start = w.len();
        w.u8(self.ts_type().0);
        match self {
            Self::Ipv4 { ip_protocol, .. }
            | Self::Ipv6 { ip_protocol, .. }
            | Self::Unknown { ip_protocol, .. } => w.u8(*ip_protocol),
            Self::SecLabel { .. } => w.u8(0),
        }
        let len = w.u16_placeholder(start);
        match self {
            Self::Ipv4 {
                start_port,
                end_port,
                start_addr,
                end_addr,
                ..
            } => {
                w.u16(*start_port);
                w.u16(*end_port);
                w.bytes(&start_addr.octets());
                w.bytes(&end_addr.octets());
            }
            Self::Ipv6 {
                start_port,
                end_port,
                start_addr,
                end_addr,
                ..
            } => {
                w.u16(*start_port);
                w.u16(*end_port);
                w.bytes(&start_addr.octets());
                w.bytes(&end_addr.octets());
            }
            Self::SecLabel { label } => w.bytes(label),
            Self::Unknown { ts_type, data, .. } => {
                if matches!(
                    *ts_type,
                    TsType::TS_IPV4_ADDR_RANGE | TsType::TS_IPV6_ADDR_RANGE | TsType::TS_SECLABEL
                ) {
                    // Would not parse back as Unknown.
                    return Err(Error::Malformed(
                        "Unknown traffic selector with a known TS Type",
                    ));
                }
                w.bytes(data)
            }
        }
        w.patch_u16(len)
    }
}
