//! Payload bodies with a short fixed part and one variable field:
//! KE (RFC 7296 §3.4), IDi/IDr/IDg (§3.5, RFC 9838), CERT (§3.6), CERTREQ
//! (§3.7), AUTH (§3.8), Nonce (§3.9), Notify (§3.10), Delete (§3.11),
//! Vendor ID (§3.12) and EAP (§3.16).
//!
//! Each `read` consumes the whole body reader; RESERVED fields are ignored on
//! receipt and written as zero (RFC 7296 §3.2).
use crate::codec::{Reader, Writer};
use crate::error::{Error, Result};
use crate::registry::{AuthMethod, CertEncoding, IdType, KeId, NotifyType, ProtocolId};
use crate::Bytes;

/// Key Exchange payload (RFC 7296 §3.4; "Key Exchange Method" per RFC 9370).
///
/// ```text
/// | Next Payload  |C|  RESERVED   |         Payload Length        |
/// |   Key Exchange Method Num     |           RESERVED            |
/// ~                       Key Exchange Data                       ~
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ke<'a> {
    pub ke_method: KeId,
    pub data: Bytes<'a>,
}

impl<'a> Ke<'a> {
    pub fn read(r: &mut Reader<'a>) -> Result<Self> {
        let ke_method = KeId(r.u16()?);
        let _reserved = r.u16()?;
        Ok(Self {
            ke_method,
            data: r.rest().into(),
        })
    }

    pub fn write(&self, w: &mut Writer) -> Result<()> {
        w.u16(self.ke_method.0);
        w.u16(0);
        w.bytes(&self.data);
        Ok(())
    }
}

/// Identification payload: IDi, IDr (RFC 7296 §3.5) and G-IKEv2 IDg.
///
/// ```text
/// | Next Payload  |C|  RESERVED   |         Payload Length        |
/// |   ID Type     |                 RESERVED                      |
/// ~                   Identification Data                         ~
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Id<'a> {
    pub id_type: IdType,
    pub data: Bytes<'a>,
}

impl<'a> Id<'a> {
    pub fn read(r: &mut Reader<'a>) -> Result<Self> {
        let id_type = IdType(r.u8()?);
        let _reserved = r.take(3)?;
        Ok(Self {
            id_type,
            data: r.rest().into(),
        })
    }

    pub fn write(&self, w: &mut Writer) -> Result<()> {
        w.u8(self.id_type.0);
        w.bytes(&[0; 3]);
        w.bytes(&self.data);
        Ok(())
    }
}

/// Certificate payload (RFC 7296 §3.6).
///
/// ```text
/// | Next Payload  |C|  RESERVED   |         Payload Length        |
/// | Cert Encoding |                                               |
/// +-+-+-+-+-+-+-+-+                                               |
/// ~                       Certificate Data                        ~
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cert<'a> {
    pub encoding: CertEncoding,
    pub data: Bytes<'a>,
}

impl<'a> Cert<'a> {
    pub fn read(r: &mut Reader<'a>) -> Result<Self> {
        let encoding = CertEncoding(r.u8()?);
        Ok(Self {
            encoding,
            data: r.rest().into(),
        })
    }

    pub fn write(&self, w: &mut Writer) -> Result<()> {
        w.u8(self.encoding.0);
        w.bytes(&self.data);
        Ok(())
    }
}

/// Certificate Request payload (RFC 7296 §3.7).
///
/// ```text
/// | Next Payload  |C|  RESERVED   |         Payload Length        |
/// | Cert Encoding |                                               |
/// +-+-+-+-+-+-+-+-+                                               |
/// ~                    Certification Authority                    ~
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertReq<'a> {
    pub encoding: CertEncoding,
    /// For X.509: concatenated SHA-1 hashes of trusted CAs' public keys.
    pub authorities: Bytes<'a>,
}

impl<'a> CertReq<'a> {
    pub fn read(r: &mut Reader<'a>) -> Result<Self> {
        let encoding = CertEncoding(r.u8()?);
        Ok(Self {
            encoding,
            authorities: r.rest().into(),
        })
    }

    pub fn write(&self, w: &mut Writer) -> Result<()> {
        w.u8(self.encoding.0);
        w.bytes(&self.authorities);
        Ok(())
    }
}

/// Authentication payload (RFC 7296 §3.8).
///
/// ```text
/// | Next Payload  |C|  RESERVED   |         Payload Length        |
/// | Auth Method   |                RESERVED                       |
/// ~                      Authentication Data                      ~
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth<'a> {
    pub method: AuthMethod,
    pub data: Bytes<'a>,
}

impl<'a> Auth<'a> {
    pub fn read(r: &mut Reader<'a>) -> Result<Self> {
        let method = AuthMethod(r.u8()?);
        let _reserved = r.take(3)?;
        Ok(Self {
            method,
            data: r.rest().into(),
        })
    }

    pub fn write(&self, w: &mut Writer) -> Result<()> {
        w.u8(self.method.0);
        w.bytes(&[0; 3]);
        w.bytes(&self.data);
        Ok(())
    }
}

/// Nonce payload (RFC 7296 §3.9).
///
/// ```text
/// | Next Payload  |C|  RESERVED   |         Payload Length        |
/// ~                            Nonce Data                         ~
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nonce<'a> {
    pub data: Bytes<'a>,
}

impl<'a> Nonce<'a> {
    /// RFC 7296 §3.9: "The size of the Nonce Data MUST be between 16 and 256
    /// octets, inclusive."
    pub const MIN_LEN: usize = 16;
    pub const MAX_LEN: usize = 256;

    pub fn read(r: &mut Reader<'a>) -> Result<Self> {
        let data = r.rest();
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&data.len()) {
            return Err(Error::Malformed("Nonce Data length"));
        }
        Ok(Self { data: data.into() })
    }

    pub fn write(&self, w: &mut Writer) -> Result<()> {
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&self.data.len()) {
            return Err(Error::Malformed("Nonce Data length"));
        }
        w.bytes(&self.data);
        Ok(())
    }
}

/// Notify payload (RFC 7296 §3.10).
///
/// ```text
/// | Next Payload  |C|  RESERVED   |         Payload Length        |
/// |  Protocol ID  |   SPI Size    |      Notify Message Type      |
/// ~                Security Parameter Index (SPI)                 ~
/// ~                       Notification Data                       ~
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify<'a> {
    /// 0 (and an empty SPI) when the notification concerns the IKE SA.
    pub protocol_id: ProtocolId,
    pub spi: Bytes<'a>,
    pub notify_type: NotifyType,
    pub data: Bytes<'a>,
}

impl<'a> Notify<'a> {
    /// A notification about the IKE SA: protocol 0, no SPI.
    pub fn new(notify_type: NotifyType, data: impl Into<Bytes<'a>>) -> Self {
        Self {
            protocol_id: ProtocolId::NONE,
            spi: Bytes::Borrowed(&[]),
            notify_type,
            data: data.into(),
        }
    }

    pub fn read(r: &mut Reader<'a>) -> Result<Self> {
        let protocol_id = ProtocolId(r.u8()?);
        let spi_size = usize::from(r.u8()?);
        let notify_type = NotifyType(r.u16()?);
        let spi = r.take(spi_size)?.into();
        Ok(Self {
            protocol_id,
            spi,
            notify_type,
            data: r.rest().into(),
        })
    }

    pub fn write(&self, w: &mut Writer) -> Result<()> {
        w.u8(self.protocol_id.0);
        w.u8_len(self.spi.len())?;
        w.u16(self.notify_type.0);
        w.bytes(&self.spi);
        w.bytes(&self.data);
        Ok(())
    }
}

/// Delete payload (RFC 7296 §3.11).
///
/// ```text
/// | Next Payload  |C|  RESERVED   |         Payload Length        |
/// | Protocol ID   |   SPI Size    |          Num of SPIs          |
/// ~               Security Parameter Index(es) (SPI)              ~
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete<'a> {
    pub protocol_id: ProtocolId,
    /// 0 for the IKE SA (the SPIs are in the header), 4 for ESP/AH.
    pub spi_size: u8,
    /// Each exactly `spi_size` octets.
    pub spis: Vec<Bytes<'a>>,
}

impl<'a> Delete<'a> {
    pub fn read(r: &mut Reader<'a>) -> Result<Self> {
        let protocol_id = ProtocolId(r.u8()?);
        let spi_size = r.u8()?;
        let num_spis = r.u16()?;
        if spi_size == 0 && num_spis != 0 {
            // A count of zero-length SPIs says nothing and would let a 4-octet
            // body claim 65535 entries.
            return Err(Error::Malformed("Num of SPIs with SPI Size 0"));
        }
        let mut spis = Vec::with_capacity(usize::from(num_spis).min(r.left()));
        for _ in 0..num_spis {
            spis.push(r.take(usize::from(spi_size))?.into());
        }
        r.expect_empty()?;
        Ok(Self {
            protocol_id,
            spi_size,
            spis,
        })
    }

    pub fn write(&self, w: &mut Writer) -> Result<()> {
        if self
            .spis
            .iter()
            .any(|s| s.len() != usize::from(self.spi_size))
        {
            return Err(Error::Malformed("SPI of a size other than SPI Size"));
        }
        if self.spi_size == 0 && !self.spis.is_empty() {
            return Err(Error::Malformed("Num of SPIs with SPI Size 0"));
        }
        w.u8(self.protocol_id.0);
        w.u8(self.spi_size);
        w.u16_len(self.spis.len())?;
        for s in &self.spis {
            w.bytes(s);
        }
        Ok(())
    }
}

/// Vendor ID payload (RFC 7296 §3.12).
///
/// ```text
/// | Next Payload  |C|  RESERVED   |         Payload Length        |
/// ~                        Vendor ID (VID)                        ~
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorId<'a> {
    pub vid: Bytes<'a>,
}

impl<'a> VendorId<'a> {
    pub fn read(r: &mut Reader<'a>) -> Result<Self> {
        Ok(Self {
            vid: r.rest().into(),
        })
    }

    pub fn write(&self, w: &mut Writer) -> Result<()> {
        w.bytes(&self.vid);
        Ok(())
    }
}

/// Extensible Authentication payload (RFC 7296 §3.16): one EAP message
/// (RFC 3748 §4), whose own Length field must equal the payload body.
///
/// ```text
/// | Next Payload  |C|  RESERVED   |         Payload Length        |
/// ~                       EAP Message                             ~
///
/// EAP Message: |     Code      | Identifier    |           Length              |
///              |     Type      | Type_Data...
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eap<'a> {
    pub message: Bytes<'a>,
}

impl<'a> Eap<'a> {
    /// Code, Identifier and Length.
    pub const HEADER_LEN: usize = 4;

    fn check(message: &[u8]) -> Result<()> {
        let Some(len) = message.get(2..4) else {
            return Err(Error::Truncated);
        };
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        if len != message.len() {
            return Err(Error::Malformed("EAP Length"));
        }
        Ok(())
    }

    pub fn read(r: &mut Reader<'a>) -> Result<Self> {
        let message = r.rest();
        Self::check(message)?;
        Ok(Self {
            message: message.into(),
        })
    }

    pub fn write(&self, w: &mut Writer) -> Result<()> {
        Self::check(&self.message)?;
        w.bytes(&self.message);
        Ok(())
    }

    /// EAP Code (1 Request, 2 Response, 3 Success, 4 Failure).
    pub fn code(&self) -> Option<u8> {
        self.message.first().copied()
    }

    pub fn identifier(&self) -> Option<u8> {
        self.message.get(1).copied()
    }
}

/// A payload whose body this crate keeps as opaque bytes: the Puzzle
/// Solution (RFC 8019), whose content depends on the negotiated PRF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raw<'a> {
    pub body: Bytes<'a>,
}

impl<'a> Raw<'a> {
    pub fn read(r: &mut Reader<'a>) -> Result<Self> {
        Ok(Self {
            body: r.rest().into(),
        })
    }

    pub fn write(&self, w: &mut Writer) -> Result<()> {
        w.bytes(&self.body);
        Ok(())
    }
}
