//! IPv6 headers (RFC 8200 §3) and extension-header walking (RFC 8200 §4).
//! After `check_len` the view guarantees version 6 and
//! `40 + Payload Length <= buffer length`, so no accessor panics. The walker
//! skips Hop-by-Hop, Routing, Fragment, Destination Options, AH (RFC 4302
//! §2.2, length in 4-octet units), Mobility, HIP and Shim6 headers, checking
//! each length against the payload; it stops at the first other header
//! (ESP included, RFC 4303 §3.1.1).

use std::net::Ipv6Addr;

use crate::{be16, Error, IpProtocol, Result};

/// Byte ranges of the IPv6 fixed header.
pub mod field {
    use core::ops::Range;
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Range<usize> = 8..24;
    pub const DST_ADDR: Range<usize> = 24..40;
}

/// Length of the IPv6 fixed header.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

/// A view of an IPv6 packet.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |Version| Traffic Class |           Flow Label                  |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |         Payload Length        |  Next Header  |   Hop Limit   |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                                                               |
/// +                         Source Address (16)                   +
/// |                                                               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                                                               |
/// +                      Destination Address (16)                 +
/// |                                                               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

/// Where the upper layer (or ESP) starts, found by walking extension headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperLayer {
    /// The first header that is not a skipped extension header.
    pub protocol: IpProtocol,
    /// Its offset from the start of the IPv6 packet.
    pub offset: usize,
    /// Offset of the octet that holds `protocol` (the fixed header's Next
    /// Header, or the last extension header's), to patch when inserting or
    /// removing a header.
    pub nh_offset: usize,
    /// A Fragment header with a non-zero offset or M flag was seen.
    pub fragment: bool,
}

fn is_extension(p: IpProtocol) -> bool {
    matches!(
        p,
        IpProtocol::HOP_BY_HOP
            | IpProtocol::IPV6_ROUTING
            | IpProtocol::IPV6_FRAGMENT
            | IpProtocol::IPV6_DEST_OPTS
            | IpProtocol::AH
            | IpProtocol::MOBILITY
            | IpProtocol::HIP
            | IpProtocol::SHIM6
    )
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wrap and validate version and lengths. Never panics.
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
        if b[0] >> 4 != 6 {
            return Err(Error::Malformed);
        }
        if HEADER_LEN + usize::from(be16(b, field::LENGTH.start)) > b.len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    pub fn traffic_class(&self) -> u8 {
        let b = self.buffer.as_ref();
        (b[0] << 4) | (b[1] >> 4)
    }

    pub fn flow_label(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([0, b[1] & 0x0f, b[2], b[3]])
    }

    pub fn payload_len(&self) -> usize {
        usize::from(be16(self.buffer.as_ref(), field::LENGTH.start))
    }

    /// Fixed header plus Payload Length.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + self.payload_len()
    }

    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[field::NXT_HDR])
    }

    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    pub fn src_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC_ADDR]);
        Ipv6Addr::from(a)
    }

    pub fn dst_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST_ADDR]);
        Ipv6Addr::from(a)
    }

    /// Everything after the fixed header, bounded by Payload Length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.total_len()]
    }

    /// Walk extension headers while `go_on(header)` holds; calls `seen` with
    /// (type, offset, next-header-field offset) for each header walked.
    fn walk(
        &self,
        mut go_on: impl FnMut(IpProtocol, usize) -> bool,
        mut seen: impl FnMut(IpProtocol, usize),
    ) -> Result<UpperLayer> {
        let b = &self.buffer.as_ref()[..self.total_len()];
        let mut protocol = self.next_header();
        let mut offset = HEADER_LEN;
        let mut nh_offset = field::NXT_HDR;
        let mut fragment = false;
        // Each extension header is at least 8 octets, so this terminates.
        while is_extension(protocol) && go_on(protocol, offset) {
            if offset + 8 > b.len() {
                return Err(Error::Truncated);
            }
            let len = match protocol {
                IpProtocol::IPV6_FRAGMENT => {
                    // RFC 8200 §4.5: offset (13 bits) | res | M.
                    let off_m = be16(b, offset + 2);
                    fragment |= off_m & 0xfff9 != 0;
                    8
                }
                IpProtocol::AH => (usize::from(b[offset + 1]) + 2) * 4,
                _ => (usize::from(b[offset + 1]) + 1) * 8,
            };
            if offset + len > b.len() {
                return Err(Error::Truncated);
            }
            seen(protocol, offset + len);
            nh_offset = offset;
            protocol = IpProtocol(b[offset]);
            offset += len;
        }
        Ok(UpperLayer {
            protocol,
            offset,
            nh_offset,
            fragment,
        })
    }

    /// The first non-extension header (for ESP: where it starts).
    pub fn upper_layer(&self) -> Result<UpperLayer> {
        self.walk(|_, _| true, |_, _| {})
    }

    /// Where transport-mode ESP goes (RFC 4303 §3.1.1): after Hop-by-Hop,
    /// Routing and Fragment headers, and after Destination Options that
    /// precede a Routing header; later Destination Options get protected.
    pub fn esp_insertion_point(&self) -> Result<UpperLayer> {
        let mut last_end = HEADER_LEN;
        self.walk(
            |p, _| p != IpProtocol::AH,
            |p, end| {
                if matches!(
                    p,
                    IpProtocol::HOP_BY_HOP | IpProtocol::IPV6_ROUTING | IpProtocol::IPV6_FRAGMENT
                ) {
                    last_end = end;
                }
            },
        )?;
        self.walk(|_, offset| offset < last_end, |_, _| {})
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    pub fn set_version_tc_flow(&mut self, traffic_class: u8, flow_label: u32) {
        let v = (6u32 << 28) | (u32::from(traffic_class) << 20) | (flow_label & 0x000f_ffff);
        self.buffer.as_mut()[field::VER_TC_FLOW].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_payload_len(&mut self, v: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_next_header(&mut self, p: IpProtocol) {
        self.buffer.as_mut()[field::NXT_HDR] = p.0;
    }

    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = v;
    }

    pub fn set_src_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&a.octets());
    }

    pub fn set_dst_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&a.octets());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let t = self.total_len();
        &mut self.buffer.as_mut()[HEADER_LEN..t]
    }
}

/// The parsed IPv6 fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Repr {
    pub src_addr: Ipv6Addr,
    pub dst_addr: Ipv6Addr,
    pub next_header: IpProtocol,
    pub payload_len: usize,
    pub hop_limit: u8,
    pub traffic_class: u8,
    pub flow_label: u32,
}

impl Ipv6Repr {
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv6Packet<T>) -> Result<Self> {
        p.check_len()?;
        Ok(Self {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            next_header: p.next_header(),
            payload_len: p.payload_len(),
            hop_limit: p.hop_limit(),
            traffic_class: p.traffic_class(),
            flow_label: p.flow_label(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Write the fixed header; the buffer must hold `buffer_len()` octets.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Ipv6Packet<T>) {
        p.set_version_tc_flow(self.traffic_class, self.flow_label);
        p.set_payload_len(self.payload_len as u16);
        p.set_next_header(self.next_header);
        p.set_hop_limit(self.hop_limit);
        p.set_src_addr(self.src_addr);
        p.set_dst_addr(self.dst_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repr(next_header: IpProtocol, payload_len: usize) -> Ipv6Repr {
        Ipv6Repr {
            src_addr: "2001:db8::1".parse().unwrap(),
            dst_addr: "2001:db8::2".parse().unwrap(),
            next_header,
            payload_len,
            hop_limit: 64,
            traffic_class: 0xb8,
            flow_label: 0x12345,
        }
    }

    fn packet(next_header: IpProtocol, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_LEN];
        repr(next_header, payload.len()).emit(&mut Ipv6Packet::new_unchecked(&mut b[..]));
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn round_trips_ipv6_header() {
        let b = packet(IpProtocol::UDP, &[1, 2, 3]);
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Ipv6Repr::parse(&p).unwrap(), repr(IpProtocol::UDP, 3));
        assert_eq!(p.payload(), &[1, 2, 3]);
        assert_eq!(&b[..4], &[0x6b, 0x81, 0x23, 0x45]);
    }

    #[test]
    fn rejects_every_truncated_ipv6_prefix() {
        let b = packet(IpProtocol::UDP, &[0; 12]);
        for n in 0..b.len() {
            assert_eq!(
                Ipv6Packet::new_checked(&b[..n]).err(),
                Some(Error::Truncated),
                "{n}"
            );
        }
        let mut v4 = b.clone();
        v4[0] = 0x45;
        assert_eq!(
            Ipv6Packet::new_checked(&v4[..]).err(),
            Some(Error::Malformed)
        );
    }

    #[test]
    fn skips_extension_headers_to_esp() {
        // HBH (8) -> Routing (16) -> Fragment (8, offset 0) -> DestOpts (8) -> AH (12+4) -> ESP
        let mut ext = vec![43, 0, 1, 4, 0, 0, 0, 0];
        ext.extend_from_slice(&[44, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        ext.extend_from_slice(&[60, 0, 0, 0, 0, 0, 0, 1]);
        ext.extend_from_slice(&[51, 0, 1, 4, 0, 0, 0, 0]);
        ext.extend_from_slice(&[50, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        ext.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1]);
        let b = packet(IpProtocol::HOP_BY_HOP, &ext);
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        let u = p.upper_layer().unwrap();
        assert_eq!(u.protocol, IpProtocol::ESP);
        assert_eq!(u.offset, HEADER_LEN + 8 + 16 + 8 + 8 + 16);
        assert_eq!(u.nh_offset, HEADER_LEN + 8 + 16 + 8 + 8);
        assert!(!u.fragment);
        assert_eq!(&b[u.offset..u.offset + 4], &[0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn esp_goes_after_routing_and_before_final_destination_options() {
        // HBH -> DestOpts -> Routing -> DestOpts -> UDP
        let mut ext = vec![60, 0, 1, 4, 0, 0, 0, 0];
        ext.extend_from_slice(&[43, 0, 1, 4, 0, 0, 0, 0]);
        ext.extend_from_slice(&[60, 0, 0, 0, 0, 0, 0, 0]);
        ext.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
        ext.extend_from_slice(&[0; 8]);
        let b = packet(IpProtocol::HOP_BY_HOP, &ext);
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        let at = p.esp_insertion_point().unwrap();
        assert_eq!(at.offset, HEADER_LEN + 24);
        assert_eq!(at.protocol, IpProtocol::IPV6_DEST_OPTS);
        assert_eq!(at.nh_offset, HEADER_LEN + 16);
        let plain = packet(IpProtocol::UDP, &[0; 8]);
        let at = Ipv6Packet::new_checked(&plain[..])
            .unwrap()
            .esp_insertion_point()
            .unwrap();
        assert_eq!(
            (at.offset, at.nh_offset, at.protocol),
            (HEADER_LEN, 6, IpProtocol::UDP)
        );
    }

    #[test]
    fn flags_non_first_fragments() {
        let b = packet(
            IpProtocol::IPV6_FRAGMENT,
            &[50, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0],
        );
        let u = Ipv6Packet::new_checked(&b[..])
            .unwrap()
            .upper_layer()
            .unwrap();
        assert!(u.fragment);
        assert_eq!(u.protocol, IpProtocol::ESP);
    }

    #[test]
    fn rejects_extension_header_overrunning_payload() {
        let b = packet(IpProtocol::HOP_BY_HOP, &[50, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            Ipv6Packet::new_checked(&b[..]).unwrap().upper_layer(),
            Err(Error::Truncated)
        );
        let b = packet(IpProtocol::HOP_BY_HOP, &[50, 0, 0]);
        assert_eq!(
            Ipv6Packet::new_checked(&b[..]).unwrap().upper_layer(),
            Err(Error::Truncated)
        );
    }
}
