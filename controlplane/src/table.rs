//! Programming the shared-memory SA table (DESIGN.md §3) from the endpoint's
//! Child SA events: the daemon is the table's single [`Writer`].
//!
//! Guarantees:
//! * Each Child SA becomes two slots: inbound (our SPI, `keys_in`, outer
//!   source = the peer) and outbound (the peer's SPI, `keys_out`, outer
//!   source = us, served prefixes = the remote selectors that are exact
//!   prefixes; otherwise the reader derives covering prefixes from the
//!   selectors). Both carry the cookie [`cookie`] (`"IK"` tag + Child SA
//!   handle) so a restarted daemon recognises them.
//! * UDP encapsulation (RFC 3948) is set when NAT was detected or IKE runs
//!   on the NAT-T port: strongSwan's kernel-libipsec sends ESP in UDP 4500
//!   whenever IKE floated there.
//! * Make before break (RFC 7296 §2.8): a rekeyed Child SA goes in with
//!   [`Writer::rekey`] (new inbound live, then new outbound, then the old
//!   outbound gone); the old inbound slot stays until the endpoint's
//!   `ChildSaDelete` for the old SA, so packets in flight still decrypt.
//! * Lifetimes by volume (RFC 4301 §4.4.2.1) and the sequence number about
//!   to run out (RFC 4303 §3.3.3) are read from the dataplane's counters by
//!   [`SaProgrammer::check_lifetimes`], which asks for one rekey at the soft
//!   limit and one delete at the hard limit. The daemon's tick polls
//!   through [`SaProgrammer::poll_due`], which visits only the Child SAs
//!   whose next check is due (a queue ordered by deadline): each is checked
//!   [`CHECK_EVERY`]; one without volume or packet limits whose counters
//!   did not move since its last check waits twice as long each time, up
//!   to [`CHECK_IDLE_MAX`] (an idle SA cannot reach a volume limit; the
//!   sequence-number space takes minutes to use up at line rate; inbound
//!   ESP that starts on an idle SA postpones DPD at most that much later). Time lifetimes are the
//!   endpoint's own timers. For RFC 8750 implicit-IV suites the IV is the
//!   sequence number, so the same rekey (at 7/8 of the 2^32 or 2^64
//!   space) and the dataplane's refusal to wrap keep every IV unique
//!   (RFC 8750 §2: rekey before the counter could repeat).
//! * RFC 9478 security labels go into both slots of a Child SA.
//! * The table is shared with the dataplane, which installs its static SAs
//!   (cookie tag `STAT`) at start, also while esprit-ike runs: both write in
//!   short transactions ([`Writer::lock`]), and this writer is restricted to
//!   `"IK"` cookies, so neither can touch the other's slots. A Child SA's
//!   slots go in (or are rekeyed, or removed) in one transaction. A
//!   transaction waits at most [`sa_table::DEFAULT_LOCK_WAIT`] for the
//!   dataplane's; if it cannot have the table by then, an install fails
//!   (the Child SA is deleted, as for any other install failure) and a
//!   delete is queued and retried on the housekeeping tick
//!   ([`SaProgrammer::retry_deletes`]): keys never stay in the table
//!   unnoticed.
//! * Restart (DESIGN.md §1, §8): after a restart every slot tagged `"IK"`
//!   starts as an orphan. With a state store (`crate::store`) the restored
//!   IKE SAs take their Child SAs' slots back ([`SaProgrammer::adopt`], by
//!   cookie and SPIs), jumping the outbound sequence counter. What is left
//!   (no store, or Child SAs the store did not know) is kept for
//!   `orphan_grace` (traffic keeps flowing while peers notice, by DPD or
//!   retransmission timeouts, and set up new SAs, whose outbound install
//!   then wins the prefixes), then deleted. Deleting at once (`grace = 0`)
//!   is the strict choice; keeping them forever would leave keys no IKE SA
//!   can ever rekey or delete.
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use ike_proto::{ChildSaHandle, ChildSaInstall, EspSuite, IkeSaHandle, Lifetimes, Mode, Time, TrafficSelector};
use ike_wire::{EncrId, IntegId};
use sa_table::{
    Direction, IpPrefix, Mode as TMode, RepairReport, SaFlags, SaId, SaParams, TableConfig, TrafficSelector as TTs, TransformId,
    WriteError, Writer, MAX_SERVED_PREFIXES, MAX_TS_PER_SIDE,
};

/// High 16 bits of the cookie of every slot esprit-ike installs: `"IK"`.
pub const COOKIE_TAG: u64 = 0x494b << 48;

/// The cookie of a Child SA's two slots.
pub fn cookie(child: ChildSaHandle) -> u64 {
    COOKIE_TAG | (child.0 & 0xffff_ffff_ffff)
}

/// Why a Child SA could not be programmed.
#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    #[error("the dataplane has no ESP transform for {0:?} with integrity {1:?}")]
    UnsupportedSuite(EncrId, IntegId),
    #[error("key material of {0} octets does not fit the suite")]
    BadKey(usize),
    #[error("outer addresses of different families ({0} / {1})")]
    MixedFamilies(IpAddr, IpAddr),
    #[error("security label of {0} octets does not fit the table")]
    LabelTooLong(usize),
    #[error("SA table: {0}")]
    Table(#[from] WriteError),
    #[error("SA table: {0}")]
    Attach(#[from] sa_table::AttachError),
}

/// One Child SA as programmed.
#[derive(Clone, Debug)]
pub struct ChildEntry {
    pub ike_sa: IkeSaHandle,
    pub child_sa: ChildSaHandle,
    pub spi_in: u32,
    pub spi_out: u32,
    pub inbound: SaId,
    /// `None` once a rekey replaced it (the successor owns the prefixes).
    pub outbound: Option<SaId>,
    pub suite: EspSuite,
    pub mode: Mode,
    pub udp_encap: bool,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub ts_local: Vec<TrafficSelector>,
    pub ts_remote: Vec<TrafficSelector>,
    pub lifetime: Lifetimes,
    /// RFC 9478 label (NUL-terminated) of both slots.
    pub sec_label: Option<Vec<u8>>,
    /// Diet-ESP profile of both slots.
    pub compression: Option<ike_proto::compression::DietProfile>,
    pub installed_at: Time,
    /// When the housekeeping tick last saw the packet counters move (the
    /// dataplane's own last-use stamp counts from its start, not the epoch).
    pub last_active: Option<Time>,
    last_pkts: u64,
    last_in_pkts: u64,
    rekey_asked: bool,
    delete_asked: bool,
    /// When [`SaProgrammer::poll_due`] looks at it next, and the interval
    /// that led there.
    next_check: Time,
    check_every: Duration,
}

/// How often a Child SA's counters are polled while they move, or while
/// it has volume or packet limits.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// The longest wait between two polls of an idle Child SA.
pub const CHECK_IDLE_MAX: Duration = Duration::from_secs(8);

/// What one [`SaProgrammer::poll_due`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Polled {
    pub actions: Vec<LifetimeAction>,
    /// IKE SAs whose Child SAs received ESP since their last poll (sorted,
    /// no duplicates).
    pub inbound_moved: Vec<IkeSaHandle>,
    /// Child SAs looked at.
    pub visited: usize,
}

/// Counters of one Child SA, from the dataplane's per-SA state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChildCounters {
    pub in_pkts: u64,
    pub in_bytes: u64,
    pub out_pkts: u64,
    pub out_bytes: u64,
    /// Next outbound sequence number.
    pub seq_next: u64,
    pub seq_exhausted: u64,
    /// The dataplane's last-use stamp (seconds on its own clock).
    pub last_use_secs: u64,
    /// The AEAD backends the dataplane's workers built each direction on
    /// (empty until a dataplane has), from the SA's dataplane-owned state.
    pub in_backends: sa_table::Backends,
    pub out_backends: sa_table::Backends,
}

/// What [`SaProgrammer::check_lifetimes`] asks of the endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LifetimeAction {
    Rekey { ike_sa: IkeSaHandle, child_sa: ChildSaHandle },
    Delete { ike_sa: IkeSaHandle, child_sa: ChildSaHandle },
}

/// How far an adopted outbound SA's sequence counter jumps (see
/// [`SaProgrammer::adopt`]): 2^20 packets, more than a worker sends in a
/// tenth of a second at line rate, a small part of the 2^32 space.
pub const ADOPT_SEQ_MARGIN: u32 = 1 << 20;

/// What [`SaProgrammer::adopt`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdoptResult {
    /// Both slots; the outbound counter now at `seq_next`.
    Adopted { seq_next: u64 },
    /// The inbound slot only (the outbound one was replaced or lost).
    InboundOnly,
    /// No slot: the Child SA has no dataplane state.
    Missing,
}

/// A slot left by an earlier esprit-ike, deleted at `until`.
#[derive(Clone, Copy, Debug)]
pub struct Orphan {
    pub id: SaId,
    pub spi: u32,
    pub until: Time,
}

/// The table writer and what esprit-ike put into it.
pub struct SaProgrammer {
    writer: Writer,
    children: BTreeMap<ChildSaHandle, ChildEntry>,
    /// (IKE SA, Child SA) of every entry: an IKE SA's Child SAs without a
    /// scan.
    by_ike: BTreeSet<(IkeSaHandle, ChildSaHandle)>,
    /// (next check, Child SA) of every entry ([`Self::poll_due`]).
    checks: BTreeSet<(Time, ChildSaHandle)>,
    orphans: Vec<Orphan>,
    /// Slots whose delete could not get the table (another writer held it
    /// too long): retried on every housekeeping tick.
    deferred: Vec<SaId>,
    replay_window_pkts: u32,
    natt_port: u16,
    /// RFC 9838 group SAs (TEKs) by SPI.
    groups: BTreeMap<u32, GroupEntry>,
}

/// Bit 47 of a group slot's cookie (below the `"IK"` tag): the low 32 bits
/// are then the TEK's SPI, not a Child SA handle.
pub const GROUP_COOKIE_BIT: u64 = 1 << 47;

/// One group SA (TEK) as programmed: an inbound slot at once, an outbound
/// one for a sender once its activation delay (GWP_ATD) passed.
#[derive(Clone, Debug)]
pub struct GroupEntry {
    pub group: ike_proto::group::GroupId,
    pub generation: u32,
    pub spi: u32,
    pub suite: EspSuite,
    pub src: TrafficSelector,
    pub dst: TrafficSelector,
    pub inbound: Option<SaId>,
    pub outbound: Option<SaId>,
    pub sender_id: Option<u32>,
    pub sender_id_bits: u8,
    pub installed_at: Time,
}

impl SaProgrammer {
    /// Creates or takes over the table at `path` and files every live
    /// `"IK"` slot as an orphan kept until `now + orphan_grace`. Static
    /// SAs (the dataplane's) are left alone.
    pub fn open(
        path: &Path,
        capacity: u32,
        replay_window_pkts: u32,
        natt_port: u16,
        now: Time,
        orphan_grace: Duration,
    ) -> Result<(Self, RepairReport), ProgramError> {
        let (mut writer, report) = Writer::open(path, &TableConfig { capacity, ..TableConfig::default() })?;
        writer.restrict_to_cookies(0xffff << 48, COOKIE_TAG);
        let until = now + orphan_grace;
        let orphans = writer
            .live()
            .filter(|(_, p)| p.cookie & (0xffff << 48) == COOKIE_TAG)
            .map(|(id, p)| Orphan { id, spi: p.spi, until })
            .collect();
        let mut s = Self {
            writer,
            children: BTreeMap::new(),
            by_ike: BTreeSet::new(),
            checks: BTreeSet::new(),
            orphans,
            deferred: Vec::new(),
            replay_window_pkts,
            natt_port,
            groups: BTreeMap::new(),
        };
        if orphan_grace.is_zero() {
            s.expire_orphans(now);
        }
        Ok((s, report))
    }

    pub fn orphans(&self) -> &[Orphan] {
        &self.orphans
    }

    /// Deletes orphans whose grace is over; returns how many.
    pub fn expire_orphans(&mut self, now: Time) -> usize {
        let (due, keep): (Vec<Orphan>, Vec<Orphan>) = self.orphans.iter().partition(|o| o.until <= now);
        self.orphans = keep;
        let ids: Vec<SaId> = due.iter().map(|o| o.id).collect();
        self.delete_slots(&ids);
        due.len()
    }

    /// Deletes `ids` in one transaction; those it cannot delete for want of
    /// the table are deferred. Stale ids were removed already: nothing to do.
    fn delete_slots(&mut self, ids: &[SaId]) {
        if ids.is_empty() {
            return;
        }
        match self.writer.lock() {
            Ok(mut w) => {
                for &id in ids {
                    let _ = w.delete(id);
                }
            }
            Err(_) => self.deferred.extend_from_slice(ids),
        }
    }

    /// Retries the deletes that could not get the table; returns how many
    /// are still waiting.
    pub fn retry_deletes(&mut self) -> usize {
        let ids = std::mem::take(&mut self.deferred);
        self.delete_slots(&ids);
        self.deferred.len()
    }

    /// Slot deletes waiting for the table.
    pub fn deferred_deletes(&self) -> usize {
        self.deferred.len()
    }

    /// Programs a new or rekeyed Child SA.
    pub fn install(&mut self, now: Time, i: &ChildSaInstall) -> Result<&ChildEntry, ProgramError> {
        let inbound = self.slot(i, Direction::INBOUND)?;
        let outbound = self.slot(i, Direction::OUTBOUND)?;
        let old_out = i.rekey_of.and_then(|h| self.children.get(&h)).and_then(|e| e.outbound);
        // Both slots (and a rekey's delete) in one transaction.
        let mut w = self.writer.lock()?;
        let (in_id, out_id) = match old_out {
            Some(old) if w.get(old).is_ok() => {
                let r = w.rekey(old, &inbound, &outbound)?;
                if let Some(e) = i.rekey_of.and_then(|h| self.children.get_mut(&h)) {
                    e.outbound = None;
                }
                (r.inbound, r.outbound)
            }
            _ => {
                let a = w.install(&inbound)?;
                match w.install(&outbound) {
                    Ok(b) => (a, b),
                    Err(e) => {
                        let _ = w.delete(a);
                        return Err(e.into());
                    }
                }
            }
        };
        drop(w);
        let h = self.file_child(now, i, in_id, Some(out_id));
        Ok(&self.children[&h])
    }

    /// Records a Child SA whose slots are in the table (installed or
    /// adopted) and files it by IKE SA and for the housekeeping poll (only
    /// due SAs are polled).
    fn file_child(&mut self, now: Time, i: &ChildSaInstall, inbound: SaId, outbound: Option<SaId>) -> ChildSaHandle {
        let e = ChildEntry {
            ike_sa: i.ike_sa,
            child_sa: i.child_sa,
            spi_in: i.spi_in,
            spi_out: i.spi_out,
            inbound,
            outbound,
            suite: i.suite,
            mode: i.mode,
            udp_encap: self.udp_encap(i),
            local: i.local,
            remote: i.remote,
            ts_local: i.ts_local.clone(),
            ts_remote: i.ts_remote.clone(),
            lifetime: i.lifetime,
            sec_label: i.sec_label.clone(),
            compression: i.compression,
            installed_at: now,
            last_active: None,
            last_pkts: 0,
            last_in_pkts: 0,
            rekey_asked: false,
            delete_asked: false,
            next_check: now + CHECK_EVERY,
            check_every: CHECK_EVERY,
        };
        let h = i.child_sa;
        if let Some(old) = self.children.insert(h, e) {
            self.unfile(&old);
        }
        self.by_ike.insert((i.ike_sa, h));
        self.checks.insert((now + CHECK_EVERY, h));
        h
    }

    /// Takes over the slots an earlier esprit-ike installed for a Child SA
    /// restored from the state store (`crate::store`): the orphans with
    /// its cookie and SPIs stop being orphans. `i` carries no keys (they
    /// are in the slots). The outbound sequence counter jumps
    /// [`ADOPT_SEQ_MARGIN`] ahead. Returns whether both slots were found;
    /// with only one, it is adopted and the caller rekeys.
    pub fn adopt(&mut self, now: Time, i: &ChildSaInstall) -> AdoptResult {
        let want = cookie(i.child_sa);
        let mut inbound = None;
        let mut outbound = None;
        for o in &self.orphans {
            let Ok(p) = self.writer.get(o.id) else { continue };
            if p.cookie != want {
                continue;
            }
            if p.direction == Direction::INBOUND && p.spi == i.spi_in {
                inbound = Some(o.id);
            } else if p.direction == Direction::OUTBOUND && p.spi == i.spi_out {
                outbound = Some(o.id);
            }
        }
        let Some(in_id) = inbound else {
            return AdoptResult::Missing;
        };
        self.orphans.retain(|o| Some(o.id) != inbound && Some(o.id) != outbound);
        let mut jumped = None;
        if let Some(Ok(s)) = outbound.map(|o| self.writer.state(o)) {
            // The counter in the table is authoritative: the dataplane
            // reserves numbers in it (one atomic add) before it sends. The
            // jump costs a gap the receiver's window absorbs and makes a
            // reused (sequence number, key) pair impossible even if this
            // slot's counter were behind what was sent, as a counter taken
            // from a snapshot would be (RFC 4303 §3.3.3, RFC 8750 §2).
            // A reservation past the limit is refused and counted, which
            // the lifetime check turns into a rekey.
            let _ = s.reserve_seq(ADOPT_SEQ_MARGIN, i.suite.esn);
            jumped = Some(s.seq_next());
        }
        self.file_child(now, i, in_id, outbound);
        match jumped {
            Some(seq_next) => AdoptResult::Adopted { seq_next },
            None => AdoptResult::InboundOnly,
        }
    }

    /// Removes both slots of a Child SA (those still there).
    pub fn delete(&mut self, child: ChildSaHandle) -> Option<ChildEntry> {
        let e = self.children.remove(&child)?;
        self.unfile(&e);
        let ids: Vec<SaId> = std::iter::once(e.inbound).chain(e.outbound).collect();
        self.delete_slots(&ids);
        Some(e)
    }

    /// A Child SA moved to another IKE SA (IKE SA rekey, RFC 7296 §2.18).
    pub fn reparent(&mut self, from: IkeSaHandle, to: IkeSaHandle) {
        for c in self.children_of(from) {
            self.by_ike.remove(&(from, c));
            self.by_ike.insert((to, c));
            if let Some(e) = self.children.get_mut(&c) {
                e.ike_sa = to;
            }
        }
    }

    /// RFC 4555 MOBIKE: every Child SA of `ike` now goes between `local`
    /// and `remote` (UDP-encapsulated when `udp_encap`, or when `local` is
    /// the NAT-T port, as at install). Both slots are updated in place
    /// ([`Writer::update`]): same SPIs, keys, sequence counter and replay
    /// window. Make before break: the inbound slots first (inbound ESP is
    /// found by SPI alone, so they accept the new path before and after),
    /// then the outbound ones, where each worker switches at one journal
    /// entry; all in one transaction. Returns how many Child SAs moved.
    pub fn move_ike_sa(&mut self, ike: IkeSaHandle, local: SocketAddr, remote: SocketAddr, udp_encap: bool) -> Result<usize, ProgramError> {
        let (l, r) = (local.ip(), remote.ip());
        if l.is_ipv4() != r.is_ipv4() {
            return Err(ProgramError::MixedFamilies(l, r));
        }
        let encap = udp_encap || local.port() == self.natt_port;
        let handles = self.children_of(ike);
        let ids: Vec<(SaId, Direction)> = handles
            .iter()
            .filter_map(|h| self.children.get(h))
            .flat_map(|e| std::iter::once((e.inbound, Direction::INBOUND)).chain(e.outbound.map(|o| (o, Direction::OUTBOUND))))
            .collect();
        let mut w = self.writer.lock()?;
        for dir in [Direction::INBOUND, Direction::OUTBOUND] {
            for &(id, _) in ids.iter().filter(|(_, d)| *d == dir) {
                let mut p = match w.get(id) {
                    Ok(p) => p,
                    // Gone meanwhile (a delete queued for the next tick).
                    Err(WriteError::Stale(_)) => continue,
                    Err(e) => return Err(e.into()),
                };
                let inbound = dir == Direction::INBOUND;
                if inbound {
                    p.set_outer(r, l);
                } else {
                    p.set_outer(l, r);
                }
                if encap {
                    p.flags = p.flags | SaFlags::UDP_ENCAP;
                    (p.udp_src_port, p.udp_dst_port) = if inbound { (remote.port(), local.port()) } else { (local.port(), remote.port()) };
                } else {
                    p.flags = SaFlags(p.flags.0 & !SaFlags::UDP_ENCAP.0);
                    (p.udp_src_port, p.udp_dst_port) = (0, 0);
                }
                let done = w.update(id, &p);
                p.wipe_key();
                done?;
            }
        }
        drop(w);
        for h in &handles {
            if let Some(e) = self.children.get_mut(h) {
                e.local = local;
                e.remote = remote;
                e.udp_encap = encap;
            }
        }
        Ok(handles.len())
    }

    /// The Child SAs of an IKE SA, from the index.
    pub fn children_of(&self, ike: IkeSaHandle) -> Vec<ChildSaHandle> {
        self.by_ike.range((ike, ChildSaHandle(0))..=(ike, ChildSaHandle(u64::MAX))).map(|(_, c)| *c).collect()
    }

    /// Removes an entry from the indexes.
    fn unfile(&mut self, e: &ChildEntry) {
        self.by_ike.remove(&(e.ike_sa, e.child_sa));
        self.checks.remove(&(e.next_check, e.child_sa));
    }

    /// Deletes every Child SA of an IKE SA that is gone (a safety net: the
    /// endpoint deletes them by event first).
    pub fn delete_ike_sa(&mut self, ike: IkeSaHandle) -> usize {
        let gone = self.children_of(ike);
        for c in &gone {
            self.delete(*c);
        }
        gone.len()
    }

    /// RFC 9838: programs a group SA's inbound slot (receivers, mesh
    /// sites) and, with `outbound_now`, a sender's outbound slot. Tunnel mode
    /// preserves the inner addresses (RFC 5374 §3.1); a multi-sender SA has
    /// no replay window; a sender's IVs carry its Sender-ID (RFC 6054).
    pub fn install_group(&mut self, now: Time, i: &ike_proto::group::GroupSaInstall, local: IpAddr, outbound_now: bool) -> Result<&GroupEntry, ProgramError> {
        use ike_proto::group::GroupSaDirection as D;
        let inbound = matches!(i.direction, D::Inbound | D::Both).then(|| self.group_slot(i, Direction::INBOUND, local)).transpose()?;
        let mut w = self.writer.lock()?;
        let in_id = match &inbound {
            Some(p) => Some(w.install(p)?),
            None => None,
        };
        drop(w);
        self.groups.insert(
            i.spi,
            GroupEntry {
                group: i.group.clone(),
                generation: i.generation,
                spi: i.spi,
                suite: i.suite,
                src: i.src,
                dst: i.dst,
                inbound: in_id,
                outbound: None,
                sender_id: i.sender_ids.first().copied(),
                sender_id_bits: i.sender_id_bits,
                installed_at: now,
            },
        );
        if outbound_now && matches!(i.direction, D::Outbound | D::Both) {
            self.activate_group_outbound(i, local)?;
        }
        Ok(&self.groups[&i.spi])
    }

    /// A sender's outbound slot of a group SA (at install, or GWP_ATD
    /// later); the outbound slot of the group's older TEK for the same
    /// policy goes in the same transaction (its inbound slot stays until
    /// the GCKS's Delete, GWP_DTD later).
    pub fn activate_group_outbound(&mut self, i: &ike_proto::group::GroupSaInstall, local: IpAddr) -> Result<(), ProgramError> {
        if !self.groups.contains_key(&i.spi) {
            return Ok(());
        }
        let p = self.group_slot(i, Direction::OUTBOUND, local)?;
        let old: Vec<(u32, SaId)> = self
            .groups
            .values()
            .filter(|e| e.spi != i.spi && e.group == i.group && e.src == i.src && e.dst == i.dst)
            .filter_map(|e| e.outbound.map(|o| (e.spi, o)))
            .collect();
        let mut w = self.writer.lock()?;
        let id = w.install(&p)?;
        for (_, o) in &old {
            let _ = w.delete(*o);
        }
        drop(w);
        for (spi, _) in old {
            if let Some(e) = self.groups.get_mut(&spi) {
                e.outbound = None;
            }
        }
        if let Some(e) = self.groups.get_mut(&i.spi) {
            e.outbound = Some(id);
        }
        Ok(())
    }

    /// Removes a group SA's slots.
    pub fn delete_group(&mut self, spi: u32) -> Option<GroupEntry> {
        let e = self.groups.remove(&spi)?;
        let ids: Vec<SaId> = e.inbound.into_iter().chain(e.outbound).collect();
        self.delete_slots(&ids);
        Some(e)
    }

    pub fn group_sas(&self) -> impl Iterator<Item = &GroupEntry> {
        self.groups.values()
    }

    /// (inbound, outbound) packets of a group SA, from the dataplane.
    pub fn group_counters(&self, e: &GroupEntry) -> (u64, u64) {
        let pk = |id: Option<SaId>| id.and_then(|i| self.writer.state(i).ok()).map_or(0, |s| s.pkts());
        (pk(e.inbound), pk(e.outbound))
    }

    fn group_slot(&self, i: &ike_proto::group::GroupSaInstall, dir: Direction, local: IpAddr) -> Result<SaParams, ProgramError> {
        let mut p = SaParams::zeroed();
        p.cookie = COOKIE_TAG | GROUP_COOKIE_BIT | u64::from(i.spi);
        p.direction = dir;
        p.transform = transform(&i.suite)?;
        p.spi = i.spi;
        let km: &[u8] = &i.keys.encr;
        if km.len() < 4 + 16 || !p.transform.key_lens().contains(&((km.len() - 4) as u8)) {
            return Err(ProgramError::BadKey(km.len()));
        }
        let (key, salt) = km.split_at(km.len() - 4);
        p.set_key(key, [salt[0], salt[1], salt[2], salt[3]]);
        let inbound = dir == Direction::INBOUND;
        if i.dst.start_addr.is_ipv4() != local.is_ipv4() {
            return Err(ProgramError::MixedFamilies(local, i.dst.start_addr));
        }
        // The template's addresses; address preservation replaces them.
        p.set_outer(local, local);
        if i.transport {
            p.mode = TMode::TRANSPORT;
        } else {
            p.mode = TMode::TUNNEL;
            p.flags = SaFlags::PRESERVE_SRC | SaFlags::PRESERVE_DST;
        }
        if inbound && i.dst.start_addr == i.dst.end_addr && i.dst.start_addr.is_multicast() {
            // RFC 4301 §4.1 / RFC 5374 §5.2: a multicast SA is looked up by
            // SPI and group address.
            p.set_outer(local, i.dst.start_addr);
            p.inbound_match = sa_table::InboundMatch::SPI_DST;
        }
        p.replay_window_pkts = match (inbound, i.sequence) {
            (true, ike_proto::group::SequenceMode::Sequential) => self.replay_window_pkts,
            _ => 0,
        };
        p.initial_seq = 1;
        if !inbound && i.sender_id_bits > 0 {
            if let Some(sid) = i.sender_ids.first() {
                p.sender_id = *sid;
                p.sender_id_bits = i.sender_id_bits;
            }
        }
        let (l, r) = if inbound { (i.dst, i.src) } else { (i.src, i.dst) };
        p.ts_local[0] = table_ts(&l);
        p.ts_local_count = 1;
        p.ts_remote[0] = table_ts(&r);
        p.ts_remote_count = 1;
        if !inbound {
            if let Some(q) = as_prefix(&i.dst) {
                p.served[0] = q;
                p.served_count = 1;
            }
        }
        Ok(p)
    }

    /// Number of Child SAs programmed.
    pub fn child_count(&self) -> usize {
        self.children.len()
    }

    pub fn children(&self) -> impl Iterator<Item = &ChildEntry> {
        self.children.values()
    }

    pub fn child(&self, h: ChildSaHandle) -> Option<&ChildEntry> {
        self.children.get(&h)
    }

    /// The dataplane's counters for a Child SA.
    pub fn counters(&self, e: &ChildEntry) -> ChildCounters {
        let mut c = ChildCounters::default();
        if let Ok(s) = self.writer.state(e.inbound) {
            c.in_pkts = s.pkts();
            c.in_bytes = s.bytes();
            c.last_use_secs = s.last_use_secs();
            c.in_backends = s.backends();
        }
        if let Some(Ok(s)) = e.outbound.map(|o| self.writer.state(o)) {
            c.out_backends = s.backends();
            c.out_pkts = s.pkts();
            c.out_bytes = s.bytes();
            c.seq_next = s.seq_next();
            c.seq_exhausted = s.seq_exhausted();
            c.last_use_secs = c.last_use_secs.max(s.last_use_secs());
        }
        c
    }

    /// Volume and sequence-number lifetimes of every Child SA: at most one
    /// rekey and one delete asked per Child SA. Also notes when traffic
    /// last moved. (The daemon polls only due ones: [`Self::poll_due`].)
    pub fn check_lifetimes(&mut self, now: Time) -> Vec<LifetimeAction> {
        let handles: Vec<ChildSaHandle> = self.children.keys().copied().collect();
        handles.into_iter().filter_map(|h| self.check_child(h, now).0).collect()
    }

    /// IKE SAs whose Child SAs received ESP since the last look, of every
    /// Child SA (sorted, no duplicates).
    pub fn inbound_moved(&mut self) -> Vec<IkeSaHandle> {
        let handles: Vec<ChildSaHandle> = self.children.keys().copied().collect();
        let mut out: Vec<IkeSaHandle> = handles.into_iter().filter_map(|h| self.inbound_moved_of(h)).collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// What [`Self::check_lifetimes`] and [`Self::inbound_moved`] find, for
    /// the Child SAs whose next check is due at `now` only; each is filed
    /// again (see the module's guarantees for the interval).
    pub fn poll_due(&mut self, now: Time) -> Polled {
        let mut p = Polled::default();
        while let Some(&(at, h)) = self.checks.first() {
            if at > now {
                break;
            }
            self.checks.pop_first();
            p.visited += 1;
            let (action, moved) = self.check_child(h, now);
            p.actions.extend(action);
            p.inbound_moved.extend(self.inbound_moved_of(h));
            let Some(e) = self.children.get_mut(&h) else { continue };
            let l = e.lifetime;
            let limited = l.rekey_bytes != 0 || l.hard_bytes != 0 || l.rekey_packets != 0 || l.hard_packets != 0;
            e.check_every = if moved || limited { CHECK_EVERY } else { (e.check_every * 2).min(CHECK_IDLE_MAX) };
            e.next_check = now + e.check_every;
            self.checks.insert((e.next_check, h));
        }
        p.inbound_moved.sort_unstable();
        p.inbound_moved.dedup();
        p
    }

    /// One Child SA's lifetime check; also whether its counters moved.
    fn check_child(&mut self, h: ChildSaHandle, now: Time) -> (Option<LifetimeAction>, bool) {
        let Some(e) = self.children.get(&h) else { return (None, false) };
        let c = self.counters(e);
        let l = e.lifetime;
        let bytes = c.in_bytes.max(c.out_bytes);
        let pkts = c.in_pkts.max(c.out_pkts);
        let over = |limit: u64, v: u64| limit != 0 && v >= limit;
        // RFC 4303 §3.3.3: a sender must rekey before the counter
        // cycles; ask at 7/8 of the space (the hard stop is the
        // dataplane's, counted in seq_exhausted).
        let space: u64 = if e.suite.esn { u64::MAX } else { 1 << 32 };
        let seq_soft = c.seq_next >= space - space / 8 || c.seq_exhausted > 0;
        let hard = over(l.hard_bytes, bytes) || over(l.hard_packets, pkts);
        let soft = over(l.rekey_bytes, bytes) || over(l.rekey_packets, pkts) || seq_soft;
        let (ike_sa, child_sa) = (e.ike_sa, e.child_sa);
        let Some(e) = self.children.get_mut(&h) else { return (None, false) };
        let moved = c.in_pkts + c.out_pkts;
        let did_move = moved != e.last_pkts;
        if did_move {
            e.last_pkts = moved;
            e.last_active = Some(now);
        }
        if hard && !e.delete_asked {
            e.delete_asked = true;
            (Some(LifetimeAction::Delete { ike_sa, child_sa }), did_move)
        } else if soft && !e.rekey_asked && !e.delete_asked {
            e.rekey_asked = true;
            (Some(LifetimeAction::Rekey { ike_sa, child_sa }), did_move)
        } else {
            (None, did_move)
        }
    }

    /// The IKE SA of Child SA `h` if ESP came in on it since the last look.
    fn inbound_moved_of(&mut self, h: ChildSaHandle) -> Option<IkeSaHandle> {
        let e = self.children.get_mut(&h)?;
        let pkts = self.writer.state(e.inbound).ok()?.pkts();
        (pkts != e.last_in_pkts).then(|| {
            e.last_in_pkts = pkts;
            e.ike_sa
        })
    }

    /// The NAT-T port: ESP from a local address on it is UDP-encapsulated.
    pub fn natt_port(&self) -> u16 {
        self.natt_port
    }

    pub fn live_slots(&self) -> usize {
        self.writer.live_count()
    }

    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    fn udp_encap(&self, i: &ChildSaInstall) -> bool {
        i.udp_encap || i.local.port() == self.natt_port
    }

    /// The slot record of one direction.
    fn slot(&self, i: &ChildSaInstall, dir: Direction) -> Result<SaParams, ProgramError> {
        let mut p = SaParams::zeroed();
        p.cookie = cookie(i.child_sa);
        p.direction = dir;
        p.transform = transform(&i.suite)?;
        let inbound = dir == Direction::INBOUND;
        let (spi, keys) = if inbound { (i.spi_in, &i.keys_in) } else { (i.spi_out, &i.keys_out) };
        p.spi = spi;
        let km: &[u8] = &keys.encr;
        if km.len() < 4 + 16 || !p.transform.key_lens().contains(&((km.len() - 4) as u8)) {
            return Err(ProgramError::BadKey(km.len()));
        }
        let (key, salt) = km.split_at(km.len() - 4);
        p.set_key(key, [salt[0], salt[1], salt[2], salt[3]]);
        let mut flags = SaFlags(0);
        if i.suite.esn {
            flags = flags | SaFlags::ESN;
        }
        if self.udp_encap(i) {
            flags = flags | SaFlags::UDP_ENCAP;
            // Outbound: from our NAT-T port to the peer's; inbound as received.
            (p.udp_src_port, p.udp_dst_port) =
                if inbound { (i.remote.port(), i.local.port()) } else { (i.local.port(), i.remote.port()) };
        }
        p.flags = flags;
        p.mode = match i.mode {
            Mode::Tunnel => TMode::TUNNEL,
            Mode::Transport => TMode::TRANSPORT,
        };
        let (l, r) = (i.local.ip(), i.remote.ip());
        if l.is_ipv4() != r.is_ipv4() {
            return Err(ProgramError::MixedFamilies(l, r));
        }
        if inbound {
            p.set_outer(r, l);
        } else {
            p.set_outer(l, r);
        }
        p.replay_window_pkts = if inbound { self.replay_window_pkts } else { 0 };
        // RFC 4303 §3.3.3: the first packet sent carries 1.
        p.initial_seq = 1;
        p.lifetime = sa_table::Lifetimes {
            soft_bytes: i.lifetime.rekey_bytes,
            hard_bytes: i.lifetime.hard_bytes,
            soft_pkts: i.lifetime.rekey_packets,
            hard_pkts: i.lifetime.hard_packets,
            soft_secs: i.lifetime.rekey_secs,
            hard_secs: i.lifetime.hard_secs,
        };
        let n = i.ts_local.len().min(MAX_TS_PER_SIDE);
        for (k, t) in i.ts_local.iter().take(n).enumerate() {
            p.ts_local[k] = table_ts(t);
        }
        p.ts_local_count = n as u8;
        let n = i.ts_remote.len().min(MAX_TS_PER_SIDE);
        for (k, t) in i.ts_remote.iter().take(n).enumerate() {
            p.ts_remote[k] = table_ts(t);
        }
        p.ts_remote_count = n as u8;
        if let Some(l) = &i.sec_label {
            // RFC 9478: the label is one more selector of both directions.
            if l.len() > sa_table::MAX_SEC_LABEL_BYTES {
                return Err(ProgramError::LabelTooLong(l.len()));
            }
            p.sec_label[..l.len()].copy_from_slice(l);
            p.sec_label_len = l.len() as u8;
        }
        if let Some(c) = &i.compression {
            // Both slots carry the negotiated AfRGs; the dataplane derives
            // the rules from them and the slot's selectors (diet-esp-07 §4.2).
            use ike_proto::compression::Afrg;
            p.compression = sa_table::Compression {
                profile: 1,
                dscp_cda: c.get(Afrg::DscpCda),
                ecn_cda: c.get(Afrg::EcnCda),
                flow_label_cda: c.get(Afrg::FlowLabelCda),
                alignment: c.get(Afrg::Alignment),
                esp_trailer: c.get(Afrg::EspTrailer),
                esp_spi_lsb: c.get(Afrg::EspSpiLsb),
                esp_sn_lsb: c.get(Afrg::EspSnLsb),
                ..sa_table::Compression::default()
            };
        }
        if !inbound {
            // Served prefixes = the remote selectors, when each is an exact
            // prefix; otherwise left to the reader, which covers the
            // selectors' ranges itself.
            let prefixes: Option<Vec<IpPrefix>> = i.ts_remote.iter().map(as_prefix).collect();
            if let Some(ps) = prefixes.filter(|v| v.len() <= MAX_SERVED_PREFIXES) {
                for (k, q) in ps.iter().enumerate() {
                    p.served[k] = *q;
                }
                p.served_count = ps.len() as u8;
            }
        }
        Ok(p)
    }
}

/// ESP transform as the dataplane names it (IANA ENCR IDs: 20, 28, and the
/// RFC 8750 implicit-IV 30 and 31).
pub fn transform(s: &EspSuite) -> Result<TransformId, ProgramError> {
    if s.integ != IntegId::NONE {
        return Err(ProgramError::UnsupportedSuite(s.encr, s.integ));
    }
    match s.encr.0 {
        20 => Ok(TransformId::AES_GCM_16),
        28 => Ok(TransformId::CHACHA20_POLY1305),
        30 => Ok(TransformId::AES_GCM_16_IIV),
        31 => Ok(TransformId::CHACHA20_POLY1305_IIV),
        _ => Err(ProgramError::UnsupportedSuite(s.encr, s.integ)),
    }
}

fn table_ts(t: &TrafficSelector) -> TTs {
    let mut x = TTs::range(t.start_addr, t.end_addr);
    x.ip_proto = t.ip_protocol;
    x.start_port = t.start_port;
    x.end_port = t.end_port;
    x
}

/// The prefix length of the selector's address range, if it is exactly
/// one prefix.
pub fn prefix_len(t: &TrafficSelector) -> Option<u8> {
    as_prefix(t).map(|p| p.len)
}

/// The selector as one prefix, if its address range is exactly one.
fn as_prefix(t: &TrafficSelector) -> Option<IpPrefix> {
    let (s, e, width) = match (t.start_addr, t.end_addr) {
        (IpAddr::V4(s), IpAddr::V4(e)) => (u128::from(u32::from(s)), u128::from(u32::from(e)), 32u32),
        (IpAddr::V6(s), IpAddr::V6(e)) => (u128::from(s), u128::from(e), 128u32),
        _ => return None,
    };
    let span = e.checked_sub(s)?.checked_add(1);
    let host_bits = match span {
        None => 128, // the whole IPv6 space
        Some(n) if n.is_power_of_two() && s % n == 0 => n.trailing_zeros(),
        Some(_) => return None,
    };
    Some(IpPrefix::new(t.start_addr, (width - host_bits) as u8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_prefixes_are_recognised_and_ranges_are_not() {
        let p = |s: &str| crate::config::selector(s).unwrap();
        assert_eq!(as_prefix(&p("10.99.0.7/32")), Some(IpPrefix::new("10.99.0.7".parse().unwrap(), 32)));
        assert_eq!(as_prefix(&p("192.168.0.0/16")), Some(IpPrefix::new("192.168.0.0".parse().unwrap(), 16)));
        assert_eq!(as_prefix(&TrafficSelector::any_v4()), Some(IpPrefix::new("0.0.0.0".parse().unwrap(), 0)));
        assert_eq!(as_prefix(&TrafficSelector::any_v6()), Some(IpPrefix::new("::".parse().unwrap(), 0)));
        let r = TrafficSelector::range("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert_eq!(as_prefix(&r), None);
    }

    #[test]
    fn cookies_carry_the_tag_and_the_child_handle() {
        let c = cookie(ChildSaHandle(0x1234));
        assert_eq!(c & (0xffff << 48), COOKIE_TAG);
        assert_eq!(c & 0xffff_ffff_ffff, 0x1234);
    }
}
