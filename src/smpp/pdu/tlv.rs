//! Optional parameters (TLVs). They may come in any order; unknown tags are kept but
//! never acted on (spec 3.4, 5.3: an unknown optional parameter shall be ignored).

use bytes::{BufMut, Bytes, BytesMut};

use super::command::CommandStatus;
use super::wire::{FieldError, Reader};

pub mod tag {
    pub const DEST_ADDR_SUBUNIT: u16 = 0x0005;
    pub const SOURCE_ADDR_SUBUNIT: u16 = 0x000D;
    pub const PAYLOAD_TYPE: u16 = 0x0019;
    pub const ADDITIONAL_STATUS_INFO_TEXT: u16 = 0x001D;
    pub const RECEIPTED_MESSAGE_ID: u16 = 0x001E;
    pub const MS_MSG_WAIT_FACILITIES: u16 = 0x0030;
    pub const PRIVACY_INDICATOR: u16 = 0x0201;
    pub const USER_MESSAGE_REFERENCE: u16 = 0x0204;
    pub const SOURCE_PORT: u16 = 0x020A;
    pub const DESTINATION_PORT: u16 = 0x020B;
    pub const SAR_MSG_REF_NUM: u16 = 0x020C;
    pub const LANGUAGE_INDICATOR: u16 = 0x020D;
    pub const SAR_TOTAL_SEGMENTS: u16 = 0x020E;
    pub const SAR_SEGMENT_SEQNUM: u16 = 0x020F;
    pub const SC_INTERFACE_VERSION: u16 = 0x0210;
    pub const CALLBACK_NUM: u16 = 0x0381;
    pub const DPF_RESULT: u16 = 0x0420;
    pub const SET_DPF: u16 = 0x0421;
    pub const MS_AVAILABILITY_STATUS: u16 = 0x0422;
    pub const NETWORK_ERROR_CODE: u16 = 0x0423;
    pub const MESSAGE_PAYLOAD: u16 = 0x0424;
    pub const DELIVERY_FAILURE_REASON: u16 = 0x0425;
    pub const MORE_MESSAGES_TO_SEND: u16 = 0x0426;
    pub const MESSAGE_STATE: u16 = 0x0427;
    pub const USSD_SERVICE_OP: u16 = 0x0501;
}

/// The fixed value length of the known tags whose size the spec fixes. A known tag
/// with another length is rejected with ESME_RINVPARLEN: acting on a misread
/// sar_* or message_state value would be worse than refusing the PDU.
fn fixed_len(tag: u16) -> Option<usize> {
    use tag::*;
    match tag {
        DEST_ADDR_SUBUNIT
        | SOURCE_ADDR_SUBUNIT
        | PAYLOAD_TYPE
        | MS_MSG_WAIT_FACILITIES
        | PRIVACY_INDICATOR
        | LANGUAGE_INDICATOR
        | SAR_TOTAL_SEGMENTS
        | SAR_SEGMENT_SEQNUM
        | SC_INTERFACE_VERSION
        | DPF_RESULT
        | SET_DPF
        | MS_AVAILABILITY_STATUS
        | DELIVERY_FAILURE_REASON
        | MORE_MESSAGES_TO_SEND
        | MESSAGE_STATE
        | USSD_SERVICE_OP => Some(1),
        USER_MESSAGE_REFERENCE | SOURCE_PORT | DESTINATION_PORT | SAR_MSG_REF_NUM => Some(2),
        NETWORK_ERROR_CODE => Some(3),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlv {
    pub tag: u16,
    pub value: Bytes,
}

/// The optional parameters of one PDU, in wire order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tlvs(pub Vec<Tlv>);

impl Tlvs {
    pub fn new() -> Self {
        Tlvs(Vec::new())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first value of `tag`: a repeated tag keeps its first occurrence.
    pub fn get(&self, tag: u16) -> Option<&Bytes> {
        self.0.iter().find(|t| t.tag == tag).map(|t| &t.value)
    }

    pub fn get_u8(&self, tag: u16) -> Option<u8> {
        self.get(tag).and_then(|v| (v.len() == 1).then(|| v[0]))
    }

    pub fn get_u16(&self, tag: u16) -> Option<u16> {
        self.get(tag)
            .and_then(|v| (v.len() == 2).then(|| u16::from_be_bytes([v[0], v[1]])))
    }

    /// A C-Octet String value without its NUL (tolerating a sender that left it out).
    pub fn get_cstring(&self, tag: u16) -> Option<String> {
        self.get(tag).map(|v| {
            let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
            v[..end].iter().map(|&b| b as char).collect()
        })
    }

    pub fn push(&mut self, tag: u16, value: impl Into<Bytes>) {
        self.0.push(Tlv {
            tag,
            value: value.into(),
        });
    }

    pub fn push_u8(&mut self, tag: u16, value: u8) {
        self.push(tag, vec![value]);
    }

    pub fn push_u16(&mut self, tag: u16, value: u16) {
        self.push(tag, value.to_be_bytes().to_vec());
    }

    pub fn push_cstring(&mut self, tag: u16, value: &str) {
        let mut bytes: Vec<u8> = value
            .chars()
            .map(|c| u32::from(c).min(0xFF) as u8)
            .collect();
        bytes.push(0);
        self.push(tag, bytes);
    }

    pub fn decode(reader: &mut Reader<'_>) -> Result<Tlvs, FieldError> {
        let mut tlvs = Vec::new();
        while !reader.is_empty() {
            let stream_error = |_| {
                FieldError::new(
                    "tlv",
                    "optional parameter runs past the end of the PDU",
                    CommandStatus::ESME_RINVOPTPARSTREAM,
                )
            };
            let tag = reader.u16("tlv.tag").map_err(stream_error)?;
            let len = reader.u16("tlv.length").map_err(stream_error)? as usize;
            let value = reader.octets("tlv.value", len).map_err(stream_error)?;
            if let Some(expected) = fixed_len(tag) {
                if len != expected {
                    return Err(FieldError::new(
                        "tlv",
                        "known optional parameter has the wrong length",
                        CommandStatus::ESME_RINVPARLEN,
                    ));
                }
            }
            tlvs.push(Tlv {
                tag,
                value: Bytes::copy_from_slice(value),
            });
        }
        Ok(Tlvs(tlvs))
    }

    pub fn encode(&self, dst: &mut BytesMut) {
        for tlv in &self.0 {
            // A value longer than a TLV can carry is cut rather than corrupting the stream.
            let len = tlv.value.len().min(u16::MAX as usize);
            dst.put_u16(tlv.tag);
            dst.put_u16(len as u16);
            dst.put_slice(&tlv.value[..len]);
        }
    }
}
