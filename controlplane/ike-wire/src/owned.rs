//! Detaching decoded values from the datagram they borrow: every payload type
//! and [`Message`] convert into their `'static` form by copying their byte
//! fields, for state that outlives the receive buffer (e.g. the first
//! IKE_SA_INIT message kept for AUTH, RFC 7296 §2.15).
use std::borrow::Cow;

use crate::message::Message;
use crate::payload::gikev2::{GroupPolicy, Gsa, GsaPolicy, Kd, KeyBag};
use crate::payload::{
    Attribute, AttributeValue, Auth, Cert, CertReq, CfgAttribute, Cp, Delete, Eap, Id, Ke, Nonce,
    Notify, Payload, Proposal, Raw, Sa, Sk, Skf, TrafficSelector, Transform, Ts, Unknown, VendorId,
};
use crate::Bytes;

/// Conversion into a value that owns all its bytes.
pub trait IntoOwned {
    type Owned;
    fn into_owned(self) -> Self::Owned;
}

fn own(b: Bytes<'_>) -> Bytes<'static> {
    Cow::Owned(b.into_owned())
}

fn own_all<T: IntoOwned>(v: Vec<T>) -> Vec<T::Owned> {
    v.into_iter().map(IntoOwned::into_owned).collect()
}

impl IntoOwned for AttributeValue<'_> {
    type Owned = AttributeValue<'static>;
    fn into_owned(self) -> Self::Owned {
        match self {
            AttributeValue::Tv(v) => AttributeValue::Tv(v),
            AttributeValue::Tlv(b) => AttributeValue::Tlv(own(b)),
        }
    }
}

impl<T> IntoOwned for Attribute<'_, T> {
    type Owned = Attribute<'static, T>;
    fn into_owned(self) -> Self::Owned {
        Attribute {
            attr_type: self.attr_type,
            value: self.value.into_owned(),
        }
    }
}

impl IntoOwned for Transform<'_> {
    type Owned = Transform<'static>;
    fn into_owned(self) -> Self::Owned {
        Transform {
            transform_type: self.transform_type,
            transform_id: self.transform_id,
            attributes: own_all(self.attributes),
        }
    }
}

impl IntoOwned for Proposal<'_> {
    type Owned = Proposal<'static>;
    fn into_owned(self) -> Self::Owned {
        Proposal {
            proposal_num: self.proposal_num,
            protocol_id: self.protocol_id,
            spi: own(self.spi),
            transforms: own_all(self.transforms),
        }
    }
}

impl IntoOwned for TrafficSelector<'_> {
    type Owned = TrafficSelector<'static>;
    fn into_owned(self) -> Self::Owned {
        match self {
            TrafficSelector::Ipv4 {
                ip_protocol,
                start_port,
                end_port,
                start_addr,
                end_addr,
            } => TrafficSelector::Ipv4 {
                ip_protocol,
                start_port,
                end_port,
                start_addr,
                end_addr,
            },
            TrafficSelector::Ipv6 {
                ip_protocol,
                start_port,
                end_port,
                start_addr,
                end_addr,
            } => TrafficSelector::Ipv6 {
                ip_protocol,
                start_port,
                end_port,
                start_addr,
                end_addr,
            },
            TrafficSelector::SecLabel { label } => TrafficSelector::SecLabel { label: own(label) },
            TrafficSelector::Unknown {
                ts_type,
                ip_protocol,
                data,
            } => TrafficSelector::Unknown {
                ts_type,
                ip_protocol,
                data: own(data),
            },
        }
    }
}

impl IntoOwned for CfgAttribute<'_> {
    type Owned = CfgAttribute<'static>;
    fn into_owned(self) -> Self::Owned {
        CfgAttribute {
            attr_type: self.attr_type,
            value: own(self.value),
        }
    }
}

impl IntoOwned for GroupPolicy<'_> {
    type Owned = GroupPolicy<'static>;
    fn into_owned(self) -> Self::Owned {
        match self {
            GroupPolicy::GroupWide { attributes } => GroupPolicy::GroupWide {
                attributes: own_all(attributes),
            },
            GroupPolicy::Sa(p) => GroupPolicy::Sa(GsaPolicy {
                protocol_id: p.protocol_id,
                spi: own(p.spi),
                src_ts: p.src_ts.into_owned(),
                dst_ts: p.dst_ts.into_owned(),
                transforms: own_all(p.transforms),
                attributes: own_all(p.attributes),
            }),
        }
    }
}

impl IntoOwned for KeyBag<'_> {
    type Owned = KeyBag<'static>;
    fn into_owned(self) -> Self::Owned {
        match self {
            KeyBag::Member { attributes } => KeyBag::Member {
                attributes: own_all(attributes),
            },
            KeyBag::Group {
                protocol_id,
                spi,
                attributes,
            } => KeyBag::Group {
                protocol_id,
                spi: own(spi),
                attributes: own_all(attributes),
            },
        }
    }
}

impl IntoOwned for Payload<'_> {
    type Owned = Payload<'static>;
    fn into_owned(self) -> Self::Owned {
        let id = |i: Id<'_>| Id {
            id_type: i.id_type,
            data: own(i.data),
        };
        match self {
            Payload::Sa(p) => Payload::Sa(Sa {
                proposals: own_all(p.proposals),
            }),
            Payload::Ke(p) => Payload::Ke(Ke {
                ke_method: p.ke_method,
                data: own(p.data),
            }),
            Payload::IdI(p) => Payload::IdI(id(p)),
            Payload::IdR(p) => Payload::IdR(id(p)),
            Payload::IdG(p) => Payload::IdG(id(p)),
            Payload::Cert(p) => Payload::Cert(Cert {
                encoding: p.encoding,
                data: own(p.data),
            }),
            Payload::CertReq(p) => Payload::CertReq(CertReq {
                encoding: p.encoding,
                authorities: own(p.authorities),
            }),
            Payload::Auth(p) => Payload::Auth(Auth {
                method: p.method,
                data: own(p.data),
            }),
            Payload::Nonce(p) => Payload::Nonce(Nonce { data: own(p.data) }),
            Payload::Notify(p) => Payload::Notify(Notify {
                protocol_id: p.protocol_id,
                spi: own(p.spi),
                notify_type: p.notify_type,
                data: own(p.data),
            }),
            Payload::Delete(p) => Payload::Delete(Delete {
                protocol_id: p.protocol_id,
                spi_size: p.spi_size,
                spis: p.spis.into_iter().map(own).collect(),
            }),
            Payload::VendorId(p) => Payload::VendorId(VendorId { vid: own(p.vid) }),
            Payload::TsI(p) => Payload::TsI(Ts {
                selectors: own_all(p.selectors),
            }),
            Payload::TsR(p) => Payload::TsR(Ts {
                selectors: own_all(p.selectors),
            }),
            Payload::Sk(p) => Payload::Sk(Sk {
                first_inner: p.first_inner,
                flags: p.flags,
                body: own(p.body),
            }),
            Payload::Skf(p) => Payload::Skf(Skf {
                first_inner: p.first_inner,
                flags: p.flags,
                fragment_number: p.fragment_number,
                total_fragments: p.total_fragments,
                body: own(p.body),
            }),
            Payload::Cp(p) => Payload::Cp(Cp {
                cfg_type: p.cfg_type,
                attributes: own_all(p.attributes),
            }),
            Payload::Eap(p) => Payload::Eap(Eap {
                message: own(p.message),
            }),
            Payload::Gsa(p) => Payload::Gsa(Gsa {
                policies: own_all(p.policies),
            }),
            Payload::Kd(p) => Payload::Kd(Kd {
                key_bags: own_all(p.key_bags),
            }),
            Payload::Ps(p) => Payload::Ps(Raw { body: own(p.body) }),
            Payload::Unknown(u) => Payload::Unknown(Unknown {
                payload_type: u.payload_type,
                critical: u.critical,
                body: own(u.body),
            }),
        }
    }
}

impl IntoOwned for Message<'_> {
    type Owned = Message<'static>;
    fn into_owned(self) -> Self::Owned {
        Message {
            header: self.header,
            payloads: own_all(self.payloads),
        }
    }
}
