//! Shared plumbing of the IKE SA state machine: the per-call context, the
//! allocators (SPIs, handles, address pools), key material, and the
//! RFC 7296 §2.15 / RFC 7427 authentication and §2.23 NAT detection helpers.
//!
//! Guarantees: SPIs are non-zero and unique per endpoint (IKE: §3.1; ESP:
//! 256 and above, RFC 4303 §2.1); addresses leased from a pool are unique
//! until released; PSK AUTH values are compared in constant time; a
//! certificate-authenticated peer's identity must be bound to its
//! certificate (subject DN, or a subjectAltName of the ID's type, RFC 4945
//! §3.1).
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};

use ike_crypto::cert::{validate_chain, Certificate};
use ike_crypto::keys::{self, IkeSaKeys, KeyLengths};
use ike_crypto::prf::Prf;
use ike_crypto::sig::{self, Verifier as _};
use ike_crypto::sk::SkProtection;
use ike_crypto::{CryptoProvider, Rng, Secret};
use ike_wire::{Auth, AuthMethod, Cert, CertEncoding, CertReq, Id, Notify, NotifyType};
use sha1::{Digest, Sha1};

use crate::config::{EndpointConfig, Family, Identity, LocalAuth, PoolConfig, RemoteAuth};
use crate::error::ProtoError;
use crate::event::{ChildSaHandle, Event, IkeSaHandle, Transmit};
use crate::proposal::IkeSuite;
use crate::time::{Time, UnixTime};

/// Which end of the IKE SA we are: the I flag (RFC 7296 §3.1) is set by the
/// original initiator, or by whoever initiated the last IKE SA rekey.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Initiator,
    Responder,
}

/// Side effects one IKE SA asks of the endpoint.
pub enum Effect {
    /// An IKE SA rekey created this SA (§2.18).
    NewIkeSa(Box<crate::ike_sa::IkeSa>),
    /// Child SAs move to the rekeyed IKE SA.
    MoveChildren { from: IkeSaHandle, to: IkeSaHandle },
    /// Delete a redundant IKE SA (simultaneous rekey, §2.8.1).
    DeleteIkeSa(IkeSaHandle),
    /// A simultaneous rekey is decided: `successor` no longer parks Child
    /// SAs for its predecessor.
    Resolved { successor: IkeSaHandle },
    /// INITIAL_CONTACT (§2.4): drop other IKE SAs of this identity.
    InitialContact { keep: IkeSaHandle, remote_id: Identity },
    /// Start a new IKE SA with an adjusted copy of a connection (RFC 8983
    /// §5: ask for the address family the responder allows).
    Reinitiate { conn: std::sync::Arc<crate::config::ConnectionConfig>, local: SocketAddr, remote: SocketAddr },
}

/// What a call produced.
#[derive(Default)]
pub struct Outputs {
    pub transmits: VecDeque<Transmit>,
    pub events: VecDeque<Event>,
    pub effects: Vec<Effect>,
    /// IKE_AUTH signature work for the owner to run ([`crate::auth_job`]).
    pub jobs: VecDeque<crate::auth_job::AuthJob>,
    /// EAP Responses for the owner's AAA backend ([`crate::eap`]).
    pub aaa: VecDeque<crate::eap::AaaRequest>,
}

/// SPI and handle allocation.
#[derive(Default)]
pub struct Alloc {
    pub ike_spis: BTreeMap<u64, IkeSaHandle>,
    child_spis: BTreeSet<u32>,
    /// How many live child SPIs end in each octet.
    low_octets: BTreeMap<u8, u32>,
    next_ike: u64,
    next_child: u64,
    /// In a cluster: this node's slot, the top octet of every IKE SPI and
    /// inbound ESP SPI it allocates (disjoint ranges per node).
    pub spi_slot: Option<u8>,
}

impl Alloc {
    pub fn ike_handle(&mut self) -> IkeSaHandle {
        self.next_ike += 1;
        IkeSaHandle(self.next_ike)
    }

    pub fn child_handle(&mut self) -> ChildSaHandle {
        self.next_child += 1;
        ChildSaHandle(self.next_child)
    }

    /// A fresh local IKE SPI, registered for `handle`.
    pub fn ike_spi(&mut self, rng: &mut dyn Rng, handle: IkeSaHandle) -> u64 {
        loop {
            let mut spi = rng.next_u64();
            if let Some(slot) = self.spi_slot {
                spi = (spi & 0x00ff_ffff_ffff_ffff) | (u64::from(slot) << 56);
            }
            if spi != 0 && !self.ike_spis.contains_key(&spi) {
                self.ike_spis.insert(spi, handle);
                return spi;
            }
        }
    }

    /// A fresh inbound ESP SPI (RFC 4303 §2.1: 1-255 are reserved).
    pub fn child_spi(&mut self, rng: &mut dyn Rng) -> u32 {
        let mut draws = 0;
        loop {
            let mut spi = rng.next_u32();
            if let Some(slot) = self.spi_slot {
                spi = (spi & 0x00ff_ffff) | (u32::from(slot) << 24);
            }
            // RFC 4303 §2.1 reserves 1-255. No zero octet either: a Diet-ESP
            // SA over UDP sends its SPI's low octets first, and a leading
            // zero octet could begin the RFC 3948 Non-ESP Marker
            // (draft-ietf-ipsecme-diet-esp-07 §5.3; docs/diet-esp.md).
            if !spi.to_be_bytes().iter().all(|&b| b != 0) || self.child_spis.contains(&spi) {
                continue;
            }
            // A Diet-ESP receiver finds the SA by the SPI's low bits
            // (dataplane pipeline/diet.rs): a low octet no live SA has keeps
            // that lookup unambiguous, a rekey's new SA apart from the one
            // it replaces. Preferred for 16 draws; with some 255 SAs and
            // more every octet is taken, and the lookup's bounded candidate
            // set takes over.
            draws += 1;
            if draws < 16 && self.low_octets.get(&(spi as u8)).is_some_and(|&n| n > 0) {
                continue;
            }
            self.child_spis.insert(spi);
            *self.low_octets.entry(spi as u8).or_default() += 1;
            return spi;
        }
    }

    pub fn release_child_spi(&mut self, spi: u32) {
        if self.child_spis.remove(&spi) {
            if let Some(n) = self.low_octets.get_mut(&(spi as u8)) {
                *n -= 1;
                if *n == 0 {
                    self.low_octets.remove(&(spi as u8));
                }
            }
        }
    }

    /// A restored SA's SPIs and handles ([`crate::snapshot`]): registered,
    /// and the handle counters moved past them, so nothing new collides.
    /// `false` if the IKE SPI is taken.
    pub fn reserve_restored(&mut self, ike: IkeSaHandle, ike_spi: u64, children: &[(ChildSaHandle, u32)]) -> bool {
        if ike_spi == 0 || self.ike_spis.contains_key(&ike_spi) {
            return false;
        }
        self.ike_spis.insert(ike_spi, ike);
        self.next_ike = self.next_ike.max(ike.0);
        for (h, spi) in children {
            self.child_spis.insert(*spi);
            self.next_child = self.next_child.max(h.0);
        }
        true
    }
}

/// Address pools for CP (RFC 7296 §3.15). Each lease is the lowest free
/// address, in O(log n): below a cursor every address is leased or in the
/// `free` set; from the cursor on none has been handed out.
#[derive(Default)]
pub struct Pools {
    /// Per pool name and family (false = IPv4).
    pools: BTreeMap<(String, bool), PoolState>,
}

#[derive(Default)]
struct PoolState {
    start: u128,
    count: u128,
    /// Leased offsets from `start`.
    used: BTreeSet<u128>,
    /// Released offsets below `cursor`.
    free: BTreeSet<u128>,
    cursor: u128,
}

impl PoolState {
    fn new(start: u128, count: u128, old: Option<PoolState>) -> Self {
        // A reload may move or resize the pool: leases inside the new range
        // stay leased, the cursor starts over and skips them.
        let used = old
            .map(|o| o.used.into_iter().map(|u| o.start + u).filter(|a| (start..start + count).contains(a)).map(|a| a - start).collect())
            .unwrap_or_default();
        Self { start, count, used, free: BTreeSet::new(), cursor: 0 }
    }

    fn lease(&mut self) -> Option<u128> {
        let off = match self.free.pop_first() {
            Some(o) => o,
            None => {
                while self.cursor < self.count && self.used.contains(&self.cursor) {
                    self.cursor += 1;
                }
                if self.cursor >= self.count {
                    return None;
                }
                self.cursor += 1;
                self.cursor - 1
            }
        };
        self.used.insert(off);
        Some(off)
    }

    fn release(&mut self, addr: u128) {
        let Some(off) = addr.checked_sub(self.start) else { return };
        if self.used.remove(&off) && off < self.cursor {
            self.free.insert(off);
        }
    }
}

impl Pools {
    /// The lowest free address of `family` in `pool`.
    pub fn lease(&mut self, pool: &PoolConfig, family: Family) -> Option<IpAddr> {
        let (start, count, v6) = match family {
            Family::V4 => pool.v4.map(|(s, n)| (u128::from(u32::from(s)), u128::from(n), false))?,
            Family::V6 => pool.v6.map(|(s, n)| (u128::from(s), u128::from(n), true))?,
        };
        let st = self.pools.entry((pool.name.clone(), v6)).or_insert_with(|| PoolState::new(start, count, None));
        if st.start != start || st.count != count {
            // Reloaded with another range: rebuild, keeping what still fits.
            *st = PoolState::new(start, count, Some(std::mem::take(st)));
        }
        let a = st.start + st.lease()?;
        Some(if v6 { IpAddr::V6(a.into()) } else { IpAddr::V4(u32::try_from(a).ok()?.into()) })
    }

    /// Marks `addr` leased again (an IKE SA restored from a snapshot).
    pub fn reserve(&mut self, pool: &PoolConfig, addr: IpAddr) {
        let family = if addr.is_ipv4() { Family::V4 } else { Family::V6 };
        let (start, count, v6) = match family {
            Family::V4 => match pool.v4 {
                Some((s, n)) => (u128::from(u32::from(s)), u128::from(n), false),
                None => return,
            },
            Family::V6 => match pool.v6 {
                Some((s, n)) => (u128::from(s), u128::from(n), true),
                None => return,
            },
        };
        let a = match addr {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        };
        let st = self.pools.entry((pool.name.clone(), v6)).or_insert_with(|| PoolState::new(start, count, None));
        if let Some(off) = a.checked_sub(st.start).filter(|o| *o < st.count) {
            // Below the cursor a free address sits in `free`; above it
            // the cursor skips leased ones.
            st.free.remove(&off);
            st.used.insert(off);
        }
    }

    pub fn release(&mut self, pool: &str, addr: IpAddr) {
        let (a, v6) = match addr {
            IpAddr::V4(a) => (u128::from(u32::from(a)), false),
            IpAddr::V6(a) => (u128::from(a), true),
        };
        if let Some(st) = self.pools.get_mut(&(pool.to_string(), v6)) {
            st.release(a);
        }
    }
}

/// Everything one call into an IKE SA may touch besides the SA itself.
pub struct Ctx<'a> {
    /// The monotonic clock: every timer.
    pub now: Time,
    /// The wall-clock date: certificate validity only.
    pub unix: UnixTime,
    pub crypto: &'a dyn CryptoProvider,
    pub rng: &'a mut dyn Rng,
    pub config: &'a EndpointConfig,
    pub out: &'a mut Outputs,
    pub alloc: &'a mut Alloc,
    pub pools: &'a mut Pools,
    /// RFC 9838 group state of both roles.
    pub groups: &'a mut crate::group::GroupState,
}

impl Ctx<'_> {
    pub fn nonce(&mut self) -> Vec<u8> {
        let mut n = vec![0u8; self.config.nonce_len.clamp(16, 256)];
        self.rng.fill_bytes(&mut n);
        n
    }
}

/// The keys of an established IKE SA.
pub struct IkeKeys {
    pub suite: IkeSuite,
    pub prf: Box<dyn Prf>,
    pub sk_d: Secret,
    pub sk_pi: Secret,
    pub sk_pr: Secret,
    pub outbound: Box<dyn SkProtection>,
    pub inbound: Box<dyn SkProtection>,
    /// SK_ei, SK_ai, SK_er, SK_ar as derived: kept only so that a snapshot
    /// ([`crate::snapshot`]) can rebuild `outbound`/`inbound` after a
    /// restart. Zeroized on drop like every [`Secret`].
    pub sk_e_a: SkEa,
}

/// The SK protection keys of both directions (RFC 7296 §2.14).
#[derive(Clone)]
pub struct SkEa {
    pub sk_ei: Secret,
    pub sk_ai: Secret,
    pub sk_er: Secret,
    pub sk_ar: Secret,
}

impl IkeKeys {
    /// RFC 7296 §2.14: expand SKEYSEED with `Ni | Nr | SPIi | SPIr` and set
    /// up both directions of SK protection for `role`.
    #[allow(clippy::too_many_arguments)]
    pub fn derive(
        crypto: &dyn CryptoProvider,
        suite: &IkeSuite,
        skeyseed: &[u8],
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
        role: Role,
    ) -> Result<Self, ProtoError> {
        let prf = crypto.prf(suite.prf.0)?;
        let lengths = KeyLengths {
            sk_a: crypto.integ_key_len(suite.integ.0)?,
            sk_e: crypto.encr_key_len(suite.encr.0, suite.key_bits)?,
        };
        let k = IkeSaKeys::derive(&*prf, skeyseed, ni, nr, &spi_i.to_be_bytes(), &spi_r.to_be_bytes(), lengths)?;
        let sk_e_a = SkEa { sk_ei: k.sk_ei, sk_ai: k.sk_ai, sk_er: k.sk_er, sk_ar: k.sk_ar };
        Self::from_parts(crypto, suite, k.sk_d, k.sk_pi, k.sk_pr, sk_e_a, role)
    }

    /// The keys from their parts: a fresh derivation, or a snapshot
    /// restored after a restart ([`crate::snapshot`]).
    pub fn from_parts(
        crypto: &dyn CryptoProvider,
        suite: &IkeSuite,
        sk_d: Secret,
        sk_pi: Secret,
        sk_pr: Secret,
        sk_e_a: SkEa,
        role: Role,
    ) -> Result<Self, ProtoError> {
        let prf = crypto.prf(suite.prf.0)?;
        let i = crypto.sk_protection(suite.encr.0, suite.key_bits, suite.integ.0, &sk_e_a.sk_ei, &sk_e_a.sk_ai)?;
        let r = crypto.sk_protection(suite.encr.0, suite.key_bits, suite.integ.0, &sk_e_a.sk_er, &sk_e_a.sk_ar)?;
        let (outbound, inbound) = match role {
            Role::Initiator => (i, r),
            Role::Responder => (r, i),
        };
        Ok(Self { suite: suite.clone(), prf, sk_d, sk_pi, sk_pr, outbound, inbound, sk_e_a })
    }

    /// RFC 9370 §2.2.2: the keys after the n-th additional key exchange of
    /// the initial exchanges, `SKEYSEED(n) = prf(SK_d(n-1), SK(n) | Ni | Nr)`
    /// expanded like the first (IKE_SA_INIT nonces and SPIs).
    #[allow(clippy::too_many_arguments)]
    pub fn additional_ke(
        &self,
        crypto: &dyn CryptoProvider,
        shared: &[u8],
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
        role: Role,
    ) -> Result<Self, ProtoError> {
        let skeyseed = keys::skeyseed_additional_ke(&*self.prf, &self.sk_d, shared, ni, nr)?;
        Self::derive(crypto, &self.suite, &skeyseed, ni, nr, spi_i, spi_r, role)
    }

    /// RFC 9867: the keys once a PPK was agreed in IKE_INTERMEDIATE,
    /// `SKEYSEED' = prf+ (PPK, SK_d)` expanded like any SKEYSEED (all seven
    /// keys change, SK_e and SK_a included).
    #[allow(clippy::too_many_arguments)]
    pub fn with_ppk(
        &self,
        crypto: &dyn CryptoProvider,
        ppk: &[u8],
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
        role: Role,
    ) -> Result<Self, ProtoError> {
        let skeyseed = keys::skeyseed_ppk_intermediate(&*self.prf, ppk, &self.sk_d)?;
        Self::derive(crypto, &self.suite, &skeyseed, ni, nr, spi_i, spi_r, role)
    }

    /// SKEYSEED of the initial exchange: `prf(Ni | Nr, g^ir)`.
    #[allow(clippy::too_many_arguments)]
    pub fn initial(
        crypto: &dyn CryptoProvider,
        suite: &IkeSuite,
        g_ir: &[u8],
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
        role: Role,
    ) -> Result<Self, ProtoError> {
        let prf = crypto.prf(suite.prf.0)?;
        let skeyseed = keys::skeyseed(&*prf, ni, nr, g_ir)?;
        Self::derive(crypto, suite, &skeyseed, ni, nr, spi_i, spi_r, role)
    }
}

/// RestOfIDPayload (§2.15): ID Type | RESERVED | data.
pub fn id_body(id: &Identity) -> Vec<u8> {
    let mut v = vec![id.id_type().0, 0, 0, 0];
    v.extend_from_slice(&id.data());
    v
}

pub fn id_payload(id: &Identity) -> Id<'static> {
    Id { id_type: id.id_type(), data: id.data().into() }
}

/// `RealMessage | NonceData | prf(SK_p, RestOfIDPayload)` (§2.15).
pub fn signed_octets(prf: &dyn Prf, sk_p: &[u8], real_message: &[u8], peer_nonce: &[u8], id: &[u8]) -> Result<Vec<u8>, ProtoError> {
    signed_octets_int(prf, sk_p, real_message, peer_nonce, id, None)
}

/// [`signed_octets`] with RFC 9242's `IntAuth` appended when
/// IKE_INTERMEDIATE exchanges took place.
pub fn signed_octets_int(
    prf: &dyn Prf,
    sk_p: &[u8],
    real_message: &[u8],
    peer_nonce: &[u8],
    id: &[u8],
    int_auth: Option<&[u8]>,
) -> Result<Vec<u8>, ProtoError> {
    let maced = keys::maced_id(prf, sk_p, id)?;
    Ok(keys::signed_octets(real_message, peer_nonce, &maced, int_auth))
}

/// RFC 7427 §7 hash algorithms we can verify with.
pub const SIGNATURE_HASHES: [u16; 4] = [
    ike_crypto::ids::hash::SHA2_256,
    ike_crypto::ids::hash::SHA2_384,
    ike_crypto::ids::hash::SHA2_512,
    ike_crypto::ids::hash::IDENTITY,
];

/// N(SIGNATURE_HASH_ALGORITHMS) with [`SIGNATURE_HASHES`].
pub fn signature_hashes_notify() -> Notify<'static> {
    let data: Vec<u8> = SIGNATURE_HASHES.iter().flat_map(|h| h.to_be_bytes()).collect();
    Notify::new(NotifyType::SIGNATURE_HASH_ALGORITHMS, data)
}

/// The hash IDs of a SIGNATURE_HASH_ALGORITHMS notify.
pub fn parse_signature_hashes(data: &[u8]) -> Vec<u16> {
    data.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect()
}

/// Our AUTH payload and CERT payloads for `octets`.
pub fn make_auth(
    auth: &LocalAuth,
    prf: &dyn Prf,
    octets: &[u8],
    peer_hashes: &[u16],
    rng: &mut dyn Rng,
) -> Result<(Auth<'static>, Vec<Cert<'static>>), ProtoError> {
    make_auth_with(auth, prf, octets, peer_hashes, &[], rng).map(|(a, c, _)| (a, c))
}

/// [`make_auth`] that also honours the schemes the peer announced in RFC
/// 9593 SUPPORTED_AUTH_METHODS (our first signer scheme among them wins;
/// this is what picks RSASSA-PSS or PKCS#1 v1.5, ECDSA or EdDSA); without
/// a match, the RFC 7427 hash announcement decides. Returns the scheme
/// signed with.
pub fn make_auth_with(
    auth: &LocalAuth,
    prf: &dyn Prf,
    octets: &[u8],
    peer_hashes: &[u16],
    peer_schemes: &[sig::SignatureScheme],
    rng: &mut dyn Rng,
) -> Result<(Auth<'static>, Vec<Cert<'static>>, Option<sig::SignatureScheme>), ProtoError> {
    match auth {
        LocalAuth::Psk(psk) => {
            let v = keys::psk_auth(prf, psk, octets)?;
            Ok((Auth { method: AuthMethod::SHARED_KEY_MESSAGE_INTEGRITY_CODE, data: v.to_vec().into() }, Vec::new(), None))
        }
        LocalAuth::PubKey { signer, certs } => sign_auth(&**signer, certs, octets, peer_hashes, peer_schemes, rng),
    }
}

/// The RFC 7427 AUTH payload (and our CERT payloads) signed by `signer`
/// over `octets`: the expensive half of [`make_auth_with`], which needs no
/// PRF and can run on another thread ([`crate::auth_job`]).
pub fn sign_auth(
    signer: &dyn ike_crypto::sig::Signer,
    certs: &[Certificate],
    octets: &[u8],
    peer_hashes: &[u16],
    peer_schemes: &[sig::SignatureScheme],
    rng: &mut dyn Rng,
) -> Result<(Auth<'static>, Vec<Cert<'static>>, Option<sig::SignatureScheme>), ProtoError> {
    let schemes = signer.schemes();
    // RFC 9593: a scheme the peer announced; else RFC 7427 §4: a
    // hash the peer announced.
    let scheme = schemes
        .iter()
        .copied()
        .find(|s| peer_schemes.contains(s))
        .or_else(|| schemes.iter().copied().find(|s| peer_hashes.contains(&s.hash_algorithm_id())))
        .or_else(|| schemes.first().copied())
        .ok_or(ProtoError::AuthenticationFailed)?;
    let signature = signer.sign(scheme, octets, rng)?;
    let data = sig::auth_data(scheme, &signature);
    let certs = certs.iter().map(|c| Cert { encoding: CertEncoding::X509_SIGNATURE, data: c.der().to_vec().into() }).collect();
    Ok((Auth { method: AuthMethod::DIGITAL_SIGNATURE, data: data.into() }, certs, Some(scheme)))
}

/// Local policy on the peer's signature scheme (the list we announce in
/// RFC 9593): an AUTH signed otherwise is refused. Empty allows all.
pub fn check_scheme_allowed(payload: &Auth<'_>, allowed: &[sig::SignatureScheme]) -> Result<(), ProtoError> {
    if allowed.is_empty() || payload.method != AuthMethod::DIGITAL_SIGNATURE {
        return Ok(());
    }
    match sig::parse_auth_data(&payload.data) {
        Ok((scheme, _)) if allowed.contains(&scheme) => Ok(()),
        _ => Err(ProtoError::AuthenticationFailed),
    }
}

/// Whether `id` is bound to the certificate: its subject DN, or one of its
/// subjectAltNames of the matching type (RFC 4945 §3.1: FQDN to dNSName,
/// case-insensitively; RFC822 to rfc822Name; IP addresses to iPAddress).
pub fn identity_in_certificate(id: &Identity, cert: &Certificate) -> bool {
    let sans = cert.subject_alt_names();
    let has = |tag: u8, want: &[u8], fold: bool| {
        sans.iter().any(|(t, v)| *t == tag && if fold { v.eq_ignore_ascii_case(want) } else { v.as_slice() == want })
    };
    match id {
        Identity::Dn(dn) => *dn == cert.subject_der(),
        Identity::Fqdn(name) => has(0x82, name.as_bytes(), true),
        Identity::Email(addr) => has(0x81, addr.as_bytes(), true),
        Identity::Ipv4(a) => has(0x87, &a.octets(), false),
        Identity::Ipv6(a) => has(0x87, &a.octets(), false),
        Identity::KeyId(_) => false,
    }
}

/// CERTREQ for our trusted CAs (RFC 7296 §3.7: "a concatenated list of
/// SHA-1 hashes of the public keys of trusted CAs ... the SHA-1 hash of the
/// Subject Public Key Info element"); `None` when we do not verify
/// certificates. strongSwan by default sends its certificate only when
/// asked this way.
pub fn certreq(auth: &RemoteAuth) -> Option<CertReq<'static>> {
    let RemoteAuth::PubKey { cas } = auth else { return None };
    let hashes: Vec<u8> = cas.iter().flat_map(|c| Sha1::digest(c.spki_der()).to_vec()).collect();
    Some(CertReq { encoding: CertEncoding::X509_SIGNATURE, authorities: hashes.into() })
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks the peer's AUTH payload over `octets`.
pub fn verify_auth(
    auth: &RemoteAuth,
    prf: &dyn Prf,
    octets: &[u8],
    payload: &Auth<'_>,
    certs: &[&Cert<'_>],
    peer_id: &Identity,
    unix: UnixTime,
) -> Result<(), ProtoError> {
    match auth {
        RemoteAuth::Psk(psk) => {
            if payload.method != AuthMethod::SHARED_KEY_MESSAGE_INTEGRITY_CODE {
                return Err(ProtoError::AuthenticationFailed);
            }
            let expected = keys::psk_auth(prf, psk, octets)?;
            if ct_eq(&expected, &payload.data) {
                Ok(())
            } else {
                Err(ProtoError::AuthenticationFailed)
            }
        }
        RemoteAuth::PubKey { cas } => verify_signature(cas, octets, payload, certs, peer_id, unix),
        // The EAP path checks the MSK-based AUTH itself (ike_sa::eap).
        RemoteAuth::Eap(_) => Err(ProtoError::AuthenticationFailed),
    }
}

/// Checks an RFC 7427 AUTH payload: the chain of `certs` to one of `cas`,
/// the identity bound to the end-entity certificate, the signature over
/// `octets`. The expensive half of [`verify_auth`], which needs no PRF and
/// can run on another thread ([`crate::auth_job`]).
pub fn verify_signature(
    cas: &[Certificate],
    octets: &[u8],
    payload: &Auth<'_>,
    certs: &[&Cert<'_>],
    peer_id: &Identity,
    unix: UnixTime,
) -> Result<(), ProtoError> {
    if payload.method != AuthMethod::DIGITAL_SIGNATURE {
        return Err(ProtoError::AuthenticationFailed);
    }
    let mut x509 = certs.iter().filter(|c| c.encoding == CertEncoding::X509_SIGNATURE);
    let leaf = x509.next().ok_or(ProtoError::AuthenticationFailed)?;
    let leaf = Certificate::from_der(&leaf.data).map_err(|_| ProtoError::AuthenticationFailed)?;
    let intermediates: Vec<Certificate> = x509.filter_map(|c| Certificate::from_der(&c.data).ok()).collect();
    let key = validate_chain(&leaf, &intermediates, cas, unix.secs()).map_err(|_| ProtoError::AuthenticationFailed)?;
    // The identity must be bound to the certificate (RFC 4945 §3.1).
    if !identity_in_certificate(peer_id, &leaf) {
        return Err(ProtoError::AuthenticationFailed);
    }
    let (scheme, signature) = sig::parse_auth_data(&payload.data).map_err(|_| ProtoError::AuthenticationFailed)?;
    key.verify(scheme, octets, signature).map_err(|_| ProtoError::AuthenticationFailed)
}

/// RFC 7296 §2.23: `SHA-1(SPIi | SPIr | IP | Port)`.
pub fn nat_hash(spi_i: u64, spi_r: u64, addr: SocketAddr) -> Vec<u8> {
    let mut h = Sha1::new();
    h.update(spi_i.to_be_bytes());
    h.update(spi_r.to_be_bytes());
    match addr.ip() {
        IpAddr::V4(a) => h.update(a.octets()),
        IpAddr::V6(a) => h.update(a.octets()),
    }
    h.update(addr.port().to_be_bytes());
    h.finalize().to_vec()
}

/// N(NAT_DETECTION_SOURCE_IP) and N(NAT_DETECTION_DESTINATION_IP) for a
/// message from `local` to `remote`.
pub fn nat_notifies(spi_i: u64, spi_r: u64, local: SocketAddr, remote: SocketAddr) -> [Notify<'static>; 2] {
    [
        Notify::new(NotifyType::NAT_DETECTION_SOURCE_IP, nat_hash(spi_i, spi_r, local)),
        Notify::new(NotifyType::NAT_DETECTION_DESTINATION_IP, nat_hash(spi_i, spi_r, remote)),
    ]
}

/// NAT detection outcome of a received IKE_SA_INIT message: (we are behind
/// a NAT, the peer is behind a NAT). No notifies means no NAT-T support,
/// treated as no NAT.
pub fn detect_nat(notifies: &[&Notify<'_>], spi_i: u64, spi_r: u64, local: SocketAddr, remote: SocketAddr) -> (bool, bool) {
    let of = |t: NotifyType| notifies.iter().filter(move |n| n.notify_type == t);
    if of(NotifyType::NAT_DETECTION_SOURCE_IP).next().is_none() || of(NotifyType::NAT_DETECTION_DESTINATION_IP).next().is_none() {
        return (false, false);
    }
    let remote_hash = nat_hash(spi_i, spi_r, remote);
    let local_hash = nat_hash(spi_i, spi_r, local);
    let peer_behind = !of(NotifyType::NAT_DETECTION_SOURCE_IP).any(|n| n.data[..] == remote_hash[..]);
    let we_behind = !of(NotifyType::NAT_DETECTION_DESTINATION_IP).any(|n| n.data[..] == local_hash[..]);
    (we_behind, peer_behind)
}

#[cfg(test)]
mod spi_tests {
    use super::*;

    /// Child SPIs have no zero octet and, while fewer than 256 live, no
    /// two share their low octet (what a Diet-ESP receiver looks up); a
    /// released SPI's octet is free again.
    #[test]
    fn child_spis_avoid_zero_octets_and_shared_low_octets() {
        let mut rng = ike_crypto::rng::DeterministicRng::from_u64(7);
        let mut a = Alloc::default();
        let spis: Vec<u32> = (0..128).map(|_| a.child_spi(&mut rng)).collect();
        assert!(spis.iter().all(|s| s.to_be_bytes().iter().all(|&b| b != 0)));
        let lows: BTreeSet<u8> = spis.iter().map(|&s| s as u8).collect();
        assert_eq!(lows.len(), spis.len(), "a low octet given twice");
        for &s in &spis[..64] {
            a.release_child_spi(s);
        }
        assert_eq!(a.low_octets.values().sum::<u32>(), 64);
        let more: Vec<u32> = (0..64).map(|_| a.child_spi(&mut rng)).collect();
        let lows: BTreeSet<u8> = spis[64..].iter().chain(&more).map(|&s| s as u8).collect();
        assert_eq!(lows.len(), 128);
        // Past 255 live SPIs the octets repeat, and allocation still ends.
        let _: Vec<u32> = (0..300).map(|_| a.child_spi(&mut rng)).collect();
        assert_eq!(a.child_spis.len(), 128 + 300);
    }
}

#[cfg(test)]
mod pool_tests {
    use super::*;

    fn pool(n: u32) -> PoolConfig {
        PoolConfig { name: "p".into(), v4: Some(("10.0.0.1".parse().unwrap(), n)), v6: None, dns: vec![], dns_domains: vec![] }
    }

    /// The reference: the lowest address not leased, by a linear scan.
    fn lowest_free(leased: &BTreeSet<u32>, n: u32) -> Option<u32> {
        (0..n).find(|i| !leased.contains(i))
    }

    #[test]
    fn leases_are_always_the_lowest_free_address_like_a_linear_scan() {
        let p = pool(64);
        let mut pools = Pools::default();
        let mut leased = BTreeSet::new();
        let base = u32::from("10.0.0.1".parse::<std::net::Ipv4Addr>().unwrap());
        // A fixed pseudo-random sequence of leases and releases.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x % 3 != 0 || leased.is_empty() {
                let want = lowest_free(&leased, 64);
                let got = pools.lease(&p, Family::V4).map(|a| match a {
                    IpAddr::V4(a) => u32::from(a) - base,
                    IpAddr::V6(_) => unreachable!(),
                });
                assert_eq!(got, want);
                if let Some(g) = got {
                    leased.insert(g);
                }
            } else {
                let victim = *leased.iter().nth((x as usize / 3) % leased.len()).unwrap();
                leased.remove(&victim);
                pools.release("p", IpAddr::V4((base + victim).into()));
            }
        }
    }

    #[test]
    fn a_moved_pool_keeps_the_leases_inside_its_new_range() {
        let mut pools = Pools::default();
        let a = pools.lease(&pool(4), Family::V4).unwrap();
        let b = pools.lease(&pool(4), Family::V4).unwrap();
        assert_eq!((a.to_string().as_str(), b.to_string().as_str()), ("10.0.0.1", "10.0.0.2"));
        // Resized: .1 and .2 stay leased, the next is .3; then it is full.
        let bigger = pool(3);
        assert_eq!(pools.lease(&bigger, Family::V4).unwrap().to_string(), "10.0.0.3");
        assert_eq!(pools.lease(&bigger, Family::V4), None);
        pools.release("p", a);
        assert_eq!(pools.lease(&bigger, Family::V4), Some(a));
    }
}
