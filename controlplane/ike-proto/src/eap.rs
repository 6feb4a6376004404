//! EAP in IKE_AUTH (RFC 7296 §2.16, RFC 5998), responder side, with the
//! endpoint as the EAP *authenticator* in pass-through mode: the methods
//! (MSCHAPv2, TLS, AKA, ...) are the AAA server's business.
//!
//! A connection with [`RemoteAuth::Eap`](crate::RemoteAuth) takes an
//! IKE_AUTH request without AUTH as the start of EAP:
//! 1. it answers `IDr, [CERT], AUTH, EAP(Request/Identity)` (without AUTH
//!    and CERT when the initiator sent EAP_ONLY_AUTHENTICATION and the
//!    connection allows it, RFC 5998);
//! 2. every following request's EAP Response goes to the owner as an
//!    [`AaaRequest`] (from [`Endpoint::poll_aaa_request`](crate::Endpoint::poll_aaa_request));
//!    the request waits, its retransmissions dropped, nothing else waits,
//!    until the owner hands back an [`AaaAnswer`] through
//!    [`Endpoint::handle_aaa_answer`](crate::Endpoint::handle_aaa_answer)
//!    (esprit-ike: a RADIUS round trip; the event loop never blocks on
//!    it). A challenge is answered with its EAP Request, an accept with
//!    EAP Success (the MSK kept), a reject or an unreachable server with
//!    EAP Failure and AUTHENTICATION_FAILED, and the IKE SA is gone;
//! 3. the initiator's last request carries AUTH made with the MSK (or
//!    SK_pi when the method made none, §2.16); it is checked, and the
//!    response carries our AUTH made with the MSK (or SK_pr), the CP reply
//!    and the first Child SA from the *first* request, as in IKE_AUTH
//!    without EAP.
//!
//! Guarantees: no IKE SA is Established and no Child SA installed before
//! both the AAA server accepted and the initiator's MSK-based AUTH
//! verified; an answer for an IKE SA that is gone, or for another request
//! than the one waiting, is dropped; at most [`MAX_ROUNDS`] EAP round
//! trips per IKE SA.
use std::net::SocketAddr;

use crate::event::IkeSaHandle;

/// EAP codes (RFC 3748 §4).
pub const EAP_REQUEST: u8 = 1;
pub const EAP_RESPONSE: u8 = 2;
pub const EAP_SUCCESS: u8 = 3;
pub const EAP_FAILURE: u8 = 4;
/// EAP type Identity (RFC 3748 §5.1).
pub const EAP_TYPE_IDENTITY: u8 = 1;

/// EAP round trips through the AAA server one IKE SA may take (EAP-TLS
/// with a certificate chain takes a dozen with 1 kB fragments).
pub const MAX_ROUNDS: u8 = 50;

/// One EAP Response for the owner's AAA backend.
#[derive(Clone, Debug)]
pub struct AaaRequest {
    pub ike_sa: IkeSaHandle,
    /// The IKE_AUTH request waiting for the answer.
    pub message_id: u32,
    pub connection: String,
    /// The EAP identity (the initiator's Identity Response), for
    /// User-Name.
    pub identity: Vec<u8>,
    /// The whole EAP message (Response) to pass on.
    pub eap: Vec<u8>,
    /// Our address and the initiator's (NAS-IP-Address,
    /// Calling-Station-Id).
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The first message of this conversation (no AAA state yet).
    pub first: bool,
}

/// What the AAA backend decided. (Its `Debug` never prints the MSK.)
#[derive(Clone)]
pub enum AaaOutcome {
    /// The next EAP Request to send.
    Challenge(Vec<u8>),
    /// Authenticated: the EAP Success to send (one is made if the server
    /// sent none) and the MSK, if the method made one.
    Accept { eap: Option<Vec<u8>>, msk: Option<ike_crypto::Secret> },
    /// Refused, with the server's EAP Failure if it sent one.
    Reject { eap: Option<Vec<u8>> },
    /// No AAA server answered.
    Unreachable,
}

impl std::fmt::Debug for AaaOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Challenge(m) => f.debug_tuple("Challenge").field(m).finish(),
            Self::Accept { eap, msk } => {
                let msk = msk.as_ref().map(|m| format!("[redacted, {} octets]", m.len()));
                f.debug_struct("Accept").field("eap", eap).field("msk", &msk).finish()
            }
            Self::Reject { eap } => f.debug_struct("Reject").field("eap", eap).finish(),
            Self::Unreachable => f.write_str("Unreachable"),
        }
    }
}

/// The answer to an [`AaaRequest`].
#[derive(Clone, Debug)]
pub struct AaaAnswer {
    pub ike_sa: IkeSaHandle,
    pub message_id: u32,
    pub outcome: AaaOutcome,
}

/// A minimal EAP packet: code, identifier, and type data.
pub fn packet(code: u8, identifier: u8, typ: Option<u8>, data: &[u8]) -> Vec<u8> {
    let len = 4 + usize::from(typ.is_some()) + data.len();
    let mut v = vec![code, identifier];
    v.extend_from_slice(&(len as u16).to_be_bytes());
    v.extend(typ);
    v.extend_from_slice(data);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_carry_their_length_and_outcomes_never_print_the_msk() {
        assert_eq!(packet(EAP_REQUEST, 7, Some(EAP_TYPE_IDENTITY), &[]), [1, 7, 0, 5, 1]);
        assert_eq!(packet(EAP_SUCCESS, 9, None, &[]), [3, 9, 0, 4]);
        assert_eq!(packet(EAP_RESPONSE, 1, Some(EAP_TYPE_IDENTITY), b"bob"), [2, 1, 0, 8, 1, b'b', b'o', b'b']);
        let o = AaaOutcome::Accept { eap: None, msk: Some(ike_crypto::Secret::new(vec![0xab; 64])) };
        let s = format!("{o:?}");
        assert!(s.contains("redacted, 64 octets") && !s.contains("171"), "{s}");
    }
}
