//! Plaintext test traffic as classic libpcap files: Ethernet + IPv4 or IPv6 +
//! UDP, fixed frame size, `flows` distinct 5-tuples cycling through a
//! destination prefix. Checksums are correct (IPv4 header, UDP over the
//! pseudo-header), so tshark and the kernel accept the packets.

use std::io::Write;
use std::net::IpAddr;

/// What to generate.
#[derive(Debug, Clone)]
pub struct Traffic {
    /// Frame length without FCS (60 = the minimum; 64 B "on the wire").
    pub frame_len: usize,
    pub packets: usize,
    pub flows: usize,
    pub src: IpAddr,
    /// First destination; flows count up from it in the last 16 bits.
    pub dst: IpAddr,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub dport: u16,
}

impl Traffic {
    /// ipsec-secgw anchor's traffic: 192.168.5.x → 192.168.105.x, UDP 5001.
    pub fn anchor(frame_len: usize) -> Traffic {
        Traffic {
            frame_len,
            packets: 1024,
            flows: 1024,
            src: "192.168.5.1".parse().unwrap(),
            dst: "192.168.105.1".parse().unwrap(),
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            dport: 5001,
        }
    }

    /// Smallest frame this traffic can have (headers only).
    pub fn min_frame(&self) -> usize {
        14 + if self.src.is_ipv4() { 20 } else { 40 } + 8
    }

    /// The `i`-th frame.
    pub fn frame(&self, i: usize) -> Vec<u8> {
        let flow = (i % self.flows.max(1)) as u16;
        let len = self.frame_len.max(self.min_frame());
        let mut f = vec![0u8; len];
        f[0..6].copy_from_slice(&self.dst_mac);
        f[6..12].copy_from_slice(&self.src_mac);
        let sport = 1024u16.wrapping_add(flow);
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
                let ip_len = (len - 14).min(u16::MAX as usize);
                let d = u32::from(d).wrapping_add(flow as u32 % 250).to_be_bytes();
                let ip = &mut f[14..34];
                ip[0] = 0x45;
                ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
                ip[4..6].copy_from_slice(&(i as u16).to_be_bytes());
                ip[8] = 64;
                ip[9] = 17;
                ip[12..16].copy_from_slice(&s.octets());
                ip[16..20].copy_from_slice(&d);
                let ck = checksum(&[&ip[..]], 0);
                ip[10..12].copy_from_slice(&ck.to_be_bytes());
                let udp_len = ip_len - 20;
                fill_udp(&mut f[34..14 + ip_len], sport, self.dport, i);
                let pseudo = pseudo_sum(&s.octets(), &d, udp_len);
                let ck = checksum(&[&f[34..14 + ip_len]], pseudo);
                f[40..42].copy_from_slice(&(if ck == 0 { 0xffff } else { ck }).to_be_bytes());
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
                let mut d = d.octets();
                let last = u16::from_be_bytes([d[14], d[15]]).wrapping_add(flow);
                d[14..16].copy_from_slice(&last.to_be_bytes());
                let pl = len - 54;
                let ip = &mut f[14..54];
                ip[0] = 0x60;
                ip[4..6].copy_from_slice(&(pl as u16).to_be_bytes());
                ip[6] = 17;
                ip[7] = 64;
                ip[8..24].copy_from_slice(&s.octets());
                ip[24..40].copy_from_slice(&d);
                fill_udp(&mut f[54..], sport, self.dport, i);
                let pseudo = pseudo_sum(&s.octets(), &d, pl);
                let ck = checksum(&[&f[54..]], pseudo);
                f[60..62].copy_from_slice(&(if ck == 0 { 0xffff } else { ck }).to_be_bytes());
            }
            _ => panic!("src and dst must be of one address family"),
        }
        f
    }

    /// Writes the capture.
    pub fn write_pcap(&self, out: &mut impl Write) -> std::io::Result<()> {
        write_pcap_header(out)?;
        for i in 0..self.packets {
            write_pcap_record(out, i as u32, &self.frame(i))?;
        }
        Ok(())
    }
}

fn fill_udp(udp: &mut [u8], sport: u16, dport: u16, i: usize) {
    let n = udp.len();
    udp[0..2].copy_from_slice(&sport.to_be_bytes());
    udp[2..4].copy_from_slice(&dport.to_be_bytes());
    udp[4..6].copy_from_slice(&(n as u16).to_be_bytes());
    for (k, b) in udp[8..].iter_mut().enumerate() {
        *b = (k as u8) ^ (i as u8);
    }
}

fn pseudo_sum(src: &[u8], dst: &[u8], len: usize) -> u32 {
    let mut s = 0u32;
    for c in src.chunks(2).chain(dst.chunks(2)) {
        s += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    s + 17 + len as u32
}

/// Internet checksum (RFC 1071) of `parts` plus a starting sum.
pub fn checksum(parts: &[&[u8]], start: u32) -> u16 {
    let mut sum = start;
    for p in parts {
        let mut it = p.chunks_exact(2);
        for c in &mut it {
            sum += u16::from_be_bytes([c[0], c[1]]) as u32;
        }
        if let [b] = it.remainder() {
            sum += (*b as u32) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The 24-byte libpcap global header (µs timestamps, Ethernet).
pub fn write_pcap_header(out: &mut impl Write) -> std::io::Result<()> {
    out.write_all(&0xa1b2c3d4u32.to_le_bytes())?;
    out.write_all(&2u16.to_le_bytes())?;
    out.write_all(&4u16.to_le_bytes())?;
    out.write_all(&[0; 8])?;
    out.write_all(&65535u32.to_le_bytes())?;
    out.write_all(&1u32.to_le_bytes())
}

/// One record; `i` becomes the timestamp in µs.
pub fn write_pcap_record(out: &mut impl Write, i: u32, frame: &[u8]) -> std::io::Result<()> {
    out.write_all(&(i / 1_000_000).to_le_bytes())?;
    out.write_all(&(i % 1_000_000).to_le_bytes())?;
    out.write_all(&(frame.len() as u32).to_le_bytes())?;
    out.write_all(&(frame.len() as u32).to_le_bytes())?;
    out.write_all(frame)
}

/// The frames of a classic libpcap file (either byte order); `None` if it is not one.
pub fn read_pcap(bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
    let le = match bytes.get(..4)? {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => return None,
    };
    let u32at = |o: usize| -> Option<u32> {
        let a: [u8; 4] = bytes.get(o..o + 4)?.try_into().ok()?;
        Some(if le { u32::from_le_bytes(a) } else { u32::from_be_bytes(a) })
    };
    let mut out = Vec::new();
    let mut o = 24;
    while o < bytes.len() {
        let caplen = u32at(o + 8)? as usize;
        o += 16;
        out.push(bytes.get(o..o + caplen)?.to_vec());
        o += caplen;
    }
    Some(out)
}
