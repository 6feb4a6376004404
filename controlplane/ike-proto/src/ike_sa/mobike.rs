//! MOBIKE (RFC 4555) as the exchange responder: the IKE SA and its Child
//! SAs follow a peer that changes its address, without a new IKE SA.
//!
//! * Negotiation (§3.3, §4.2.1): the responder answers MOBIKE_SUPPORTED in
//!   its last IKE_AUTH response when the initiator sent it and the
//!   connection allows it (`Extensions::mobike`); the initiator announces
//!   it (it answers return-routability checks and takes address lists) but
//!   never moves itself.
//! * UPDATE_SA_ADDRESSES (§3.5): the IKE SA takes the request's addresses
//!   from the IP header at once; NAT detection in the request (§3.5, §3.8)
//!   is answered with our own and decides UDP encapsulation on the new
//!   path; NO_NATS_ALLOWED (§3.9) is checked against the IP header.
//! * Return routability (§3.7): by default the Child SAs move only after a
//!   check. The responder answers the UPDATE, then sends an INFORMATIONAL
//!   with a fresh COOKIE2 to the new address, and moves the Child SAs when
//!   the answer echoes it; a wrong COOKIE2 deletes the IKE SA (§3.7
//!   "MUST be closed"); no answer after the retransmissions takes the IKE SA
//!   down as any unanswered request does. An answer that may have reached
//!   another address (the IKE SA moved again while the check was in
//!   flight, §3.7's exception) starts a new check. strongSwan as responder
//!   does no check (`ike_mobike.c` `process_r` calls `update_hosts` at
//!   once); `Extensions::mobike_return_routability = false` does the same.
//! * COOKIE2 (§4.2.5) in any INFORMATIONAL request is copied as-is to the
//!   response; ADDITIONAL_IP4/6_ADDRESS and NO_ADDITIONAL_ADDRESSES (§3.6)
//!   replace the peer's address list (kept for listings; the responder
//!   never moves on its own, §3.5).
//! * Every MOBIKE notify is checked before anything changes ([`parse`]):
//!   lengths (COOKIE2 8 to 64 octets, addresses 4 or 16, NO_NATS_ALLOWED 12
//!   or 36, the others empty), no SPI, no repeats. A malformed one refuses
//!   the request with INVALID_SYNTAX and changes nothing; each outcome is
//!   reported in [`Event::Mobike`] for counting.
//! * Requests are processed once: a retransmitted UPDATE_SA_ADDRESSES is
//!   answered from the response cache (the exchange manager), never
//!   applied twice; our window of one means requests arrive in order, so
//!   §3.5's "newer request already received" cannot happen.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ike_wire::{ExchangeType, Notify, NotifyType, Payload, ProtocolId};

use super::{IkeSa, Queued, Task};
use crate::error::ProtoError;
use crate::event::{DownReason, Event};
use crate::message::Payloads;
use crate::sa::{self, Ctx};

/// RFC 4555 §4.2.5: COOKIE2 data is 8 to 64 octets.
pub const COOKIE2_MIN: usize = 8;
pub const COOKIE2_MAX: usize = 64;
/// The COOKIE2 we send in a return-routability check (strongSwan's size).
const COOKIE2_LEN: usize = 16;
/// Additional addresses kept per peer (strongSwan sends at most 8).
pub const MAX_PEER_ADDRESSES: usize = 16;

/// Where the Child SAs' ESP goes: both outer addresses with ports, and
/// whether ESP is in UDP (RFC 3948) because a NAT is on the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EspPath {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub udp_encap: bool,
}

/// MOBIKE on one IKE SA.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Mobike {
    /// Not negotiated: UPDATE_SA_ADDRESSES is refused (not acted on).
    #[default]
    Off,
    On(Box<MobikeSa>),
}

/// What a negotiated MOBIKE keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MobikeSa {
    /// The path the Child SAs use: proven (the IKE_AUTH path, or one a
    /// return-routability check confirmed).
    pub esp: EspPath,
    /// A path announced by UPDATE_SA_ADDRESSES, waiting for its check.
    pub pending: Option<EspPath>,
    /// The peer's addresses from ADDITIONAL_IP4/6_ADDRESS (§3.6), the one
    /// it sent from first; empty until it sent a list.
    pub peer_addresses: Vec<IpAddr>,
    /// Moves of the Child SAs so far.
    pub moves: u64,
}

/// What one INFORMATIONAL request's MOBIKE notifies did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MobikeOutcome {
    /// The Child SAs moved to the new path.
    Moved,
    /// A return-routability check of the new path started; the Child SAs
    /// move when it is answered.
    CheckStarted,
    /// UPDATE_SA_ADDRESSES from the path already in use.
    Unchanged,
    Refused(MobikeRefusal),
}

impl MobikeOutcome {
    /// A metric label.
    pub fn label(self) -> &'static str {
        match self {
            MobikeOutcome::Moved => "moved",
            MobikeOutcome::CheckStarted => "check_started",
            MobikeOutcome::Unchanged => "unchanged",
            MobikeOutcome::Refused(r) => r.label(),
        }
    }
}

/// Why an address update was not applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MobikeRefusal {
    #[error("UPDATE_SA_ADDRESSES on an IKE SA without MOBIKE")]
    NotNegotiated,
    #[error("malformed MOBIKE notify: {0}")]
    Malformed(#[from] MobikeError),
    /// §3.9: NO_NATS_ALLOWED names other addresses than the IP header.
    #[error("NO_NATS_ALLOWED does not match the IP header")]
    UnexpectedNat,
    /// §3.7: the return-routability answer did not echo our COOKIE2.
    #[error("COOKIE2 mismatch in the return-routability answer")]
    CookieMismatch,
}

impl MobikeRefusal {
    pub fn label(self) -> &'static str {
        match self {
            MobikeRefusal::NotNegotiated => "not_negotiated",
            MobikeRefusal::Malformed(_) => "malformed",
            MobikeRefusal::UnexpectedNat => "unexpected_nat",
            MobikeRefusal::CookieMismatch => "cookie_mismatch",
        }
    }
}

/// A MOBIKE notify that breaks RFC 4555 §4.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MobikeError {
    #[error("COOKIE2 of {0} octets (8 to 64)")]
    Cookie2Length(usize),
    #[error("{0:?} with {1} octets of data")]
    Length(NotifyType, usize),
    #[error("{0:?} with a protocol ID or SPI")]
    NotAboutIkeSa(NotifyType),
    #[error("{0:?} more than once")]
    Repeated(NotifyType),
    #[error("NO_ADDITIONAL_ADDRESSES together with ADDITIONAL_*_ADDRESS")]
    ContradictoryAddresses,
    #[error("more than {MAX_PEER_ADDRESSES} additional addresses")]
    TooManyAddresses,
}

/// The MOBIKE notifies of one INFORMATIONAL request, checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MobikeRequest {
    pub update: bool,
    pub cookie2: Option<Vec<u8>>,
    /// `Some` when the request replaces the address list (§3.6): the
    /// additional addresses, empty for NO_ADDITIONAL_ADDRESSES.
    pub addresses: Option<Vec<IpAddr>>,
    /// §3.9: (source, destination) as the sender put them.
    pub no_nats: Option<(SocketAddr, SocketAddr)>,
    /// Both NAT detection notifies are present.
    pub nat_detection: bool,
}

/// Checks the MOBIKE notifies among `notifies` (RFC 4555 §4.2); other
/// notifies are not looked at.
pub fn parse<'n, 'a: 'n>(notifies: impl Iterator<Item = &'n Notify<'a>>) -> Result<MobikeRequest, MobikeError> {
    let mut r = MobikeRequest::default();
    let (mut src, mut dst) = (false, false);
    let mut no_additional = false;
    let mut additional = Vec::new();
    for n in notifies {
        let t = n.notify_type;
        let mobike = matches!(
            t,
            NotifyType::UPDATE_SA_ADDRESSES
                | NotifyType::COOKIE2
                | NotifyType::ADDITIONAL_IP4_ADDRESS
                | NotifyType::ADDITIONAL_IP6_ADDRESS
                | NotifyType::NO_ADDITIONAL_ADDRESSES
                | NotifyType::NO_NATS_ALLOWED
        );
        match t {
            NotifyType::NAT_DETECTION_SOURCE_IP => src = true,
            NotifyType::NAT_DETECTION_DESTINATION_IP => dst = true,
            _ => {}
        }
        if !mobike {
            continue;
        }
        if n.protocol_id != ProtocolId::NONE || !n.spi.is_empty() {
            return Err(MobikeError::NotAboutIkeSa(t));
        }
        let d: &[u8] = &n.data;
        match t {
            NotifyType::UPDATE_SA_ADDRESSES | NotifyType::NO_ADDITIONAL_ADDRESSES => {
                if !d.is_empty() {
                    return Err(MobikeError::Length(t, d.len()));
                }
                let seen = if t == NotifyType::UPDATE_SA_ADDRESSES { &mut r.update } else { &mut no_additional };
                if std::mem::replace(seen, true) {
                    return Err(MobikeError::Repeated(t));
                }
            }
            NotifyType::COOKIE2 => {
                if !(COOKIE2_MIN..=COOKIE2_MAX).contains(&d.len()) {
                    return Err(MobikeError::Cookie2Length(d.len()));
                }
                if r.cookie2.replace(d.to_vec()).is_some() {
                    return Err(MobikeError::Repeated(t));
                }
            }
            NotifyType::ADDITIONAL_IP4_ADDRESS => {
                let b = <[u8; 4]>::try_from(d).map_err(|_| MobikeError::Length(t, d.len()))?;
                additional.push(IpAddr::V4(Ipv4Addr::from(b)));
            }
            NotifyType::ADDITIONAL_IP6_ADDRESS => {
                let b = <[u8; 16]>::try_from(d).map_err(|_| MobikeError::Length(t, d.len()))?;
                additional.push(IpAddr::V6(Ipv6Addr::from(b)));
            }
            _ => {
                // NO_NATS_ALLOWED: source, destination, source port,
                // destination port (§4.2.6).
                let (s, de, ports) = match d.len() {
                    12 => {
                        let a = |i: usize| IpAddr::V4(Ipv4Addr::new(d[i], d[i + 1], d[i + 2], d[i + 3]));
                        (a(0), a(4), &d[8..12])
                    }
                    36 => {
                        let a = |i: usize| IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&d[i..i + 16]).unwrap_or([0; 16])));
                        (a(0), a(16), &d[32..36])
                    }
                    n => return Err(MobikeError::Length(t, n)),
                };
                let sp = u16::from_be_bytes([ports[0], ports[1]]);
                let dp = u16::from_be_bytes([ports[2], ports[3]]);
                if r.no_nats.replace((SocketAddr::new(s, sp), SocketAddr::new(de, dp))).is_some() {
                    return Err(MobikeError::Repeated(t));
                }
            }
        }
    }
    if additional.len() > MAX_PEER_ADDRESSES {
        return Err(MobikeError::TooManyAddresses);
    }
    match (no_additional, additional.is_empty()) {
        (true, false) => return Err(MobikeError::ContradictoryAddresses),
        (true, true) => r.addresses = Some(Vec::new()),
        (false, false) => r.addresses = Some(additional),
        (false, true) => {}
    }
    r.nat_detection = src && dst;
    Ok(r)
}

/// The NO_NATS_ALLOWED data for a message from `src` to `dst` (§4.2.6).
#[cfg(test)]
pub fn no_nats_data(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut v = Vec::with_capacity(36);
    for a in [src.ip(), dst.ip()] {
        match a {
            IpAddr::V4(a) => v.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => v.extend_from_slice(&a.octets()),
        }
    }
    v.extend_from_slice(&src.port().to_be_bytes());
    v.extend_from_slice(&dst.port().to_be_bytes());
    v
}

/// Our return-routability check in flight.
pub struct MobikeCheckTask {
    cookie2: Vec<u8>,
    path: EspPath,
    /// Where the IKE SA sent the check (§3.7's exception: an answer after
    /// the IKE SA moved again proves neither address).
    sent_to: SocketAddr,
}

impl IkeSa {
    /// The path a new Child SA is installed on: the proven MOBIKE path, or
    /// the IKE SA's own addresses.
    pub(super) fn esp_path(&self) -> EspPath {
        match &self.ext.mobike {
            Mobike::On(m) => m.esp,
            Mobike::Off => EspPath { local: self.local, remote: self.remote, udp_encap: self.nat_local || self.nat_remote },
        }
    }

    /// Responder of IKE_AUTH: whether to answer MOBIKE_SUPPORTED; turns
    /// MOBIKE on. `request` holds the IKE_AUTH request's payloads (the
    /// first one, under EAP).
    pub(super) fn negotiate_mobike_responder(&mut self, request: &Payloads<'_, '_>) -> Option<Payload<'static>> {
        if !self.conn.ext.mobike || request.notify(NotifyType::MOBIKE_SUPPORTED).is_none() {
            return None;
        }
        self.mobike_on();
        Some(Payload::Notify(Notify::new(NotifyType::MOBIKE_SUPPORTED, Vec::new())))
    }

    /// Initiator: the IKE_AUTH response said MOBIKE_SUPPORTED.
    pub(super) fn negotiate_mobike_initiator(&mut self, response: &Payloads<'_, '_>) {
        if self.conn.ext.mobike && response.notify(NotifyType::MOBIKE_SUPPORTED).is_some() {
            self.mobike_on();
        }
    }

    fn mobike_on(&mut self) {
        let esp = EspPath { local: self.local, remote: self.remote, udp_encap: self.nat_local || self.nat_remote };
        self.ext.mobike = Mobike::On(Box::new(MobikeSa { esp, pending: None, peer_addresses: Vec::new(), moves: 0 }));
    }

    /// The MOBIKE part of an INFORMATIONAL request that came from `remote`
    /// to `local`: returns the notifies for the response (COOKIE2 copied,
    /// NAT detection answered, or UNEXPECTED_NAT_DETECTED).
    pub(super) fn respond_mobike(&mut self, ctx: &mut Ctx<'_>, p: &Payloads<'_, '_>, local: SocketAddr, remote: SocketAddr) -> Result<Vec<Payload<'static>>, ProtoError> {
        let Mobike::On(_) = &self.ext.mobike else {
            if p.notify(NotifyType::UPDATE_SA_ADDRESSES).is_some() {
                // Not ours to act on (RFC 7296 §3.10.1: an unknown status
                // notify is ignored); the IKE SA stays where it is.
                ctx.out.events.push_back(Event::Mobike { ike_sa: self.handle, outcome: MobikeOutcome::Refused(MobikeRefusal::NotNegotiated) });
            }
            return Ok(Vec::new());
        };
        let req = match parse(p.notifies()) {
            Ok(r) => r,
            Err(e) => {
                ctx.out.events.push_back(Event::Mobike { ike_sa: self.handle, outcome: MobikeOutcome::Refused(e.into()) });
                return Err(ProtoError::Invalid("MOBIKE notify"));
            }
        };
        let mut out = Vec::new();
        if let Some(c) = &req.cookie2 {
            // §3.7: copied as-is.
            out.push(Payload::Notify(Notify::new(NotifyType::COOKIE2, c.clone())));
        }
        if req.no_nats.is_some_and(|(s, d)| (s, d) != (remote, local)) {
            // §3.9: answered, nothing updated.
            out.push(Payload::Notify(Notify::new(NotifyType::UNEXPECTED_NAT_DETECTED, Vec::new())));
            ctx.out.events.push_back(Event::Mobike { ike_sa: self.handle, outcome: MobikeOutcome::Refused(MobikeRefusal::UnexpectedNat) });
            return Ok(out);
        }
        let mut nat = None;
        if req.nat_detection {
            // §3.8: answered whenever asked, from the request's addresses.
            let notifies: Vec<&Notify<'_>> = p.notifies().collect();
            nat = Some(sa::detect_nat(&notifies, self.spi_i, self.spi_r, local, remote));
            out.extend(sa::nat_notifies(self.spi_i, self.spi_r, local, remote).into_iter().map(Payload::Notify));
        }
        let check = self.conn.ext.mobike_return_routability;
        if let (Mobike::On(m), Some(list)) = (&mut self.ext.mobike, req.addresses) {
            m.peer_addresses = std::iter::once(remote.ip()).chain(list).collect();
        }
        if !req.update {
            return Ok(out);
        }
        // §3.5: the IKE SA takes the addresses of the IP header now.
        self.local = local;
        self.remote = remote;
        if let Some((l, r)) = nat {
            (self.nat_local, self.nat_remote) = (l, r);
        }
        let path = EspPath { local, remote, udp_encap: self.nat_local || self.nat_remote };
        let Mobike::On(m) = &mut self.ext.mobike else { return Ok(out) };
        let outcome = if path == m.esp {
            m.pending = None;
            MobikeOutcome::Unchanged
        } else if check {
            m.pending = Some(path);
            MobikeOutcome::CheckStarted
        } else {
            m.pending = None;
            m.esp = path;
            m.moves += 1;
            MobikeOutcome::Moved
        };
        match outcome {
            MobikeOutcome::CheckStarted => self.enqueue(Queued::MobikeCheck),
            MobikeOutcome::Moved => {
                let ev = self.moved_event(path);
                ctx.out.events.push_back(ev);
            }
            _ => {}
        }
        ctx.out.events.push_back(Event::Mobike { ike_sa: self.handle, outcome });
        Ok(out)
    }

    fn moved_event(&self, path: EspPath) -> Event {
        Event::IkeSaMoved {
            ike_sa: self.handle,
            local: path.local,
            remote: path.remote,
            udp_encap: path.udp_encap,
            nat_local: self.nat_local,
            nat_remote: self.nat_remote,
        }
    }

    /// Sends the return-routability check of the pending path (§3.7), if
    /// one is still pending.
    pub(super) fn start_mobike_check(&mut self, ctx: &mut Ctx<'_>) -> Result<(), ProtoError> {
        let Mobike::On(m) = &self.ext.mobike else { return Ok(()) };
        let Some(path) = m.pending else { return Ok(()) };
        let mut cookie2 = vec![0u8; COOKIE2_LEN];
        ctx.rng.fill_bytes(&mut cookie2);
        let n = Payload::Notify(Notify::new(NotifyType::COOKIE2, cookie2.clone()));
        self.send_request(ctx, ExchangeType::INFORMATIONAL, &[n])?;
        self.active = Some(Task::MobikeCheck(Box::new(MobikeCheckTask { cookie2, path, sent_to: self.remote })));
        Ok(())
    }

    /// The answer to our return-routability check.
    pub(super) fn process_mobike_check_response(&mut self, ctx: &mut Ctx<'_>, task: MobikeCheckTask, payloads: &[Payload<'_>]) {
        let p = Payloads(payloads);
        if p.notify(NotifyType::COOKIE2).map(|n| &n.data[..]) != Some(&task.cookie2[..]) {
            // §3.7: "If the values do not match, the IKE_SA MUST be closed."
            ctx.out.events.push_back(Event::Mobike { ike_sa: self.handle, outcome: MobikeOutcome::Refused(MobikeRefusal::CookieMismatch) });
            if self.start_delete_ike(ctx, DownReason::Deleted, None).is_err() {
                self.close(ctx, DownReason::Deleted);
            }
            return;
        }
        let Mobike::On(m) = &mut self.ext.mobike else { return };
        let pending = m.pending;
        match pending {
            Some(path) if path == task.path && task.sent_to == self.remote && path.remote == self.remote => {
                m.pending = None;
                m.esp = path;
                m.moves += 1;
                let ev = self.moved_event(path);
                ctx.out.events.push_back(ev);
                ctx.out.events.push_back(Event::Mobike { ike_sa: self.handle, outcome: MobikeOutcome::Moved });
            }
            // A newer path (or the same one, reached through another
            // address meanwhile): check again.
            Some(_) => self.enqueue(Queued::MobikeCheck),
            // Back on the proven path meanwhile: nothing to move.
            None => {}
        }
    }
}

#[cfg(test)]
impl IkeSa {
    /// Test peer: the UPDATE_SA_ADDRESSES request a moving initiator sends
    /// (§3.5), NAT detection from its own idea of its address, COOKIE2
    /// `cookie2` if given, then `extra`. The answer's COOKIE2 is checked
    /// against `expect` (our own check's processing, §3.7).
    pub(crate) fn send_update_sa_addresses(
        &mut self,
        ctx: &mut Ctx<'_>,
        cookie2: Option<Vec<u8>>,
        expect: Option<Vec<u8>>,
        extra: Vec<Payload<'static>>,
    ) -> Result<(), ProtoError> {
        let mut p = vec![Payload::Notify(Notify::new(NotifyType::UPDATE_SA_ADDRESSES, Vec::new()))];
        p.extend(sa::nat_notifies(self.spi_i, self.spi_r, self.local, self.remote).into_iter().map(Payload::Notify));
        p.extend(cookie2.map(|c| Payload::Notify(Notify::new(NotifyType::COOKIE2, c))));
        p.extend(extra);
        self.send_request(ctx, ExchangeType::INFORMATIONAL, &p)?;
        self.active = Some(match expect {
            Some(cookie2) => Task::MobikeCheck(Box::new(MobikeCheckTask { cookie2, path: self.esp_path(), sent_to: self.remote })),
            None => Task::Dpd,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(t: NotifyType, d: &[u8]) -> Notify<'static> {
        Notify::new(t, d.to_vec())
    }

    #[test]
    fn parses_update_with_cookie2_nat_detection_and_addresses() {
        let ns = [
            n(NotifyType::UPDATE_SA_ADDRESSES, &[]),
            n(NotifyType::COOKIE2, &[7; 16]),
            n(NotifyType::NAT_DETECTION_SOURCE_IP, &[1; 20]),
            n(NotifyType::NAT_DETECTION_DESTINATION_IP, &[2; 20]),
            n(NotifyType::ADDITIONAL_IP4_ADDRESS, &[192, 0, 2, 9]),
            n(NotifyType::ADDITIONAL_IP6_ADDRESS, &[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
        ];
        let r = parse(ns.iter()).expect("well formed");
        assert!(r.update && r.nat_detection);
        assert_eq!(r.cookie2.as_deref(), Some(&[7u8; 16][..]));
        assert_eq!(r.addresses, Some(vec!["192.0.2.9".parse().unwrap(), "2001:db8::1".parse().unwrap()]));
    }

    #[test]
    fn no_additional_addresses_empties_the_list() {
        let r = parse([n(NotifyType::NO_ADDITIONAL_ADDRESSES, &[])].iter()).unwrap();
        assert_eq!(r.addresses, Some(Vec::new()));
        assert!(!r.update);
    }

    #[test]
    fn rejects_malformed_mobike_notifies() {
        let cases: Vec<(Vec<Notify<'static>>, MobikeError)> = vec![
            (vec![n(NotifyType::COOKIE2, &[1; 7])], MobikeError::Cookie2Length(7)),
            (vec![n(NotifyType::COOKIE2, &[1; 65])], MobikeError::Cookie2Length(65)),
            (vec![n(NotifyType::COOKIE2, &[1; 8]), n(NotifyType::COOKIE2, &[1; 8])], MobikeError::Repeated(NotifyType::COOKIE2)),
            (vec![n(NotifyType::UPDATE_SA_ADDRESSES, &[0])], MobikeError::Length(NotifyType::UPDATE_SA_ADDRESSES, 1)),
            (
                vec![n(NotifyType::UPDATE_SA_ADDRESSES, &[]), n(NotifyType::UPDATE_SA_ADDRESSES, &[])],
                MobikeError::Repeated(NotifyType::UPDATE_SA_ADDRESSES),
            ),
            (vec![n(NotifyType::ADDITIONAL_IP4_ADDRESS, &[1, 2, 3])], MobikeError::Length(NotifyType::ADDITIONAL_IP4_ADDRESS, 3)),
            (vec![n(NotifyType::ADDITIONAL_IP6_ADDRESS, &[1; 4])], MobikeError::Length(NotifyType::ADDITIONAL_IP6_ADDRESS, 4)),
            (vec![n(NotifyType::NO_NATS_ALLOWED, &[1; 13])], MobikeError::Length(NotifyType::NO_NATS_ALLOWED, 13)),
            (
                vec![n(NotifyType::NO_ADDITIONAL_ADDRESSES, &[]), n(NotifyType::ADDITIONAL_IP4_ADDRESS, &[1, 2, 3, 4])],
                MobikeError::ContradictoryAddresses,
            ),
            (
                vec![Notify { protocol_id: ProtocolId::ESP, spi: vec![1, 2, 3, 4].into(), notify_type: NotifyType::UPDATE_SA_ADDRESSES, data: Vec::new().into() }],
                MobikeError::NotAboutIkeSa(NotifyType::UPDATE_SA_ADDRESSES),
            ),
            ((0..17).map(|i| n(NotifyType::ADDITIONAL_IP4_ADDRESS, &[10, 0, 0, i])).collect(), MobikeError::TooManyAddresses),
        ];
        for (ns, want) in cases {
            assert_eq!(parse(ns.iter()), Err(want), "{ns:?}");
        }
    }

    #[test]
    fn no_nats_allowed_round_trips_v4_and_v6() {
        for (s, d) in [("192.0.2.1:4500", "198.51.100.1:4500"), ("[2001:db8::1]:500", "[2001:db8::2]:4500")] {
            let (s, d): (SocketAddr, SocketAddr) = (s.parse().unwrap(), d.parse().unwrap());
            let r = parse([n(NotifyType::NO_NATS_ALLOWED, &no_nats_data(s, d))].iter()).unwrap();
            assert_eq!(r.no_nats, Some((s, d)));
        }
    }

    #[test]
    fn other_notifies_are_not_looked_at() {
        let r = parse([n(NotifyType::COOKIE, &[1; 3]), n(NotifyType::NAT_DETECTION_SOURCE_IP, &[])].iter()).unwrap();
        assert_eq!(r, MobikeRequest::default());
    }
}
