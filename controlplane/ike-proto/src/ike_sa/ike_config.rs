//! The configuration payload of IKE_AUTH, responder side (RFC 7296 §3.15):
//! addresses from the connection's pool, DNS servers, RFC 8598 split-DNS
//! domains and RFC 8983 IP4_ALLOWED / IP6_ALLOWED.
//!
//! Guarantees: at most one lease per address family and IKE SA; domains go
//! only to a client that asked for them and with a DNS server.
use std::net::IpAddr;

use ike_wire::{CfgAttrType, CfgAttribute, CfgType, Cp, NotifyType};

use super::{IkeSa};
use crate::config::Family;
use crate::error::ProtoError;
use crate::sa::Ctx;

impl IkeSa {
    /// RFC 8983 §5: IP4_ALLOWED / IP6_ALLOWED for the families our pool
    /// assigns, in answer to a request for addresses.
    pub(super) fn allowed_notifies(&self, cp: &Cp<'_>) -> Vec<NotifyType> {
        let asked = cp.attributes.iter().any(|a| matches!(a.attr_type, CfgAttrType::INTERNAL_IP4_ADDRESS | CfgAttrType::INTERNAL_IP6_ADDRESS));
        let Some(pool) = self.conn.pool.as_ref().filter(|_| asked) else { return Vec::new() };
        let mut v = Vec::new();
        if pool.v4.is_some() {
            v.push(NotifyType::IP4_ALLOWED);
        }
        if pool.v6.is_some() {
            v.push(NotifyType::IP6_ALLOWED);
        }
        v
    }

    /// CFG_REPLY for a CFG_REQUEST: one address per requested family from
    /// the pool, and the pool's DNS servers of those families.
    pub(super) fn assign_config(&mut self, ctx: &mut Ctx<'_>, cp: &Cp<'_>, dns_out: &mut Vec<IpAddr>) -> Result<Cp<'static>, ProtoError> {
        let pool = self.conn.pool.clone().ok_or(ProtoError::InternalAddressFailure)?;
        let mut attributes = Vec::new();
        let mut families = Vec::new();
        for a in &cp.attributes {
            match a.attr_type {
                CfgAttrType::INTERNAL_IP4_ADDRESS if !families.contains(&Family::V4) => families.push(Family::V4),
                CfgAttrType::INTERNAL_IP6_ADDRESS if !families.contains(&Family::V6) => families.push(Family::V6),
                _ => {}
            }
        }
        for f in &families {
            let existing = self.leases.iter().copied().find(|a| a.is_ipv4() == (*f == Family::V4));
            let addr = match existing {
                Some(a) => a,
                None => match ctx.pools.lease(&pool, *f) {
                    Some(a) => {
                        self.leases.push(a);
                        a
                    }
                    None => continue,
                },
            };
            match addr {
                IpAddr::V4(a) => attributes.push(CfgAttribute::new(CfgAttrType::INTERNAL_IP4_ADDRESS, a.octets().to_vec())),
                IpAddr::V6(a) => {
                    // §3.15.1: address and a one-octet prefix length.
                    let mut v = a.octets().to_vec();
                    v.push(128);
                    attributes.push(CfgAttribute::new(CfgAttrType::INTERNAL_IP6_ADDRESS, v));
                }
            }
        }
        // §3.15.3: INTERNAL_ADDRESS_FAILURE only if no address at all;
        // RFC 8983: if none of the requested families is one we assign,
        // say which one we do instead.
        if attributes.is_empty() && !families.is_empty() {
            let supported = |f: &Family| match f {
                Family::V4 => pool.v4.is_some(),
                Family::V6 => pool.v6.is_some(),
            };
            if !families.iter().any(supported) {
                match (pool.v4.is_some(), pool.v6.is_some()) {
                    (true, false) => return Err(ProtoError::AddressFamilyNotAllowed(NotifyType::IP4_ALLOWED)),
                    (false, true) => return Err(ProtoError::AddressFamilyNotAllowed(NotifyType::IP6_ALLOWED)),
                    _ => {}
                }
            }
            return Err(ProtoError::InternalAddressFailure);
        }
        let asked_dns4 = cp.attributes.iter().any(|a| a.attr_type == CfgAttrType::INTERNAL_IP4_DNS);
        let asked_dns6 = cp.attributes.iter().any(|a| a.attr_type == CfgAttrType::INTERNAL_IP6_DNS);
        for d in &pool.dns {
            match d {
                IpAddr::V4(a) if asked_dns4 => {
                    attributes.push(CfgAttribute::new(CfgAttrType::INTERNAL_IP4_DNS, a.octets().to_vec()));
                    dns_out.push(*d);
                }
                IpAddr::V6(a) if asked_dns6 => {
                    attributes.push(CfgAttribute::new(CfgAttrType::INTERNAL_IP6_DNS, a.octets().to_vec()));
                    dns_out.push(*d);
                }
                _ => {}
            }
        }
        // RFC 8598 §3.3: domains only to a client that asked, and only
        // with a DNS server that resolves them.
        if crate::split_dns::requested(&cp.attributes) && !dns_out.is_empty() && !pool.dns_domains.is_empty() {
            attributes.extend(crate::split_dns::reply_attributes(&pool.dns_domains));
            self.ext.dns_domains = pool.dns_domains.clone();
        }
        Ok(Cp { cfg_type: CfgType::CFG_REPLY, attributes })
    }

}
