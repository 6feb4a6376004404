//! A whole IKE message: header plus payload chain (RFC 7296 §3.1-§3.2).
//!
//! Guarantees: [`Message::parse`] returns a message only if the header checks
//! of [`Header::parse_datagram`] pass and the payload chain fills the datagram
//! exactly; [`Message::emit`] writes Next Payload and Length fields itself, so
//! a parsed message re-emits byte-identically as long as the peer sent zero in
//! the RESERVED fields (which RFC 7296 §3.2 requires).
use crate::codec::{Reader, Writer};
use crate::error::Result;
use crate::header::{strip_non_esp_marker, Header, HEADER_LEN, NON_ESP_MARKER};
use crate::payload::{parse_chain, write_chain, Chain, Notify, Payload, Sk, Skf};
use crate::registry::{NotifyType, PayloadType};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    pub header: Header,
    pub payloads: Vec<Payload<'a>>,
}

impl<'a> Message<'a> {
    pub fn new(header: Header, payloads: Vec<Payload<'a>>) -> Self {
        Self { header, payloads }
    }

    /// Parses the UDP payload of a port-500 datagram (or a port-4500 one after
    /// the non-ESP marker).
    pub fn parse(datagram: &'a [u8]) -> Result<Self> {
        let header = Header::parse_datagram(datagram)?;
        let mut r = Reader::new(datagram);
        r.take(HEADER_LEN)?;
        let payloads = parse_chain(header.next_payload, r.rest(), Chain::Outer)?;
        Ok(Self { header, payloads })
    }

    /// Parses the UDP payload of a port-4500 datagram (RFC 3948 §2.2).
    pub fn parse_udp4500(udp_payload: &'a [u8]) -> Result<Self> {
        Self::parse(strip_non_esp_marker(udp_payload)?)
    }

    /// Encodes the message; the header's Next Payload and Length are computed.
    pub fn emit(&self) -> Result<Vec<u8>> {
        let mut w = Writer::new();
        self.write(&mut w)?;
        Ok(w.into_vec())
    }

    /// As [`Message::emit`], preceded by the non-ESP marker for port 4500.
    pub fn emit_udp4500(&self) -> Result<Vec<u8>> {
        let mut w = Writer::new();
        w.bytes(&NON_ESP_MARKER);
        self.write(&mut w)?;
        Ok(w.into_vec())
    }

    fn write(&self, w: &mut Writer) -> Result<()> {
        let start = w.len();
        let mut header = self.header;
        header.next_payload = self
            .payloads
            .first()
            .map_or(PayloadType::NONE, Payload::payload_type);
        header.write_before_length(w);
        let length = w.u32_placeholder(start);
        write_chain(&self.payloads, Chain::Outer, w)?;
        w.patch_u32(length)
    }

    /// The SK payload, if the message carries one.
    pub fn sk(&self) -> Option<&Sk<'a>> {
        self.payloads.iter().find_map(|p| match p {
            Payload::Sk(sk) => Some(sk),
            _ => None,
        })
    }

    /// The SKF payload, if the message is a fragment.
    pub fn skf(&self) -> Option<&Skf<'a>> {
        self.payloads.iter().find_map(|p| match p {
            Payload::Skf(skf) => Some(skf),
            _ => None,
        })
    }

    /// The first unencrypted Notify of the given type.
    pub fn notify(&self, notify_type: NotifyType) -> Option<&Notify<'a>> {
        self.payloads.iter().find_map(|p| match p {
            Payload::Notify(n) if n.notify_type == notify_type => Some(n),
            _ => None,
        })
    }
}
