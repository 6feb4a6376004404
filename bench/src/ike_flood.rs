//! A spoofed IKE_SA_INIT flood, for measuring a responder's defences
//! (RFC 7296 §2.6 cookies, half-open limits, its queues) from outside.
//!
//! Each datagram is a real IKE_SA_INIT request as esprit's own endpoint
//! builds it (SA offering `aes256gcm16-prfsha256-x25519`, KE Curve25519,
//! Ni, NAT detection), with SPIi, Ni and the KE value fresh per datagram,
//! from a source address drawn at random inside a prefix. With
//! [`CookieMode::Forged`] a COOKIE notify of made-up octets (the shape
//! esprit hands out: a version octet and 32 octets) comes first, as a
//! client retrying with a cookie would send it. The requests go out through
//! a raw IPv4 socket (`IPPROTO_RAW`: we write the IPv4 and UDP headers, the
//! kernel fills the IPv4 checksum, length and ID), at a bounded rate, for a
//! bounded count and time.
//!
//! Guarantee: nothing is sent anywhere but to the destination the caller
//! names, and only from inside the prefix it names; it is meant for
//! addresses inside network namespaces the caller created
//! (`scripts/netns/ike-flood.sh`).
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::time::{Duration, Instant};

use esprit_controlplane::config::DaemonConfig;
use ike_crypto::RustCryptoProvider;
use ike_proto::{Command, Endpoint, Time, UnixTime};
use ike_wire::{Message, Notify, NotifyType, Payload};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// What comes first in each request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CookieMode {
    /// A plain first request.
    None,
    /// A COOKIE notify with a random 33-octet value.
    Forged,
}

/// One flood.
#[derive(Clone, Debug)]
pub struct Flood {
    pub dst: SocketAddrV4,
    /// Sources are drawn from `src_net/src_prefix` (network and broadcast
    /// addresses excluded).
    pub src_net: Ipv4Addr,
    pub src_prefix: u8,
    pub count: u64,
    /// Datagrams per second; 0: as fast as the socket takes them.
    pub rate_pps: u64,
    pub max_time: Duration,
    pub cookie: CookieMode,
    pub seed: u64,
}

/// What a flood did.
#[derive(Debug, Default)]
pub struct FloodReport {
    pub sent: u64,
    /// Sends the kernel refused (ENOBUFS and the like); not retried.
    pub send_errors: u64,
    pub elapsed: Duration,
}

/// An IKE_SA_INIT request and where its per-datagram fields are.
#[derive(Clone, Debug)]
pub struct Template {
    pub ike: Vec<u8>,
    ni: std::ops::Range<usize>,
    ke: std::ops::Range<usize>,
    /// The cookie's 32 octets after its version octet.
    cookie: Option<std::ops::Range<usize>>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<std::ops::Range<usize>> {
    hay.windows(needle.len()).position(|w| w == needle).map(|i| i..i + needle.len())
}

impl Template {
    /// A request as esprit's initiator builds it, to `dst`.
    pub fn new(dst: SocketAddrV4, cookie: CookieMode) -> Result<Self, String> {
        let yaml = r#"
ike:
  listen: [192.0.2.1]
  control_socket: /nonexistent/ike-flood.sock
  sa_table: { path: /nonexistent/ike-flood, capacity: 16 }
  connections:
    flood:
      local_id: flood@esprit.bench
      remote_id: gw.esprit.bench
      local_auth: { psk: "flood-psk-0123456789abcdef" }
      remote_auth: { psk: "flood-psk-0123456789abcdef" }
      proposals: [aes256gcm16-prfsha256-x25519]
      child:
        esp_proposals: [aes256gcm16]
"#;
        let cfg = DaemonConfig::from_yaml(yaml, Path::new(".")).map_err(|e| e.to_string())?;
        let mut ep = Endpoint::new(cfg.endpoint, Box::new(RustCryptoProvider), Box::new(rand_core::OsRng), Time::ZERO, UnixTime::default());
        let local = SocketAddr::from(([192, 0, 2, 1], 500));
        ep.handle_command(Time::ZERO, Command::Initiate { connection: "flood".into(), local, remote: SocketAddr::V4(dst) }).map_err(|e| e.to_string())?;
        let plain = ep.poll_transmit().ok_or("no IKE_SA_INIT request")?.payload;
        let m = Message::parse(&plain).map_err(|e| e.to_string())?;
        let (mut ni, mut ke) = (Vec::new(), Vec::new());
        for p in &m.payloads {
            match p {
                Payload::Nonce(n) => ni = n.data.to_vec(),
                Payload::Ke(k) => ke = k.data.to_vec(),
                _ => {}
            }
        }
        const MARK: [u8; 32] = *b"esprit-bench ike-flood cookie.32";
        let ike = match cookie {
            CookieMode::None => plain.clone(),
            CookieMode::Forged => {
                let mut payloads = vec![Payload::Notify(Notify::new(NotifyType::COOKIE, [[0u8].as_slice(), &MARK].concat()))];
                payloads.extend(m.payloads);
                Message::new(m.header, payloads).emit().map_err(|e| e.to_string())?
            }
        };
        Ok(Self {
            ni: find(&ike, &ni).ok_or("Ni not found")?,
            ke: find(&ike, &ke).ok_or("KE not found")?,
            cookie: match cookie {
                CookieMode::None => None,
                CookieMode::Forged => Some(find(&ike, &MARK).ok_or("cookie not found")?),
            },
            ike,
        })
    }

    /// Fresh SPIi, Ni, KE value and cookie from `rng`.
    pub fn refresh(&mut self, rng: &mut XorShift) {
        let ranges = [Some(0..8), Some(self.ni.clone()), Some(self.ke.clone()), self.cookie.clone()];
        for r in ranges.into_iter().flatten() {
            for b in &mut self.ike[r] {
                *b = rng.next_u64() as u8;
            }
        }
    }
}

/// A fast non-cryptographic generator (xorshift64*): the flood's values
/// need to differ, not to be secret.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The ones' complement sum of RFC 1071 over `parts`.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for p in parts {
        for &b in *p {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 + UDP datagram (source port 500) carrying `ike`. The IPv4
/// checksum, total length and ID are left for the kernel (raw(7)); the UDP
/// checksum is computed (RFC 768, over the pseudo-header).
pub fn ipv4_udp(src: Ipv4Addr, dst: SocketAddrV4, ike: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let udp_len = u16::try_from(8 + ike.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0]);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.ip().octets());
    let mut udp = [0u8; 8];
    udp[..2].copy_from_slice(&500u16.to_be_bytes());
    udp[2..4].copy_from_slice(&dst.port().to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    let mut pseudo = [0u8; 12];
    pseudo[..4].copy_from_slice(&src.octets());
    pseudo[4..8].copy_from_slice(&dst.ip().octets());
    pseudo[9] = 17;
    pseudo[10..12].copy_from_slice(&udp_len.to_be_bytes());
    let c = match checksum(&[&pseudo, &udp, ike]) {
        0 => 0xffff,
        c => c,
    };
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    out.extend_from_slice(&udp);
    out.extend_from_slice(ike);
}

/// A source address inside `net/prefix`, neither the network nor the
/// broadcast address (for prefixes up to /30).
pub fn source(net: Ipv4Addr, prefix: u8, rng: &mut XorShift) -> Ipv4Addr {
    let host_bits = 32 - u32::from(prefix.min(30));
    let base = u32::from(net) & (u32::MAX.checked_shl(host_bits).unwrap_or(0));
    let hosts = (1u64 << host_bits) - 2;
    Ipv4Addr::from(base + 1 + (rng.next_u64() % hosts) as u32)
}

/// Sends the flood. Needs CAP_NET_RAW.
pub fn run(f: &Flood) -> std::io::Result<FloodReport> {
    let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(255)))?;
    let to = SockAddr::from(SocketAddrV4::new(*f.dst.ip(), 0));
    let mut t = Template::new(f.dst, f.cookie).map_err(std::io::Error::other)?;
    let mut rng = XorShift::new(f.seed);
    let mut pkt = Vec::with_capacity(t.ike.len() + 28);
    let mut r = FloodReport::default();
    let start = Instant::now();
    while r.sent + r.send_errors < f.count && start.elapsed() < f.max_time {
        if f.rate_pps > 0 {
            // Stay on the schedule: the n-th datagram at n / rate.
            let due = Duration::from_secs_f64((r.sent + r.send_errors) as f64 / f.rate_pps as f64);
            let now = start.elapsed();
            if due > now {
                std::thread::sleep((due - now).min(Duration::from_millis(2)));
                continue;
            }
        }
        t.refresh(&mut rng);
        ipv4_udp(source(f.src_net, f.src_prefix, &mut rng), f.dst, &t.ike, &mut pkt);
        match sock.send_to(&pkt, &to) {
            Ok(_) => r.sent += 1,
            Err(_) => r.send_errors += 1,
        }
    }
    r.elapsed = start.elapsed();
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DST: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(172, 16, 49, 1), 500);

    #[test]
    fn requests_are_real_ike_sa_init_requests_fresh_each_time() {
        for mode in [CookieMode::None, CookieMode::Forged] {
            let mut t = Template::new(DST, mode).unwrap();
            let mut rng = XorShift::new(7);
            t.refresh(&mut rng);
            let first = t.ike.clone();
            t.refresh(&mut rng);
            let m = Message::parse(&t.ike).expect("parses after refresh");
            assert_eq!(m.header.exchange_type, ike_wire::ExchangeType::IKE_SA_INIT);
            assert_eq!(m.header.spi_r, 0);
            assert!(!m.header.flags.response());
            let cookie_first = matches!(m.payloads.first(), Some(Payload::Notify(n)) if n.notify_type == NotifyType::COOKIE && n.data.len() == 33);
            assert_eq!(cookie_first, mode == CookieMode::Forged, "{mode:?}");
            // SPIi, Ni, KE (and the cookie) changed; the rest did not.
            assert_ne!(first[..8], t.ike[..8]);
            assert_ne!(first[t.ni.clone()], t.ike[t.ni.clone()]);
            assert_ne!(first[t.ke.clone()], t.ike[t.ke.clone()]);
            let same = first.iter().zip(&t.ike).filter(|(a, b)| a == b).count();
            assert!(same > t.ike.len() / 2, "only the per-request fields change");
        }
    }

    #[test]
    fn datagrams_carry_a_valid_udp_checksum_and_sources_stay_in_the_prefix() {
        let t = Template::new(DST, CookieMode::None).unwrap();
        let mut pkt = Vec::new();
        let mut rng = XorShift::new(1);
        for _ in 0..1000 {
            let src = source(Ipv4Addr::new(10, 200, 0, 0), 16, &mut rng);
            let o = src.octets();
            assert_eq!((o[0], o[1]), (10, 200));
            assert!(src != Ipv4Addr::new(10, 200, 0, 0) && src != Ipv4Addr::new(10, 200, 255, 255));
            ipv4_udp(src, DST, &t.ike, &mut pkt);
            // The checksum over pseudo-header, UDP header and payload is 0.
            let udp = &pkt[20..];
            let mut pseudo = [0u8; 12];
            pseudo[..4].copy_from_slice(&pkt[12..16]);
            pseudo[4..8].copy_from_slice(&pkt[16..20]);
            pseudo[9] = 17;
            pseudo[10..12].copy_from_slice(&udp[4..6]);
            assert_eq!(checksum(&[&pseudo, udp]), 0);
            assert_eq!(usize::from(u16::from_be_bytes([udp[4], udp[5]])), udp.len());
            assert_eq!(&udp[8..], &t.ike[..]);
        }
    }
}
