//! From a submit_sm, data_sm or submit_multi to the messages the store keeps: every
//! field validated with its own command_status (docs/smpp34-checklist.md A5, A7, A10).

use crate::routing::AccountRoutes;
use crate::smpp::pdu::{tlv::tag, Address, CommandStatus as S, DataSm, MultiDest, Sm, Tlvs};
use crate::smpp::time;
use crate::store::{ConcatPart, NewMessage, Party};
use crate::text::{self, Charset, DefaultAlphabet};

/// What the submit path needs to know about the account.
#[derive(Debug, Clone)]
pub struct AccountPolicy {
    pub system_id: String,
    /// The routes its messages may take; a destination none takes is refused.
    pub routes: AccountRoutes,
    pub alphabet: DefaultAlphabet,
}

/// The clock reading and defaults one submission is judged against.
#[derive(Debug, Clone, Copy)]
pub struct SubmitTime {
    pub now_ms: i64,
    pub default_validity_ms: i64,
}

const VALID_NPI: [u8; 10] = [0, 1, 3, 4, 6, 8, 9, 10, 14, 18];
const TON_ALPHANUMERIC: u8 = 5;
/// Message type bits of esm_class: anything but a normal message is refused.
const ESM_MESSAGE_TYPE: u8 = 0x3C;
const ESM_UDHI: u8 = 0x40;

/// The fields submit_sm, data_sm and submit_multi share, before the destination.
struct Common<'a> {
    service_type: &'a str,
    source: &'a Address,
    esm_class: u8,
    protocol_id: u8,
    priority_flag: u8,
    schedule_delivery_time: &'a str,
    validity_period: &'a str,
    registered_delivery: u8,
    replace_if_present_flag: u8,
    data_coding: u8,
    sm_default_msg_id: u8,
    short_message: &'a [u8],
    tlvs: &'a Tlvs,
}

pub fn from_submit_sm(sm: &Sm, account: &AccountPolicy, at: SubmitTime) -> Result<NewMessage, S> {
    let template = template(&common_of_sm(sm), account, at)?;
    let dest = check_dest(&sm.dest)?;
    finish(template, dest, account)
}

pub fn from_data_sm(d: &DataSm, account: &AccountPolicy, at: SubmitTime) -> Result<NewMessage, S> {
    if d.tlvs.get(tag::MESSAGE_PAYLOAD).is_none() {
        return Err(S::ESME_RMISSINGOPTPARAM);
    }
    let common = Common {
        service_type: &d.service_type,
        source: &d.source,
        // data_sm's transaction and datagram modes are answered as store and forward.
        esm_class: d.esm_class,
        protocol_id: 0,
        priority_flag: 0,
        schedule_delivery_time: "",
        validity_period: "",
        registered_delivery: d.registered_delivery,
        replace_if_present_flag: 0,
        data_coding: d.data_coding,
        sm_default_msg_id: 0,
        short_message: &[],
        tlvs: &d.tlvs,
    };
    let template = template(&common, account, at)?;
    let dest = check_dest(&d.dest)?;
    finish(template, dest, account)
}

/// The messages to store and the destinations refused, each with its status.
pub type MultiOutcome = (Vec<NewMessage>, Vec<(Address, S)>);

/// The messages of a submit_multi, one per accepted destination, and the refused
/// destinations with their status. A problem with a field every destination shares
/// refuses the whole PDU.
pub fn from_submit_multi(
    sm: &Sm,
    dests: &[MultiDest],
    account: &AccountPolicy,
    at: SubmitTime,
) -> Result<MultiOutcome, S> {
    let template = template(&common_of_sm(sm), account, at)?;
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for dest in dests {
        match dest {
            MultiDest::Sme(addr) => {
                match check_dest(addr).and_then(|d| finish(template.clone(), d, account)) {
                    Ok(message) => accepted.push(message),
                    Err(status) => refused.push((addr.clone(), status)),
                }
            }
            // Distribution lists live on an SMSC; we have none.
            MultiDest::DistributionList(name) => {
                refused.push((Address::new(0, 0, name.clone()), S::ESME_RCNTSUBDL))
            }
        }
    }
    Ok((accepted, refused))
}

fn common_of_sm(sm: &Sm) -> Common<'_> {
    Common {
        service_type: &sm.service_type,
        source: &sm.source,
        esm_class: sm.esm_class,
        protocol_id: sm.protocol_id,
        priority_flag: sm.priority_flag,
        schedule_delivery_time: &sm.schedule_delivery_time,
        validity_period: &sm.validity_period,
        registered_delivery: sm.registered_delivery,
        replace_if_present_flag: sm.replace_if_present_flag,
        data_coding: sm.data_coding,
        sm_default_msg_id: sm.sm_default_msg_id,
        short_message: &sm.short_message,
        tlvs: &sm.tlvs,
    }
}

/// Validates everything but the destination; the result is the message with an
/// empty destination and, for a part of a long message, the set key without it.
fn template(c: &Common<'_>, account: &AccountPolicy, at: SubmitTime) -> Result<NewMessage, S> {
    let source = check_source(c.source)?;
    if c.esm_class & ESM_MESSAGE_TYPE != 0 {
        return Err(S::ESME_RINVESMCLASS);
    }
    if c.priority_flag > 3 {
        return Err(S::ESME_RINVPRTFLG);
    }
    if c.registered_delivery & 0xE0 != 0 {
        return Err(S::ESME_RINVREGDLVFLG);
    }
    match c.replace_if_present_flag {
        0 => {}
        1 => return Err(S::ESME_RINVSUBREP),
        _ => return Err(S::ESME_RINVREPFLAG),
    }
    if c.sm_default_msg_id != 0 {
        return Err(S::ESME_RINVDFTMSGID);
    }
    let scheduled_at =
        time::parse(c.schedule_delivery_time, at.now_ms).map_err(|_| S::ESME_RINVSCHED)?;
    let expires_at =
        match time::parse(c.validity_period, at.now_ms).map_err(|_| S::ESME_RINVEXPIRY)? {
            Some(t) if t <= at.now_ms => return Err(S::ESME_RINVEXPIRY),
            Some(t) => t,
            None => at.now_ms + at.default_validity_ms,
        };
    if scheduled_at.is_some_and(|s| s >= expires_at) {
        return Err(S::ESME_RINVSCHED);
    }
    // A payload in message_payload leaves short_message empty (A8).
    let payload: &[u8] = match (c.short_message.is_empty(), c.tlvs.get(tag::MESSAGE_PAYLOAD)) {
        (false, Some(_)) => return Err(S::ESME_RINVMSGLEN),
        (_, Some(p)) => p,
        (_, None) => c.short_message,
    };
    let (body, concat) = split_concat(c.esm_class, payload, c.tlvs)?;
    let charset = Charset::of(c.data_coding, account.alphabet).map_err(|_| S::ESME_RSUBMITFAIL)?;
    let content = match concat {
        // A part may end inside a character that the next part completes.
        Some(_) if plausible_part(charset, body) => None,
        None => Some(text::decode_as(charset, body).ok_or(S::ESME_RSUBMITFAIL)?),
        Some(_) => return Err(S::ESME_RSUBMITFAIL),
    };
    Ok(NewMessage {
        system_id: account.system_id.clone(),
        route: String::new(),
        service_type: c.service_type.to_owned(),
        source,
        dest: Party::default(),
        esm_class: c.esm_class,
        protocol_id: c.protocol_id,
        priority: c.priority_flag,
        registered_delivery: c.registered_delivery,
        data_coding: c.data_coding,
        charset,
        user_message_reference: c.tlvs.get_u16(tag::USER_MESSAGE_REFERENCE),
        body: body.to_vec(),
        content,
        concat: concat.map(|(reference, total, seq)| ConcatPart {
            key: reference,
            total,
            seq,
        }),
        scheduled_at,
        expires_at,
        session: None,
    })
}

/// Sets the destination and its route, and completes the set key of a long
/// message, which is per account, addresses, reference and total. A
/// destination no route of the account takes is refused before anything is
/// stored.
fn finish(mut message: NewMessage, dest: Party, account: &AccountPolicy) -> Result<NewMessage, S> {
    let route = account
        .routes
        .resolve(&dest.addr)
        .ok_or(S::ESME_RINVDSTADR)?;
    message.route = route.name.clone();
    if let Some(part) = &mut message.concat {
        part.key = format!(
            "{}|{}.{}.{}|{}.{}.{}|{}/{}",
            account.system_id,
            message.source.ton,
            message.source.npi,
            message.source.addr,
            dest.ton,
            dest.npi,
            dest.addr,
            part.key,
            part.total
        );
    }
    message.dest = dest;
    Ok(message)
}

fn check_ton_npi(ton: u8, npi: u8, bad_ton: S, bad_npi: S) -> Result<(), S> {
    if ton > 6 {
        return Err(bad_ton);
    }
    if !VALID_NPI.contains(&npi) {
        return Err(bad_npi);
    }
    Ok(())
}

fn is_number(addr: &str) -> bool {
    let digits = addr.strip_prefix('+').unwrap_or(addr);
    !digits.is_empty() && digits.len() <= 20 && digits.bytes().all(|b| b.is_ascii_digit())
}

/// A source may be empty (the upstream then uses its own number) or alphanumeric
/// for TON 0 and 5; an international (TON 1) source must be a number.
fn check_source(a: &Address) -> Result<Party, S> {
    check_ton_npi(a.ton, a.npi, S::ESME_RINVSRCTON, S::ESME_RINVSRCNPI)?;
    let ok = match a.ton {
        _ if a.addr.is_empty() => true,
        0 | TON_ALPHANUMERIC => a.addr.chars().all(|c| c.is_ascii_graphic() || c == ' '),
        _ => is_number(&a.addr),
    };
    if !ok {
        return Err(S::ESME_RINVSRCADR);
    }
    Ok(Party {
        ton: a.ton,
        npi: a.npi,
        addr: a.addr.clone(),
    })
}

/// A destination is a phone number: an SMS cannot go to an alphanumeric address.
fn check_dest(a: &Address) -> Result<Party, S> {
    check_ton_npi(a.ton, a.npi, S::ESME_RINVDSTTON, S::ESME_RINVDSTNPI)?;
    if a.ton == TON_ALPHANUMERIC {
        return Err(S::ESME_RINVDSTTON);
    }
    if !is_number(&a.addr) {
        return Err(S::ESME_RINVDSTADR);
    }
    Ok(Party {
        ton: a.ton,
        npi: a.npi,
        addr: a.addr.clone(),
    })
}

/// Whether the octets can be one part of a message in `charset`, which is all
/// that can be known before the other parts arrive.
fn plausible_part(charset: Charset, body: &[u8]) -> bool {
    match charset {
        Charset::Gsm7 | Charset::Ascii => body.is_ascii(),
        Charset::Ucs2 => body.len().is_multiple_of(2),
        Charset::Latin1 | Charset::Cyrillic | Charset::Binary => true,
    }
}

/// The body without any UDH, and for a part of a long message its (reference,
/// total, seq). The reference string says which kind it is, so an 8-bit and a
/// 16-bit reference of the same value never meet.
type Split<'a> = (&'a [u8], Option<(String, u8, u8)>);

fn split_concat<'a>(esm_class: u8, payload: &'a [u8], tlvs: &Tlvs) -> Result<Split<'a>, S> {
    let sar = [
        tag::SAR_MSG_REF_NUM,
        tag::SAR_TOTAL_SEGMENTS,
        tag::SAR_SEGMENT_SEQNUM,
    ]
    .map(|t| tlvs.get(t).is_some());
    let has_sar = sar.iter().any(|&present| present);
    if esm_class & ESM_UDHI != 0 {
        if has_sar {
            return Err(S::ESME_RINVESMCLASS);
        }
        return split_udh(payload);
    }
    if !has_sar {
        return Ok((payload, None));
    }
    if !sar.iter().all(|&present| present) {
        return Err(S::ESME_RMISSINGOPTPARAM);
    }
    let (Some(reference), Some(total), Some(seq)) = (
        tlvs.get_u16(tag::SAR_MSG_REF_NUM),
        tlvs.get_u8(tag::SAR_TOTAL_SEGMENTS),
        tlvs.get_u8(tag::SAR_SEGMENT_SEQNUM),
    ) else {
        return Err(S::ESME_RINVPARLEN);
    };
    if total == 0 || seq == 0 || seq > total {
        return Err(S::ESME_RINVOPTPARAMVAL);
    }
    Ok((payload, concat_of(format!("sar:{reference}"), total, seq)))
}

fn concat_of(reference: String, total: u8, seq: u8) -> Option<(String, u8, u8)> {
    // A set of one is just a message.
    (total > 1).then_some((reference, total, seq))
}

/// Walks the information elements of a UDH (23.040 9.2.3.24).
fn split_udh(payload: &[u8]) -> Result<Split<'_>, S> {
    let Some((&udhl, rest)) = payload.split_first() else {
        return Err(S::ESME_RINVESMCLASS);
    };
    let udhl = udhl as usize;
    if rest.len() < udhl {
        return Err(S::ESME_RINVESMCLASS);
    }
    let (header, body) = rest.split_at(udhl);
    let mut concat = None;
    let mut i = 0;
    while i < header.len() {
        let (iei, Some(&len)) = (header[i], header.get(i + 1)) else {
            return Err(S::ESME_RINVESMCLASS);
        };
        let data = header
            .get(i + 2..i + 2 + len as usize)
            .ok_or(S::ESME_RINVESMCLASS)?;
        match (iei, data) {
            (0x00, &[reference, total, seq]) if seq >= 1 && seq <= total => {
                concat = concat_of(format!("udh8:{reference}"), total, seq);
            }
            (0x08, &[hi, lo, total, seq]) if seq >= 1 && seq <= total => {
                concat = concat_of(
                    format!("udh16:{}", u16::from_be_bytes([hi, lo])),
                    total,
                    seq,
                );
            }
            // National language shift tables: we would store the text garbled.
            (0x24 | 0x25, _) => return Err(S::ESME_RSUBMITFAIL),
            // Other elements (ports, a concatenation element 23.040 says to ignore) pass.
            _ => {}
        }
        i += 2 + len as usize;
    }
    Ok((body, concat))
}

#[cfg(test)]
mod tests;
