//! The byte-level codec every payload is built on, after rustls' `msgs/codec.rs`.
//!
//! Guarantees:
//! * [`Reader`] never panics and never reads past its slice: every accessor
//!   returns [`Error::Truncated`] instead. [`Reader::sub`] hands out a reader
//!   bounded by a length field, so a structure cannot read into its neighbour,
//!   and [`Reader::expect_empty`] refuses bytes a structure leaves unread.
//! * [`Writer`] writes big-endian (RFC 7296 §3: "network byte order") and patches
//!   length fields in place once the structure they measure has been written,
//!   so no builder computes a length by hand. A value that does not fit its
//!   field is an [`Error::TooLong`], never a silent truncation.
use crate::error::{Error, Result};

/// A cursor over a borrowed byte slice. Everything it returns borrows from the
/// original buffer (lifetime `'a`), so decoded payloads are zero-copy views.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    cursor: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, cursor: 0 }
    }

    /// The next `n` bytes, or `Truncated` if fewer remain.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.cursor.checked_add(n).ok_or(Error::Truncated)?;
        let out = self.buf.get(self.cursor..end).ok_or(Error::Truncated)?;
        self.cursor = end;
        Ok(out)
    }

    /// A reader over the next `len` bytes; this reader skips past them.
    pub fn sub(&mut self, len: usize) -> Result<Reader<'a>> {
        self.take(len).map(Reader::new)
    }

    /// Everything not yet read.
    pub fn rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.cursor..];
        self.cursor = self.buf.len();
        out
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// Fixed-size array (addresses, SPIs).
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub fn is_empty(&self) -> bool {
        self.cursor == self.buf.len()
    }

    pub fn left(&self) -> usize {
        self.buf.len() - self.cursor
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> usize {
        self.cursor
    }

    /// `TrailingBytes` unless everything was read.
    pub fn expect_empty(&self) -> Result<()> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(Error::TrailingBytes)
        }
    }
}

/// Where a length field sits in a [`Writer`]'s buffer, and where the span it
/// measures starts.
#[derive(Debug, Clone, Copy)]
#[must_use = "a length placeholder must be patched"]
pub struct LengthSlot {
    at: usize,
    since: usize,
}

/// An append-only big-endian writer over an owned buffer.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// A one-octet count or size (SPI Size, Num Transforms, ...).
    pub fn u8_len(&mut self, n: usize) -> Result<()> {
        self.u8(u8::try_from(n).map_err(|_| Error::TooLong)?);
        Ok(())
    }

    /// A two-octet count or size written up front.
    pub fn u16_len(&mut self, n: usize) -> Result<()> {
        self.u16(u16::try_from(n).map_err(|_| Error::TooLong)?);
        Ok(())
    }

    /// Current length of the output: the offset the next byte goes to.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Writes a zero u16 to be patched with the number of bytes written from
    /// `since` (an earlier [`Writer::len`]) up to the patch.
    pub fn u16_placeholder(&mut self, since: usize) -> LengthSlot {
        let at = self.buf.len();
        self.u16(0);
        LengthSlot { at, since }
    }

    /// As [`Writer::u16_placeholder`], for a four-octet length.
    pub fn u32_placeholder(&mut self, since: usize) -> LengthSlot {
        let at = self.buf.len();
        self.u32(0);
        LengthSlot { at, since }
    }

    pub fn patch_u16(&mut self, slot: LengthSlot) -> Result<()> {
        let n = u16::try_from(self.buf.len() - slot.since).map_err(|_| Error::TooLong)?;
        self.buf[slot.at..slot.at + 2].copy_from_slice(&n.to_be_bytes());
        Ok(())
    }

    pub fn patch_u32(&mut self, slot: LengthSlot) -> Result<()> {
        let n = u32::try_from(self.buf.len() - slot.since).map_err(|_| Error::TooLong)?;
        self.buf[slot.at..slot.at + 4].copy_from_slice(&n.to_be_bytes());
        Ok(())
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }
}
