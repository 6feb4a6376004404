//! IKE_AUTH's signatures, taken off the endpoint so its owner can run them
//! on other threads (both roles).
//!
//! An RFC 7427 signature (ECDSA, RSA, Ed25519) and the validation of a
//! peer's certificate chain cost from tens of microseconds to milliseconds;
//! everything else in an IKE_AUTH exchange costs a few. With
//! [`EndpointConfig::defer_signatures`](crate::EndpointConfig) set, an SA
//! that needs a signature made or checked does the cheap part (decryption,
//! connection choice, the signed octets, a PSK check), hands out an
//! [`AuthJob`] through
//! [`Endpoint::poll_auth_job`](crate::Endpoint::poll_auth_job) and waits:
//! a responder keeps the IKE_AUTH request, an initiator its IKE_AUTH
//! request unsent (our signature) or the response unprocessed (the
//! responder's). The owner runs [`AuthJob::run`] wherever it likes
//! (esprit-ike: on rayon's pool) and feeds the [`AuthDone`] back with
//! [`Endpoint::handle_auth_done`](crate::Endpoint::handle_auth_done); the SA
//! then goes on exactly as it would have inline.
//!
//! Guarantees:
//! * A job is pure: it reads only what it carries (the connection as it
//!   was when the request arrived, the octets, the peer's AUTH and CERT
//!   payloads, a wall-clock date for certificate validity, an RNG seed drawn from the
//!   endpoint's RNG), so the endpoint stays deterministic: the same seed and
//!   the same calls, jobs included, produce the same bytes.
//! * Results are matched to their request by (IKE SA, Message ID, the
//!   connection it was computed for); a result that matches nothing (the
//!   SA timed out or was deleted meanwhile, the configuration was reloaded)
//!   is dropped, or the work is redone inline, never misapplied.
//! * While its job runs, retransmits of the request are dropped (the answer
//!   comes when the job is done); nothing else of the SA waits.
use std::sync::Arc;

use ike_crypto::rng::DeterministicRng;
use ike_crypto::sig::SignatureScheme;
use ike_wire::{Auth, Cert};

use crate::config::{ConnectionConfig, Identity, LocalAuth, RemoteAuth};
use crate::error::ProtoError;
use crate::event::IkeSaHandle;
use crate::sa;
use crate::time::UnixTime;

/// Our AUTH payload, our CERT payloads, and the scheme signed with.
pub(crate) type Signed = (Auth<'static>, Vec<Cert<'static>>, Option<SignatureScheme>);

/// The check of the peer's signature.
pub(crate) struct VerifyWork {
    pub octets: Vec<u8>,
    pub auth: Auth<'static>,
    pub certs: Vec<Cert<'static>>,
    pub peer_id: Identity,
    /// The wall-clock date the job checks certificate validity at (the
    /// date when the request arrived).
    pub unix: UnixTime,
}

/// Our signature.
pub(crate) struct SignWork {
    pub octets: Vec<u8>,
    pub peer_hashes: Vec<u16>,
    pub peer_schemes: Vec<SignatureScheme>,
    pub seed: [u8; 32],
}

/// Where in IKE_AUTH a job was made, and so where its result goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Responder: check the initiator's AUTH, sign ours.
    Respond,
    /// Initiator: sign our request's AUTH (and NO_PPK_AUTH).
    Start,
    /// Initiator: check the responder's AUTH.
    Complete,
}

/// The signature work of one IKE_AUTH exchange: the peer's signature to
/// check, ours to make (two with an optional PPK: AUTH and NO_PPK_AUTH), or
/// both. `Send`: run it on any thread.
pub struct AuthJob {
    pub(crate) ike_sa: IkeSaHandle,
    pub(crate) message_id: u32,
    pub(crate) phase: Phase,
    pub(crate) conn: Arc<ConnectionConfig>,
    pub(crate) verify: Option<VerifyWork>,
    pub(crate) sign: Vec<SignWork>,
}

/// What an [`AuthJob`] found, for [`Endpoint::handle_auth_done`](crate::Endpoint::handle_auth_done).
pub struct AuthDone {
    pub(crate) ike_sa: IkeSaHandle,
    pub(crate) message_id: u32,
    pub(crate) phase: Phase,
    pub(crate) conn: Arc<ConnectionConfig>,
    pub(crate) verified: Option<Result<(), ProtoError>>,
    /// In the order of [`AuthJob::sign`].
    pub(crate) signed: Vec<Result<Signed, ProtoError>>,
}

impl AuthJob {
    /// The IKE SA the job belongs to.
    pub fn ike_sa(&self) -> IkeSaHandle {
        self.ike_sa
    }

    /// Checks and makes the signatures.
    pub fn run(self) -> AuthDone {
        let verified = self.verify.map(|v| match &self.conn.remote_auth {
            RemoteAuth::PubKey { cas } => {
                let certs: Vec<&Cert<'_>> = v.certs.iter().collect();
                sa::verify_signature(cas, &v.octets, &v.auth, &certs, &v.peer_id, v.unix)
            }
            // Never built for a PSK: that check stays inline.
            RemoteAuth::Psk(_) => Err(ProtoError::Invalid("signature job for a PSK")),
            RemoteAuth::Eap(_) => Err(ProtoError::Invalid("signature job for EAP")),
        });
        let signed = self.sign.into_iter().map(|s| match &self.conn.local_auth {
            LocalAuth::PubKey { signer, certs } => {
                let mut rng = DeterministicRng::from_seed(s.seed);
                sa::sign_auth(&**signer, certs, &s.octets, &s.peer_hashes, &s.peer_schemes, &mut rng)
            }
            LocalAuth::Psk(_) => Err(ProtoError::Invalid("signature job for a PSK")),
        });
        let signed = signed.collect();
        AuthDone { ike_sa: self.ike_sa, message_id: self.message_id, phase: self.phase, conn: self.conn, verified, signed }
    }
}

impl AuthDone {
    /// The IKE SA the result belongs to.
    pub fn ike_sa(&self) -> IkeSaHandle {
        self.ike_sa
    }

    /// Whether the job found the peer's signature bad (for the owner's
    /// statistics; the SA answers AUTHENTICATION_FAILED itself).
    pub fn peer_refused(&self) -> bool {
        matches!(self.verified, Some(Err(_)))
    }

    /// Whether the result is for this request, of this phase, computed for
    /// this connection (a reload replaces the connection values).
    pub(crate) fn fits(&self, phase: Phase, message_id: u32, conn: &Arc<ConnectionConfig>) -> bool {
        self.phase == phase && self.message_id == message_id && Arc::ptr_eq(&self.conn, conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_and_results_cross_threads() {
        fn send<T: Send + 'static>() {}
        send::<AuthJob>();
        send::<AuthDone>();
    }
}
