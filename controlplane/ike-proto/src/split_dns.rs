//! RFC 8598 split DNS: INTERNAL_DNS_DOMAIN (25) and INTERNAL_DNSSEC_TA (26)
//! configuration attributes, and the initiator's safety rules.
//!
//! Guarantees:
//! * The responder sends domains only in answer to a CFG_REQUEST that
//!   carried INTERNAL_DNS_DOMAIN (RFC 8598 §3.1: the client signals
//!   support that way), only together with at least one DNS server (§3.3
//!   "MUST"), and each domain's trust anchors immediately after it (§3.3).
//! * The initiator accepts a domain only if it is a syntactically valid
//!   A-label name (RFC 8598 §3.2: presentation format, no NUL), is not the
//!   root and not a public suffix (§5: "MUST be ignored" unless operated by
//!   the VPN's owner, which only an explicit allow-list entry states), and
//!   local policy allows it (an allow-list of suffixes when configured). A
//!   full tunnel ignores every domain (§4).
//! * A trust anchor is accepted only if it follows its domain (or another
//!   TA of the same domain), the domain was accepted, the domain lies
//!   within the out-of-band TA allow-list (§5: empty list, no TAs), and
//!   the TA is well formed: key tag, algorithm, digest type and a digest
//!   whose length matches the digest type when that type is known.
//!
//! Wire form of a trust anchor: `Key Tag (2) | Algorithm (1) | Digest
//! Type (1) | Digest` with the digest in binary, as in DS RDATA (RFC 4034
//! §5.1), so Length = 4 + digest length.
use ike_wire::{CfgAttrType, CfgAttribute};

/// One DNSSEC trust anchor, as DS data (RFC 4034 §5.1).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DnssecTa {
    pub key_tag: u16,
    pub algorithm: u8,
    pub digest_type: u8,
    pub digest: Vec<u8>,
}

/// Why a received attribute was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Malformed,
    Root,
    PublicSuffix,
    NotAllowed,
    FullTunnel,
    /// A TA whose domain is not on the TA allow-list or was not accepted.
    TaNotAllowed,
    /// A TA not directly after its domain (RFC 8598 §3.3).
    TaMisplaced,
}

impl DnssecTa {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = self.key_tag.to_be_bytes().to_vec();
        v.push(self.algorithm);
        v.push(self.digest_type);
        v.extend_from_slice(&self.digest);
        v
    }

    /// Parses and validates an attribute value; `None` if malformed.
    pub fn parse(b: &[u8]) -> Option<Self> {
        if b.len() < 5 {
            return None;
        }
        let ta = Self { key_tag: u16::from_be_bytes([b[0], b[1]]), algorithm: b[2], digest_type: b[3], digest: b[4..].to_vec() };
        ta.is_valid().then_some(ta)
    }

    /// Algorithm 0 is reserved (RFC 4034 App. A.1); digest types 1, 2 and 4
    /// are SHA-1, SHA-256, SHA-384 (RFC 4034, 4509, 6605) of known length.
    pub fn is_valid(&self) -> bool {
        let want = match self.digest_type {
            0 => return false,
            1 => Some(20),
            2 | 3 => Some(32),
            4 => Some(48),
            _ => None,
        };
        self.algorithm != 0 && !self.digest.is_empty() && want.map_or(true, |n| n == self.digest.len())
    }

    /// `key_tag algorithm digest_type HEX` (the DS presentation form).
    pub fn presentation(&self) -> String {
        let hex: String = self.digest.iter().map(|b| format!("{b:02X}")).collect();
        format!("{} {} {} {hex}", self.key_tag, self.algorithm, self.digest_type)
    }
}

/// A split-DNS domain with its trust anchors.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DnsDomain {
    /// Lower case, no trailing dot.
    pub name: String,
    pub trust_anchors: Vec<DnssecTa>,
}

impl DnsDomain {
    pub fn new(name: &str) -> Option<Self> {
        Some(Self { name: normalize(name)?, trust_anchors: Vec::new() })
    }
}

/// The initiator's split-DNS policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitDnsPolicy {
    /// Ask for domains in CFG_REQUEST (with a virtual IP request only).
    pub request: bool,
    /// Accept only these domains and their subdomains; `None` accepts any
    /// domain that is neither the root nor a public suffix.
    pub allowed_domains: Option<Vec<String>>,
    /// RFC 8598 §5 out-of-band list of domains for which trust anchors
    /// may be installed (and their subdomains); empty accepts no TA.
    pub dnssec_ta_domains: Vec<String>,
}

impl Default for SplitDnsPolicy {
    fn default() -> Self {
        Self { request: true, allowed_domains: None, dnssec_ta_domains: Vec::new() }
    }
}

/// A well-known subset of the Public Suffix List's multi-label entries:
/// registries under which names belong to unrelated parties. Single-label
/// names (TLDs) are refused without a list. Not exhaustive: an allow-list
/// is the real protection, and this catches the common mistakes.
const PUBLIC_SUFFIXES: &[&str] = &[
    "co.uk", "org.uk", "ac.uk", "gov.uk", "me.uk", "ltd.uk", "plc.uk", "net.uk", "com.au", "net.au", "org.au", "edu.au",
    "gov.au", "co.nz", "org.nz", "co.jp", "ne.jp", "or.jp", "ac.jp", "go.jp", "co.kr", "or.kr", "com.br", "net.br",
    "org.br", "com.cn", "net.cn", "org.cn", "gov.cn", "com.mx", "com.ar", "com.tr", "co.in", "net.in", "org.in",
    "co.za", "org.za", "com.sg", "com.hk", "com.tw", "co.il", "com.pl", "github.io", "gitlab.io", "herokuapp.com",
    "blogspot.com", "cloudfront.net", "azurewebsites.net", "appspot.com", "netlify.app", "vercel.app", "pages.dev",
    "workers.dev", "s3.amazonaws.com", "duckdns.org", "dyndns.org", "no-ip.org",
];

/// Lower-cased, trailing dot removed, checked as an A-label host name
/// (LDH labels of 1-63 octets, underscores allowed for service names,
/// at most 253 octets); `None` if invalid. The root comes back as "".
pub fn normalize(name: &str) -> Option<String> {
    let n = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if n.is_empty() {
        return Some(n);
    }
    if n.len() > 253 || !n.is_ascii() {
        return None;
    }
    for label in n.split('.') {
        let ok = (1..=63).contains(&label.len())
            && label.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return None;
        }
    }
    Some(n)
}

/// Whether `name` equals `suffix` or is a subdomain of it (label-wise:
/// "example.test" covers "www.example.test", not "otherexample.test").
pub fn within(name: &str, suffix: &str) -> bool {
    name == suffix || name.strip_suffix(suffix).is_some_and(|head| head.ends_with('.'))
}

fn is_public_suffix(name: &str) -> bool {
    !name.contains('.') || PUBLIC_SUFFIXES.contains(&name)
}

impl SplitDnsPolicy {
    /// Why `name` (normalized) is refused, if it is.
    pub fn check_domain(&self, name: &str) -> Option<Refusal> {
        if name.is_empty() {
            return Some(Refusal::Root);
        }
        let listed = |list: &[String]| list.iter().filter_map(|s| normalize(s)).any(|s| !s.is_empty() && within(name, &s));
        match &self.allowed_domains {
            // An explicit entry says the VPN's owner operates it (§5).
            Some(list) if listed(list) => None,
            Some(_) => Some(Refusal::NotAllowed),
            None if is_public_suffix(name) => Some(Refusal::PublicSuffix),
            None => None,
        }
    }

    fn ta_allowed(&self, name: &str) -> bool {
        self.dnssec_ta_domains.iter().filter_map(|s| normalize(s)).any(|s| !s.is_empty() && within(name, &s))
    }
}

/// The CFG_REQUEST attributes that signal split-DNS support: one empty
/// INTERNAL_DNS_DOMAIN, and an empty INTERNAL_DNSSEC_TA when TAs may be
/// accepted (§3.1: "MUST have a length of 0" when empty).
pub fn request_attributes(policy: &SplitDnsPolicy) -> Vec<CfgAttribute<'static>> {
    let mut v = Vec::new();
    if policy.request {
        v.push(CfgAttribute::new(CfgAttrType::INTERNAL_DNS_DOMAIN, Vec::new()));
        if !policy.dnssec_ta_domains.is_empty() {
            v.push(CfgAttribute::new(CfgAttrType::INTERNAL_DNSSEC_TA, Vec::new()));
        }
    }
    v
}

/// Whether a CFG_REQUEST asked for split DNS.
pub fn requested(attrs: &[CfgAttribute<'_>]) -> bool {
    attrs.iter().any(|a| a.attr_type == CfgAttrType::INTERNAL_DNS_DOMAIN)
}

/// CFG_REPLY attributes for `domains`: each domain followed by its TAs.
pub fn reply_attributes(domains: &[DnsDomain]) -> Vec<CfgAttribute<'static>> {
    let mut v = Vec::new();
    for d in domains {
        v.push(CfgAttribute::new(CfgAttrType::INTERNAL_DNS_DOMAIN, d.name.as_bytes().to_vec()));
        for ta in &d.trust_anchors {
            v.push(CfgAttribute::new(CfgAttrType::INTERNAL_DNSSEC_TA, ta.to_bytes()));
        }
    }
    v
}

/// What the initiator made of a CFG_REPLY.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SplitDnsOutcome {
    pub accepted: Vec<DnsDomain>,
    /// What was refused, for logs and counters: the name as received
    /// (lossily decoded) and why.
    pub refused: Vec<(String, Refusal)>,
}

/// The initiator's reading of a CFG_REPLY's attributes in order.
/// `full_tunnel` ignores all domains (§4).
pub fn accept_reply(policy: &SplitDnsPolicy, attrs: &[CfgAttribute<'_>], full_tunnel: bool) -> SplitDnsOutcome {
    let mut out = SplitDnsOutcome::default();
    if !policy.request {
        // Split DNS is off here: whatever a gateway pushes unasked
        // (strongSwan sends pool attributes to everyone) is ignored.
        return out;
    }
    // The domain the next TA may belong to: Some(Some(i)) accepted as
    // out.accepted[i], Some(None) refused, None: no domain just before.
    let mut current: Option<Option<usize>> = None;
    for a in attrs {
        match a.attr_type {
            CfgAttrType::INTERNAL_DNS_DOMAIN => {
                let raw = String::from_utf8_lossy(&a.value).into_owned();
                if a.value.is_empty() {
                    current = None;
                    continue;
                }
                let refusal = match std::str::from_utf8(&a.value).ok().and_then(normalize) {
                    None => Err(Refusal::Malformed),
                    Some(_) if full_tunnel => Err(Refusal::FullTunnel),
                    Some(n) => policy.check_domain(&n).map_or(Ok(n), Err),
                };
                match refusal {
                    Ok(n) => {
                        let i = match out.accepted.iter().position(|d| d.name == n) {
                            Some(i) => i,
                            None => {
                                out.accepted.push(DnsDomain { name: n, trust_anchors: Vec::new() });
                                out.accepted.len() - 1
                            }
                        };
                        current = Some(Some(i));
                    }
                    Err(r) => {
                        out.refused.push((raw, r));
                        current = Some(None);
                    }
                }
            }
            CfgAttrType::INTERNAL_DNSSEC_TA => {
                if a.value.is_empty() {
                    continue;
                }
                let Some(owner) = current else {
                    out.refused.push((String::new(), Refusal::TaMisplaced));
                    continue;
                };
                let Some(i) = owner else {
                    continue; // its domain was refused, and the TA with it
                };
                let name = out.accepted[i].name.clone();
                match DnssecTa::parse(&a.value) {
                    None => out.refused.push((name, Refusal::Malformed)),
                    Some(_) if !policy.ta_allowed(&name) => out.refused.push((name, Refusal::TaNotAllowed)),
                    Some(ta) => {
                        if !out.accepted[i].trust_anchors.contains(&ta) {
                            out.accepted[i].trust_anchors.push(ta);
                        }
                    }
                }
            }
            // Any other attribute breaks the "immediately follows" chain.
            _ => current = None,
        }
    }
    out
}

/// RFC 8598 §5: two unrelated VPN profiles claiming the same domain "MUST
/// NOT" be active at once. Removes from `domains` (accepted for connection
/// `conn`) every domain that equals, contains or lies within a domain
/// already in force for another connection; returns the removed names.
pub fn drop_conflicts<'a>(conn: &str, domains: &mut Vec<DnsDomain>, active: impl IntoIterator<Item = (&'a str, &'a [DnsDomain])>) -> Vec<String> {
    let taken: Vec<&str> =
        active.into_iter().filter(|(c, _)| *c != conn).flat_map(|(_, ds)| ds.iter().map(|d| d.name.as_str())).collect();
    let mut dropped = Vec::new();
    domains.retain(|d| {
        let clash = taken.iter().any(|t| within(&d.name, t) || within(t, &d.name));
        if clash {
            dropped.push(d.name.clone());
        }
        !clash
    });
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dom(s: &str) -> CfgAttribute<'static> {
        CfgAttribute::new(CfgAttrType::INTERNAL_DNS_DOMAIN, s.as_bytes().to_vec())
    }

    fn ta(tag: u16, digest_len: usize) -> DnssecTa {
        DnssecTa { key_tag: tag, algorithm: 8, digest_type: 2, digest: vec![0xab; digest_len] }
    }

    fn ta_attr(t: &DnssecTa) -> CfgAttribute<'static> {
        CfgAttribute::new(CfgAttrType::INTERNAL_DNSSEC_TA, t.to_bytes())
    }

    #[test]
    fn a_domain_another_connection_holds_is_dropped() {
        let held = vec![DnsDomain::new("corp.example").unwrap()];
        let mut mine = vec![DnsDomain::new("eng.corp.example").unwrap(), DnsDomain::new("lab.example").unwrap(), DnsDomain::new("example").unwrap()];
        let dropped = drop_conflicts("b", &mut mine, [("a", &held[..])]);
        assert_eq!(dropped, ["eng.corp.example", "example"]);
        assert_eq!(mine, vec![DnsDomain::new("lab.example").unwrap()]);
        // The same connection (a rekey, a second SA of it) is no conflict.
        let mut again = held.clone();
        assert!(drop_conflicts("a", &mut again, [("a", &held[..])]).is_empty());
    }

    #[test]
    fn subdomains_are_covered_label_wise() {
        // RFC 8598 §3.5 example.
        assert!(within("www.example.test", "example.test"));
        assert!(within("mail.eng.example.test", "example.test"));
        assert!(!within("otherexample.test", "example.test"));
        assert!(!within("ple.test", "example.test"));
    }

    #[test]
    fn names_are_checked_as_a_labels() {
        assert_eq!(normalize("Corp.Example.TEST."), Some("corp.example.test".into()));
        assert_eq!(normalize("."), Some(String::new()));
        assert_eq!(normalize("bad..name"), None);
        assert_eq!(normalize("-x.test"), None);
        assert_eq!(normalize("ünicode.test"), None);
        assert_eq!(normalize(&"a".repeat(64)), None);
        assert_eq!(normalize("xn--bcher-kva.test"), Some("xn--bcher-kva.test".into()));
    }

    #[test]
    fn root_tlds_and_public_suffixes_are_refused_without_an_allow_list() {
        let p = SplitDnsPolicy::default();
        let o = accept_reply(&p, &[dom("."), dom("com"), dom("co.uk"), dom("corp.example"), dom("bad name")], false);
        assert_eq!(o.accepted.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["corp.example"]);
        let why: Vec<Refusal> = o.refused.iter().map(|r| r.1).collect();
        assert_eq!(why, [Refusal::Root, Refusal::PublicSuffix, Refusal::PublicSuffix, Refusal::Malformed]);
    }

    #[test]
    fn an_allow_list_admits_only_its_domains_and_their_subdomains() {
        let p = SplitDnsPolicy { allowed_domains: Some(vec!["example.test".into(), "internal".into()]), ..SplitDnsPolicy::default() };
        let o = accept_reply(&p, &[dom("eng.example.test"), dom("example.org"), dom("internal"), dom(".")], false);
        assert_eq!(o.accepted.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["eng.example.test", "internal"]);
        assert_eq!(o.refused.iter().map(|r| r.1).collect::<Vec<_>>(), [Refusal::NotAllowed, Refusal::Root]);
    }

    #[test]
    fn domains_pushed_to_a_client_that_did_not_ask_are_ignored() {
        let p = SplitDnsPolicy { request: false, ..SplitDnsPolicy::default() };
        assert_eq!(accept_reply(&p, &[dom("corp.example")], false), SplitDnsOutcome::default());
    }

    #[test]
    fn a_full_tunnel_ignores_every_domain() {
        let o = accept_reply(&SplitDnsPolicy::default(), &[dom("corp.example")], true);
        assert!(o.accepted.is_empty());
        assert_eq!(o.refused[0].1, Refusal::FullTunnel);
    }

    #[test]
    fn trust_anchors_need_the_allow_list_their_domain_and_their_place() {
        let p = SplitDnsPolicy { dnssec_ta_domains: vec!["example.test".into()], ..SplitDnsPolicy::default() };
        let good = ta(12345, 32);
        let attrs = [
            dom("corp.example.test"),
            ta_attr(&good),
            ta_attr(&ta(2, 31)), // wrong SHA-256 length
            dom("other.example"),
            ta_attr(&ta(3, 32)), // domain not on the TA list
            CfgAttribute::new(CfgAttrType::INTERNAL_IP4_DNS, vec![10, 0, 0, 53]),
            ta_attr(&ta(4, 32)), // not after a domain
            dom("com"),
            ta_attr(&ta(5, 32)), // after a refused domain: dropped with it
        ];
        let o = accept_reply(&p, &attrs, false);
        assert_eq!(o.accepted.len(), 2);
        assert_eq!(o.accepted[0].trust_anchors, vec![good]);
        assert!(o.accepted[1].trust_anchors.is_empty());
        let why: Vec<Refusal> = o.refused.iter().map(|r| r.1).collect();
        assert_eq!(why, [Refusal::Malformed, Refusal::TaNotAllowed, Refusal::TaMisplaced, Refusal::PublicSuffix]);
        // With an empty TA list no TA is accepted at all (§5).
        let o = accept_reply(&SplitDnsPolicy::default(), &attrs[..2], false);
        assert!(o.accepted[0].trust_anchors.is_empty());
    }

    #[test]
    fn attribute_byte_layouts_follow_rfc_8598_section_3() {
        // §3.1/§3.2: R | Type 25 | Length | domain (no NUL); Type 26 with
        // Key Tag | Alg | Digest Type | Digest.
        let d = DnsDomain {
            name: "example.com".into(),
            trust_anchors: vec![DnssecTa { key_tag: 0x3039, algorithm: 13, digest_type: 2, digest: vec![0x11; 32] }],
        };
        let cp = ike_wire::Cp { cfg_type: ike_wire::CfgType::CFG_REPLY, attributes: reply_attributes(&[d]) };
        let mut w = ike_wire::codec::Writer::new();
        cp.write(&mut w).unwrap();
        let b = w.into_vec();
        let mut want = vec![2, 0, 0, 0, 0x00, 25, 0, 11];
        want.extend_from_slice(b"example.com");
        want.extend_from_slice(&[0x00, 26, 0, 36, 0x30, 0x39, 13, 2]);
        want.extend_from_slice(&[0x11; 32]);
        assert_eq!(b, want);
        // The request form: empty attributes, length 0 (§3.1).
        let p = SplitDnsPolicy { dnssec_ta_domains: vec!["example.com".into()], ..SplitDnsPolicy::default() };
        let cp = ike_wire::Cp { cfg_type: ike_wire::CfgType::CFG_REQUEST, attributes: request_attributes(&p) };
        let mut w = ike_wire::codec::Writer::new();
        cp.write(&mut w).unwrap();
        assert_eq!(w.into_vec(), [1, 0, 0, 0, 0, 25, 0, 0, 0, 26, 0, 0]);
        assert_eq!(DnssecTa::parse(&[0x30, 0x39, 13, 2, 1, 2]), None, "SHA-256 digest of 2 octets");
        assert_eq!(DnssecTa::parse(&[0x30, 0x39, 13, 9, 1, 2]).map(|t| t.digest.len()), Some(2), "unknown digest type: any length");
    }

    proptest::proptest! {
        /// Hostile CFG_REPLY contents never panic, and whatever is
        /// accepted obeys the policy (no root, no public suffix, TAs only
        /// under the TA list and well formed).
        #[test]
        fn arbitrary_replies_never_break_the_rules(attrs in proptest::collection::vec((24u16..28, proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)), 0..12)) {
            let attrs: Vec<CfgAttribute<'static>> = attrs.into_iter().map(|(t, v)| CfgAttribute::new(CfgAttrType(t), v)).collect();
            let p = SplitDnsPolicy { dnssec_ta_domains: vec!["example.test".into()], ..SplitDnsPolicy::default() };
            let o = accept_reply(&p, &attrs, false);
            for d in &o.accepted {
                proptest::prop_assert!(!d.name.is_empty() && d.name.contains('.'));
                proptest::prop_assert_eq!(normalize(&d.name), Some(d.name.clone()));
                for t in &d.trust_anchors {
                    proptest::prop_assert!(t.is_valid() && within(&d.name, "example.test"));
                }
            }
        }
    }
}
