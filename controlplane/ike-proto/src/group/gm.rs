//! The GM role (RFC 9838 §2.3.3, §2.4.1.4, §2.4.2.2, §3.3): the SAs a
//! registration or a rekey gives, and the checks a GSA_REKEY must pass.
//!
//! Guarantees:
//! * A GSA_REKEY is used only after its ICV verified with the KEK, its
//!   signature with AUTH_KEY (when GCAUTH is Digital Signature), and its
//!   Message ID is above the last one accepted on that Rekey SA (the first at
//!   least GSA_INITIAL_MESSAGE_ID, else 0); a refused message is counted by
//!   reason ([`RekeyRejected`]) and changes nothing. A bitwise-identical copy
//!   of the last accepted message (§2.4.1: the GCKS resends them) is
//!   ignored, not counted as a replay.
//! * Keys come only from SA_KEYs that unwrap under a key this GM holds (the
//!   Rekey SA's or the registration's GSK_w, or its own WRAP_KEY); a KEK
//!   rekey none of whose SA_KEYs unwraps means this GM was excluded.
//! * TEK rollover loses nothing: a new TEK is installed at once (senders
//!   start using it after GWP_ATD, which the SA install carries), the TEK it
//!   replaces is deleted GWP_DTD after the rekey that named it in a Delete,
//!   or when its lifetime ends.
//! * Exclusion (Delete GIKE_UPDATE SPI 0), a missed rekey (a GSA_REKEY on a
//!   GSA_NEXT_SPI Rekey SA we were never given), a sender without a usable
//!   Sender-ID, and keys near the end of their lifetime with no successor
//!   all lead to a new registration after a random delay of 1-5 s (§2.4.3).
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ike_crypto::sig::{PublicKey, SignatureScheme};
use ike_crypto::{CryptoProvider, Rng, Secret};
use ike_wire::{parse_inner, GcauthId, KwaId, Payload, ProtocolId};

use super::config::GroupMembership;
use super::policy::{GsaContent, KdContent, WrappedKey};
use super::rekey::{spi_of, RekeySa};
pub use super::rekey::RekeyRejected;
use super::{GroupId, GroupSaDirection, GroupSaInstall};
use crate::config::ConnectionConfig;
use crate::error::ProtoError;
use crate::event::{ChildKeys, Event, IkeSaHandle};
use crate::message::{self, Payloads};
use crate::time::Time;

/// Re-register this long before the KEK or a TEK would expire without a
/// successor (§2.4.1: "before the soft lifetime").
const REREGISTER_MARGIN: Duration = Duration::from_secs(30);

/// The most TEKs a GM holds for one group. A GSA payload naming more is
/// refused; a GCKS rekeying faster than the deactivation delay (GWP_DTD) lets
/// old TEKs go, oldest generation first, so that memory and the events of one
/// timer stay bounded whatever the GCKS sends.
pub const MAX_TEKS_PER_GROUP: usize = 16;

/// GSA_REKEY inner payloads (§2.4.1): GSA, KD, N, D, AUTH.
const GSA_REKEY_RULES: &[message::Rule] = &[
    message::Rule { payload: ike_wire::PayloadType::GSA, min: 0, max: 1 },
    message::Rule { payload: ike_wire::PayloadType::KD, min: 0, max: 1 },
    message::Rule { payload: ike_wire::PayloadType::DELETE, min: 0, max: u8::MAX },
    message::Rule { payload: ike_wire::PayloadType::AUTH, min: 0, max: 1 },
];

struct GmKek {
    sa: RekeySa,
    /// GCAUTH Digital Signature: AUTH_KEY and the scheme of its
    /// AlgorithmIdentifier; `None` for Implicit.
    auth: Option<(PublicKey, SignatureScheme)>,
    initial_message_id: u32,
    last_message_id: Option<u32>,
    /// The last accepted message, to recognise the GCKS's identical copies.
    last_message: Vec<u8>,
    /// When to re-register if no new Rekey SA came (`expires` less the
    /// margin).
    soft: Time,
    next_spis: Vec<[u8; 16]>,
}

struct GmTek {
    generation: u32,
    expires: Option<Time>,
    soft: Option<Time>,
    delete_at: Option<Time>,
}

/// Counters of one group on a GM.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GmStats {
    pub registrations: u64,
    pub rekeys_accepted: u64,
    pub rekeys_rejected: BTreeMap<RekeyRejected, u64>,
    pub reregistrations: u64,
}

/// One group this GM belongs to.
pub struct GmGroup {
    pub membership: GroupMembership,
    conn: Arc<ConnectionConfig>,
    local: SocketAddr,
    remote: SocketAddr,
    kek: Option<GmKek>,
    /// A replaced Rekey SA, kept until GWP_DTD to recognise late copies.
    old_kek: Option<(GmKek, Time)>,
    teks: BTreeMap<u32, GmTek>,
    wrap_key: Option<(u32, Secret)>,
    pub sender_ids: Vec<u32>,
    sender_id_bits: u8,
    atd_secs: u16,
    dtd_secs: u16,
    transport: bool,
    generation: u32,
    pub registered: bool,
    reregister_at: Option<Time>,
    pub stats: GmStats,
    /// Where this group's GSA_REKEYs come to (the KEK policy's destination
    /// selector, §4.4.2): the daemon joins it.
    pub rekey_destination: Option<SocketAddr>,
}

impl GmGroup {
    /// The current TEK SPIs with their generation (operator view).
    pub fn tek_spis(&self) -> Vec<(u32, u32)> {
        self.teks.iter().map(|(s, t)| (*s, t.generation)).collect()
    }

    /// The local address of the registration (the interface GSA_REKEYs are
    /// joined on).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The generation of the newest TEKs.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The Rekey SA's SPI and the last Message ID accepted on it.
    pub fn kek(&self) -> Option<([u8; 16], Option<u32>)> {
        self.kek.as_ref().map(|k| (k.sa.spi, k.last_message_id))
    }
}

/// Every group this GM belongs to.
#[derive(Default)]
pub struct GroupMember {
    pub groups: BTreeMap<GroupId, GmGroup>,
}

/// What a registration or rekey needs to unwrap keys.
struct Unwrap<'a> {
    kwa: KwaId,
    /// The default KWK: the registration SA's or the Rekey SA's GSK_w.
    kwk: &'a [u8],
}

/// §4.4.2.1: the AUTH_KEY's algorithm must match the Signature Algorithm
/// Identifier; the scheme is taken from that identifier.
fn gcauth_key(gcauth: Option<&(GcauthId, Option<Vec<u8>>)>, auth_key: Option<&[u8]>) -> Result<Option<(PublicKey, SignatureScheme)>, ProtoError> {
    match gcauth {
        None => Err(ProtoError::Invalid("KEK without GCAUTH in a registration")),
        Some((id, _)) if *id == GcauthId::IMPLICIT => Ok(None),
        Some((id, Some(alg))) if *id == GcauthId::DIGITAL_SIGNATURE => {
            let scheme = SignatureScheme::from_algorithm_identifier(alg).ok_or(ProtoError::NoProposalChosen)?;
            let spki = auth_key.ok_or(ProtoError::Invalid("AUTH_KEY missing"))?;
            let key = PublicKey::from_spki_der(spki).map_err(|_| ProtoError::Invalid("AUTH_KEY"))?;
            Ok(Some((key, scheme)))
        }
        _ => Err(ProtoError::NoProposalChosen),
    }
}

impl GroupMember {
    /// Whether `bytes` (a parsed header's SPIs) is for one of our Rekey SAs.
    pub fn has_rekey_sa(&self, spi: &[u8; 16]) -> bool {
        self.groups.values().any(|g| g.kek.as_ref().is_some_and(|k| &k.sa.spi == spi) || g.old_kek.as_ref().is_some_and(|(k, _)| &k.sa.spi == spi) || g.kek.as_ref().is_some_and(|k| k.next_spis.contains(spi)))
    }

    pub fn deadline(&self) -> Option<Time> {
        self.groups.values().filter_map(GmGroup::deadline).min()
    }

    pub fn handle_timeout(&mut self, now: Time, rng: &mut dyn Rng, events: &mut std::collections::VecDeque<Event>, reinitiate: &mut Vec<(Arc<ConnectionConfig>, SocketAddr, SocketAddr)>) {
        for (id, g) in &mut self.groups {
            g.handle_timeout(id, now, rng, events, reinitiate);
        }
    }

    /// A GSA_REKEY datagram (§2.4.1.4). Events say what came of it.
    pub fn handle_rekey(&mut self, now: Time, crypto: &dyn CryptoProvider, rng: &mut dyn Rng, bytes: &[u8], events: &mut std::collections::VecDeque<Event>) {
        let Ok(header) = ike_wire::Header::parse_datagram(bytes) else {
            events.push_back(Event::GroupRekeyRejected { group: None, reason: RekeyRejected::Malformed });
            return;
        };
        let spi = spi_of(&header);
        let Some((id, g)) = self.groups.iter_mut().find(|(_, g)| {
            g.kek.as_ref().is_some_and(|k| k.sa.spi == spi || k.next_spis.contains(&spi)) || g.old_kek.as_ref().is_some_and(|(k, _)| k.sa.spi == spi)
        }) else {
            events.push_back(Event::GroupRekeyRejected { group: None, reason: RekeyRejected::UnknownSpi });
            return;
        };
        let id = id.clone();
        match g.rekey(&id, now, crypto, rng, bytes, spi, events) {
            Ok(true) => {
                g.stats.rekeys_accepted += 1;
                events.push_back(Event::GroupRekeyAccepted { group: id, message_id: header.message_id });
            }
            Ok(false) => {}
            Err(reason) => {
                *g.stats.rekeys_rejected.entry(reason).or_default() += 1;
                events.push_back(Event::GroupRekeyRejected { group: Some(id), reason });
            }
        }
    }

    /// The GSA and KD of a GSA_AUTH / GSA_REGISTRATION response (§2.3.3),
    /// keys wrapped under the registration SA's GSK_w.
    #[allow(clippy::too_many_arguments)]
    pub fn registered(
        &mut self,
        now: Time,
        crypto: &dyn CryptoProvider,
        membership: &GroupMembership,
        conn: Arc<ConnectionConfig>,
        addrs: (SocketAddr, SocketAddr),
        ike_sa: IkeSaHandle,
        gsa: &GsaContent,
        kd: &KdContent,
        transport: bool,
        reg_kwa: KwaId,
        reg_kwk: &[u8],
        events: &mut std::collections::VecDeque<Event>,
    ) -> Result<(), ProtoError> {
        let g = self.groups.entry(membership.group.clone()).or_insert_with(|| GmGroup {
            membership: membership.clone(),
            conn: conn.clone(),
            local: addrs.0,
            remote: addrs.1,
            kek: None,
            old_kek: None,
            teks: BTreeMap::new(),
            wrap_key: None,
            sender_ids: Vec::new(),
            sender_id_bits: 0,
            atd_secs: 0,
            dtd_secs: 0,
            transport,
            generation: 0,
            registered: false,
            reregister_at: None,
            stats: GmStats::default(),
            rekey_destination: None,
        });
        g.conn = conn;
        (g.local, g.remote) = addrs;
        g.membership = membership.clone();
        g.transport = transport;
        g.register(&membership.group, now, crypto, gsa, kd, Unwrap { kwa: reg_kwa, kwk: reg_kwk }, events)?;
        g.stats.registrations += 1;
        events.push_back(Event::GroupRegistered { group: membership.group.clone(), ike_sa, sender_ids: g.sender_ids.clone() });
        Ok(())
    }

    /// GSA_INBAND_REKEY payloads (§2.4.2.2), keys under the IKE SA's GSK_w.
    #[allow(clippy::too_many_arguments)]
    pub fn inband(&mut self, now: Time, crypto: &dyn CryptoProvider, rng: &mut dyn Rng, group: &GroupId, payloads: &[Payload<'_>], reg_kwa: KwaId, reg_kwk: &[u8], events: &mut std::collections::VecDeque<Event>) -> Result<(), ProtoError> {
        let g = self.groups.get_mut(group).ok_or(ProtoError::InvalidGroupId)?;
        g.apply(group, now, crypto, rng, payloads, Unwrap { kwa: reg_kwa, kwk: reg_kwk }, false, events).map_err(|_| ProtoError::Invalid("GSA_INBAND_REKEY content"))
    }

    /// Groups of one IKE SA's connection name the GM asked to join, for the
    /// in-band rekey's lookup (at most one group per registration SA).
    pub fn group_of_conn(&self, conn: &str) -> Option<GroupId> {
        self.groups.iter().find(|(_, g)| g.conn.name == conn).map(|(id, _)| id.clone())
    }
}

impl GmGroup {
    /// How many TEKs this member holds for the group (at most
    /// [`MAX_TEKS_PER_GROUP`]).
    pub fn tek_count(&self) -> usize {
        self.teks.len()
    }

    fn deadline(&self) -> Option<Time> {
        let mut d = self.reregister_at;
        let mut consider = |t: Option<Time>| {
            if let Some(t) = t {
                d = Some(d.map_or(t, |d: Time| d.min(t)));
            }
        };
        for t in self.teks.values() {
            consider(t.delete_at);
            consider(t.expires);
        }
        consider(self.old_kek.as_ref().map(|(_, t)| *t));
        if self.registered && self.reregister_at.is_none() {
            consider(self.soft_expiry());
        }
        d
    }

    /// When the keys run out without a successor: the earliest of the KEK's
    /// and the newest TEKs' expiry, less the margin.
    fn soft_expiry(&self) -> Option<Time> {
        let newest = self.teks.values().map(|t| t.generation).max()?;
        let tek = self.teks.values().filter(|t| t.generation == newest).filter_map(|t| t.soft).min();
        let kek = self.kek.as_ref().map(|k| k.soft);
        [tek, kek].into_iter().flatten().min()
    }

    fn schedule_reregistration(&mut self, now: Time, rng: &mut dyn Rng) {
        if self.reregister_at.is_none() {
            // §2.4.3: a random delay "of the order of seconds".
            self.reregister_at = Some(now + Duration::from_millis(1_000 + u64::from(rng.next_u32() % 4_000)));
        }
    }

    fn handle_timeout(&mut self, id: &GroupId, now: Time, rng: &mut dyn Rng, events: &mut std::collections::VecDeque<Event>, reinitiate: &mut Vec<(Arc<ConnectionConfig>, SocketAddr, SocketAddr)>) {
        let due: Vec<u32> = self.teks.iter().filter(|(_, t)| t.delete_at.is_some_and(|d| d <= now) || t.expires.is_some_and(|e| e <= now)).map(|(s, _)| *s).collect();
        for spi in due {
            self.teks.remove(&spi);
            events.push_back(Event::GroupSaDelete { group: id.clone(), spi });
        }
        if self.old_kek.as_ref().is_some_and(|(_, t)| *t <= now) {
            self.old_kek = None;
        }
        if self.registered && self.reregister_at.is_none() && self.soft_expiry().is_some_and(|t| t <= now) {
            self.schedule_reregistration(now, rng);
        }
        if self.reregister_at.is_some_and(|t| t <= now) {
            self.reregister_at = None;
            self.registered = false;
            self.stats.reregistrations += 1;
            reinitiate.push((self.conn.clone(), self.local, self.remote));
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn register(&mut self, id: &GroupId, now: Time, crypto: &dyn CryptoProvider, gsa: &GsaContent, kd: &KdContent, unwrap: Unwrap<'_>, events: &mut std::collections::VecDeque<Event>) -> Result<(), ProtoError> {
        // §2.3.3: a new registration replaces everything of the group.
        let previous_initial = self.kek.as_ref().map(|k| (k.sa.spi, k.last_message_id));
        let old: Vec<u32> = self.teks.keys().copied().collect();
        self.wrap_key = None;
        for w in &kd.wrap_keys {
            if w.kwk_id == 0 {
                self.wrap_key = Some((w.key_id, w.unwrap(unwrap.kwa, unwrap.kwk)?));
            }
        }
        self.sender_ids = kd.sender_ids.clone();
        self.kek = None;
        if let Some(k) = &gsa.kek {
            self.rekey_destination = (k.dst.start_addr == k.dst.end_addr).then_some(SocketAddr::new(k.dst.start_addr, k.dst.start_port));
            let auth = gcauth_key(k.gcauth.as_ref(), kd.auth_key.as_deref())?;
            let keys = kd.sa_keys(ProtocolId::GIKE_UPDATE, &k.spi).ok_or(ProtoError::Invalid("no KEK SA_KEY"))?;
            let keymat = keys.iter().find(|w| w.kwk_id == 0).ok_or(ProtoError::Invalid("KEK SA_KEY"))?.unwrap(unwrap.kwa, unwrap.kwk)?;
            let sa = RekeySa::from_keymat(crypto, k.spi, k.encr, k.key_bits, k.integ, k.kwa, &keymat)?;
            let mut initial = k.initial_message_id.unwrap_or(0);
            let mut last = None;
            // §2.3.3: a GSA_INITIAL_MESSAGE_ID lower than what this Rekey SA
            // already carried is stale: ignored.
            if let Some((spi, Some(seen))) = previous_initial {
                if spi == k.spi && initial <= seen {
                    initial = seen;
                    last = Some(seen);
                }
            }
            self.kek = Some(GmKek {
                sa,
                auth,
                initial_message_id: initial,
                last_message_id: last,
                last_message: Vec::new(),
                soft: now + Duration::from_secs(u64::from(k.lifetime_secs.max(1))).saturating_sub(REREGISTER_MARGIN),
                next_spis: k.next_spis.clone(),
            });
        }
        self.generation += 1;
        self.install(id, now, crypto, gsa, kd, &unwrap, true, events).map_err(|_| ProtoError::Invalid("TEK keys"))?;
        // Whatever the new registration did not renew goes now.
        for spi in old {
            if self.teks.get(&spi).is_some_and(|t| t.generation != self.generation) {
                self.teks.remove(&spi);
                events.push_back(Event::GroupSaDelete { group: id.clone(), spi });
            }
        }
        self.registered = true;
        self.reregister_at = None;
        Ok(())
    }

    /// Group-wide policy and TEKs of a GSA/KD pair.
    #[allow(clippy::too_many_arguments)]
    fn install(&mut self, id: &GroupId, now: Time, crypto: &dyn CryptoProvider, gsa: &GsaContent, kd: &KdContent, unwrap: &Unwrap<'_>, registration: bool, events: &mut std::collections::VecDeque<Event>) -> Result<(), RekeyRejected> {
        if let Some(g) = gsa.gwp {
            if let Some(v) = g.atd_secs {
                self.atd_secs = v;
            }
            if let Some(v) = g.dtd_secs {
                self.dtd_secs = v;
            }
            if let Some(b) = g.sender_id_bits {
                self.sender_id_bits = u8::try_from(b).unwrap_or(u8::MAX);
            }
        }
        if gsa.teks.len() > MAX_TEKS_PER_GROUP {
            return Err(RekeyRejected::Content);
        }
        let sender = self.membership.sender_ids > 0;
        let mut installs = Vec::new();
        for t in &gsa.teks {
            let keys = kd.sa_keys(ProtocolId::ESP, &t.spi.to_be_bytes()).ok_or(RekeyRejected::Content)?;
            let keymat = keys.iter().find(|w| w.kwk_id == 0).ok_or(RekeyRejected::Content)?.unwrap(unwrap.kwa, unwrap.kwk).map_err(|_| RekeyRejected::Content)?;
            let encr_len = crypto.encr_key_len(t.suite.encr.0, t.suite.key_bits).map_err(|_| RekeyRejected::Content)?;
            let integ_len = crypto.integ_key_len(t.suite.integ.0).map_err(|_| RekeyRejected::Content)?;
            // §4.5.2.1: the keying material is exactly the keys' total size.
            if keymat.len() != encr_len + integ_len {
                return Err(RekeyRejected::Content);
            }
            let direction = match (sender, self.membership.receive) {
                (false, _) => GroupSaDirection::Inbound,
                (true, true) => GroupSaDirection::Both,
                (true, false) => GroupSaDirection::Outbound,
            };
            if sender {
                // §2.5.2: a sender without a Sender-ID that fits must not
                // install counter-mode TEKs; it registers again.
                let fits = self.sender_id_bits > 0 && self.sender_ids.iter().all(|s| u64::from(*s) < (1u64 << self.sender_id_bits.min(32)));
                if self.sender_ids.is_empty() || !fits {
                    return Err(RekeyRejected::Content);
                }
            }
            installs.push(GroupSaInstall {
                group: id.clone(),
                generation: self.generation,
                spi: t.spi,
                suite: t.suite,
                keys: ChildKeys { encr: Secret::new(keymat[..encr_len].to_vec()), integ: Secret::new(keymat[encr_len..].to_vec()) },
                src: t.src,
                dst: t.dst,
                direction,
                transport: self.transport,
                sequence: t.sequence,
                sender_ids: if sender { self.sender_ids.clone() } else { Vec::new() },
                sender_id_bits: self.sender_id_bits,
                lifetime_secs: u64::from(t.lifetime_secs.unwrap_or(0)),
                activation_delay_secs: if registration { 0 } else { self.atd_secs },
            });
        }
        // Room for the new TEKs: the oldest generations go first (a TEK
        // renewed under its own SPI is replaced, not added).
        let added = installs.iter().filter(|i| !self.teks.contains_key(&i.spi)).count();
        while self.teks.len() + added > MAX_TEKS_PER_GROUP {
            let renewed = |spi: &u32| installs.iter().any(|i| i.spi == *spi);
            let Some(spi) = self.teks.iter().filter(|(s, _)| !renewed(s)).min_by_key(|(s, t)| (t.generation, **s)).map(|(s, _)| *s) else { break };
            self.teks.remove(&spi);
            events.push_back(Event::GroupSaDelete { group: id.clone(), spi });
        }
        for i in installs {
            let life = Duration::from_secs(i.lifetime_secs);
            let expires = (i.lifetime_secs > 0).then(|| now + life);
            let soft = (i.lifetime_secs > 0).then(|| now + life.saturating_sub(REREGISTER_MARGIN));
            self.teks.insert(i.spi, GmTek { generation: self.generation, expires, soft, delete_at: None });
            events.push_back(Event::GroupSaInstall(Box::new(i)));
        }
        Ok(())
    }

    /// One GSA_REKEY for this group: `Ok(true)` when accepted, `Ok(false)`
    /// for a copy of the last one.
    #[allow(clippy::too_many_arguments)]
    fn rekey(&mut self, id: &GroupId, now: Time, crypto: &dyn CryptoProvider, rng: &mut dyn Rng, bytes: &[u8], spi: [u8; 16], events: &mut std::collections::VecDeque<Event>) -> Result<bool, RekeyRejected> {
        let on_old = self.old_kek.as_ref().is_some_and(|(k, _)| k.sa.spi == spi);
        let kek = if on_old { self.old_kek.as_ref().map(|(k, _)| k) } else { self.kek.as_ref() };
        let Some(kek) = kek.filter(|k| k.sa.spi == spi) else {
            // A message on a Rekey SA announced as GSA_NEXT_SPI that we were
            // never given: we missed a rekey (§4.4.2.2).
            self.schedule_reregistration(now, rng);
            return Err(RekeyRejected::UnknownSpi);
        };
        if !kek.last_message.is_empty() && kek.last_message == bytes {
            return Ok(false);
        }
        let (header, first, plain) = kek.sa.open(bytes, kek.auth.as_ref())?;
        // §2.4.1.4: after the ICV and the signature, the Message ID.
        let fresh = match kek.last_message_id {
            None => header.message_id >= kek.initial_message_id,
            Some(last) => header.message_id > last,
        };
        if !fresh {
            return Err(RekeyRejected::Replayed);
        }
        if on_old {
            // The old Rekey SA is only kept to recognise copies.
            return Err(RekeyRejected::Replayed);
        }
        let payloads = parse_inner(first, &plain).map_err(|_| RekeyRejected::Malformed)?;
        message::check(&payloads, GSA_REKEY_RULES).map_err(|_| RekeyRejected::Malformed)?;
        let kwk = kek.sa.gsk_w.clone();
        let kwa = kek.sa.kwa;
        let message_id = header.message_id;
        if let Some(k) = self.kek.as_mut() {
            k.last_message_id = Some(message_id);
            k.last_message = bytes.to_vec();
        }
        self.apply(id, now, crypto, rng, &payloads, Unwrap { kwa, kwk: &kwk }, true, events)?;
        Ok(true)
    }

    /// GSA, KD and Deletes of a rekey (multicast or in-band).
    #[allow(clippy::too_many_arguments)]
    fn apply(&mut self, id: &GroupId, now: Time, crypto: &dyn CryptoProvider, rng: &mut dyn Rng, payloads: &[Payload<'_>], unwrap: Unwrap<'_>, multicast: bool, events: &mut std::collections::VecDeque<Event>) -> Result<(), RekeyRejected> {
        let p = Payloads(payloads);
        let gsa = payloads.iter().find_map(|x| match x {
            Payload::Gsa(g) => Some(g),
            _ => None,
        });
        let kd = payloads.iter().find_map(|x| match x {
            Payload::Kd(k) => Some(k),
            _ => None,
        });
        let gsa = gsa.map(GsaContent::from_wire).transpose().map_err(|_| RekeyRejected::Content)?.unwrap_or_default();
        let kd = kd.map(KdContent::from_wire).transpose().map_err(|_| RekeyRejected::Content)?.unwrap_or_default();
        // Deletes first: an exclusion voids the rest.
        let dtd = Duration::from_secs(u64::from(self.dtd_secs));
        let mut delete_teks = Vec::new();
        for d in p.deletes() {
            for s in &d.spis {
                let zero = s.iter().all(|b| *b == 0);
                match d.protocol_id {
                    ProtocolId::GIKE_UPDATE | ProtocolId::NONE if zero => {
                        // §2.4.3: excluded; register again after a while.
                        self.exclude(id, events);
                        self.schedule_reregistration(now, rng);
                        return Ok(());
                    }
                    ProtocolId::ESP if zero => delete_teks.extend(self.teks.keys().copied()),
                    ProtocolId::ESP => {
                        if let Ok(b) = <[u8; 4]>::try_from(&s[..]) {
                            delete_teks.push(u32::from_be_bytes(b));
                        }
                    }
                    _ => {}
                }
            }
        }
        // A KEK policy naming the Rekey SA we hold changes nothing.
        if let Some(k) = gsa.kek.as_ref().filter(|k| self.kek.as_ref().map_or(true, |cur| cur.sa.spi != k.spi)) {
            if !multicast {
                return Err(RekeyRejected::Content);
            }
            // A new Rekey SA: its SA_KEY under the current GSK_w or our own
            // WRAP_KEY; none that we can unwrap = we are excluded (§3.2.1).
            let keys: &[WrappedKey] = kd.sa_keys(ProtocolId::GIKE_UPDATE, &k.spi).ok_or(RekeyRejected::Content)?;
            let keymat = keys.iter().find_map(|w| match w.kwk_id {
                0 => w.unwrap(unwrap.kwa, unwrap.kwk).ok(),
                n => self.wrap_key.as_ref().filter(|(id, _)| *id == n).and_then(|(_, kwk)| w.unwrap(unwrap.kwa, kwk).ok()),
            });
            let Some(keymat) = keymat else {
                self.exclude(id, events);
                self.schedule_reregistration(now, rng);
                return Ok(());
            };
            let sa = RekeySa::from_keymat(crypto, k.spi, k.encr, k.key_bits, k.integ, k.kwa, &keymat).map_err(|_| RekeyRejected::Content)?;
            let old = self.kek.take().ok_or(RekeyRejected::Content)?;
            self.kek = Some(GmKek {
                sa,
                // §4.4.2.1: the authentication method never changes; a new
                // AUTH_KEY may come in the rekey.
                auth: match (kd.auth_key.as_deref(), &old.auth) {
                    (Some(spki), Some((_, scheme))) => Some((PublicKey::from_spki_der(spki).map_err(|_| RekeyRejected::Content)?, *scheme)),
                    (_, a) => a.clone(),
                },
                initial_message_id: k.initial_message_id.unwrap_or(0),
                last_message_id: None,
                last_message: Vec::new(),
                soft: now + Duration::from_secs(u64::from(k.lifetime_secs.max(1))).saturating_sub(REREGISTER_MARGIN),
                next_spis: k.next_spis.clone(),
            });
            // §2.4.1.4: the old Rekey SA goes after GWP_DTD.
            self.old_kek = Some((old, now + dtd.max(Duration::from_secs(1))));
        }
        if !gsa.teks.is_empty() {
            self.generation += 1;
            self.install(id, now, crypto, &gsa, &kd, &unwrap, false, events)?;
        }
        for spi in delete_teks {
            if let Some(t) = self.teks.get_mut(&spi) {
                t.delete_at = Some(now + dtd);
            }
        }
        Ok(())
    }

    fn exclude(&mut self, id: &GroupId, events: &mut std::collections::VecDeque<Event>) {
        for spi in std::mem::take(&mut self.teks).into_keys() {
            events.push_back(Event::GroupSaDelete { group: id.clone(), spi });
        }
        self.kek = None;
        self.old_kek = None;
        self.registered = false;
        events.push_back(Event::GroupExcluded { group: id.clone() });
    }
}
