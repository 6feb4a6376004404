//! IANA "Internet Key Exchange Version 2 (IKEv2) Parameters" registries as open
//! integer newtypes with named constants (the rustls `enum_builder!` idea, but
//! never a closed enum): any value on the wire decodes, unknown values keep
//! their number and re-encode unchanged, and `Debug` prints the RFC name when
//! there is one.
//!
//! Sources of the numbers (tags as in the team's spec digests
//! `ikev2-extensions.md` and `esp-iiv-gikev2.md`): RFC 7296 §3 read directly for the core
//! values; extensions cite their RFC in the constant's doc. Values tagged [I]
//! (confirmed in strongSwan and libreswan) or [S] (independent IANA tables) were
//! not read in the RFC text itself; they are only names here, the codec treats
//! every number alike.

macro_rules! registry {
    (
        $(#[$meta:meta])*
        $name:ident($ty:ty) {
            $( $(#[$cmeta:meta])* $c:ident = $v:expr, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub $ty);

        impl $name {
            $( $(#[$cmeta])* pub const $c: Self = Self($v); )*

            /// Every named value, in registry order.
            pub const KNOWN: &'static [Self] = &[ $( Self::$c, )* ];

            /// The registry name, or `None` for a value this crate has no name for.
            pub fn name(self) -> Option<&'static str> {
                $( if self == Self::$c { return Some(stringify!($c)); } )*
                None
            }

            pub fn is_known(self) -> bool {
                self.name().is_some()
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, concat!(stringify!($name), "({})"), self.0),
                }
            }
        }

        impl From<$ty> for $name {
            fn from(v: $ty) -> Self {
                Self(v)
            }
        }

        impl From<$name> for $ty {
            fn from(v: $name) -> Self {
                v.0
            }
        }
    };
}

registry! {
    /// Exchange Type (RFC 7296 §3.1).
    ExchangeType(u8) {
        IKE_SA_INIT = 34,
        IKE_AUTH = 35,
        CREATE_CHILD_SA = 36,
        INFORMATIONAL = 37,
        /// G-IKEv2 (RFC 9838, draft-23 §4.2) [P].
        GSA_AUTH = 39,
        /// G-IKEv2 [P].
        GSA_REGISTRATION = 40,
        /// G-IKEv2 multicast rekey [P].
        GSA_REKEY = 41,
        /// G-IKEv2 unicast in-band rekey [S].
        GSA_INBAND_REKEY = 42,
        /// RFC 9242 [R].
        IKE_INTERMEDIATE = 43,
        /// RFC 9370 [I][S].
        IKE_FOLLOWUP_KE = 44,
    }
}

registry! {
    /// Payload Type, the "Next Payload" values (RFC 7296 §3.2). Values 1-32
    /// belong to IKEv1 and are never assigned here.
    PayloadType(u8) {
        NONE = 0,
        SA = 33,
        KE = 34,
        IDI = 35,
        IDR = 36,
        CERT = 37,
        CERTREQ = 38,
        AUTH = 39,
        NONCE = 40,
        NOTIFY = 41,
        DELETE = 42,
        VENDOR_ID = 43,
        TSI = 44,
        TSR = 45,
        /// Encrypted and Authenticated.
        SK = 46,
        CP = 47,
        EAP = 48,
        /// G-IKEv2 Group Identification [P].
        IDG = 50,
        /// G-IKEv2 Group Security Association [P].
        GSA = 51,
        /// G-IKEv2 Key Download [P].
        KD = 52,
        /// Encrypted and Authenticated Fragment, RFC 7383 §2.5 [R].
        SKF = 53,
        /// Puzzle Solution, RFC 8019 [R].
        PS = 54,
    }
}

registry! {
    /// Transform Type (RFC 7296 §3.3.2).
    TransformType(u8) {
        ENCR = 1,
        PRF = 2,
        INTEG = 3,
        /// "Key Exchange Method" since RFC 9370 (was D-H).
        KE = 4,
        /// ESN; "Sequence Numbers" since RFC 9827.
        ESN = 5,
        /// RFC 9370 Additional Key Exchange 1..7 [I][S].
        ADDKE1 = 6,
        ADDKE2 = 7,
        ADDKE3 = 8,
        ADDKE4 = 9,
        ADDKE5 = 10,
        ADDKE6 = 11,
        ADDKE7 = 12,
        /// G-IKEv2 Key Wrap Algorithm [S].
        KWA = 13,
        /// G-IKEv2 Group Controller Authentication Method [S].
        GCAUTH = 14,
    }
}

impl TransformType {
    /// ADDKE`n` for n in 1..=7 (RFC 9370).
    pub fn addke(n: u8) -> Option<Self> {
        (1..=7).contains(&n).then(|| Self(5 + n))
    }

    /// Whether the Transform ID comes from the Transform Type 4 registry
    /// (KE and ADDKE1..7 share it, RFC 9370).
    pub fn uses_ke_ids(self) -> bool {
        (4..=12).contains(&self.0) && self.0 != 5
    }
}

registry! {
    /// Transform Type 1 - Encryption Algorithm Transform IDs.
    EncrId(u16) {
        ENCR_DES_IV64 = 1,
        ENCR_DES = 2,
        ENCR_3DES = 3,
        ENCR_RC5 = 4,
        ENCR_IDEA = 5,
        ENCR_CAST = 6,
        ENCR_BLOWFISH = 7,
        ENCR_3IDEA = 8,
        ENCR_DES_IV32 = 9,
        ENCR_NULL = 11,
        ENCR_AES_CBC = 12,
        ENCR_AES_CTR = 13,
        /// RFC 5282.
        ENCR_AES_CCM_8 = 14,
        ENCR_AES_CCM_12 = 15,
        ENCR_AES_CCM_16 = 16,
        /// RFC 5282 (names from RFC 8247).
        ENCR_AES_GCM_8 = 18,
        ENCR_AES_GCM_12 = 19,
        ENCR_AES_GCM_16 = 20,
        /// RFC 7634.
        ENCR_CHACHA20_POLY1305 = 28,
        /// RFC 8750 implicit IV (ESP only; "Not Allowed" for IKEv2).
        ENCR_AES_CCM_8_IIV = 29,
        ENCR_AES_GCM_16_IIV = 30,
        ENCR_CHACHA20_POLY1305_IIV = 31,
    }
}

registry! {
    /// Transform Type 2 - Pseudorandom Function Transform IDs.
    PrfId(u16) {
        PRF_HMAC_MD5 = 1,
        PRF_HMAC_SHA1 = 2,
        PRF_HMAC_TIGER = 3,
        /// RFC 4868.
        PRF_HMAC_SHA2_256 = 5,
        PRF_HMAC_SHA2_384 = 6,
        PRF_HMAC_SHA2_512 = 7,
    }
}

registry! {
    /// Transform Type 3 - Integrity Algorithm Transform IDs.
    IntegId(u16) {
        NONE = 0,
        AUTH_HMAC_MD5_96 = 1,
        AUTH_HMAC_SHA1_96 = 2,
        AUTH_DES_MAC = 3,
        AUTH_KPDK_MD5 = 4,
        AUTH_AES_XCBC_96 = 5,
        /// RFC 4868.
        AUTH_HMAC_SHA2_256_128 = 12,
        AUTH_HMAC_SHA2_384_192 = 13,
        AUTH_HMAC_SHA2_512_256 = 14,
    }
}

registry! {
    /// Transform Type 4 - Key Exchange Method Transform IDs (also used by
    /// ADDKE1..7, RFC 9370).
    KeId(u16) {
        NONE = 0,
        MODP_768 = 1,
        MODP_1024 = 2,
        MODP_1536 = 5,
        /// RFC 3526.
        MODP_2048 = 14,
        MODP_3072 = 15,
        MODP_4096 = 16,
        MODP_6144 = 17,
        MODP_8192 = 18,
        /// RFC 5903 random ECP groups.
        ECP_256 = 19,
        ECP_384 = 20,
        ECP_521 = 21,
        /// RFC 8031.
        CURVE25519 = 31,
        CURVE448 = 32,
        /// draft-ietf-ipsecme-ikev2-mlkem-08 [R].
        ML_KEM_512 = 35,
        ML_KEM_768 = 36,
        ML_KEM_1024 = 37,
    }
}

registry! {
    /// Transform Type 5 - Extended Sequence Numbers Transform IDs.
    EsnId(u16) {
        NO_ESN = 0,
        ESN = 1,
        /// G-IKEv2 "32-bit Unspecified Numbers" [S].
        UNSPECIFIED_32 = 2,
    }
}

registry! {
    /// Transform Attribute Types (RFC 7296 §3.3.5).
    TransformAttrType(u16) {
        /// TV format.
        KEY_LENGTH = 14,
        /// G-IKEv2 Signature Algorithm Identifier (TLV) [S].
        SIGNATURE_ALGORITHM_IDENTIFIER = 18,
    }
}

registry! {
    /// Security Protocol Identifier (RFC 7296 §3.3.1). 0 appears in Notify and
    /// Delete payloads that concern the IKE SA itself.
    ProtocolId(u8) {
        NONE = 0,
        IKE = 1,
        AH = 2,
        ESP = 3,
        /// G-IKEv2 Rekey SA [S].
        GIKE_UPDATE = 6,
    }
}

registry! {
    /// Notify Message Types (RFC 7296 §3.10.1). 0-16383 are errors, 16384 and
    /// up are status types.
    NotifyType(u16) {
        UNSUPPORTED_CRITICAL_PAYLOAD = 1,
        INVALID_IKE_SPI = 4,
        INVALID_MAJOR_VERSION = 5,
        INVALID_SYNTAX = 7,
        INVALID_MESSAGE_ID = 9,
        INVALID_SPI = 11,
        NO_PROPOSAL_CHOSEN = 14,
        INVALID_KE_PAYLOAD = 17,
        AUTHENTICATION_FAILED = 24,
        SINGLE_PAIR_REQUIRED = 34,
        NO_ADDITIONAL_SAS = 35,
        INTERNAL_ADDRESS_FAILURE = 36,
        FAILED_CP_REQUIRED = 37,
        TS_UNACCEPTABLE = 38,
        INVALID_SELECTORS = 39,
        /// RFC 4555.
        UNACCEPTABLE_ADDRESSES = 40,
        UNEXPECTED_NAT_DETECTED = 41,
        TEMPORARY_FAILURE = 43,
        CHILD_SA_NOT_FOUND = 44,
        /// G-IKEv2 [P].
        INVALID_GROUP_ID = 45,
        AUTHORIZATION_FAILED = 46,
        /// RFC 9370 [I].
        STATE_NOT_FOUND = 47,
        /// G-IKEv2 [S].
        REGISTRATION_FAILED = 49,
        INITIAL_CONTACT = 16384,
        SET_WINDOW_SIZE = 16385,
        ADDITIONAL_TS_POSSIBLE = 16386,
        IPCOMP_SUPPORTED = 16387,
        NAT_DETECTION_SOURCE_IP = 16388,
        NAT_DETECTION_DESTINATION_IP = 16389,
        COOKIE = 16390,
        USE_TRANSPORT_MODE = 16391,
        HTTP_CERT_LOOKUP_SUPPORTED = 16392,
        REKEY_SA = 16393,
        ESP_TFC_PADDING_NOT_SUPPORTED = 16394,
        NON_FIRST_FRAGMENTS_ALSO = 16395,
        /// RFC 4555 (MOBIKE).
        MOBIKE_SUPPORTED = 16396,
        ADDITIONAL_IP4_ADDRESS = 16397,
        ADDITIONAL_IP6_ADDRESS = 16398,
        NO_ADDITIONAL_ADDRESSES = 16399,
        UPDATE_SA_ADDRESSES = 16400,
        COOKIE2 = 16401,
        NO_NATS_ALLOWED = 16402,
        /// RFC 5685.
        REDIRECT_SUPPORTED = 16406,
        REDIRECT = 16407,
        REDIRECTED_FROM = 16408,
        /// RFC 5998: the initiator accepts EAP-only authentication (no
        /// AUTH from the responder before the EAP exchange).
        EAP_ONLY_AUTHENTICATION = 16417,
        /// RFC 6023.
        CHILDLESS_IKEV2_SUPPORTED = 16418,
        /// RFC 6311 §3: announced in IKE_AUTH; strongSwan answers
        /// IKEV2_MESSAGE_ID_SYNC only from a peer that sent it.
        IKEV2_MESSAGE_ID_SYNC_SUPPORTED = 16420,
        IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED = 16421,
        /// RFC 6311 §4: Nonce Data (4) | EXPECTED_SEND_REQ_MESSAGE_ID (4) |
        /// EXPECTED_RECV_REQ_MESSAGE_ID (4), in an INFORMATIONAL with
        /// Message ID 0.
        IKEV2_MESSAGE_ID_SYNC = 16422,
        IPSEC_REPLAY_COUNTER_SYNC = 16423,
        /// G-IKEv2 (ex SENDER_REQUEST_ID) [P].
        GROUP_SENDER = 16429,
        /// RFC 7383.
        IKEV2_FRAGMENTATION_SUPPORTED = 16430,
        /// RFC 7427.
        SIGNATURE_HASH_ALGORITHMS = 16431,
        /// RFC 8019.
        PUZZLE = 16434,
        /// RFC 8784.
        USE_PPK = 16435,
        PPK_IDENTITY = 16436,
        NO_PPK_AUTH = 16437,
        /// RFC 9242.
        INTERMEDIATE_EXCHANGE_SUPPORTED = 16438,
        /// RFC 8983.
        IP4_ALLOWED = 16439,
        IP6_ALLOWED = 16440,
        /// RFC 9370 [I][S].
        ADDITIONAL_KEY_EXCHANGE = 16441,
        /// RFC 9347 [I].
        USE_AGGFRAG = 16442,
        /// RFC 9593 [I].
        SUPPORTED_AUTH_METHODS = 16443,
        /// RFC 9611 [I].
        SA_RESOURCE_INFO = 16444,
        /// RFC 9867 (the PPK in IKE_INTERMEDIATE), in IKE_SA_INIT [I]:
        /// libreswan 5.2 and main `include/ietf_constants.h`
        /// (`v2N_USE_PPK_INT = 16445`, "RFC-ietf-ipsecme-ikev2-qr-alt"),
        /// interop-tested with pluto 5.2 (docs/ppk-intermediate.md).
        USE_PPK_INT = 16445,
        /// RFC 9867, in IKE_INTERMEDIATE: `PPK_ID | PPK Confirmation` [I]
        /// (same source, `v2N_PPK_IDENTITY_KEY = 16446`).
        PPK_IDENTITY_KEY = 16446,
    }
}

impl NotifyType {
    /// RFC 7296 §3.10.1: types below 16384 report errors.
    pub fn is_error(self) -> bool {
        self.0 < 16384
    }
}

registry! {
    /// Authentication Method (RFC 7296 §3.8).
    AuthMethod(u8) {
        RSA_DIGITAL_SIGNATURE = 1,
        SHARED_KEY_MESSAGE_INTEGRITY_CODE = 2,
        DSS_DIGITAL_SIGNATURE = 3,
        /// RFC 4754.
        ECDSA_SHA256_P256 = 9,
        ECDSA_SHA384_P384 = 10,
        ECDSA_SHA512_P521 = 11,
        /// RFC 7619.
        NULL_AUTHENTICATION = 13,
        /// RFC 7427.
        DIGITAL_SIGNATURE = 14,
    }
}

registry! {
    /// ID Type (RFC 7296 §3.5), also used by IDg (G-IKEv2).
    IdType(u8) {
        ID_IPV4_ADDR = 1,
        ID_FQDN = 2,
        ID_RFC822_ADDR = 3,
        ID_IPV6_ADDR = 5,
        ID_DER_ASN1_DN = 9,
        ID_DER_ASN1_GN = 10,
        ID_KEY_ID = 11,
        /// RFC 7619.
        ID_NULL = 13,
    }
}

registry! {
    /// Certificate Encoding (RFC 7296 §3.6).
    CertEncoding(u8) {
        PKCS7_WRAPPED_X509 = 1,
        PGP = 2,
        DNS_SIGNED_KEY = 3,
        X509_SIGNATURE = 4,
        KERBEROS_TOKEN = 6,
        CRL = 7,
        ARL = 8,
        SPKI = 9,
        X509_ATTRIBUTE = 10,
        RAW_RSA_KEY = 11,
        HASH_AND_URL_X509 = 12,
        HASH_AND_URL_X509_BUNDLE = 13,
    }
}

registry! {
    /// Traffic Selector Type (RFC 7296 §3.13.1).
    TsType(u8) {
        TS_IPV4_ADDR_RANGE = 7,
        TS_IPV6_ADDR_RANGE = 8,
        /// RFC 9478 [I].
        TS_SECLABEL = 10,
    }
}

registry! {
    /// CFG Type of the Configuration payload (RFC 7296 §3.15).
    CfgType(u8) {
        CFG_REQUEST = 1,
        CFG_REPLY = 2,
        CFG_SET = 3,
        CFG_ACK = 4,
    }
}

registry! {
    /// Configuration Attribute Type (RFC 7296 §3.15.1), 15 bits on the wire.
    CfgAttrType(u16) {
        INTERNAL_IP4_ADDRESS = 1,
        INTERNAL_IP4_NETMASK = 2,
        INTERNAL_IP4_DNS = 3,
        INTERNAL_IP4_NBNS = 4,
        INTERNAL_IP4_DHCP = 6,
        APPLICATION_VERSION = 7,
        INTERNAL_IP6_ADDRESS = 8,
        INTERNAL_IP6_DNS = 10,
        INTERNAL_IP6_DHCP = 12,
        INTERNAL_IP4_SUBNET = 13,
        SUPPORTED_ATTRIBUTES = 14,
        INTERNAL_IP6_SUBNET = 15,
        /// RFC 8598.
        INTERNAL_DNS_DOMAIN = 25,
        INTERNAL_DNSSEC_TA = 26,
    }
}

registry! {
    /// G-IKEv2 Transform Type 13 (KWA) - Key Wrap Algorithm IDs (RFC 9838,
    /// draft-23 §4.4.2) [P].
    KwaId(u16) {
        KW_5649_128 = 1,
        KW_5649_192 = 2,
        KW_5649_256 = 3,
        KW_ARX = 4,
    }
}

registry! {
    /// G-IKEv2 Transform Type 14 (GCAUTH) - Group Controller Authentication
    /// Method IDs (RFC 9838) [P].
    GcauthId(u16) {
        IMPLICIT = 1,
        DIGITAL_SIGNATURE = 2,
    }
}

registry! {
    /// G-IKEv2 GSA policy attributes (RFC 9838, draft-23 §4.4.2.1) [P], all TLV.
    GsaAttrType(u16) {
        GSA_KEY_LIFETIME = 1,
        GSA_INITIAL_MESSAGE_ID = 2,
        GSA_NEXT_SPI = 3,
    }
}

registry! {
    /// G-IKEv2 group-wide policy attributes (RFC 9838) [P], all TV.
    GwpAttrType(u16) {
        GWP_ATD = 1,
        GWP_DTD = 2,
        GWP_SENDER_ID_BITS = 3,
    }
}

registry! {
    /// G-IKEv2 Group Key Bag attributes (RFC 9838) [P].
    GroupKeyBagAttrType(u16) {
        SA_KEY = 1,
    }
}

registry! {
    /// G-IKEv2 Member Key Bag attributes (RFC 9838) [P].
    MemberKeyBagAttrType(u16) {
        WRAP_KEY = 1,
        AUTH_KEY = 2,
        GM_SENDER_ID = 3,
    }
}
