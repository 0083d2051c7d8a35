//! A message as SMS segments: how it is encoded (GSM 7-bit when every
//! character has a septet, else UCS-2; binary as 8-bit), where it may be cut,
//! and how many SMS it takes. Incoming messages are split with it; carrier
//! limits count its parts.

use super::{gsm7, Content};

/// One SMS: 140 octets, which hold 160 unpacked GSM septets.
const SMS_OCTETS: usize = 140;
const SMS_SEPTETS: usize = 160;
/// The concatenation UDH: length, IEI 0x00, IE length 3, reference, total, number.
pub const UDH_LEN: usize = 6;

const DC_GSM7: u8 = 0;
const DC_BINARY: u8 = 4;
const DC_UCS2: u8 = 8;

/// The octets of the message as `data_coding` says, and where each character
/// starts: a segment never splits a GSM escape pair or a UTF-16 surrogate pair.
pub struct Encoded {
    pub data_coding: u8,
    pub octets: Vec<u8>,
    /// Offsets a segment may end at, ascending, ending with `octets.len()`.
    boundaries: Vec<usize>,
}

pub fn encode(content: &Content) -> Encoded {
    if let Content::Text(text) = content {
        if let Some(gsm) = encode_gsm7(text) {
            return gsm;
        }
    }
    let mut octets = Vec::new();
    let mut boundaries = Vec::new();
    let data_coding = match content {
        Content::Text(text) => {
            let mut units = [0u16; 2];
            for ch in text.chars() {
                for unit in ch.encode_utf16(&mut units) {
                    octets.extend_from_slice(&unit.to_be_bytes());
                }
                boundaries.push(octets.len());
            }
            DC_UCS2
        }
        Content::Binary(data) => {
            octets.extend_from_slice(data);
            boundaries.extend(1..=data.len());
            DC_BINARY
        }
    };
    Encoded {
        data_coding,
        octets,
        boundaries,
    }
}

/// GSM 7-bit, one septet per octet, or None when a character has no septet.
fn encode_gsm7(text: &str) -> Option<Encoded> {
    let mut octets = Vec::with_capacity(text.len());
    let mut boundaries = Vec::with_capacity(text.len());
    for ch in text.chars() {
        let (septets, len) = gsm7::encode_char(ch)?;
        octets.extend_from_slice(&septets[..len]);
        boundaries.push(octets.len());
    }
    Some(Encoded {
        data_coding: DC_GSM7,
        octets,
        boundaries,
    })
}

impl Encoded {
    /// What one SMS holds without a UDH: 160 septets or 140 octets.
    pub fn single_capacity(&self) -> usize {
        if self.data_coding == DC_GSM7 {
            SMS_SEPTETS
        } else {
            SMS_OCTETS
        }
    }

    /// What one segment holds beside its UDH: 153 septets (the 6-octet UDH takes
    /// 7 septets with its fill bits) or 134 octets.
    pub fn segment_capacity(&self) -> usize {
        if self.data_coding == DC_GSM7 {
            (SMS_OCTETS - UDH_LEN) * 8 / 7
        } else {
            SMS_OCTETS - UDH_LEN
        }
    }

    /// Consecutive pieces of at most `capacity` octets, each ending on a boundary.
    pub fn split(&self, capacity: usize) -> Vec<&[u8]> {
        let mut pieces = Vec::new();
        let mut start = 0;
        let mut end = 0;
        for &boundary in &self.boundaries {
            if boundary - start > capacity && end > start {
                pieces.push(&self.octets[start..end]);
                start = end;
            }
            end = boundary;
        }
        if end > start {
            pieces.push(&self.octets[start..end]);
        }
        pieces
    }

    /// How many SMS the message takes, as a phone splits it: one up to 160
    /// septets (70 UCS-2 characters, 140 octets), else segments of 153 septets
    /// (67 characters, 134 octets), never splitting a character.
    pub fn parts(&self) -> u32 {
        if self.octets.len() <= self.single_capacity() {
            1
        } else {
            self.split(self.segment_capacity()).len() as u32
        }
    }
}

/// How many SMS `content` takes (what carriers count against a SIM's limits).
pub fn sms_parts(content: &Content) -> u32 {
    encode(content).parts()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(text: &str) -> u32 {
        sms_parts(&Content::Text(text.to_owned()))
    }

    #[test]
    fn parts_are_counted_as_the_phone_splits() {
        assert_eq!(parts(""), 1);
        assert_eq!(parts(&"a".repeat(160)), 1);
        assert_eq!(parts(&"a".repeat(161)), 2);
        assert_eq!(parts(&"a".repeat(306)), 2);
        assert_eq!(parts(&"a".repeat(307)), 3);
        // An escape (€) takes two septets: 80 of them fill one SMS exactly.
        assert_eq!(parts(&"€".repeat(80)), 1);
        assert_eq!(parts(&"€".repeat(81)), 2);
        // 152 septets and an escape do not fit 153: the escape moves whole.
        assert_eq!(
            parts(&format!("{}€{}", "a".repeat(152), "a".repeat(152))),
            3
        );
        assert_eq!(parts(&"я".repeat(70)), 1);
        assert_eq!(parts(&"я".repeat(71)), 2);
        assert_eq!(parts(&"я".repeat(134)), 2);
        assert_eq!(parts(&"я".repeat(135)), 3);
        // A character outside the BMP is two UTF-16 units, never split.
        assert_eq!(parts(&"😀".repeat(35)), 1);
        assert_eq!(parts(&"😀".repeat(36)), 2);
        assert_eq!(sms_parts(&Content::Binary(vec![0; 140])), 1);
        assert_eq!(sms_parts(&Content::Binary(vec![0; 141])), 2);
        assert_eq!(sms_parts(&Content::Binary(vec![0; 268])), 2);
        assert_eq!(sms_parts(&Content::Binary(vec![0; 269])), 3);
    }
}
