//! A packet inside a larger buffer, with head- and tailroom, like an mbuf:
//! encapsulation grows the data into the headroom and tailroom in place,
//! decapsulation shrinks it. No operation panics; growth beyond the buffer
//! fails and leaves the packet unchanged.

/// Packet data `buf[start..end]` inside a caller-owned buffer.
#[derive(Debug, Clone)]
pub struct PktBuf<B> {
    buf: B,
    start: usize,
    end: usize,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> PktBuf<B> {
    /// Data of `len` octets at `start`; `None` if that does not fit.
    #[inline(always)]
    pub fn new(buf: B, start: usize, len: usize) -> Option<Self> {
        let end = start.checked_add(len)?;
        (end <= buf.as_ref().len()).then_some(Self { buf, start, end })
    }

    #[inline(always)]
    pub fn data(&self) -> &[u8] {
        &self.buf.as_ref()[self.start..self.end]
    }

    #[inline(always)]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf.as_mut()[self.start..self.end]
    }

    #[inline(always)]
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Offset of the data in the buffer.
    #[inline(always)]
    pub fn start(&self) -> usize {
        self.start
    }

    #[inline(always)]
    pub fn headroom(&self) -> usize {
        self.start
    }

    #[inline(always)]
    pub fn tailroom(&self) -> usize {
        self.buf.as_ref().len() - self.end
    }

    /// Grow the data by `n` octets at the front (contents unspecified).
    #[inline(always)]
    pub fn prepend(&mut self, n: usize) -> bool {
        if n > self.start {
            return false;
        }
        self.start -= n;
        true
    }

    /// Grow the data by `n` octets at the back (contents unspecified).
    #[inline(always)]
    pub fn append(&mut self, n: usize) -> bool {
        if n > self.tailroom() {
            return false;
        }
        self.end += n;
        true
    }

    /// Drop `n` octets from the front.
    #[inline(always)]
    pub fn trim_front(&mut self, n: usize) -> bool {
        if n > self.len() {
            return false;
        }
        self.start += n;
        true
    }

    /// Keep only the first `len` octets.
    #[inline(always)]
    pub fn truncate(&mut self, len: usize) {
        if len < self.len() {
            self.end = self.start + len;
        }
    }

    #[inline(always)]
    pub fn buffer(&self) -> &B {
        &self.buf
    }

    /// The buffer, the data offset and the data length.
    #[inline(always)]
    pub fn into_parts(self) -> (B, usize, usize) {
        let len = self.end - self.start;
        (self.buf, self.start, len)
    }
}

impl PktBuf<Vec<u8>> {
    /// A fresh buffer holding `data` with the given head- and tailroom.
    pub fn from_data(data: &[u8], headroom: usize, tailroom: usize) -> Self {
        let mut buf = vec![0u8; headroom + data.len() + tailroom];
        buf[headroom..headroom + data.len()].copy_from_slice(data);
        Self {
            buf,
            start: headroom,
            end: headroom + data.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_shrinks_within_bounds() {
        let mut p = PktBuf::from_data(&[1, 2, 3], 2, 1);
        assert!(!p.prepend(3));
        assert!(p.prepend(2));
        assert!(!p.append(2));
        assert!(p.append(1));
        assert_eq!(p.len(), 6);
        assert!(p.trim_front(3));
        assert_eq!(p.data(), &[2, 3, 0]);
        p.truncate(1);
        assert_eq!(p.data(), &[2]);
        assert!(!p.trim_front(2));
        assert!(PktBuf::new(vec![0u8; 4], 3, 2).is_none());
    }
}
