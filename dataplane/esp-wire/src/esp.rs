//! The ESP header (RFC 4303 §2.1-§2.2) and the RFC 3948 §2.2 demux of
//! UDP port 4500: NAT keepalive (one 0xFF octet), IKE behind the four-zero
//! Non-ESP Marker, or ESP (the SPI is never 0 on the wire).

use crate::{be32, Error, Result};

/// Byte ranges of the ESP header.
pub mod field {
    use core::ops::{Range, RangeFrom};
    pub const SPI: Range<usize> = 0..4;
    pub const SEQ: Range<usize> = 4..8;
    /// IV (if explicit), then ciphertext, then ICV: the split depends on the SA.
    pub const PAYLOAD: RangeFrom<usize> = 8..;
}

/// Length of SPI + Sequence Number.
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// A view of an ESP packet, from the SPI to the end of the ICV.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |               Security Parameters Index (SPI)                 |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                      Sequence Number                          |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |          IV (explicit suites only), Payload Data ...          ~
/// ~    ... Padding, Pad Length, Next Header (encrypted) ...       ~
/// ~    Integrity Check Value (ICV)                                |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone)]
pub struct EspPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EspPacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wrap and check the 8-octet header is present. Never panics.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn spi(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SPI.start)
    }

    /// The low 32 bits of the sequence number (RFC 4303 §2.2).
    pub fn seq(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SEQ.start)
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EspPacket<T> {
    pub fn set_spi(&mut self, v: u32) {
        self.buffer.as_mut()[field::SPI].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_seq(&mut self, v: u32) {
        self.buffer.as_mut()[field::SEQ].copy_from_slice(&v.to_be_bytes());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

/// The parsed ESP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspRepr {
    pub spi: u32,
    /// Low 32 bits as carried on the wire.
    pub seq: u32,
}

impl EspRepr {
    pub fn parse<T: AsRef<[u8]>>(p: &EspPacket<T>) -> Result<Self> {
        p.check_len()?;
        Ok(Self {
            spi: p.spi(),
            seq: p.seq(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut EspPacket<T>) {
        p.set_spi(self.spi);
        p.set_seq(self.seq);
    }
}

/// What a UDP 4500 payload carries (RFC 3948 §2.2-§2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpEncapKind {
    /// A single 0xFF octet: ignore it (and never treat it as liveness).
    NatKeepalive,
    /// Four zero octets then an IKE header: punt to the control plane.
    /// The IKE message starts 4 octets into the payload.
    Ike,
    /// An ESP packet (non-zero SPI).
    Esp,
}

/// Length of the Non-ESP Marker in front of IKE on port 4500.
pub const NON_ESP_MARKER_LEN: usize = 4;

/// Tell the three kinds of UDP 4500 payload apart. Never panics.
pub fn classify_udp_encap(payload: &[u8]) -> Result<UdpEncapKind> {
    match payload {
        [0xff] => Ok(UdpEncapKind::NatKeepalive),
        [0, 0, 0, 0, ..] => Ok(UdpEncapKind::Ike),
        p if p.len() < HEADER_LEN => Err(Error::Truncated),
        _ => Ok(UdpEncapKind::Esp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PKT: [u8; 10] = [0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x05, 0xaa, 0xbb];

    #[test]
    fn parses_esp_header() {
        let p = EspPacket::new_checked(&PKT[..]).unwrap();
        assert_eq!(
            EspRepr::parse(&p).unwrap(),
            EspRepr {
                spi: 0x01020304,
                seq: 5
            }
        );
        assert_eq!(p.payload(), &[0xaa, 0xbb]);
    }

    #[test]
    fn round_trips_esp_header() {
        let r = EspRepr {
            spi: 0xdeadbeef,
            seq: u32::MAX,
        };
        let mut b = [0u8; 8];
        r.emit(&mut EspPacket::new_unchecked(&mut b[..]));
        assert_eq!(b, [0xde, 0xad, 0xbe, 0xef, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            EspRepr::parse(&EspPacket::new_checked(&b[..]).unwrap()).unwrap(),
            r
        );
    }

    #[test]
    fn rejects_truncated_esp_header() {
        for n in 0..HEADER_LEN {
            assert_eq!(
                EspPacket::new_checked(&PKT[..n]).err(),
                Some(Error::Truncated),
                "{n}"
            );
        }
    }

    #[test]
    fn tells_keepalive_ike_and_esp_apart_on_port_4500() {
        assert_eq!(classify_udp_encap(&[0xff]), Ok(UdpEncapKind::NatKeepalive));
        assert_eq!(
            classify_udp_encap(&[0, 0, 0, 0, 1, 2]),
            Ok(UdpEncapKind::Ike)
        );
        assert_eq!(classify_udp_encap(&PKT), Ok(UdpEncapKind::Esp));
        assert_eq!(classify_udp_encap(&[]), Err(Error::Truncated));
        assert_eq!(classify_udp_encap(&[0xfe]), Err(Error::Truncated));
        assert_eq!(classify_udp_encap(&PKT[..7]), Err(Error::Truncated));
    }
}
