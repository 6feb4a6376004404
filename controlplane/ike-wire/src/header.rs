//! The IKE header (RFC 7296 §3.1) and the non-ESP marker of UDP 4500
//! (RFC 3948 §2.2, RFC 7296 §2.23).
//!
//! Guarantees: [`Header::parse_datagram`] accepts only a datagram whose header
//! says major version 2, whose Length field equals the datagram length, whose
//! SPIi is non-zero, and, for IKE_SA_INIT, whose Message ID is 0 and (in a
//! request) whose SPIr is 0. The minor version and the X flag bits are kept as
//! received (RFC 7296: ignored on receipt) so a re-emitted header is
//! byte-identical.
use crate::codec::{Reader, Writer};
use crate::error::{Error, Result};
use crate::registry::{ExchangeType, PayloadType};

/// Octets in the IKE header.
pub const HEADER_LEN: usize = 28;

/// The four zero octets that precede IKE messages on UDP port 4500.
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];

/// Byte offsets of the header fields.
pub mod field {
    use core::ops::Range;
    pub const SPI_I: Range<usize> = 0..8;
    pub const SPI_R: Range<usize> = 8..16;
    pub const NEXT_PAYLOAD: usize = 16;
    pub const VERSION: usize = 17;
    pub const EXCHANGE_TYPE: usize = 18;
    pub const FLAGS: usize = 19;
    pub const MESSAGE_ID: Range<usize> = 20..24;
    pub const LENGTH: Range<usize> = 24..28;
}

/// The Flags octet: `X X R V I X X X` from the most significant bit.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u8);

impl Flags {
    /// R: this message is a response.
    pub const RESPONSE: u8 = 0x20;
    /// V: the sender can speak a higher major version (IKEv2 sends it clear).
    pub const VERSION: u8 = 0x10;
    /// I: sent by the original initiator of the IKE SA (or of its last rekey).
    pub const INITIATOR: u8 = 0x08;

    pub fn new(initiator: bool, response: bool) -> Self {
        let mut f = 0;
        if initiator {
            f |= Self::INITIATOR;
        }
        if response {
            f |= Self::RESPONSE;
        }
        Self(f)
    }

    pub fn response(self) -> bool {
        self.0 & Self::RESPONSE != 0
    }

    pub fn version(self) -> bool {
        self.0 & Self::VERSION != 0
    }

    pub fn initiator(self) -> bool {
        self.0 & Self::INITIATOR != 0
    }
}

impl core::fmt::Debug for Flags {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Flags({:#04x}", self.0)?;
        for (bit, name) in [
            (Self::INITIATOR, " I"),
            (Self::VERSION, " V"),
            (Self::RESPONSE, " R"),
        ] {
            if self.0 & bit != 0 {
                f.write_str(name)?;
            }
        }
        f.write_str(")")
    }
}

/// The IKE header.
///
/// ```text
///                      1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                       IKE SA Initiator's SPI                  |
/// |                                                               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                       IKE SA Responder's SPI                  |
/// |                                                               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Next Payload | MjVer | MnVer | Exchange Type |     Flags     |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                          Message ID                           |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                            Length                             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// `next_payload` and `length` describe the bytes the header was parsed from;
/// [`crate::Message::emit`] recomputes both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    pub spi_i: u64,
    pub spi_r: u64,
    pub next_payload: PayloadType,
    pub major_version: u8,
    pub minor_version: u8,
    pub exchange_type: ExchangeType,
    pub flags: Flags,
    pub message_id: u32,
    pub length: u32,
}

impl Header {
    /// A version 2.0 header; `next_payload` and `length` are filled on emit.
    pub fn new(
        spi_i: u64,
        spi_r: u64,
        exchange_type: ExchangeType,
        flags: Flags,
        message_id: u32,
    ) -> Self {
        Self {
            spi_i,
            spi_r,
            next_payload: PayloadType::NONE,
            major_version: 2,
            minor_version: 0,
            exchange_type,
            flags,
            message_id,
            length: 0,
        }
    }

    /// Reads the 28 header octets and checks the major version only.
    pub fn read(r: &mut Reader<'_>) -> Result<Self> {
        let spi_i = r.u64()?;
        let spi_r = r.u64()?;
        let next_payload = PayloadType(r.u8()?);
        let version = r.u8()?;
        let exchange_type = ExchangeType(r.u8()?);
        let flags = Flags(r.u8()?);
        let message_id = r.u32()?;
        let length = r.u32()?;
        let major_version = version >> 4;
        if major_version != 2 {
            // RFC 7296 §2.5: a higher major version gets INVALID_MAJOR_VERSION;
            // 1 is IKEv1, which this codec does not speak either.
            return Err(Error::UnsupportedMajorVersion(major_version));
        }
        Ok(Self {
            spi_i,
            spi_r,
            next_payload,
            major_version,
            minor_version: version & 0x0f,
            exchange_type,
            flags,
            message_id,
            length,
        })
    }

    /// Parses and checks the header of a whole IKE message (the UDP payload on
    /// port 500, or on port 4500 after [`strip_non_esp_marker`]).
    pub fn parse_datagram(datagram: &[u8]) -> Result<Self> {
        let h = Self::read(&mut Reader::new(datagram))?;
        if h.length as usize != datagram.len() {
            return Err(Error::LengthMismatch {
                header: h.length,
                datagram: datagram.len(),
            });
        }
        h.check_spis_and_message_id()?;
        Ok(h)
    }

    /// Reads the header of an IKE message received on UDP port 4500.
    pub fn parse_udp4500(udp_payload: &[u8]) -> Result<Self> {
        Self::parse_datagram(strip_non_esp_marker(udp_payload)?)
    }

    fn check_spis_and_message_id(&self) -> Result<()> {
        // RFC 7296 §3.1: SPIi "MUST NOT be zero".
        if self.spi_i == 0 {
            return Err(Error::InvalidIkeSpi);
        }
        if self.exchange_type == ExchangeType::IKE_SA_INIT {
            // RFC 7296 §2.2: IKE_SA_INIT always uses Message ID 0.
            if self.message_id != 0 {
                return Err(Error::InvalidMessageId);
            }
            // RFC 7296 §3.1: SPIr "MUST be zero in the first message of an IKE
            // initial exchange (including repeats of that message including a
            // cookie)". Responses may carry 0 (cookie / INVALID_KE replies).
            if !self.flags.response() && self.spi_r != 0 {
                return Err(Error::InvalidIkeSpi);
            }
        }
        Ok(())
    }

    /// Writes the header as it is; the caller patches Length (see
    /// [`crate::Message::emit`]).
    pub fn write(&self, w: &mut Writer) {
        self.write_before_length(w);
        w.u32(self.length);
    }

    /// Every field up to (not including) Length.
    pub(crate) fn write_before_length(&self, w: &mut Writer) {
        w.u64(self.spi_i);
        w.u64(self.spi_r);
        w.u8(self.next_payload.0);
        w.u8((self.major_version << 4) | (self.minor_version & 0x0f));
        w.u8(self.exchange_type.0);
        w.u8(self.flags.0);
        w.u32(self.message_id);
    }
}

/// The IKE message inside a UDP 4500 datagram: strips the four zero octets of
/// the non-ESP marker. Anything else on port 4500 (ESP, whose SPI is never 0,
/// or the one-octet 0xFF NAT-keepalive) is [`Error::NotIke`].
pub fn strip_non_esp_marker(udp_payload: &[u8]) -> Result<&[u8]> {
    match udp_payload.split_first_chunk::<4>() {
        Some((marker, ike)) if *marker == NON_ESP_MARKER => Ok(ike),
        _ => Err(Error::NotIke),
    }
}
