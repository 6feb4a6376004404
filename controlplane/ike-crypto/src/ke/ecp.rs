//! ECP groups 19/20/21 (RFC 5903): NIST P-256, P-384, P-521.
//!
//! RFC 5903 §7: the KE data is x | y, each coordinate big-endian and padded
//! to the field size (32, 48 and 66 octets), with no SEC1 0x04 prefix; the
//! shared secret is the x coordinate of the shared point alone. Peer points
//! are decoded with the curve library's SEC1 decoder, which rejects points
//! not on the curve (and the identity cannot be encoded as x | y).

use elliptic_curve::sec1::{EncodedPoint, FromEncodedPoint, ModulusSize, ToEncodedPoint};
use elliptic_curve::{AffinePoint, CurveArithmetic, FieldBytesSize, PublicKey, SecretKey};
use rand_core::CryptoRngCore;

use super::KeyExchange;
use crate::{Error, Secret};

pub(super) struct Ecp<C: CurveArithmetic> {
    method: u16,
    secret: SecretKey<C>,
    public: Vec<u8>,
}

impl<C> Ecp<C>
where
    C: CurveArithmetic,
    FieldBytesSize<C>: ModulusSize,
    AffinePoint<C>: FromEncodedPoint<C> + ToEncodedPoint<C>,
{
    pub(super) fn generate(method: u16, rng: &mut dyn CryptoRngCore) -> Self {
        Self::with_secret(method, SecretKey::<C>::random(&mut &mut *rng))
    }

    pub(super) fn from_private(method: u16, private: &[u8]) -> Result<Self, Error> {
        let secret = SecretKey::<C>::from_slice(private).map_err(|_| Error::InvalidKey("ECP private scalar"))?;
        Ok(Self::with_secret(method, secret))
    }

    fn with_secret(method: u16, secret: SecretKey<C>) -> Self {
        let point = secret.public_key().to_encoded_point(false);
        // Uncompressed SEC1 is 0x04 | x | y: drop the tag (RFC 5903 §7).
        let public = point.as_bytes()[1..].to_vec();
        Self { method, secret, public }
    }
}

impl<C> KeyExchange for Ecp<C>
where
    C: CurveArithmetic,
    FieldBytesSize<C>: ModulusSize,
    AffinePoint<C>: FromEncodedPoint<C> + ToEncodedPoint<C>,
{
    fn method(&self) -> u16 {
        self.method
    }
    fn is_kem(&self) -> bool {
        false
    }
    fn public_key(&self) -> &[u8] {
        &self.public
    }
    fn compute_shared(&self, peer: &[u8]) -> Result<Secret, Error> {
        if peer.len() != self.public.len() {
            return Err(Error::InvalidPeerPublic("ECP public value must be x | y of the group's size"));
        }
        let mut sec1 = Vec::with_capacity(peer.len() + 1);
        sec1.push(0x04);
        sec1.extend_from_slice(peer);
        let encoded = EncodedPoint::<C>::from_bytes(&sec1).map_err(|_| Error::InvalidPeerPublic("ECP point encoding"))?;
        let peer_key: PublicKey<C> = Option::from(PublicKey::<C>::from_encoded_point(&encoded))
            .ok_or(Error::InvalidPeerPublic("ECP point is not on the curve"))?;
        let shared = elliptic_curve::ecdh::diffie_hellman(self.secret.to_nonzero_scalar(), peer_key.as_affine());
        Ok(Secret::new(shared.raw_secret_bytes().to_vec()))
    }
}
