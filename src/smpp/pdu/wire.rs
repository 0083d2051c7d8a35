//! Reading and writing the SMPP primitive types: big-endian integers, C-Octet Strings,
//! Fixed 1|17 time strings and Octet Strings. A decode failure carries the command_status
//! the server must answer with (docs/smpp34-checklist.md A5), so callers never guess.

use bytes::{BufMut, BytesMut};

use super::command::CommandStatus;

/// Why a PDU body could not be decoded, and the status that answers it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason} ({status})")]
pub struct FieldError {
    pub field: &'static str,
    pub reason: &'static str,
    pub status: CommandStatus,
}

impl FieldError {
    pub fn new(field: &'static str, reason: &'static str, status: CommandStatus) -> Self {
        FieldError {
            field,
            reason,
            status,
        }
    }

    fn truncated(field: &'static str) -> Self {
        FieldError::new(
            field,
            "body ends inside a mandatory field",
            CommandStatus::ESME_RINVCMDLEN,
        )
    }
}

/// A cursor over a PDU body that never reads past its end.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub fn rest(&mut self) -> &'a [u8] {
        let rest = &self.buf[self.pos..];
        self.pos = self.buf.len();
        rest
    }

    pub fn u8(&mut self, field: &'static str) -> Result<u8, FieldError> {
        Ok(self.octets(field, 1)?[0])
    }

    pub fn u16(&mut self, field: &'static str) -> Result<u16, FieldError> {
        let b = self.octets(field, 2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self, field: &'static str) -> Result<u32, FieldError> {
        let b = self.octets(field, 4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn octets(&mut self, field: &'static str, len: usize) -> Result<&'a [u8], FieldError> {
        if self.remaining() < len {
            return Err(FieldError::truncated(field));
        }
        let slice = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(slice)
    }

    /// A C-Octet String whose maximum `max` counts the terminating NUL (so at most
    /// `max - 1` characters). Too long → the field's own status; no NUL before the end
    /// of the body → ESME_RINVCMDLEN (the body is truncated).
    pub fn cstring(
        &mut self,
        field: &'static str,
        max: usize,
        status: CommandStatus,
    ) -> Result<String, FieldError> {
        let rest = &self.buf[self.pos..];
        let window = &rest[..rest.len().min(max)];
        match window.iter().position(|&b| b == 0) {
            Some(nul) => {
                let value = latin1_to_string(&window[..nul]);
                self.pos += nul + 1;
                Ok(value)
            }
            None if rest.len() >= max => Err(FieldError::new(
                field,
                "longer than its maximum length",
                status,
            )),
            None => Err(FieldError::truncated(field)),
        }
    }

    /// A Fixed 1|17 time string: either empty (a lone NUL) or exactly 16 characters.
    pub fn time(
        &mut self,
        field: &'static str,
        status: CommandStatus,
    ) -> Result<String, FieldError> {
        let value = self.cstring(field, 17, status)?;
        // Count characters (one per wire octet), not UTF-8 bytes: Latin-1 octets are 2 bytes.
        if value.is_empty() || value.chars().count() == 16 {
            Ok(value)
        } else {
            Err(FieldError::new(
                field,
                "time must be empty or 16 characters",
                status,
            ))
        }
    }
}

/// C-Octet Strings are ASCII on the wire; bytes above 0x7F (seen in alphanumeric
/// senders) are kept as Latin-1 so that decoding never fails and re-encoding is exact.
fn latin1_to_string(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

pub fn put_cstring(dst: &mut BytesMut, value: &str, max: usize) {
    // Our own values were validated when they entered the broker; cutting here only
    // guarantees we never emit a field the peer must reject.
    for ch in value.chars().take_while(|&c| c != '\0').take(max - 1) {
        let code = u32::from(ch);
        dst.put_u8(if code <= 0xFF { code as u8 } else { b'?' });
    }
    dst.put_u8(0);
}
