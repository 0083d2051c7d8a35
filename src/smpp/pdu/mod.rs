//! The SMPP v3.4 codec: pure functions from bytes to PDUs and back, no I/O.
//!
//! A decode failure always knows which command_status answers it and which sequence
//! number to echo, so the session can answer and go on (docs/smpp34-checklist.md A5).

mod body;
mod command;
pub mod tlv;
mod wire;

use bytes::{BufMut, Bytes, BytesMut};

pub use body::*;
pub use command::{CommandId, CommandStatus, RESPONSE_BIT};
pub use tlv::{Tlv, Tlvs};
pub use wire::FieldError;

pub const HEADER_LEN: usize = 16;

/// The 16-octet PDU header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub command_length: u32,
    pub command_id: u32,
    pub command_status: u32,
    pub sequence_number: u32,
}

impl Header {
    /// Reads the header from the first 16 octets, or None if there are fewer.
    pub fn parse(buf: &[u8]) -> Option<Header> {
        let word = |i: usize| -> Option<u32> {
            Some(u32::from_be_bytes(buf.get(i..i + 4)?.try_into().ok()?))
        };
        Some(Header {
            command_length: word(0)?,
            command_id: word(4)?,
            command_status: word(8)?,
            sequence_number: word(12)?,
        })
    }

    pub fn known_command(&self) -> Option<CommandId> {
        CommandId::from_u32(self.command_id)
    }
}

/// One PDU: the header's status and sequence number plus a typed body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    pub command_status: CommandStatus,
    pub sequence_number: u32,
    pub body: Body,
}

/// Why a well-framed PDU could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown command_id 0x{command_id:08X}")]
    UnknownCommand {
        command_id: u32,
        sequence_number: u32,
    },
    #[error("{command_id}: {error}")]
    Body {
        command_id: CommandId,
        sequence_number: u32,
        error: FieldError,
    },
    #[error("command_length {command_length} does not match a frame of {frame_len} octets")]
    Length {
        command_length: u32,
        frame_len: usize,
    },
}

impl DecodeError {
    /// The PDU that answers this error, if the peer must get one: generic_nack for an
    /// unknown command, the matching header-only response for a bad request body,
    /// nothing for a bad response (a response is never answered).
    pub fn answer(&self) -> Option<Pdu> {
        match *self {
            DecodeError::UnknownCommand {
                sequence_number, ..
            } => Some(Pdu::generic_nack(
                CommandStatus::ESME_RINVCMDID,
                sequence_number,
            )),
            DecodeError::Body {
                command_id,
                sequence_number,
                ref error,
            } => {
                if command_id.is_response() {
                    return None;
                }
                Some(match command_id.response() {
                    Some(resp) => Pdu::error_response(resp, error.status, sequence_number),
                    None => Pdu::generic_nack(error.status, sequence_number),
                })
            }
            DecodeError::Length { .. } => {
                Some(Pdu::generic_nack(CommandStatus::ESME_RINVCMDLEN, 0))
            }
        }
    }
}

impl Pdu {
    pub fn new(sequence_number: u32, body: Body) -> Pdu {
        Pdu {
            command_status: CommandStatus::ESME_ROK,
            sequence_number,
            body,
        }
    }

    pub fn with_status(command_status: CommandStatus, sequence_number: u32, body: Body) -> Pdu {
        Pdu {
            command_status,
            sequence_number,
            body,
        }
    }

    pub fn generic_nack(status: CommandStatus, sequence_number: u32) -> Pdu {
        Pdu::with_status(status, sequence_number, Body::GenericNack)
    }

    /// A header-only error response to a request (v3.4 error responses carry no body).
    pub fn error_response(
        response_id: CommandId,
        status: CommandStatus,
        sequence_number: u32,
    ) -> Pdu {
        Pdu::with_status(
            status,
            sequence_number,
            Body::empty_response_for(response_id),
        )
    }

    pub fn command_id(&self) -> CommandId {
        self.body.command_id()
    }

    /// Decodes one complete PDU (header included), as the framing codec hands it over.
    pub fn decode(frame: &[u8]) -> Result<Pdu, DecodeError> {
        let header = Header::parse(frame).ok_or(DecodeError::Length {
            command_length: 0,
            frame_len: frame.len(),
        })?;
        if header.command_length as usize != frame.len() {
            return Err(DecodeError::Length {
                command_length: header.command_length,
                frame_len: frame.len(),
            });
        }
        let command_id = header.known_command().ok_or(DecodeError::UnknownCommand {
            command_id: header.command_id,
            sequence_number: header.sequence_number,
        })?;
        let body =
            Body::decode(command_id, &frame[HEADER_LEN..]).map_err(|error| DecodeError::Body {
                command_id,
                sequence_number: header.sequence_number,
                error,
            })?;
        Ok(Pdu {
            command_status: CommandStatus(header.command_status),
            sequence_number: header.sequence_number,
            body,
        })
    }

    /// Appends the encoded PDU to `dst`. A response with a non-zero status is written
    /// header-only, as v3.4 intends for error responses.
    pub fn encode(&self, dst: &mut BytesMut) {
        let start = dst.len();
        let id = self.command_id();
        dst.put_u32(0); // command_length, patched below
        dst.put_u32(id.as_u32());
        dst.put_u32(self.command_status.0);
        dst.put_u32(self.sequence_number);
        if !id.is_response() || self.command_status.is_ok() {
            self.body.encode(dst);
        }
        let len = (dst.len() - start) as u32;
        dst[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }

    pub fn to_bytes(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(64);
        self.encode(&mut buf);
        buf.freeze()
    }
}

impl Body {
    /// The body of a header-only response of `id`.
    pub fn empty_response_for(id: CommandId) -> Body {
        Body::decode(id, &[]).unwrap_or(Body::GenericNack)
    }
}

#[cfg(test)]
mod tests;
