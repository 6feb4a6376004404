//! The Encrypted payload SK (RFC 7296 §3.14) and the Encrypted Fragment payload
//! SKF (RFC 7383 §2.5), seen from outside the crypto: this module splits the
//! body into IV | ciphertext | ICV given the lengths the negotiated transform
//! implies, locates the AAD / integrity-covered ranges in a whole message
//! (RFC 5282 §5.1, RFC 7296 §3.14, RFC 7383 §2.5), and removes or adds the
//! Padding | Pad Length trailer of the decrypted content. Decryption itself and
//! the inner payload chain's meaning belong to `ike-crypto` / `ike-proto`;
//! [`crate::parse_inner`] parses the decrypted chain.
//!
//! Guarantees: nothing here panics on any input; every range returned lies in
//! the message it was computed from.
use core::ops::Range;

use crate::codec::{Reader, Writer};
use crate::error::{Error, Result};
use crate::header::{Header, HEADER_LEN};
use crate::registry::PayloadType;
use crate::Bytes;

/// Encrypted and Authenticated payload.
///
/// ```text
/// | Next Payload  |C|  RESERVED   |         Payload Length        |
/// |                     Initialization Vector                     |
/// ~                    Encrypted IKE Payloads                     ~
/// +               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |               |             Padding (0-255 octets)            |
/// +-+-+-+-+-+-+-+-+                               +-+-+-+-+-+-+-+-+
/// |                                               |  Pad Length   |
/// ~                    Integrity Checksum Data                    ~
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sk<'a> {
    /// The Next Payload field of the SK header: the type of the first
    /// encrypted payload (RFC 7296 §3.2), `NONE` when SK is empty.
    pub first_inner: PayloadType,
    /// The octet holding C and RESERVED, kept as received because RFC 9242
    /// §3.1 copies it from SKF #1 into the rebuilt SK header for IntAuth.
    pub flags: u8,
    /// IV | encrypted (payloads, Padding, Pad Length) | ICV.
    pub body: Bytes<'a>,
}

/// Encrypted and Authenticated Fragment payload (RFC 7383 §2.5).
///
/// ```text
/// | Next Payload  |C|  RESERVED   |         Payload Length        |
/// |        Fragment Number        |        Total Fragments        |
/// |                     Initialization Vector                     |
/// ~                      Encrypted content                        ~
/// +               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |               |             Padding (0-255 octets)            |
/// +-+-+-+-+-+-+-+-+                               +-+-+-+-+-+-+-+-+
/// |                                               |  Pad Length   |
/// ~                    Integrity Checksum Data                    ~
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skf<'a> {
    /// First inner payload type in fragment 1; 0 in the others (RFC 7383 §2.5).
    pub first_inner: PayloadType,
    pub flags: u8,
    /// 1-based; 1 <= fragment_number <= total_fragments (RFC 7383 §2.6).
    pub fragment_number: u16,
    pub total_fragments: u16,
    pub body: Bytes<'a>,
}

/// The body of an SK or SKF payload split by the transform's lengths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkParts<'b> {
    pub iv: &'b [u8],
    /// Encrypted payloads, Padding and Pad Length.
    pub ciphertext: &'b [u8],
    /// Integrity Checksum Data (or the AEAD tag).
    pub icv: &'b [u8],
}

fn split(body: &[u8], iv_len: usize, icv_len: usize) -> Result<SkParts<'_>> {
    let fixed = iv_len.checked_add(icv_len).ok_or(Error::Truncated)?;
    if body.len() < fixed {
        return Err(Error::Truncated);
    }
    let (iv, rest) = body.split_at(iv_len);
    let (ciphertext, icv) = rest.split_at(rest.len() - icv_len);
    Ok(SkParts {
        iv,
        ciphertext,
        icv,
    })
}

impl<'a> Sk<'a> {
    pub fn read(first_inner: PayloadType, flags: u8, r: &mut Reader<'a>) -> Result<Self> {
        Ok(Self {
            first_inner,
            flags,
            body: r.rest().into(),
        })
    }

    pub fn write(&self, w: &mut Writer) -> Result<()> {
        w.bytes(&self.body);
        Ok(())
    }

    /// IV | ciphertext | ICV, e.g. `split(8, 16)` for ENCR_CHACHA20_POLY1305
    /// (RFC 7634 §3) or `split(16, 16)` for AES-CBC with HMAC-SHA2-256-128.
    pub fn split(&self, iv_len: usize, icv_len: usize) -> Result<SkParts<'_>> {
        split(&self.body, iv_len, icv_len)
    }
}

impl<'a> Skf<'a> {
    pub fn read(first_inner: PayloadType, flags: u8, r: &mut Reader<'a>) -> Result<Self> {
        let fragment_number = r.u16()?;
        let total_fragments = r.u16()?;
        check_numbering(fragment_number, total_fragments)?;
        Ok(Self {
            first_inner,
            flags,
            fragment_number,
            total_fragments,
            body: r.rest().into(),
        })
    }

    pub fn write(&self, w: &mut Writer) -> Result<()> {
        check_numbering(self.fragment_number, self.total_fragments)?;
        w.u16(self.fragment_number);
        w.u16(self.total_fragments);
        w.bytes(&self.body);
        Ok(())
    }

    pub fn split(&self, iv_len: usize, icv_len: usize) -> Result<SkParts<'_>> {
        split(&self.body, iv_len, icv_len)
    }
}

/// RFC 7383 §2.6: "Fragment Number and Total Fragments fields are both
/// non-zero" and "Fragment Number ... is less than or equal to Total".
fn check_numbering(number: u16, total: u16) -> Result<()> {
    if number == 0 || total == 0 || number > total {
        return Err(Error::InvalidFragment);
    }
    Ok(())
}

/// Where the protected parts of an SK- or SKF-carrying message lie, as byte
/// ranges of the message (without any non-ESP marker), so the caller can
/// decrypt in place or fill in a zeroed body after emitting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkLayout {
    /// `SK` or `SKF`.
    pub payload_type: PayloadType,
    /// Offset of the Next Payload octet that names the SK / SKF payload (in
    /// the IKE header, or in the last unencrypted payload).
    pub next_payload_field: usize,
    /// From the first octet of the IKE header to the end of the SK (or SKF,
    /// including Fragment Number and Total Fragments) header: the AEAD
    /// associated data (RFC 5282 §5.1, RFC 7383 §2.5).
    pub aad: Range<usize>,
    pub iv: Range<usize>,
    pub ciphertext: Range<usize>,
    pub icv: Range<usize>,
}

impl SkLayout {
    /// Walks the unencrypted payload headers of `message` to its SK or SKF
    /// payload. `Ok(None)` if the message has neither.
    pub fn locate(message: &[u8], iv_len: usize, icv_len: usize) -> Result<Option<Self>> {
        let header = Header::parse_datagram(message)?;
        let mut current = header.next_payload;
        let mut next_payload_field = crate::header::field::NEXT_PAYLOAD;
        let mut r = Reader::new(message);
        r.take(HEADER_LEN)?;
        loop {
            if current == PayloadType::NONE {
                return Ok(None);
            }
            let start = r.offset();
            let next = PayloadType(r.u8()?);
            let _flags = r.u8()?;
            let len = usize::from(r.u16()?);
            if len < 4 {
                return Err(Error::Malformed("Payload Length"));
            }
            let fixed = match current {
                PayloadType::SK => 4,
                PayloadType::SKF => 8,
                _ => {
                    r.take(len - 4)?;
                    current = next;
                    next_payload_field = start;
                    continue;
                }
            };
            let end = start.checked_add(len).ok_or(Error::Truncated)?;
            if end > message.len() {
                return Err(Error::Truncated);
            }
            if end != message.len() {
                return Err(Error::EncryptedNotLast);
            }
            if len < fixed {
                return Err(Error::Truncated);
            }
            let body = start + fixed..end;
            let parts = split(&message[body.clone()], iv_len, icv_len)?;
            let iv = body.start..body.start + parts.iv.len();
            let ciphertext = iv.end..iv.end + parts.ciphertext.len();
            let icv = ciphertext.end..end;
            return Ok(Some(Self {
                payload_type: current,
                next_payload_field,
                aad: 0..body.start,
                iv,
                ciphertext,
                icv,
            }));
        }
    }

    /// What a non-AEAD integrity check covers: the message from the first
    /// octet of the header through the Pad Length (RFC 7296 §3.14: "from the
    /// first octet of the IKE header through the Pad Length").
    pub fn integrity_covered(&self) -> Range<usize> {
        0..self.ciphertext.end
    }
}

/// Removes Padding and Pad Length from decrypted SK/SKF content, returning the
/// inner payload chain (RFC 7296 §3.14). The padding's content is not checked:
/// "the recipient MUST accept any length that results in proper alignment"
/// and the octets' values are the sender's choice.
pub fn strip_padding(decrypted: &[u8]) -> Result<&[u8]> {
    let (&pad_len, rest) = decrypted.split_last().ok_or(Error::Truncated)?;
    let pad_len = usize::from(pad_len);
    if pad_len > rest.len() {
        return Err(Error::Malformed("Pad Length"));
    }
    Ok(&rest[..rest.len() - pad_len])
}

/// Appends the smallest Padding (zero octets) and the Pad Length that make
/// the plaintext a multiple of `block_size` (RFC 7296 §3.14 "SHOULD set the
/// Pad Length to the minimum value"). `block_size` 1 (stream ciphers and
/// AEADs such as ChaCha20-Poly1305, RFC 7634 §3: no padding) yields just a
/// zero Pad Length.
pub fn pad(inner: &[u8], block_size: usize) -> Vec<u8> {
    let block_size = block_size.clamp(1, 256);
    let pad_len = (block_size - (inner.len() + 1) % block_size) % block_size;
    let mut out = Vec::with_capacity(inner.len() + pad_len + 1);
    out.extend_from_slice(inner);
    out.resize(inner.len() + pad_len, 0);
    // pad_len < block_size <= 256.
    out.push(pad_len as u8);
    out
}

/// The octets one IKE_INTERMEDIATE message contributes to IntAuth (RFC 9242
/// §3.1): `IntAuth_[i|r]*A | IntAuth_[i|r]*P`.
///
/// * `message` is the whole message, or fragment number 1 of a fragmented
///   one (its unencrypted part and SKF header stand for the whole message);
/// * `plaintext` is P: the decrypted inner payloads without IV, Padding, Pad
///   Length and ICV (for a fragmented message, all fragments' content in
///   order).
///
/// A runs from the first octet of the IKE header to the end of the Encrypted
/// payload header; in it the IKE header Length becomes len(A) + len(P) and the
/// SK Payload Length len(P) + 4, as if the message had been sent unencrypted
/// in one piece. A fragment's SKF header is rewritten as the SK header of the
/// unfragmented message: the Next Payload that named SKF names SK, the
/// fragment fields are dropped, and the RESERVED octet of fragment 1 is kept
/// (RFC 9242 §3.1). G-IKEv2 GSA_REKEY signs the same A | P (RFC 9838).
pub fn int_auth_octets(
    message: &[u8],
    iv_len: usize,
    icv_len: usize,
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let l = SkLayout::locate(message, iv_len, icv_len)?
        .ok_or(Error::Malformed("no SK or SKF payload"))?;
    let sk_start = match l.payload_type {
        PayloadType::SKF => l.aad.end - 8,
        _ => l.aad.end - 4,
    };
    let mut out = Vec::with_capacity(sk_start + 4 + plaintext.len());
    out.extend_from_slice(&message[..sk_start + 2]);
    if l.payload_type == PayloadType::SKF {
        let number = u16::from_be_bytes([message[sk_start + 4], message[sk_start + 5]]);
        if number != 1 {
            return Err(Error::Malformed("IntAuth needs fragment number 1"));
        }
        out[l.next_payload_field] = PayloadType::SK.0;
    }
    let sk_len = u16::try_from(plaintext.len() + 4).map_err(|_| Error::TooLong)?;
    out.extend_from_slice(&sk_len.to_be_bytes());
    let total = u32::try_from(out.len() + plaintext.len()).map_err(|_| Error::TooLong)?;
    out[crate::header::field::LENGTH].copy_from_slice(&total.to_be_bytes());
    out.extend_from_slice(plaintext);
    Ok(out)
}
