//! The GCKS role (RFC 9838 §2.3.4, §2.4.1.3, §2.5.1, §3.2): per group, the
//! current TEKs and KEK, the members and their Sender-IDs, and the GSA_REKEY
//! messages it multicasts.
//!
//! Guarantees:
//! * A member is admitted only if the group's policy lists its authenticated
//!   identity (AUTHORIZATION_FAILED otherwise, INVALID_GROUP_ID for an unknown
//!   group, REGISTRATION_FAILED when the group is full).
//! * Sender-IDs (§2.5.1) are allocated from a counter starting at 0, never
//!   more than asked or than the group allows, and never reused: a member
//!   that registers again gets new ones. When the SID space is exhausted the
//!   GCKS excludes every member (Delete of GIKE_UPDATE and ESP with SPI 0 in a
//!   GSA_REKEY), starts new keys and a new counter, then admits the member.
//! * A TEK's successor is multicast `rekey_margin_secs` before its lifetime
//!   ends, with a Delete of the old SPI (GMs drop it after GWP_DTD), and each
//!   GSA_REKEY is sent `retransmits` more times, bitwise identical (§2.4.1).
//!   Message IDs count up from the Rekey SA's GSA_INITIAL_MESSAGE_ID; a new
//!   Rekey SA starts at 0.
//! * Excluding a member (§3.2.1 forward access control): first a new KEK,
//!   its SA_KEY wrapped only under the remaining members' own WRAP_KEYs, in a
//!   rekey of the old KEK; then new TEKs under the new KEK. The excluded
//!   member can read the first message but unwrap none of its keys, and
//!   cannot decrypt the second.
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use ike_crypto::{CryptoProvider, Rng, Secret};
use ike_wire::{Delete, GcauthId, KwaId, Payload, ProtocolId};

use super::config::{GroupConfig, MemberRole};
use super::policy::{GsaContent, GwpWire, KdContent, KekWire, TekWire, WrappedKey};
use super::rekey::RekeySa;
use super::GroupId;
use crate::config::Identity;
use crate::error::ProtoError;
use crate::event::{IkeSaHandle, Transmit};
use crate::time::Time;

/// One generation of a TEK.
struct Tek {
    policy: usize,
    spi: u32,
    keymat: Secret,
    created: Time,
}

/// One generation of the KEK.
struct Kek {
    sa: RekeySa,
    keymat: Secret,
    created: Time,
    /// The Message ID of the next GSA_REKEY on this Rekey SA.
    next_message_id: u32,
    /// GSA_NEXT_SPI announced for the next Rekey SA.
    next_spi: [u8; 16],
    generation: u32,
}

struct Member {
    identity: Identity,
    role: MemberRole,
    sender_ids: Vec<u32>,
    /// This member's own WRAP_KEY (Key ID, key): what an exclusion rekey
    /// wraps the new KEK under.
    wrap_key: Option<(u32, Secret)>,
    ike_sa: Option<IkeSaHandle>,
    registered_at: Time,
}

/// What `esprit-ctl list-groups` shows of a member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    pub identity: Identity,
    pub sender: bool,
    pub sender_ids: Vec<u32>,
    pub registered_at: Time,
}

/// What `esprit-ctl list-groups` shows of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupInfo {
    pub name: String,
    pub id: GroupId,
    pub members: Vec<MemberInfo>,
    pub tek_spis: Vec<u32>,
    pub tek_generation: u32,
    pub kek_generation: u32,
    pub next_message_id: u32,
    pub sids_allocated: u64,
    pub next_rekey: Option<Time>,
}

/// Counters per group (the daemon's metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcksStats {
    pub registrations_ok: u64,
    pub registrations_refused: u64,
    pub rekeys_sent: u64,
    pub exclusions: u64,
    pub sid_resets: u64,
}

/// A registration's answer: the GSA and KD payloads and the mode.
pub struct Registration {
    pub gsa: GsaContent,
    pub kd: KdContent,
    pub transport: bool,
    pub sender_ids: Vec<u32>,
}

/// One group served.
pub struct GcksGroup {
    pub cfg: Arc<GroupConfig>,
    teks: Vec<Tek>,
    kek: Option<Kek>,
    tek_generation: u32,
    kek_generation: u32,
    next_sid: u64,
    next_wrap_key_id: u32,
    /// SPIs the last TEK rekey replaced (named in its Delete).
    retired: Vec<u32>,
    members: BTreeMap<Vec<u8>, Member>,
    /// Members excluded by the operator: refused (AUTHORIZATION_FAILED)
    /// when they register again, until [`Self::readmit`].
    excluded: std::collections::BTreeSet<Vec<u8>>,
    /// Multicast sends due: (when, datagram).
    sends: VecDeque<(Time, Vec<u8>)>,
    pub stats: GcksStats,
    /// Test builds: the keys a rekey or registration handed out, for the
    /// daemon to log (a capture can then be decrypted); never in release.
    pub revealed: Vec<(u32, Vec<u8>)>,
}

/// Every group a GCKS serves.
#[derive(Default)]
pub struct Gcks {
    pub groups: BTreeMap<GroupId, GcksGroup>,
}

fn member_key(id: &Identity) -> Vec<u8> {
    let mut k = vec![id.id_type().0];
    k.extend_from_slice(&crate::sa::id_body(id)[4..]);
    k
}

fn random_spi(rng: &mut dyn Rng) -> u32 {
    loop {
        let s = rng.next_u32();
        // RFC 4303 §2.1: 0-255 are not for the wire.
        if s > 255 {
            return s;
        }
    }
}

fn random_secret(rng: &mut dyn Rng, len: usize) -> Secret {
    let mut v = Secret::new(vec![0u8; len]);
    rng.fill_bytes(&mut v);
    v
}

impl Gcks {
    pub fn new(groups: &[Arc<GroupConfig>]) -> Self {
        Self { groups: groups.iter().map(|g| (g.id.clone(), GcksGroup::new(g.clone()))).collect() }
    }

    /// Takes a new configuration: groups that stay keep their state.
    pub fn reconfigure(&mut self, groups: &[Arc<GroupConfig>]) {
        let mut old = std::mem::take(&mut self.groups);
        for g in groups {
            let mut state = old.remove(&g.id).unwrap_or_else(|| GcksGroup::new(g.clone()));
            state.cfg = g.clone();
            self.groups.insert(g.id.clone(), state);
        }
    }

    pub fn deadline(&self) -> Option<Time> {
        self.groups.values().filter_map(GcksGroup::deadline).min()
    }

    /// An IKE SA closed: no member uses it for in-band rekeys any more.
    pub fn forget_ike_sa(&mut self, ike_sa: IkeSaHandle) {
        for g in self.groups.values_mut() {
            g.forget_ike_sa(ike_sa);
        }
    }

    /// Scheduled rekeys and retransmissions.
    pub fn handle_timeout(&mut self, now: Time, crypto: &dyn CryptoProvider, rng: &mut dyn Rng, out: &mut VecDeque<Transmit>) {
        for g in self.groups.values_mut() {
            g.handle_timeout(now, crypto, rng, out);
        }
    }
}

impl GcksGroup {
    pub fn new(cfg: Arc<GroupConfig>) -> Self {
        Self {
            cfg,
            teks: Vec::new(),
            kek: None,
            tek_generation: 0,
            kek_generation: 0,
            next_sid: 0,
            next_wrap_key_id: 1,
            retired: Vec::new(),
            members: BTreeMap::new(),
            excluded: Default::default(),
            sends: VecDeque::new(),
            stats: GcksStats::default(),
            revealed: Vec::new(),
        }
    }

    fn tek_keymat_len(&self, crypto: &dyn CryptoProvider, policy: usize) -> Result<usize, ProtoError> {
        let s = &self.cfg.teks[policy].suite;
        Ok(crypto.encr_key_len(s.encr.0, s.key_bits)? + crypto.integ_key_len(s.integ.0)?)
    }

    fn new_tek(&mut self, now: Time, crypto: &dyn CryptoProvider, rng: &mut dyn Rng, policy: usize) -> Result<Tek, ProtoError> {
        let len = self.tek_keymat_len(crypto, policy)?;
        let mut spi = random_spi(rng);
        while self.teks.iter().any(|t| t.spi == spi) {
            spi = random_spi(rng);
        }
        let keymat = random_secret(rng, len);
        if cfg!(any(test, feature = "test-keys")) {
            self.revealed.push((spi, keymat.to_vec()));
        }
        Ok(Tek { policy, spi, keymat, created: now })
    }

    fn new_kek(&mut self, now: Time, crypto: &dyn CryptoProvider, rng: &mut dyn Rng, spi: Option<[u8; 16]>) -> Result<Option<Kek>, ProtoError> {
        let Some(k) = &self.cfg.kek else { return Ok(None) };
        let (e, a, w) = RekeySa::key_lens(crypto, k.encr, k.key_bits, k.integ, k.kwa)?;
        let keymat = random_secret(rng, e + a + w);
        let spi = spi.unwrap_or_else(|| {
            let mut s = [0u8; 16];
            rng.fill_bytes(&mut s);
            s
        });
        let mut next_spi = [0u8; 16];
        rng.fill_bytes(&mut next_spi);
        let sa = RekeySa::from_keymat(crypto, spi, k.encr, k.key_bits, k.integ, k.kwa, &keymat)?;
        self.kek_generation += 1;
        Ok(Some(Kek { sa, keymat, created: now, next_message_id: 0, next_spi, generation: self.kek_generation }))
    }

    /// First use: the group's initial keys.
    fn ensure_keys(&mut self, now: Time, crypto: &dyn CryptoProvider, rng: &mut dyn Rng) -> Result<(), ProtoError> {
        if self.teks.len() != self.cfg.teks.len() {
            self.teks.clear();
            for i in 0..self.cfg.teks.len() {
                let t = self.new_tek(now, crypto, rng, i)?;
                self.teks.push(t);
            }
        }
        if self.kek.is_none() && self.cfg.kek.is_some() {
            self.kek = self.new_kek(now, crypto, rng, None)?;
        }
        Ok(())
    }

    fn tek_remaining_secs(&self, t: &Tek, now: Time) -> u32 {
        let life = u64::from(self.cfg.teks[t.policy].lifetime_secs);
        u32::try_from(life.saturating_sub(now.saturating_since(t.created).as_secs())).unwrap_or(u32::MAX).max(1)
    }

    /// The GSA policies of the current keys; `registration` adds GCAUTH,
    /// `sender` the Sender-ID bits.
    fn gsa(&self, now: Time, registration: bool, sender: bool, with_kek: bool, teks: bool) -> GsaContent {
        let kek = match (&self.kek, &self.cfg.kek) {
            (Some(k), Some(p)) if with_kek => Some(KekWire {
                spi: k.sa.spi,
                src: crate::ts::TrafficSelector::udp_host(p.source),
                dst: crate::ts::TrafficSelector::udp_host(p.destination),
                encr: p.encr,
                key_bits: p.key_bits,
                integ: p.integ,
                kwa: p.kwa,
                gcauth: registration.then(|| match &p.gcauth {
                    Some(g) => (GcauthId::DIGITAL_SIGNATURE, Some(g.scheme.algorithm_identifier().to_vec())),
                    None => (GcauthId::IMPLICIT, None),
                }),
                lifetime_secs: u32::try_from(u64::from(p.lifetime_secs).saturating_sub(now.saturating_since(k.created).as_secs()))
                    .unwrap_or(u32::MAX)
                    .max(1),
                initial_message_id: (k.next_message_id != 0).then_some(k.next_message_id),
                next_spis: vec![k.next_spi],
            }),
            _ => None,
        };
        let teks = if teks {
            self.teks
                .iter()
                .map(|t| {
                    let p = &self.cfg.teks[t.policy];
                    TekWire {
                        spi: t.spi,
                        src: p.src,
                        dst: p.dst,
                        suite: p.suite,
                        sequence: p.sequence,
                        // §4.4.2.2: MUST with multicast rekey; SHOULD NOT
                        // with in-band rekey only.
                        lifetime_secs: self.cfg.kek.is_some().then(|| self.tek_remaining_secs(t, now)),
                        next_spis: Vec::new(),
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        let gwp = GwpWire {
            atd_secs: (self.cfg.activation_delay_secs > 0).then_some(self.cfg.activation_delay_secs),
            dtd_secs: (self.cfg.deactivation_delay_secs > 0).then_some(self.cfg.deactivation_delay_secs),
            sender_id_bits: sender.then_some(u16::from(self.cfg.sender_id_bits)),
        };
        let gwp = (gwp != GwpWire::default()).then_some(gwp);
        GsaContent { kek, teks, gwp }
    }

    /// §2.3.4: authorize `member`, allocate its Sender-IDs, and build the
    /// GSA and KD payloads of a GSA_AUTH or GSA_REGISTRATION response with
    /// keys wrapped under the registration SA's GSK_w.
    #[allow(clippy::too_many_arguments)]
    pub fn register(
        &mut self,
        now: Time,
        crypto: &dyn CryptoProvider,
        rng: &mut dyn Rng,
        out: &mut VecDeque<Transmit>,
        member: &Identity,
        ike_sa: IkeSaHandle,
        sids_wanted: u32,
        reg_kwa: KwaId,
        reg_kwk: &[u8],
    ) -> Result<Registration, ProtoError> {
        let refuse = |s: &mut Self, e: ProtoError| {
            s.stats.registrations_refused += 1;
            Err(e)
        };
        let key = member_key(member);
        if self.excluded.contains(&key) {
            return refuse(self, ProtoError::AuthorizationFailed);
        }
        let Some(role) = self.cfg.authorize(member) else { return refuse(self, ProtoError::AuthorizationFailed) };
        if !self.members.contains_key(&key) && self.members.len() >= self.cfg.max_members {
            return refuse(self, ProtoError::RegistrationFailed);
        }
        self.ensure_keys(now, crypto, rng)?;
        // §2.5.1: a sender gets new Sender-IDs on every registration; one
        // that was not authorized to send gets none.
        let wanted = if role == MemberRole::Sender { u64::from(sids_wanted.min(self.cfg.max_sids_per_member)) } else { 0 };
        if wanted > 0 && self.next_sid + wanted > self.cfg.sid_space() {
            // §2.5.1: exhausted: exclude everyone, start over.
            self.reset_sids(now, crypto, rng, out)?;
        }
        let sender_ids: Vec<u32> = (0..wanted).map(|i| u32::try_from(self.next_sid + i).unwrap_or(u32::MAX)).collect();
        self.next_sid += wanted;
        // A member's own KWK, for exclusion rekeys (§3.2.1); not with
        // in-band rekeys only (§4.5.3.1: WRAP_KEY MUST NOT be used then).
        let wrap_key = match &self.cfg.kek {
            Some(k) => {
                let len = ike_crypto::keywrap::kwk_len(k.kwa.0).ok_or(ProtoError::NoProposalChosen)?;
                let id = self.next_wrap_key_id;
                self.next_wrap_key_id = self.next_wrap_key_id.wrapping_add(1).max(1);
                Some((id, random_secret(rng, len)))
            }
            None => None,
        };
        let sender = !sender_ids.is_empty();
        let gsa = self.gsa(now, true, sender, true, true);
        let mut kd = KdContent::default();
        for t in &self.teks {
            let w = WrappedKey::wrap(reg_kwa, 0, 0, reg_kwk, &t.keymat)?;
            kd.group.push((ProtocolId::ESP, t.spi.to_be_bytes().to_vec(), vec![w]));
        }
        if let Some(k) = &self.kek {
            let w = WrappedKey::wrap(reg_kwa, 0, 0, reg_kwk, &k.keymat)?;
            kd.group.push((ProtocolId::GIKE_UPDATE, k.sa.spi.to_vec(), vec![w]));
            kd.auth_key = self.cfg.kek.as_ref().and_then(|p| p.gcauth.as_ref()).map(|g| g.spki.clone());
        }
        if let Some((id, k)) = &wrap_key {
            kd.wrap_keys.push(WrappedKey::wrap(reg_kwa, *id, 0, reg_kwk, k)?);
        }
        kd.sender_ids = sender_ids.clone();
        self.members.insert(
            key,
            Member { identity: member.clone(), role, sender_ids: sender_ids.clone(), wrap_key, ike_sa: Some(ike_sa), registered_at: now },
        );
        self.stats.registrations_ok += 1;
        Ok(Registration { gsa, kd, transport: self.cfg.transport, sender_ids })
    }

    /// The IKE SA of a member closed (it no longer takes in-band rekeys).
    pub fn forget_ike_sa(&mut self, ike_sa: IkeSaHandle) {
        for m in self.members.values_mut().filter(|m| m.ike_sa == Some(ike_sa)) {
            m.ike_sa = None;
        }
    }

    /// Members with an IKE SA, for GSA_INBAND_REKEY.
    pub fn inband_members(&self) -> Vec<IkeSaHandle> {
        self.members.values().filter_map(|m| m.ike_sa).collect()
    }

    fn multicast(&mut self, now: Time, datagram: Vec<u8>) {
        let Some(k) = &self.cfg.kek else { return };
        self.sends.push_back((now, datagram.clone()));
        for i in 1..=u32::from(k.retransmits) {
            self.sends.push_back((now + k.retransmit_interval * i, datagram.clone()));
        }
        self.sends.make_contiguous().sort_by_key(|(t, _)| *t);
        self.stats.rekeys_sent += 1;
    }

    /// Seals one GSA_REKEY on the current Rekey SA.
    fn send_rekey(&mut self, now: Time, rng: &mut dyn Rng, inner: Vec<Payload<'static>>) -> Result<(), ProtoError> {
        let gcauth = self.cfg.kek.as_ref().and_then(|k| k.gcauth.clone());
        let Some(kek) = self.kek.as_mut() else { return Err(ProtoError::Invalid("no Rekey SA")) };
        let id = kek.next_message_id;
        let bytes = kek.sa.seal(id, inner, gcauth.as_ref(), rng)?;
        kek.next_message_id = id.wrapping_add(1);
        self.multicast(now, bytes);
        Ok(())
    }

    /// A new generation of every TEK (§2.4.1.3). With a KEK it is
    /// multicast at once, with a Delete of the old SPIs (GMs drop them after
    /// GWP_DTD); without one, [`Self::inband_payloads`] builds each member's
    /// GSA_INBAND_REKEY.
    pub fn rekey_teks(&mut self, now: Time, crypto: &dyn CryptoProvider, rng: &mut dyn Rng) -> Result<(), ProtoError> {
        self.ensure_keys(now, crypto, rng)?;
        self.tek_generation += 1;
        self.retired = self.teks.iter().map(|t| t.spi).collect();
        let mut new = Vec::with_capacity(self.teks.len());
        for i in 0..self.cfg.teks.len() {
            new.push(self.new_tek(now, crypto, rng, i)?);
        }
        self.teks = new;
        let Some(k) = &self.kek else { return Ok(()) };
        let mut kd = KdContent::default();
        for t in &self.teks {
            kd.group.push((ProtocolId::ESP, t.spi.to_be_bytes().to_vec(), vec![WrappedKey::wrap(k.sa.kwa, 0, 0, &k.sa.gsk_w, &t.keymat)?]));
        }
        let inner = self.tek_payloads(now, kd);
        self.send_rekey(now, rng, inner)
    }

    fn tek_payloads(&self, now: Time, kd: KdContent) -> Vec<Payload<'static>> {
        let gsa = self.gsa(now, false, false, false, true);
        let mut p = vec![Payload::Gsa(gsa.to_wire()), Payload::Kd(kd.to_wire())];
        if !self.retired.is_empty() {
            let spis = self.retired.iter().map(|s| s.to_be_bytes().to_vec().into()).collect();
            p.push(Payload::Delete(Delete { protocol_id: ProtocolId::ESP, spi_size: 4, spis }));
        }
        p
    }

    /// §2.4.2: the GSA_INBAND_REKEY payloads for one member's IKE SA: the
    /// current TEKs wrapped under that SA's GSK_w, and a Delete of the TEKs
    /// they replace.
    pub fn inband_payloads(&mut self, now: Time, crypto: &dyn CryptoProvider, rng: &mut dyn Rng, kwa: KwaId, kwk: &[u8]) -> Result<Vec<Payload<'static>>, ProtoError> {
        self.ensure_keys(now, crypto, rng)?;
        let mut kd = KdContent::default();
        for t in &self.teks {
            kd.group.push((ProtocolId::ESP, t.spi.to_be_bytes().to_vec(), vec![WrappedKey::wrap(kwa, 0, 0, kwk, &t.keymat)?]));
        }
        Ok(self.tek_payloads(now, kd))
    }

    /// A new KEK (multicast on the old one). With `only_members`, its
    /// SA_KEY is wrapped under each remaining member's own WRAP_KEY instead
    /// of the old Rekey SA's GSK_w (§3.2.1), so a member not listed learns
    /// nothing.
    fn rekey_kek(&mut self, now: Time, crypto: &dyn CryptoProvider, rng: &mut dyn Rng, per_member: bool) -> Result<(), ProtoError> {
        let Some(old) = self.kek.take() else { return Ok(()) };
        let next_spi = old.next_spi;
        let new = match self.new_kek(now, crypto, rng, Some(next_spi))? {
            Some(k) => k,
            None => return Ok(()),
        };
        let mut keys = Vec::new();
        if per_member {
            for m in self.members.values() {
                if let Some((id, kwk)) = &m.wrap_key {
                    keys.push(WrappedKey::wrap(old.sa.kwa, 0, *id, kwk, &new.keymat)?);
                }
            }
        } else {
            keys.push(WrappedKey::wrap(old.sa.kwa, 0, 0, &old.sa.gsk_w, &new.keymat)?);
        }
        let mut kd = KdContent::default();
        kd.group.push((ProtocolId::GIKE_UPDATE, new.sa.spi.to_vec(), keys));
        // The policy of the new KEK, without GCAUTH (§4.4.2.1: it never
        // changes) and without TEKs (§3.2.1: not in the same message).
        self.kek = Some(new);
        let mut gsa = self.gsa(now, false, false, true, false);
        if let Some(k) = gsa.kek.as_mut() {
            k.initial_message_id = None;
        }
        let inner = vec![Payload::Gsa(gsa.to_wire()), Payload::Kd(kd.to_wire())];
        // Sent on the old Rekey SA: put it back for the seal.
        let new = self.kek.replace(old);
        self.send_rekey(now, rng, inner)?;
        self.kek = new;
        Ok(())
    }

    /// §3.2.1: exclude `member`: a new KEK it cannot unwrap, then new TEKs
    /// under that KEK. Returns its IKE SA (to close) if it has one.
    pub fn exclude(&mut self, now: Time, crypto: &dyn CryptoProvider, rng: &mut dyn Rng, member: &Identity) -> Result<Option<IkeSaHandle>, ProtoError> {
        let removed = self.members.remove(&member_key(member)).ok_or(ProtoError::Invalid("no such member"))?;
        // Its re-registration (§2.4.3: after a random delay) is refused.
        self.excluded.insert(member_key(member));
        self.stats.exclusions += 1;
        if self.kek.is_some() {
            self.rekey_kek(now, crypto, rng, true)?;
            self.rekey_teks(now, crypto, rng)?;
        }
        Ok(removed.ike_sa)
    }

    /// §2.5.1: Sender-IDs exhausted: every member is excluded (Delete ESP
    /// and GIKE_UPDATE with SPI 0) and the group starts over with new keys.
    fn reset_sids(&mut self, now: Time, crypto: &dyn CryptoProvider, rng: &mut dyn Rng, out: &mut VecDeque<Transmit>) -> Result<(), ProtoError> {
        if self.kek.is_some() {
            let inner = vec![
                Payload::Delete(Delete { protocol_id: ProtocolId::ESP, spi_size: 4, spis: vec![vec![0u8; 4].into()] }),
                Payload::Delete(Delete { protocol_id: ProtocolId::GIKE_UPDATE, spi_size: 16, spis: vec![vec![0u8; 16].into()] }),
            ];
            self.send_rekey(now, rng, inner)?;
            self.flush(now, out);
        }
        self.members.clear();
        self.next_sid = 0;
        self.teks.clear();
        self.kek = None;
        self.tek_generation += 1;
        self.stats.sid_resets += 1;
        self.ensure_keys(now, crypto, rng)
    }

    /// When the next TEK rekey is due.
    fn next_rekey(&self) -> Option<Time> {
        let margin = Duration::from_secs(u64::from(self.cfg.rekey_margin_secs));
        self.teks.iter().map(|t| t.created + Duration::from_secs(u64::from(self.cfg.teks[t.policy].lifetime_secs)).saturating_sub(margin)).min()
    }

    fn next_kek_rekey(&self) -> Option<Time> {
        let (k, p) = (self.kek.as_ref()?, self.cfg.kek.as_ref()?);
        let margin = Duration::from_secs(u64::from(self.cfg.rekey_margin_secs));
        Some(k.created + Duration::from_secs(u64::from(p.lifetime_secs)).saturating_sub(margin))
    }

    pub fn deadline(&self) -> Option<Time> {
        [self.sends.front().map(|s| s.0), self.next_rekey().filter(|_| self.cfg.kek.is_some()), self.next_kek_rekey()].into_iter().flatten().min()
    }

    fn flush(&mut self, now: Time, out: &mut VecDeque<Transmit>) {
        let Some(k) = &self.cfg.kek else { return };
        while self.sends.front().is_some_and(|s| s.0 <= now) {
            if let Some((_, payload)) = self.sends.pop_front() {
                out.push_back(Transmit { local: k.source, remote: k.destination, payload });
            }
        }
    }

    pub fn handle_timeout(&mut self, now: Time, crypto: &dyn CryptoProvider, rng: &mut dyn Rng, out: &mut VecDeque<Transmit>) {
        if self.cfg.kek.is_some() {
            // A failing rekey (no key material) is retried at the next
            // deadline; nothing else to do here.
            if self.next_kek_rekey().is_some_and(|t| t <= now) {
                let _ = self.rekey_kek(now, crypto, rng, false);
            }
            if self.next_rekey().is_some_and(|t| t <= now) {
                let _ = self.rekey_teks(now, crypto, rng);
            }
        }
        self.flush(now, out);
    }

    /// Operator view.
    pub fn info(&self) -> GroupInfo {
        GroupInfo {
            name: self.cfg.name.clone(),
            id: self.cfg.id.clone(),
            members: self
                .members
                .values()
                .map(|m| MemberInfo { identity: m.identity.clone(), sender: m.role == MemberRole::Sender, sender_ids: m.sender_ids.clone(), registered_at: m.registered_at })
                .collect(),
            tek_spis: self.teks.iter().map(|t| t.spi).collect(),
            tek_generation: self.tek_generation,
            kek_generation: self.kek.as_ref().map_or(0, |k| k.generation),
            next_message_id: self.kek.as_ref().map_or(0, |k| k.next_message_id),
            sids_allocated: self.next_sid,
            next_rekey: self.next_rekey(),
        }
    }

    /// Lets an excluded member register again.
    pub fn readmit(&mut self, member: &Identity) -> bool {
        self.excluded.remove(&member_key(member))
    }

    /// Forces a rekey now (operator command).
    pub fn force_rekey(&mut self, now: Time, crypto: &dyn CryptoProvider, rng: &mut dyn Rng, out: &mut VecDeque<Transmit>) -> Result<(), ProtoError> {
        self.rekey_teks(now, crypto, rng)?;
        self.flush(now, out);
        Ok(())
    }

    /// A copy of the current Rekey SA (tests: to forge and to decrypt).
    #[cfg(test)]
    pub(crate) fn kek_for_tests(&self, crypto: &dyn CryptoProvider) -> RekeySa {
        let (k, p) = (self.kek.as_ref().expect("KEK"), self.cfg.kek.as_ref().expect("KEK policy"));
        RekeySa::from_keymat(crypto, k.sa.spi, p.encr, p.key_bits, p.integ, p.kwa, &k.keymat).expect("KEK")
    }

    /// The KEK policy's current Rekey SA SPI (tests, listings).
    pub fn kek_spi(&self) -> Option<[u8; 16]> {
        self.kek.as_ref().map(|k| k.sa.spi)
    }

    /// Sends what is due now (after a command).
    pub fn flush_now(&mut self, now: Time, out: &mut VecDeque<Transmit>) {
        self.flush(now, out);
    }

    /// The Tek generation's age at `now` (for tests of the schedule).
    pub fn tek_generation(&self) -> u32 {
        self.tek_generation
    }
}
