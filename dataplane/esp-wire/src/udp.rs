//! UDP headers (RFC 768). After `check_len`: `8 <= Length <= buffer length`,
//! so `payload()` never panics. Checksums over the IPv4/IPv6 pseudo-header are
//! filled or verified on request (RFC 3948 §2.1: UDP-encapsulated ESP over
//! IPv4 sends checksum 0; IPv6 requires one, RFC 8200 §8.1).

use std::net::IpAddr;

use crate::{be16, checksum, Error, IpProtocol, Result};

/// Byte ranges of the UDP header.
pub mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

pub const HEADER_LEN: usize = field::CHECKSUM.end;

/// A view of a UDP datagram.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |          Source Port          |       Destination Port        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |            Length             |           Checksum            |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wrap and validate the Length field. Never panics.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let len = usize::from(be16(b, field::LENGTH.start));
        if len < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if len > b.len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT.start)
    }

    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT.start)
    }

    pub fn len(&self) -> usize {
        usize::from(be16(self.buffer.as_ref(), field::LENGTH.start))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == HEADER_LEN
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.len()]
    }

    /// True if the checksum verifies, or is 0 (absent) over IPv4.
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        if self.checksum() == 0 && src.is_ipv4() {
            return true;
        }
        let Some(pseudo) = pseudo(src, dst, self.len()) else {
            return false;
        };
        checksum::combine(&[pseudo, checksum::sum(&self.buffer.as_ref()[..self.len()])]) == 0xffff
    }
}

fn pseudo(src: IpAddr, dst: IpAddr, len: usize) -> Option<u16> {
    Some(match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => checksum::pseudo_v4(s, d, IpProtocol::UDP.0, len as u32),
        (IpAddr::V6(s), IpAddr::V6(d)) => checksum::pseudo_v6(s, d, IpProtocol::UDP.0, len as u32),
        _ => return None,
    })
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    pub fn set_src_port(&mut self, v: u16) {
        self.buffer.as_mut()[field::SRC_PORT].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_dst_port(&mut self, v: u16) {
        self.buffer.as_mut()[field::DST_PORT].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_len(&mut self, v: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_checksum(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&v.to_be_bytes());
    }

    /// Compute the checksum over header and payload (`Length` octets).
    /// Mixed address families leave it 0.
    pub fn fill_checksum(&mut self, src: IpAddr, dst: IpAddr) {
        self.set_checksum(0);
        let len = self.len();
        let Some(pseudo) = pseudo(src, dst, len) else {
            return;
        };
        let c = !checksum::combine(&[pseudo, checksum::sum(&self.buffer.as_ref()[..len])]);
        // RFC 768: a computed 0 is sent as all ones.
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let len = self.len();
        &mut self.buffer.as_mut()[HEADER_LEN..len]
    }
}

/// The parsed UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload_len: usize,
}

impl UdpRepr {
    /// Parse the header; the checksum is checked separately
    /// (`UdpPacket::verify_checksum`) because it needs the IP addresses.
    pub fn parse<T: AsRef<[u8]>>(p: &UdpPacket<T>) -> Result<Self> {
        p.check_len()?;
        Ok(Self {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            payload_len: p.len() - HEADER_LEN,
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Write the header with checksum 0; call `fill_checksum` after the
    /// payload is in place if one is wanted.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut UdpPacket<T>) {
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_len((HEADER_LEN + self.payload_len) as u16);
        p.set_checksum(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DGRAM: [u8; 12] = [
        0x11, 0x94, 0x11, 0x94, 0x00, 0x0c, 0x00, 0x00, 0xff, 0x01, 0x02, 0x03,
    ];

    #[test]
    fn parses_nat_t_udp_header() {
        let p = UdpPacket::new_checked(&DGRAM[..]).unwrap();
        let r = UdpRepr::parse(&p).unwrap();
        assert_eq!(
            r,
            UdpRepr {
                src_port: 4500,
                dst_port: 4500,
                payload_len: 4
            }
        );
        assert_eq!(p.payload(), &[0xff, 1, 2, 3]);
    }

    #[test]
    fn round_trips_udp_header() {
        let r = UdpRepr {
            src_port: 1,
            dst_port: 4500,
            payload_len: 3,
        };
        let mut b = [0u8; 11];
        r.emit(&mut UdpPacket::new_unchecked(&mut b[..]));
        assert_eq!(
            UdpRepr::parse(&UdpPacket::new_checked(&b[..]).unwrap()).unwrap(),
            r
        );
    }

    #[test]
    fn rejects_every_truncated_udp_prefix() {
        for n in 0..DGRAM.len() {
            assert_eq!(
                UdpPacket::new_checked(&DGRAM[..n]).err(),
                Some(Error::Truncated),
                "{n}"
            );
        }
        let mut b = DGRAM;
        b[5] = 7;
        assert_eq!(UdpPacket::new_checked(&b[..]).err(), Some(Error::Malformed));
    }

    #[test]
    fn fills_and_verifies_checksums() {
        for (s, d) in [("10.0.0.1", "10.0.0.2"), ("2001:db8::1", "2001:db8::2")] {
            let (s, d): (IpAddr, IpAddr) = (s.parse().unwrap(), d.parse().unwrap());
            let mut b = DGRAM;
            let mut p = UdpPacket::new_checked(&mut b[..]).unwrap();
            p.fill_checksum(s, d);
            assert_ne!(p.checksum(), 0);
            assert!(p.verify_checksum(s, d));
            b[9] ^= 0x40;
            assert!(!UdpPacket::new_checked(&b[..])
                .unwrap()
                .verify_checksum(s, d));
        }
    }
}
