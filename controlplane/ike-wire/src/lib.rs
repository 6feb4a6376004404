//! `ike-wire`: the IKEv2 (RFC 7296) and G-IKEv2 (RFC 9838) message codec.
//!
//! Syntax only: this crate turns bytes into [`Message`]s and back, and says
//! why bytes are not a message ([`Error`], with the Notify to answer in
//! [`Error::notify_type`]). It does no I/O and no crypto, and knows nothing of
//! exchanges or state: which payloads an exchange allows, proposal selection,
//! traffic-selector narrowing and the like live in `ike-proto`.
//!
//! * [`codec`]: `Reader` (take, sub, refuse trailing bytes) and `Writer` (length
//!   fields patched in place), after rustls.
//! * [`registry`]: IANA registries as open integer newtypes with named
//!   constants; unknown values round-trip.
//! * [`header`]: the IKE header (RFC 7296 §3.1) and its checks, the UDP 4500
//!   non-ESP marker (RFC 3948 §2.2).
//! * [`payload`]: the generic payload header and chain (§3.2, §2.5), every RFC
//!   7296 payload (§3.3-§3.16), SKF (RFC 7383), IDg/GSA/KD (RFC 9838), PS
//!   (RFC 8019), and the SK/SKF split into IV | ciphertext | ICV.
//! * [`message`]: header + chain; parse and emit.
//!
//! Decoding borrows from the datagram (byte fields are `Cow::Borrowed`);
//! builders own their data (`Cow::Owned`), so one set of types serves both;
//! [`IntoOwned`] detaches a decoded message from its buffer.
//! No input makes any function here panic.
#![forbid(unsafe_code)]

pub mod codec;
pub mod error;
pub mod header;
pub mod message;
pub mod owned;
pub mod payload;
pub mod registry;

/// A byte field of a payload: borrowed when decoded, owned when built.
pub type Bytes<'a> = std::borrow::Cow<'a, [u8]>;

pub use error::{Error, Result};
pub use header::{strip_non_esp_marker, Flags, Header, HEADER_LEN, NON_ESP_MARKER};
pub use message::Message;
pub use owned::IntoOwned;
pub use payload::{
    emit_inner, int_auth_octets, pad, parse_chain, parse_inner, strip_padding, write_chain,
    Attribute, AttributeValue, Auth, Cert, CertReq, CfgAttribute, Chain, Cp, Delete, Eap,
    GroupPolicy, Gsa, GsaPolicy, Id, Kd, Ke, KeyBag, Nonce, Notify, Payload, Proposal, Raw, Sa, Sk,
    SkLayout, SkParts, Skf, TrafficSelector, Transform, Ts, Unknown, VendorId,
};
pub use registry::{
    AuthMethod, CertEncoding, CfgAttrType, CfgType, EncrId, EsnId, ExchangeType, GcauthId,
    GroupKeyBagAttrType, GsaAttrType, GwpAttrType, IdType, IntegId, KeId, KwaId,
    MemberKeyBagAttrType, NotifyType, PayloadType, PrfId, ProtocolId, TransformAttrType,
    TransformType, TsType,
};
