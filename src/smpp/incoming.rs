//! Incoming (MO) messages as deliver_sm, esm_class 0: GSM 7-bit (data_coding 0)
//! when every character has a septet, else UCS-2 (8); binary data as 8-bit (4).
//! A message one SMS cannot carry goes, as the account chose, in concatenated
//! segments with a UDH or whole in the message_payload TLV.

use bytes::Bytes;

use super::pdu::tlv::tag;
use super::pdu::{Address, Sm};
use crate::text::segments::{encode, UDH_LEN};
use crate::text::{Content, LongIncoming};

/// esm_class bit 6: the short_message starts with a UDH.
const ESM_CLASS_UDHI: u8 = 0x40;

/// The deliver_sm(s) of an incoming message from `source_addr` to `dest_addr`.
/// `reference` tells the segments of one message from another's; the same
/// message delivered again uses the same one.
pub fn incoming_sms(
    source_addr: &str,
    dest_addr: &str,
    content: &Content,
    long: LongIncoming,
    reference: u8,
) -> Vec<Sm> {
    let encoded = encode(content);
    let ton = |addr: &str| if addr.starts_with('+') { 1 } else { 0 };
    let base = Sm {
        source: Address::new(ton(source_addr), 1, source_addr.trim_start_matches('+')),
        dest: Address::new(ton(dest_addr), 1, dest_addr.trim_start_matches('+')),
        data_coding: encoded.data_coding,
        ..Sm::default()
    };
    if encoded.octets.len() <= encoded.single_capacity() {
        let short_message = Bytes::from(encoded.octets);
        return vec![Sm {
            short_message,
            ..base
        }];
    }
    let segments = encoded.split(encoded.segment_capacity());
    if long == LongIncoming::MessagePayload || segments.len() > usize::from(u8::MAX) {
        let mut sm = base;
        sm.tlvs.push(tag::MESSAGE_PAYLOAD, encoded.octets.clone());
        return vec![sm];
    }
    let total = segments.len() as u8;
    segments
        .iter()
        .enumerate()
        .map(|(index, segment)| {
            let mut short_message = Vec::with_capacity(UDH_LEN + segment.len());
            short_message.extend_from_slice(&[5, 0, 3, reference, total, index as u8 + 1]);
            short_message.extend_from_slice(segment);
            Sm {
                esm_class: ESM_CLASS_UDHI,
                short_message: Bytes::from(short_message),
                ..base.clone()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::gsm7;

    fn text(s: &str) -> Content {
        Content::Text(s.to_owned())
    }

    /// The text of UDH segments joined back, checking each header.
    fn joined(sms: &[Sm], reference: u8) -> Vec<u8> {
        let mut octets = Vec::new();
        for (index, sm) in sms.iter().enumerate() {
            assert_eq!(sm.esm_class, 0x40);
            // Unpacked septets: the 6-octet UDH takes 7 of GSM's 160.
            let room = if sm.data_coding == 0 { 6 + 153 } else { 140 };
            assert!(sm.short_message.len() <= room, "{}", sm.short_message.len());
            let header = [5, 0, 3, reference, sms.len() as u8, index as u8 + 1];
            assert_eq!(sm.short_message[..6], header);
            octets.extend_from_slice(&sm.short_message[6..]);
        }
        octets
    }

    #[test]
    fn one_sms_goes_as_it_is() {
        let sms = incoming_sms(
            "+4917612345678",
            "4915100000",
            &text(&"a".repeat(160)),
            LongIncoming::Udh,
            1,
        );
        assert_eq!(sms.len(), 1);
        assert_eq!(sms[0].esm_class, 0);
        assert_eq!(sms[0].data_coding, 0);
        assert_eq!(sms[0].short_message.len(), 160);
        assert_eq!(sms[0].source, Address::new(1, 1, "4917612345678"));
        assert_eq!(sms[0].dest, Address::new(0, 1, "4915100000"));
        let ucs2 = incoming_sms("1", "2", &text(&"ж".repeat(70)), LongIncoming::Udh, 1);
        assert_eq!((ucs2.len(), ucs2[0].data_coding), (1, 8));
    }

    #[test]
    fn long_gsm_text_is_cut_into_153_septet_segments() {
        let body = "0123456789".repeat(40);
        let sms = incoming_sms("1", "2", &text(&body), LongIncoming::Udh, 7);
        assert_eq!(sms.len(), 3);
        assert_eq!(sms[0].short_message.len(), 6 + 153);
        assert_eq!(sms[2].short_message.len(), 6 + 400 - 306);
        assert_eq!(gsm7::decode(&joined(&sms, 7)).unwrap(), body);
    }

    #[test]
    fn an_escape_pair_is_never_split() {
        // 152 plain characters, then '€' (ESC + 0x65): it cannot end segment 1.
        let body = format!("{}€{}", "a".repeat(152), "b".repeat(20));
        let sms = incoming_sms("1", "2", &text(&body), LongIncoming::Udh, 1);
        assert_eq!(sms[0].short_message.len(), 6 + 152);
        assert_eq!(gsm7::decode(&joined(&sms, 1)).unwrap(), body);
    }

    #[test]
    fn long_ucs2_text_keeps_surrogate_pairs_whole() {
        // 66 BMP characters then emoji (two UTF-16 units each).
        let body = format!("{}{}", "ж".repeat(66), "😀".repeat(10));
        let sms = incoming_sms("1", "2", &text(&body), LongIncoming::Udh, 9);
        assert_eq!(sms.len(), 2);
        assert_eq!(sms[0].data_coding, 8);
        assert_eq!(
            sms[0].short_message.len(),
            6 + 132,
            "the pair moves on whole"
        );
        let octets = joined(&sms, 9);
        let units: Vec<u16> = octets
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(String::from_utf16(&units).unwrap(), body);
    }

    #[test]
    fn binary_goes_as_8_bit_data_in_134_octet_segments() {
        let data: Vec<u8> = (0..=255).collect();
        let sms = incoming_sms(
            "1",
            "2",
            &Content::Binary(data.clone()),
            LongIncoming::Udh,
            3,
        );
        assert_eq!(sms.len(), 2);
        assert_eq!(sms[0].data_coding, 4);
        assert_eq!(sms[0].short_message.len(), 140);
        assert_eq!(joined(&sms, 3), data);
    }

    #[test]
    fn message_payload_carries_the_whole_message_when_the_account_asks() {
        let body = "x".repeat(400);
        let sms = incoming_sms("1", "2", &text(&body), LongIncoming::MessagePayload, 1);
        assert_eq!(sms.len(), 1);
        assert!(sms[0].short_message.is_empty());
        assert_eq!(sms[0].esm_class, 0);
        assert_eq!(
            sms[0].tlvs.get(tag::MESSAGE_PAYLOAD).map(|b| b.as_ref()),
            Some(gsm7::encode(&body).unwrap().as_slice())
        );
    }
}
