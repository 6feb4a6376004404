//! ML-KEM-512/768/1024 (FIPS 203) as IKEv2 key exchange methods 35/36/37
//! (draft-ietf-ipsecme-ikev2-mlkem).
//!
//! The initiator sends the encapsulation key ek (ByteEncode output of
//! KeyGen), the responder runs Encaps(ek) and sends the ciphertext; the
//! 32-octet shared key is used unpadded wherever g^ir appears. The
//! responder MUST run the FIPS 203 §7.2 input checks on ek (length, and the
//! modulus check that every 12-bit coefficient is < q = 3329), and the
//! initiator the §7.3 ciphertext length check before Decaps; both are done
//! here. A tampered ciphertext of the right length decapsulates to an
//! unrelated key (implicit rejection), so the exchange fails at AUTH.

use hybrid_array::Array;
use ml_kem::kem::{Decapsulate, Encapsulate};
use ml_kem::{Ciphertext, Encoded, EncodedSizeUser, EncapsulateDeterministic, KemCore, B32};
use rand_core::CryptoRngCore;

use super::{KeyExchange, Responded};
use crate::{Error, Secret};

const Q: u16 = 3329;

pub(super) struct MlKem<K: KemCore> {
    method: u16,
    dk: K::DecapsulationKey,
    ek: Vec<u8>,
}

impl<K: KemCore> MlKem<K> {
    pub(super) fn generate(method: u16, rng: &mut dyn CryptoRngCore) -> Self {
        let (dk, ek) = K::generate(&mut &mut *rng);
        Self { method, dk, ek: ek.as_bytes().to_vec() }
    }

    pub(super) fn from_seed(method: u16, d: &[u8], z: &[u8]) -> Result<Self, Error> {
        let d = B32::try_from(d).map_err(|_| Error::InvalidKey("ML-KEM seed d must be 32 octets"))?;
        let z = B32::try_from(z).map_err(|_| Error::InvalidKey("ML-KEM seed z must be 32 octets"))?;
        let (dk, ek) = K::generate_deterministic(&d, &z);
        Ok(Self { method, dk, ek: ek.as_bytes().to_vec() })
    }
}

impl<K: KemCore> KeyExchange for MlKem<K>
where
    K::DecapsulationKey: Send,
{
    fn method(&self) -> u16 {
        self.method
    }
    fn is_kem(&self) -> bool {
        true
    }
    fn public_key(&self) -> &[u8] {
        &self.ek
    }
    fn compute_shared(&self, ct: &[u8]) -> Result<Secret, Error> {
        decapsulate::<K>(&self.dk, ct)
    }
}

fn decapsulate<K: KemCore>(dk: &K::DecapsulationKey, ct: &[u8]) -> Result<Secret, Error> {
    // FIPS 203 §7.3 ciphertext type check: the length.
    let ct = Ciphertext::<K>::try_from(ct).map_err(|_| Error::InvalidPeerPublic("ML-KEM ciphertext length"))?;
    let ss = dk.decapsulate(&ct).map_err(|_| Error::InvalidPeerPublic("ML-KEM decapsulation"))?;
    Ok(Secret::new(ss.to_vec()))
}

/// FIPS 203 §7.2: length check, then the modulus check on the 384·k octets
/// that encode t̂ (ByteDecode_12 then ByteEncode_12 must be the identity,
/// i.e. every 12-bit value is below q). The last 32 octets are ρ.
fn check_ek<K: KemCore>(ek: &[u8]) -> Result<Encoded<K::EncapsulationKey>, Error> {
    let encoded = Encoded::<K::EncapsulationKey>::try_from(ek)
        .map_err(|_| Error::InvalidPeerPublic("ML-KEM encapsulation key length"))?;
    let t_len = ek.len() - 32;
    #[allow(clippy::manual_is_multiple_of)] // is_multiple_of needs Rust 1.87; the workspace MSRV is 1.80
    if t_len % 384 != 0 {
        return Err(Error::InvalidPeerPublic("ML-KEM encapsulation key length"));
    }
    for c in ek[..t_len].chunks_exact(3) {
        let d1 = u16::from(c[0]) | (u16::from(c[1] & 0x0f) << 8);
        let d2 = u16::from(c[1] >> 4) | (u16::from(c[2]) << 4);
        if d1 >= Q || d2 >= Q {
            return Err(Error::InvalidPeerPublic("ML-KEM encapsulation key fails the modulus check"));
        }
    }
    Ok(encoded)
}

pub(super) fn encapsulate<K: KemCore>(ek: &[u8], rng: &mut dyn CryptoRngCore) -> Result<Responded, Error> {
    let ek = K::EncapsulationKey::from_bytes(&check_ek::<K>(ek)?);
    let (ct, ss) = ek.encapsulate(&mut &mut *rng).map_err(|_| Error::InvalidPeerPublic("ML-KEM encapsulation"))?;
    Ok(Responded { ke_data: ct.to_vec(), shared: Secret::new(ss.to_vec()) })
}

pub(super) fn encapsulate_with<K: KemCore>(ek: &[u8], m: &[u8]) -> Result<Responded, Error> {
    let ek = K::EncapsulationKey::from_bytes(&check_ek::<K>(ek)?);
    let m = B32::try_from(m).map_err(|_| Error::InvalidKey("ML-KEM m must be 32 octets"))?;
    let (ct, ss) = ek.encapsulate_deterministic(&m).map_err(|_| Error::InvalidPeerPublic("ML-KEM encapsulation"))?;
    Ok(Responded { ke_data: ct.to_vec(), shared: Secret::new(ss.to_vec()) })
}

pub(super) fn decapsulate_with<K: KemCore>(dk: &[u8], ct: &[u8]) -> Result<Secret, Error> {
    let dk: Array<u8, _> = Encoded::<K::DecapsulationKey>::try_from(dk).map_err(|_| Error::InvalidKey("ML-KEM dk length"))?;
    let dk = K::DecapsulationKey::from_bytes(&dk);
    decapsulate::<K>(&dk, ct)
}
