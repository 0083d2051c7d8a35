//! Delivery receipts as deliver_sm: the de-facto text format of SMPP 3.4
//! Appendix B and, for 3.4 ESMEs, the TLVs (docs/smpp34-checklist.md A11, A14).

use bytes::Bytes;

use super::pdu::tlv::tag;
use super::pdu::{Address, Sm};
use crate::store::{MessageState, Party, ReceiptFacts};
use crate::text::gsm7;
use crate::time::UtcTime;

/// esm_class of a delivery receipt (SMSC delivery receipt, bits 2–5 = 0001).
pub const ESM_CLASS_RECEIPT: u8 = 0x04;
/// network_error_code network type: GSM.
const NETWORK_TYPE_GSM: u8 = 3;

/// YYMMDDhhmm in UTC.
fn receipt_date(ms: i64) -> String {
    let t = UtcTime::from_unix_ms(ms);
    format!(
        "{:02}{:02}{:02}{:02}{:02}",
        t.year.rem_euclid(100),
        t.month,
        t.day,
        t.hour,
        t.minute
    )
}

/// The receipt text: `id:… sub:001 dlvrd:… submit date:… done date:… stat:…
/// err:… text:…` with the first 20 characters of the original text. `now` is
/// the done date of an intermediate receipt.
pub fn receipt_text(facts: &ReceiptFacts, now: i64) -> String {
    let delivered = if facts.state == MessageState::Delivered {
        "001"
    } else {
        "000"
    };
    let text: String = facts.text.chars().take(20).collect();
    format!(
        "id:{} sub:001 dlvrd:{delivered} submit date:{} done date:{} stat:{} err:{:03} text:{text}",
        facts.message_id,
        receipt_date(facts.submitted_at),
        receipt_date(facts.done_at.unwrap_or(now)),
        facts.stat,
        facts.error_code,
    )
}

fn address(party: &Party) -> Address {
    Address::new(party.ton, party.npi, party.addr.as_str())
}

/// The deliver_sm body of a receipt: from the original destination to its
/// source, GSM 7-bit text (characters it lacks become '?'), and the 3.4 TLVs
/// (the session drops them for an ESME of an older version).
pub fn receipt_sm(facts: &ReceiptFacts, now: i64) -> Sm {
    let text = receipt_text(facts, now);
    let encodable: String = text
        .chars()
        .map(|c| {
            if gsm7::encode(&c.to_string()).is_some() {
                c
            } else {
                '?'
            }
        })
        .collect();
    let mut sm = Sm {
        source: address(&facts.dest),
        dest: address(&facts.source),
        esm_class: ESM_CLASS_RECEIPT,
        data_coding: 0,
        short_message: Bytes::from(gsm7::encode(&encodable).unwrap_or_default()),
        ..Sm::default()
    };
    sm.tlvs
        .push_cstring(tag::RECEIPTED_MESSAGE_ID, &facts.message_id);
    sm.tlvs.push_u8(tag::MESSAGE_STATE, facts.smpp_state);
    let [hi, lo] = u16::from(facts.error_code).to_be_bytes();
    sm.tlvs
        .push(tag::NETWORK_ERROR_CODE, vec![NETWORK_TYPE_GSM, hi, lo]);
    if let Some(reference) = facts.user_message_reference {
        sm.tlvs.push_u16(tag::USER_MESSAGE_REFERENCE, reference);
    }
    sm
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Facts as the store reads them, with the stock `message_states` rows.
    fn facts(state: MessageState) -> ReceiptFacts {
        let (smpp_state, stat) = match state {
            MessageState::Delivered => (2, "DELIVRD"),
            MessageState::Undeliverable => (5, "UNDELIV"),
            _ => (1, "ENROUTE"),
        };
        ReceiptFacts {
            message_id: "7340032000001".into(),
            state,
            smpp_state,
            stat: stat.into(),
            error_code: 0,
            // 2026-11-22 15:00:00 UTC and 15:10:30
            submitted_at: 1_795_359_600_000,
            done_at: Some(1_795_360_230_000),
            source: Party {
                ton: 5,
                npi: 0,
                addr: "Shop".into(),
            },
            dest: Party {
                ton: 1,
                npi: 1,
                addr: "4917612345678".into(),
            },
            text: "Your code is 1234, valid for 5 minutes".into(),
            user_message_reference: Some(42),
        }
    }

    #[test]
    fn the_text_follows_appendix_b() {
        assert_eq!(
            receipt_text(&facts(MessageState::Delivered), 0),
            "id:7340032000001 sub:001 dlvrd:001 submit date:2611221500 done date:2611221510 \
             stat:DELIVRD err:000 text:Your code is 1234, v"
        );
        let mut failed = facts(MessageState::Undeliverable);
        failed.error_code = 4;
        assert!(receipt_text(&failed, 0).contains("dlvrd:000 "));
        assert!(receipt_text(&failed, 0).contains("stat:UNDELIV err:004 "));
        let mut intermediate = facts(MessageState::Enroute);
        intermediate.done_at = None;
        assert!(receipt_text(&intermediate, 1_795_359_660_000)
            .contains("done date:2611221501 stat:ENROUTE"));
    }

    #[test]
    fn the_deliver_sm_swaps_addresses_and_carries_the_tlvs() {
        let sm = receipt_sm(&facts(MessageState::Delivered), 0);
        assert_eq!(sm.esm_class, 0x04);
        assert_eq!(sm.source, Address::new(1, 1, "4917612345678"));
        assert_eq!(sm.dest, Address::new(5, 0, "Shop"));
        assert_eq!(sm.data_coding, 0);
        assert!(sm.short_message.starts_with(b"id:7340032000001 sub:001"));
        assert_eq!(
            sm.tlvs.get(tag::RECEIPTED_MESSAGE_ID).map(|b| &b[..]),
            Some(&b"7340032000001\0"[..])
        );
        assert_eq!(
            sm.tlvs.get(tag::MESSAGE_STATE).map(|b| &b[..]),
            Some(&[2u8][..])
        );
        assert_eq!(
            sm.tlvs.get(tag::NETWORK_ERROR_CODE).map(|b| &b[..]),
            Some(&[3u8, 0, 0][..])
        );
        assert_eq!(
            sm.tlvs.get(tag::USER_MESSAGE_REFERENCE).map(|b| &b[..]),
            Some(&[0u8, 42][..])
        );
    }

    #[test]
    fn characters_gsm_lacks_become_question_marks() {
        let mut f = facts(MessageState::Delivered);
        f.text = "Привет €".into();
        let sm = receipt_sm(&f, 0);
        let text = gsm7::decode(&sm.short_message).unwrap();
        assert!(text.ends_with("text:?????? €"), "{text}");
    }
}
