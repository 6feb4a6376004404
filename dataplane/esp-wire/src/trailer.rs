//! The ESP trailer (RFC 4303 §2.4-§2.6), parsed from the end of the
//! decrypted payload. After `check_len`: at least 2 octets and
//! `Pad Length + 2 <= length`, so `payload()` (inner data plus any TFC
//! padding) never panics. `check_padding` enforces the default pad content
//! 1, 2, 3, ... (RFC 4303 §2.4: "the receiver SHOULD inspect" it).

use crate::{Error, IpProtocol, Result};

/// Offsets from the **end** of the decrypted payload.
pub mod field {
    /// Next Header is the last octet.
    pub const NEXT_HEADER_FROM_END: usize = 1;
    /// Pad Length is the one before it.
    pub const PAD_LEN_FROM_END: usize = 2;
}

/// Pad Length + Next Header.
pub const TRAILER_LEN: usize = 2;

/// A view of a decrypted ESP payload with its trailer.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ~                Payload Data [+ TFC padding]                   ~
/// +               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |               |     Padding (0-255 bytes): 1, 2, 3, ...       |
/// +-+-+-+-+-+-+-+-+               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                               |  Pad Length   | Next Header   |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone)]
pub struct EspTrailer<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EspTrailer<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wrap and check lengths (not the pad content). Never panics.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let t = Self::new_unchecked(buffer);
        t.check_len()?;
        Ok(t)
    }

    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < TRAILER_LEN {
            return Err(Error::Truncated);
        }
        if usize::from(b[b.len() - field::PAD_LEN_FROM_END]) + TRAILER_LEN > b.len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Check that the padding reads 1, 2, 3, ... (RFC 4303 §2.4).
    pub fn check_padding(&self) -> Result<()> {
        if self.padding().iter().zip(1u8..=255).all(|(&p, i)| p == i) {
            Ok(())
        } else {
            Err(Error::Padding)
        }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn next_header(&self) -> IpProtocol {
        let b = self.buffer.as_ref();
        IpProtocol(b[b.len() - field::NEXT_HEADER_FROM_END])
    }

    pub fn pad_len(&self) -> u8 {
        let b = self.buffer.as_ref();
        b[b.len() - field::PAD_LEN_FROM_END]
    }

    /// The padding octets.
    pub fn padding(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[self.payload_len()..b.len() - TRAILER_LEN]
    }

    /// Length of payload data plus TFC padding.
    pub fn payload_len(&self) -> usize {
        self.buffer.as_ref().len() - TRAILER_LEN - usize::from(self.pad_len())
    }

    /// Payload data plus TFC padding.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.payload_len()]
    }
}

/// The parsed trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrailerRepr {
    pub pad_len: u8,
    pub next_header: IpProtocol,
}

impl TrailerRepr {
    /// Parse and check the pad content.
    pub fn parse<T: AsRef<[u8]>>(t: &EspTrailer<T>) -> Result<Self> {
        t.check_len()?;
        t.check_padding()?;
        Ok(Self {
            pad_len: t.pad_len(),
            next_header: t.next_header(),
        })
    }

    /// The trailer for `payload_len` octets padded so that
    /// `prefix_len + payload + padding + 2` is a multiple of `align`
    /// (RFC 4303 §2.4; `prefix_len` is the IV length when the alignment rule
    /// counts it). `align` must be a power of two no larger than 256.
    pub fn for_payload(
        payload_len: usize,
        prefix_len: usize,
        align: usize,
        next_header: IpProtocol,
    ) -> Self {
        let used = prefix_len + payload_len + TRAILER_LEN;
        // ESP alignments are powers of two (4 here): a mask, not a division,
        // on the packet path.
        let pad_len = if align.is_power_of_two() {
            align.wrapping_sub(used) & (align - 1)
        } else {
            (align - used % align.max(1)) % align.max(1)
        };
        Self {
            pad_len: pad_len as u8,
            next_header,
        }
    }

    /// Padding + Pad Length + Next Header.
    pub const fn buffer_len(&self) -> usize {
        self.pad_len as usize + TRAILER_LEN
    }

    /// Write padding and trailer into the last `buffer_len()` octets of `buf`.
    /// `buf` must be at least that long.
    pub fn emit(&self, buf: &mut [u8]) {
        let n = buf.len();
        let pad = &mut buf[n - self.buffer_len()..n - TRAILER_LEN];
        for (p, i) in pad.iter_mut().zip(1u8..=255) {
            *p = i;
        }
        buf[n - 2] = self.pad_len;
        buf[n - 1] = self.next_header.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc7634_trailer() {
        let b = [0xaa, 0xbb, 0x01, 0x02, 0x02, 0x04];
        let t = EspTrailer::new_checked(&b[..]).unwrap();
        assert_eq!(
            TrailerRepr::parse(&t).unwrap(),
            TrailerRepr {
                pad_len: 2,
                next_header: IpProtocol::IPV4
            }
        );
        assert_eq!(t.payload(), &[0xaa, 0xbb]);
    }

    #[test]
    fn round_trips_trailer() {
        for pad_len in [0u8, 1, 3, 255] {
            let r = TrailerRepr {
                pad_len,
                next_header: IpProtocol::IPV6,
            };
            let mut b = vec![0x55; 5 + r.buffer_len()];
            r.emit(&mut b);
            let t = EspTrailer::new_checked(&b[..]).unwrap();
            assert_eq!(TrailerRepr::parse(&t).unwrap(), r);
            assert_eq!(t.payload(), &[0x55; 5]);
        }
    }

    #[test]
    fn rejects_every_truncated_trailer() {
        let r = TrailerRepr {
            pad_len: 7,
            next_header: IpProtocol::IPV4,
        };
        let mut b = vec![0u8; r.buffer_len()];
        r.emit(&mut b);
        for n in 0..b.len() {
            // Dropping leading octets leaves Pad Length pointing past the start.
            assert_eq!(
                EspTrailer::new_checked(&b[b.len() - n..]).err(),
                Some(Error::Truncated),
                "{n}"
            );
        }
    }

    #[test]
    fn rejects_bad_pad_bytes() {
        let b = [0x01, 0x03, 0x02, 0x04];
        let t = EspTrailer::new_checked(&b[..]).unwrap();
        assert_eq!(TrailerRepr::parse(&t), Err(Error::Padding));
    }

    #[test]
    fn pads_to_alignment() {
        assert_eq!(
            TrailerRepr::for_payload(0, 0, 4, IpProtocol::IPV4).pad_len,
            2
        );
        assert_eq!(
            TrailerRepr::for_payload(2, 0, 4, IpProtocol::IPV4).pad_len,
            0
        );
        assert_eq!(
            TrailerRepr::for_payload(84, 8, 4, IpProtocol::IPV4).pad_len,
            2
        );
        assert_eq!(
            TrailerRepr::for_payload(1, 0, 1, IpProtocol::IPV4).pad_len,
            0
        );
    }
}
