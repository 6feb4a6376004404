//! The IKEv2 key schedule.
//!
//! Implements, with the names the RFCs use:
//!
//! * RFC 7296 §2.14: `SKEYSEED = prf(Ni | Nr, g^ir)` and
//!   `{SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+ (SKEYSEED, Ni | Nr | SPIi | SPIr)`
//!   ([`skeyseed`], [`IkeSaKeys::derive`]).
//! * RFC 7296 §2.17: Child SA `KEYMAT = prf+(SK_d, Ni | Nr)`, or with PFS
//!   `prf+(SK_d, g^ir (new) | Ni | Nr)` ([`child_sa_keymat`], [`ChildSaKeys::split`]).
//! * RFC 7296 §2.18: IKE SA rekey `SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr)`
//!   ([`skeyseed_rekey`]).
//! * RFC 9370 §2.2.2: after the n-th additional key exchange in
//!   IKE_INTERMEDIATE, `SKEYSEED(n) = prf(SK_d(n-1), SK(n) | Ni | Nr)` and the
//!   SK_* are re-derived with the same prf+ seed ([`skeyseed_additional_ke`]).
//!   RFC 9370 §2.2.4: with IKE_FOLLOWUP_KE, a rekey uses
//!   `SKEYSEED = prf(SK_d, SK(0) | Ni | Nr | SK(1) | ... | SK(n))` and a Child
//!   SA `KEYMAT = prf+ (SK_d, SK(0) | Ni | Nr | SK(1) | ... | SK(n))` (the
//!   `additional` arguments). Both formulas were checked against verbatim
//!   quotes of RFC 9370 and against draft-ietf-ipsecme-ikev2-mlkem, which
//!   restates the §2.2.4 ones; strongSwan's keymat_v2.c builds the same order.
//! * RFC 7296 §2.15: PSK `AUTH = prf( prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>)`
//!   and `MACedIDFor[IR] = prf(SK_p[ir], RestOf[IR]IDPayload)` ([`psk_auth`], [`maced_id`]).
//! * RFC 8784 §3: PPK mixing `SK_d = prf+ (PPK, SK_d')` etc. ([`IkeSaKeys::mix_ppk`]).
//! * RFC 9867 (PPK in IKE_INTERMEDIATE): `SKEYSEED' = prf+ (PPK, SK_d)`, as
//!   long as SK_d (the PRF's preferred key length), then all seven SK_* again
//!   with the RFC 7296 prf+ seed ([`skeyseed_ppk_intermediate`]); the PPK
//!   Confirmation of N(PPK_IDENTITY_KEY) is the first 8 octets of
//!   `prf(PPK, Ni | Nr | SPIi | SPIr)` ([`ppk_confirmation`]). Checked
//!   against libreswan 5.2 (lib/libswan/ikev2_prf.c
//!   `ikev2_ike_sa_ppk_interm_skeyseed`, programs/pluto/ikev2_ike_intermediate.c
//!   `calc_ppk_confirmation`), which implements draft-ietf-ipsecme-ikev2-qr-alt
//!   (published as RFC 9867); see docs/ppk.md for what was and was not read.
//!
//! Guarantees: every key is a [`Secret`] (zeroized on drop); g^ir is taken
//! as the caller gives it (key exchanges in [`crate::ke`] already return the
//! fixed-length, zero-padded big-endian form RFC 7296 §2.14 requires).

use crate::prf::{prf_plus, Prf};
use crate::{Error, Secret};

/// "Key Pad for IKEv2": 17 ASCII octets, no NUL (RFC 7296 §2.15).
pub const KEY_PAD: &[u8; 17] = b"Key Pad for IKEv2";

/// Lengths of the negotiated SK_a and SK_e keys. SK_d, SK_pi and SK_pr take
/// the PRF's preferred key length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyLengths {
    /// Integrity key length (0 with an AEAD).
    pub sk_a: usize,
    /// Encryption key length including any salt (AES-GCM-16: key + 4,
    /// RFC 5282 §7.1; ChaCha20-Poly1305: 36, RFC 7634 §2).
    pub sk_e: usize,
}

/// `SKEYSEED = prf(Ni | Nr, g^ir)` (RFC 7296 §2.14).
pub fn skeyseed(prf: &dyn Prf, nonce_i: &[u8], nonce_r: &[u8], g_ir: &[u8]) -> Result<Secret, Error> {
    let mut key = Secret::new(Vec::with_capacity(nonce_i.len() + nonce_r.len()));
    key.extend_from_slice(nonce_i);
    key.extend_from_slice(nonce_r);
    prf.prf(&key, &[g_ir])
}

/// IKE SA rekey (RFC 7296 §2.18, extended by RFC 9370 §2.2.4):
/// `SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr | SK(1) | ... | SK(n))`.
///
/// `old_prf` is the PRF of the SA being rekeyed (§2.18: SKEYSEED is computed
/// with the old PRF, the keys are expanded with the new one). Nonces are
/// those of the CREATE_CHILD_SA exchange; `additional` are the shared
/// secrets of the IKE_FOLLOWUP_KE exchanges in order (empty without RFC 9370).
pub fn skeyseed_rekey(
    old_prf: &dyn Prf,
    old_sk_d: &[u8],
    g_ir_new: &[u8],
    nonce_i: &[u8],
    nonce_r: &[u8],
    additional: &[&[u8]],
) -> Result<Secret, Error> {
    let mut parts: Vec<&[u8]> = vec![g_ir_new, nonce_i, nonce_r];
    parts.extend_from_slice(additional);
    old_prf.prf(old_sk_d, &parts)
}

/// RFC 9370 §2.2.2, after the n-th additional key exchange of the initial
/// exchanges: `SKEYSEED(n) = prf(SK_d(n-1), SK(n) | Ni | Nr)`. Ni and Nr
/// are always the IKE_SA_INIT nonces. Re-derive the SK_* with
/// [`IkeSaKeys::derive`] (same nonces and SPIs).
pub fn skeyseed_additional_ke(
    prf: &dyn Prf,
    sk_d_prev: &[u8],
    sk_n: &[u8],
    nonce_i: &[u8],
    nonce_r: &[u8],
) -> Result<Secret, Error> {
    prf.prf(sk_d_prev, &[sk_n, nonce_i, nonce_r])
}

/// The seven IKE SA keys of RFC 7296 §2.14.
pub struct IkeSaKeys {
    pub sk_d: Secret,
    pub sk_ai: Secret,
    pub sk_ar: Secret,
    pub sk_ei: Secret,
    pub sk_er: Secret,
    pub sk_pi: Secret,
    pub sk_pr: Secret,
}

impl core::fmt::Debug for IkeSaKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never print key material.
        f.debug_struct("IkeSaKeys")
            .field("sk_d_len", &self.sk_d.len())
            .field("sk_a_len", &self.sk_ai.len())
            .field("sk_e_len", &self.sk_ei.len())
            .finish_non_exhaustive()
    }
}

impl IkeSaKeys {
    /// `{SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+ (SKEYSEED, Ni | Nr | SPIi | SPIr)`.
    pub fn derive(
        prf: &dyn Prf,
        skeyseed: &[u8],
        nonce_i: &[u8],
        nonce_r: &[u8],
        spi_i: &[u8; 8],
        spi_r: &[u8; 8],
        lengths: KeyLengths,
    ) -> Result<Self, Error> {
        let d = prf.key_len();
        let total = 3 * d + 2 * lengths.sk_a + 2 * lengths.sk_e;
        let stream = prf_plus(prf, skeyseed, &[nonce_i, nonce_r, spi_i, spi_r], total)?;
        let mut at = 0;
        let mut take = |n: usize| {
            let s = Secret::new(stream[at..at + n].to_vec());
            at += n;
            s
        };
        Ok(Self {
            sk_d: take(d),
            sk_ai: take(lengths.sk_a),
            sk_ar: take(lengths.sk_a),
            sk_ei: take(lengths.sk_e),
            sk_er: take(lengths.sk_e),
            sk_pi: take(d),
            sk_pr: take(d),
        })
    }

    /// RFC 8784 §3: mix a post-quantum preshared key into SK_d, SK_pi and
    /// SK_pr (`SK_x = prf+ (PPK, SK_x')`, each as long as before); SK_e and
    /// SK_a are unchanged. Only for the initial IKE SA.
    pub fn mix_ppk(&mut self, prf: &dyn Prf, ppk: &[u8]) -> Result<(), Error> {
        for k in [&mut self.sk_d, &mut self.sk_pi, &mut self.sk_pr] {
            *k = mix_ppk_key(prf, ppk, k)?;
        }
        Ok(())
    }
}

/// RFC 8784 §3 for one key: `SK_x = prf+ (PPK, SK_x')`, as long as `sk_x`.
/// For callers that must keep SK_pi' and SK_pr' too (NO_PPK_AUTH).
pub fn mix_ppk_key(prf: &dyn Prf, ppk: &[u8], sk_x: &[u8]) -> Result<Secret, Error> {
    prf_plus(prf, ppk, &[sk_x], sk_x.len())
}

/// RFC 9867: the SKEYSEED the IKE SA keys are derived from again once a
/// PPK was agreed in IKE_INTERMEDIATE: `SKEYSEED' = prf+ (PPK, SK_d)` with
/// SK_d the current one (after every RFC 9370 additional key exchange),
/// as long as SK_d. Expand with [`IkeSaKeys::derive`] (the IKE_SA_INIT
/// nonces and SPIs).
pub fn skeyseed_ppk_intermediate(prf: &dyn Prf, ppk: &[u8], sk_d: &[u8]) -> Result<Secret, Error> {
    prf_plus(prf, ppk, &[sk_d], sk_d.len())
}

/// Length of the PPK Confirmation in N(PPK_IDENTITY_KEY) (RFC 9867).
pub const PPK_CONFIRMATION_LEN: usize = 8;

/// RFC 9867 PPK Confirmation: the first [`PPK_CONFIRMATION_LEN`] octets of
/// `prf(PPK, Ni | Nr | SPIi | SPIr)`. It lets the responder check that it
/// holds the same PPK before using it, without revealing the PPK.
pub fn ppk_confirmation(prf: &dyn Prf, ppk: &[u8], nonce_i: &[u8], nonce_r: &[u8], spi_i: &[u8; 8], spi_r: &[u8; 8]) -> Result<[u8; PPK_CONFIRMATION_LEN], Error> {
    let full = prf.prf(ppk, &[nonce_i, nonce_r, spi_i, spi_r])?;
    let mut out = [0u8; PPK_CONFIRMATION_LEN];
    out.copy_from_slice(full.get(..PPK_CONFIRMATION_LEN).ok_or(Error::InvalidKey("PRF output shorter than the PPK Confirmation"))?);
    Ok(out)
}

/// Child SA KEYMAT (RFC 7296 §2.17, RFC 9370 §2.2.4):
/// `KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr [| SK(1) | ... | SK(n)])`.
///
/// For the Child SA of IKE_AUTH, `g_ir` is `None` and the nonces are those
/// of IKE_SA_INIT; for CREATE_CHILD_SA they are that exchange's nonces and
/// `g_ir` is the new shared secret when PFS was negotiated.
pub fn child_sa_keymat(
    prf: &dyn Prf,
    sk_d: &[u8],
    g_ir: Option<&[u8]>,
    nonce_i: &[u8],
    nonce_r: &[u8],
    additional: &[&[u8]],
    len: usize,
) -> Result<Secret, Error> {
    let mut parts: Vec<&[u8]> = Vec::with_capacity(3 + additional.len());
    if let Some(g) = g_ir {
        parts.push(g);
    }
    parts.push(nonce_i);
    parts.push(nonce_r);
    parts.extend_from_slice(additional);
    prf_plus(prf, sk_d, &parts, len)
}

/// The four keys of a Child SA taken from KEYMAT in RFC 7296 §2.17 order:
/// all initiator-to-responder keys first (encryption, then integrity), then
/// responder-to-initiator.
pub struct ChildSaKeys {
    pub encr_i: Secret,
    pub integ_i: Secret,
    pub encr_r: Secret,
    pub integ_r: Secret,
}

impl ChildSaKeys {
    /// Total KEYMAT length for the given per-direction key lengths.
    pub const fn keymat_len(encr_len: usize, integ_len: usize) -> usize {
        2 * (encr_len + integ_len)
    }

    /// Split KEYMAT; it must be exactly [`Self::keymat_len`] octets.
    pub fn split(keymat: &[u8], encr_len: usize, integ_len: usize) -> Result<Self, Error> {
        if keymat.len() != Self::keymat_len(encr_len, integ_len) {
            return Err(Error::InvalidKey("KEYMAT length"));
        }
        let (ei, rest) = keymat.split_at(encr_len);
        let (ai, rest) = rest.split_at(integ_len);
        let (er, ar) = rest.split_at(encr_len);
        Ok(Self {
            encr_i: Secret::new(ei.to_vec()),
            integ_i: Secret::new(ai.to_vec()),
            encr_r: Secret::new(er.to_vec()),
            integ_r: Secret::new(ar.to_vec()),
        })
    }
}

/// PSK authentication (RFC 7296 §2.15):
/// `AUTH = prf( prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>)`.
/// `signed_octets` is `RealMessage | Nonce[IR]Data | MACedIDFor[IR]` (with
/// RFC 9242's IntAuth appended when IKE_INTERMEDIATE was used).
pub fn psk_auth(prf: &dyn Prf, shared_secret: &[u8], signed_octets: &[u8]) -> Result<Secret, Error> {
    let k = prf.prf(shared_secret, &[KEY_PAD])?;
    prf.prf(&k, &[signed_octets])
}

/// `MACedIDFor[IR] = prf(SK_p[ir], RestOf[IR]IDPayload)` (RFC 7296 §2.15),
/// where RestOfIDPayload is the ID payload without its generic header.
pub fn maced_id(prf: &dyn Prf, sk_p: &[u8], rest_of_id_payload: &[u8]) -> Result<Secret, Error> {
    prf.prf(sk_p, &[rest_of_id_payload])
}

/// `InitiatorSignedOctets` / `ResponderSignedOctets` (RFC 7296 §2.15):
/// `RealMessage | NonceData | MACedIDFor`, plus RFC 9242 `IntAuth` if any.
pub fn signed_octets(real_message: &[u8], peer_nonce: &[u8], maced_id: &[u8], int_auth: Option<&[u8]>) -> Vec<u8> {
    let mut v = Vec::with_capacity(real_message.len() + peer_nonce.len() + maced_id.len() + int_auth.map_or(0, <[u8]>::len));
    v.extend_from_slice(real_message);
    v.extend_from_slice(peer_nonce);
    v.extend_from_slice(maced_id);
    if let Some(i) = int_auth {
        v.extend_from_slice(i);
    }
    v
}
