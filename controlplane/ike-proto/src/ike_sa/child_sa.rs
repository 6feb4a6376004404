//! What every Child SA negotiation shares, in IKE_AUTH and CREATE_CHILD_SA
//! (RFC 7296 §1.2, §1.3, §2.9, §2.17): the request's SPI and selectors, the
//! responder's proposal choice and narrowing, the initiator's checks of the
//! answer, KEYMAT, and the install and remove events.
//!
//! Guarantees: a Child SA is announced (`Event::ChildSaInstall`) only with its
//! keys; an SPI reserved for a negotiation that fails is given back.

use ike_crypto::ke::KeyExchange;
use ike_crypto::keys::{self, ChildSaKeys};
use ike_wire::{
    Ke,
    Nonce, NotifyType, Payload,
};

use super::{ChildSa, ChildState, IkeSa, followup, notify_payload};
use crate::config::{Family, Mode};
use crate::error::ProtoError;
use crate::event::{ChildKeys, ChildSaHandle, ChildSaInstall, Event};
use crate::proposal::{self, EspSuite};
use crate::sa::{Ctx, Role};
use crate::ts::{self, TrafficSelector};

/// What we proposed for a Child SA.
pub struct ChildRequest {
    pub(super) spi_in: u32,
    pub(super) ts_local: Vec<TrafficSelector>,
    pub(super) ts_remote: Vec<TrafficSelector>,
}

/// Which exchange negotiates a Child SA: only CREATE_CHILD_SA carries its
/// own nonces and an optional PFS key exchange (§1.2, §1.3).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Via {
    IkeAuth,
    CreateChildSa,
}

impl IkeSa {
    /// What we propose for a new Child SA: a fresh SPI and our selectors.
    pub(super) fn child_request(&self, ctx: &mut Ctx<'_>) -> ChildRequest {
        let ts_local = if self.conn.request_vip.is_empty() {
            self.conn.child.local_ts.clone()
        } else {
            // A remote-access client does not know its address yet: it
            // proposes "any" and the responder narrows (§2.9).
            self.conn
                .request_vip
                .iter()
                .map(|f| match f {
                    Family::V4 => TrafficSelector::any_v4(),
                    Family::V6 => TrafficSelector::any_v6(),
                })
                .collect()
        };
        ChildRequest { spi_in: ctx.alloc.child_spi(ctx.rng), ts_local, ts_remote: self.conn.child.remote_ts.clone() }
    }

    /// Responder side of a Child SA negotiation. `ke_i` and `dh` are the
    /// PFS key exchange of a CREATE_CHILD_SA; the nonces are those whose
    /// KEYMAT applies (§2.17). Returns the answer payloads (SA, [Nr, KEr],
    /// TSi, TSr) and the SA to install.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn respond_child(
        &mut self,
        ctx: &mut Ctx<'_>,
        sa_i: &ike_wire::Sa<'_>,
        ts_i: &ike_wire::Ts<'_>,
        ts_r: &ike_wire::Ts<'_>,
        ke_i: Option<&Ke<'_>>,
        ni: &[u8],
        nr: &[u8],
        rekey_of: Option<&ChildSa>,
        transport: bool,
        via: Via,
        hcp: Option<&[u8]>,
    ) -> Result<(Vec<Payload<'static>>, Box<ChildSaInstall>), ProtoError> {
        let pfs = via == Via::CreateChildSa;
        let conn = self.conn.clone();
        // draft-ietf-ipsecme-ikev2-diet-esp-extension-04 §3: our choice
        // among the initiator's HCP proposals, or NO_PROPOSAL_CHOSEN.
        let compression = match (&conn.child.compression, hcp) {
            (Some(c), Some(data)) => c.respond(data, self.nat_local || self.nat_remote)?,
            _ => None,
        };
        let (allowed_i, allowed_r) = match rekey_of {
            Some(old) => (old.ts_remote.clone(), old.ts_local.clone()),
            None if !self.leases.is_empty() => (self.leases.iter().map(|a| TrafficSelector::host(*a)).collect(), conn.child.local_ts.clone()),
            None => (conn.child.remote_ts.clone(), conn.child.local_ts.clone()),
        };
        let ts_remote = ts::narrow(&ts::from_wire_list(&ts_i.selectors), &allowed_i);
        let ts_local = ts::narrow(&ts::from_wire_list(&ts_r.selectors), &allowed_r);
        if ts_remote.is_empty() || ts_local.is_empty() {
            return Err(ProtoError::TsUnacceptable);
        }
        // RFC 9478: a rekey keeps the label of the SA it replaces.
        let our_label = match rekey_of {
            Some(old) => old.sec_label.clone(),
            None => conn.child.sec_label.clone(),
        };
        let label = ts::choose_label(our_label.as_deref(), &ts_i.selectors, &ts_r.selectors)?;
        let spi_in = ctx.alloc.child_spi(ctx.rng);
        let selected = proposal::select_esp(&conn.child.esp_proposals, sa_i, spi_in, pfs);
        let (suite, spi_out, answer) = match selected {
            Ok(s) => s,
            Err(e) => {
                ctx.alloc.release_child_spi(spi_in);
                return Err(e);
            }
        };
        let mut ke_payload = None;
        let g_ir = match (suite.ke, ke_i) {
            (Some(method), Some(k)) if k.ke_method == method => {
                let r = ctx.crypto.key_exchange_respond(method.0, &k.data, ctx.rng);
                match r {
                    Ok(r) => {
                        ke_payload = Some(Ke { ke_method: method, data: r.ke_data.into() });
                        Some(r.shared)
                    }
                    Err(e) => {
                        ctx.alloc.release_child_spi(spi_in);
                        return Err(e.into());
                    }
                }
            }
            (Some(method), _) => {
                ctx.alloc.release_child_spi(spi_in);
                return Err(ProtoError::InvalidKePayload(method));
            }
            (None, _) => None,
        };
        let mode = if transport && conn.child.mode == Mode::Transport { Mode::Transport } else { Mode::Tunnel };
        let mut install = self.child_install(ctx, suite, spi_in, spi_out, g_ir.as_ref().map(|g| g.as_slice()), ni, nr, Role::Responder, mode, ts_local.clone(), ts_remote.clone(), rekey_of.map(|c| c.handle))?;
        install.sec_label = label.clone();
        let mut out = vec![Payload::Sa(answer)];
        if let Some((notify, profile)) = compression {
            install.compression = Some(profile);
            out.push(notify);
        }
        if pfs {
            out.push(Payload::Nonce(Nonce { data: nr.to_vec().into() }));
            if let Some(k) = ke_payload {
                out.push(Payload::Ke(k));
            }
        }
        out.push(Payload::TsI(ts::to_wire_list_labeled(&ts_remote, label.as_deref())));
        out.push(Payload::TsR(ts::to_wire_list_labeled(&ts_local, label.as_deref())));
        if mode == Mode::Transport {
            out.push(notify_payload(NotifyType::USE_TRANSPORT_MODE));
        }
        Ok((out, install))
    }

    /// Initiator side: checks the responder's answer and derives the keys.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn accept_child(
        &mut self,
        ctx: &mut Ctx<'_>,
        req: &ChildRequest,
        sa_r: &ike_wire::Sa<'_>,
        ts_i: &ike_wire::Ts<'_>,
        ts_r: &ike_wire::Ts<'_>,
        ke: Option<(&dyn KeyExchange, Option<&Ke<'_>>)>,
        ni: &[u8],
        nr: &[u8],
        rekey_of: Option<ChildSaHandle>,
        transport: bool,
        check_ts_local: bool,
        via: Via,
        hcp: Option<&[u8]>,
    ) -> Result<ChildSaInstall, ProtoError> {
        let conn = self.conn.clone();
        // ext-04 §3: the responder's choice must be one we offered; no
        // answer means a peer without the extension, so no compression.
        let compression = match (&conn.child.compression, hcp) {
            (Some(c), Some(data)) => Some(c.accept(self.hcp_kept(rekey_of).as_ref(), data)?),
            _ => None,
        };
        let (suite, spi_out) = proposal::accept_esp(&conn.child.esp_proposals, sa_r, via == Via::CreateChildSa)?;
        let ts_local = ts::from_wire_list(&ts_i.selectors);
        let ts_remote = ts::from_wire_list(&ts_r.selectors);
        // §2.9: the responder may only narrow. A virtual-IP client proposed
        // "any" and takes the assigned address instead.
        let local_ok = if check_ts_local { ts::is_narrowing_of(&ts_local, &req.ts_local) } else { !ts_local.is_empty() };
        if !local_ok || !ts::is_narrowing_of(&ts_remote, &req.ts_remote) {
            return Err(ProtoError::TsUnacceptable);
        }
        let label = ts::check_label(conn.child.sec_label.as_deref(), &ts_i.selectors, &ts_r.selectors)?;
        let g_ir = match (suite.ke, ke) {
            (Some(method), Some((ours, Some(ke_r)))) if ours.method() == method.0 && ke_r.ke_method == method => {
                Some(ours.compute_shared(&ke_r.data)?)
            }
            (None, _) => None,
            _ => return Err(ProtoError::Invalid("KE of the Child SA")),
        };
        let mode = if transport && conn.child.mode == Mode::Transport { Mode::Transport } else { Mode::Tunnel };
        let mut install = self.child_install(ctx, suite, req.spi_in, spi_out, g_ir.as_ref().map(|g| g.as_slice()), ni, nr, Role::Initiator, mode, ts_local, ts_remote, rekey_of)?;
        install.sec_label = label;
        install.compression = compression;
        Ok(*install)
    }

    /// KEYMAT (§2.17) and the install event of a Child SA. `role` is our
    /// role in the exchange that created it: the initiator's keys come
    /// first in KEYMAT.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn child_install(
        &mut self,
        ctx: &mut Ctx<'_>,
        suite: EspSuite,
        spi_in: u32,
        spi_out: u32,
        g_ir: Option<&[u8]>,
        ni: &[u8],
        nr: &[u8],
        role: Role,
        mode: Mode,
        ts_local: Vec<TrafficSelector>,
        ts_remote: Vec<TrafficSelector>,
        rekey_of: Option<ChildSaHandle>,
    ) -> Result<Box<ChildSaInstall>, ProtoError> {
        // RFC 9370 §2.2.4: with additional key exchanges KEYMAT waits for
        // them (the caller holds the install back; see `followup`).
        let (keys_out, keys_in) = if suite.additional().next().is_some() {
            self.pending_keymat = Some(followup::ChildKeymat { g_ir: g_ir.map(|g| ike_crypto::Secret::new(g.to_vec())), ni: ni.to_vec(), nr: nr.to_vec(), role });
            let none = || ChildKeys { encr: ike_crypto::Secret::new(Vec::new()), integ: ike_crypto::Secret::new(Vec::new()) };
            (none(), none())
        } else {
            self.child_keys(ctx, &suite, g_ir, ni, nr, &[], role)?
        };
        Ok(Box::new(ChildSaInstall {
            ike_sa: self.handle,
            child_sa: ctx.alloc.child_handle(),
            spi_in,
            spi_out,
            keys_in,
            keys_out,
            suite,
            mode,
            ts_local,
            ts_remote,
            lifetime: self.conn.child.lifetime,
            // RFC 4555: a moved IKE SA's Child SAs go where its proven path is.
            local: self.esp_path().local,
            remote: self.esp_path().remote,
            udp_encap: self.esp_path().udp_encap,
            rekey_of,
            sec_label: None,
            compression: None,
        }))
    }

    /// KEYMAT split into (outbound, inbound) keys for `role`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn child_keys(
        &self,
        ctx: &Ctx<'_>,
        suite: &EspSuite,
        g_ir: Option<&[u8]>,
        ni: &[u8],
        nr: &[u8],
        additional: &[&[u8]],
        role: Role,
    ) -> Result<(ChildKeys, ChildKeys), ProtoError> {
        let keys = self.keys.as_ref().ok_or(ProtoError::Invalid("no keys"))?;
        let encr_len = ctx.crypto.encr_key_len(suite.encr.0, suite.key_bits)?;
        let integ_len = ctx.crypto.integ_key_len(suite.integ.0)?;
        let keymat = keys::child_sa_keymat(&*keys.prf, &keys.sk_d, g_ir, ni, nr, additional, ChildSaKeys::keymat_len(encr_len, integ_len))?;
        let k = ChildSaKeys::split(&keymat, encr_len, integ_len)?;
        let i = ChildKeys { encr: k.encr_i, integ: k.integ_i };
        let r = ChildKeys { encr: k.encr_r, integ: k.integ_r };
        Ok(match role {
            Role::Initiator => (i, r),
            Role::Responder => (r, i),
        })
    }

    /// The profile a rekey of `rekey_of` proposes (and expects back).
    pub(super) fn hcp_kept(&self, rekey_of: Option<ChildSaHandle>) -> Option<crate::compression::DietProfile> {
        rekey_of.and_then(|h| self.children.get(&h)).and_then(|c| c.compression)
    }

    /// N(HCP_PROPOSAL) for a request creating a Child SA (a rekey of
    /// `rekey_of` proposes its profile only), if the connection compresses.
    pub(super) fn hcp_request(&self, rekey_of: Option<ChildSaHandle>) -> Result<Option<Payload<'static>>, ProtoError> {
        match &self.conn.child.compression {
            Some(c) => c.request(self.hcp_kept(rekey_of).as_ref()).map(Some),
            None => Ok(None),
        }
    }

    /// The HCP_PROPOSAL data among `payloads`, if the connection compresses.
    pub(super) fn hcp_data<'p>(&self, payloads: &'p [Payload<'_>]) -> Option<&'p [u8]> {
        self.conn.child.compression.as_ref().and_then(|c| c.find(payloads))
    }

    pub(super) fn install_child(&mut self, ctx: &mut Ctx<'_>, install: ChildSaInstall) {
        self.children.insert(
            install.child_sa,
            ChildSa {
                handle: install.child_sa,
                spi_in: install.spi_in,
                spi_out: install.spi_out,
                suite: install.suite,
                mode: install.mode,
                ts_local: install.ts_local.clone(),
                ts_remote: install.ts_remote.clone(),
                sec_label: install.sec_label.clone(),
                compression: install.compression,
                state: ChildState::Installed,
                installed_at: ctx.now,
                rekey_due: match self.conn.child.lifetime.rekey_secs {
                    0 => None,
                    // Up to 10% earlier, drawn from the injected RNG, so two
                    // peers with the same lifetime rarely rekey at once.
                    secs => {
                        let jitter_ms = (secs * 100).max(1);
                        let early = std::time::Duration::from_millis(u64::from(ctx.rng.next_u32()) % jitter_ms);
                        Some(ctx.now + (std::time::Duration::from_secs(secs) - early))
                    }
                },
            },
        );
        ctx.out.events.push_back(Event::ChildSaInstall(Box::new(install)));
    }

    pub(super) fn remove_child(&mut self, ctx: &mut Ctx<'_>, handle: ChildSaHandle) {
        if let Some(c) = self.children.remove(&handle) {
            ctx.alloc.release_child_spi(c.spi_in);
            ctx.out.events.push_back(Event::ChildSaDelete { ike_sa: self.handle, child_sa: c.handle, spi_in: c.spi_in, spi_out: c.spi_out });
        }
    }

}
