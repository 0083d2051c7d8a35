//! Message text: what the octets of a short_message mean, by data_coding (SMPP 3.4
//! 5.2.19, docs/smpp34-checklist.md A7, A10). A payload that does not decode is
//! refused rather than stored garbled.
//!
//! The per-account text choices ([`DefaultAlphabet`], [`LongIncoming`]) live here
//! too, as plain values that the configuration and the SMPP side both read.

pub mod gsm7;
pub mod segments;

/// How an account's data_coding 0 ("SMSC default alphabet") is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "lowercase")]
pub enum DefaultAlphabet {
    /// GSM 03.38, one septet per octet: what nearly every ESME sends.
    #[default]
    Gsm7,
    Latin1,
}

/// How an incoming message too long for one SMS reaches the ESME.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "snake_case")]
pub enum LongIncoming {
    /// Segments of at most one SMS each, with an 8-bit-reference concatenation
    /// UDH (esm_class 0x40): what handsets and most ESMEs reassemble.
    #[default]
    Udh,
    /// One deliver_sm with the whole message in message_payload.
    MessagePayload,
}

/// What a payload is once decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Text(String),
    /// 8-bit data (data_coding 2, 4, or the 8-bit message class group): kept as octets.
    Binary(Vec<u8>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("data_coding 0x{0:02X} is not supported")]
    UnsupportedCoding(u8),
    #[error("the octets are not valid for data_coding 0x{0:02X}")]
    Invalid(u8),
}

/// The character set a data_coding value selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    Gsm7,
    Ascii,
    Latin1,
    Cyrillic,
    Ucs2,
    Binary,
}

impl Charset {
    /// The name kept in the database's `charset` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Charset::Gsm7 => "gsm7",
            Charset::Ascii => "ascii",
            Charset::Latin1 => "latin1",
            Charset::Cyrillic => "cyrillic",
            Charset::Ucs2 => "ucs2",
            Charset::Binary => "binary",
        }
    }

    pub fn parse(name: &str) -> Option<Charset> {
        [
            Charset::Gsm7,
            Charset::Ascii,
            Charset::Latin1,
            Charset::Cyrillic,
            Charset::Ucs2,
            Charset::Binary,
        ]
        .into_iter()
        .find(|c| c.as_str() == name)
    }

    pub fn of(data_coding: u8, default: DefaultAlphabet) -> Result<Charset, TextError> {
        Ok(match data_coding {
            0x00 => match default {
                DefaultAlphabet::Gsm7 => Charset::Gsm7,
                DefaultAlphabet::Latin1 => Charset::Latin1,
            },
            0x01 => Charset::Ascii,
            0x02 | 0x04 => Charset::Binary,
            0x03 => Charset::Latin1,
            0x06 => Charset::Cyrillic,
            0x08 => Charset::Ucs2,
            // Message waiting indication groups: GSM 7-bit, then UCS-2 (23.038 section 4).
            0xC0..=0xDF => Charset::Gsm7,
            0xE0..=0xEF => Charset::Ucs2,
            // Message class group: bit 2 chooses 8-bit data over GSM 7-bit.
            0xF0..=0xFF if data_coding & 0x04 != 0 => Charset::Binary,
            0xF0..=0xFF => Charset::Gsm7,
            other => return Err(TextError::UnsupportedCoding(other)),
        })
    }
}

/// Decodes a complete payload (a whole message, after any reassembly).
pub fn decode(
    data_coding: u8,
    octets: &[u8],
    default: DefaultAlphabet,
) -> Result<Content, TextError> {
    decode_as(Charset::of(data_coding, default)?, octets).ok_or(TextError::Invalid(data_coding))
}

/// Decodes octets in a known character set; None if they are not valid in it.
pub fn decode_as(charset: Charset, octets: &[u8]) -> Option<Content> {
    let text = match charset {
        Charset::Binary => return Some(Content::Binary(octets.to_vec())),
        Charset::Gsm7 => gsm7::decode(octets)?,
        Charset::Ascii => {
            if !octets.is_ascii() {
                return None;
            }
            octets.iter().map(|&b| b as char).collect()
        }
        Charset::Latin1 => octets.iter().map(|&b| b as char).collect(),
        Charset::Cyrillic => octets.iter().map(|&b| iso_8859_5(b)).collect(),
        Charset::Ucs2 => {
            if !octets.len().is_multiple_of(2) {
                return None;
            }
            let units = octets
                .chunks_exact(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()?
        }
    };
    Some(Content::Text(text))
}

/// ISO-8859-5: Latin-1 below 0xA1, Cyrillic above, with three exceptions.
fn iso_8859_5(octet: u8) -> char {
    match octet {
        0x00..=0xA0 => octet as char,
        0xAD => '\u{AD}',
        0xF0 => '№',
        0xFD => '§',
        // 0xA1..=0xFF map to U+0401..=U+045F apart from the three above.
        _ => char::from_u32(0x0401 + u32::from(octet - 0xA1)).unwrap_or('\u{FFFD}'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(dc: u8, octets: &[u8]) -> Result<Content, TextError> {
        decode(dc, octets, DefaultAlphabet::Gsm7)
    }

    fn t(s: &str) -> Result<Content, TextError> {
        Ok(Content::Text(s.to_owned()))
    }

    #[test]
    fn gsm_by_default_latin1_on_request() {
        assert_eq!(text(0, &[0x00, 0x1B, 0x65]), t("@€"));
        assert_eq!(decode(0, &[0x40, 0xE9], DefaultAlphabet::Latin1), t("@é"));
        assert_eq!(text(0xF0, b"flash"), t("flash"));
        assert_eq!(text(0x00, &[0x80]), Err(TextError::Invalid(0)));
    }

    #[test]
    fn ascii_latin1_and_cyrillic() {
        assert_eq!(text(1, b"plain"), t("plain"));
        assert_eq!(text(1, &[0xE9]), Err(TextError::Invalid(1)));
        assert_eq!(text(3, &[0x43, 0x61, 0x66, 0xE9]), t("Café"));
        // "Привет" in ISO-8859-5, and the three exceptions.
        assert_eq!(text(6, &[0xBF, 0xE0, 0xD8, 0xD2, 0xD5, 0xE2]), t("Привет"));
        assert_eq!(text(6, &[0xA1, 0xAD, 0xF0, 0xFD, 0xFF]), t("Ё\u{AD}№§џ"));
    }

    #[test]
    fn ucs2_with_surrogate_pairs() {
        // "Hi 😀": the emoji is the surrogate pair D83D DE00.
        let octets = [0x00, 0x48, 0x00, 0x69, 0x00, 0x20, 0xD8, 0x3D, 0xDE, 0x00];
        assert_eq!(text(8, &octets), t("Hi 😀"));
        assert_eq!(text(8, &[0x00]), Err(TextError::Invalid(8)), "odd length");
        assert_eq!(
            text(8, &[0xD8, 0x3D, 0x00, 0x41]),
            Err(TextError::Invalid(8)),
            "lone surrogate"
        );
    }

    #[test]
    fn binary_and_unsupported() {
        assert_eq!(text(2, &[0, 1, 255]), Ok(Content::Binary(vec![0, 1, 255])));
        assert_eq!(text(4, &[9]), Ok(Content::Binary(vec![9])));
        assert_eq!(text(0xF5, &[9]), Ok(Content::Binary(vec![9])));
        for dc in [0x05, 0x07, 0x09, 0x0A, 0x0B, 0x0D, 0x0E, 0x10, 0xBF] {
            assert_eq!(text(dc, b"x"), Err(TextError::UnsupportedCoding(dc)));
        }
    }
}
