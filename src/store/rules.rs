//! The rules both backends apply the same way, and the rows they read into the
//! store's vocabulary: what is not SQL.

use std::collections::{BTreeMap, HashMap};

use super::model::*;
use crate::text::{self, Charset, Content};

pub(crate) fn decode_content(charset: Charset, body: &[u8]) -> Option<Content> {
    // The charset was resolved at submit time, with the account's choice for
    // data_coding 0, so the same reading applies here.
    text::decode_as(charset, body)
}

/// A message scheduled in the future waits as 'scheduled'; otherwise it is queued now.
pub(crate) fn schedule(scheduled_at: Option<i64>, now: i64) -> (&'static str, i64) {
    match scheduled_at {
        Some(at) if at > now => ("scheduled", at),
        _ => ("queued", now),
    }
}

/// A message body as its two columns: `text` for text, `data` for octets.
pub(crate) fn content_columns(content: &Content) -> (Option<&str>, Option<&[u8]>) {
    match content {
        Content::Text(text) => (Some(text), None),
        Content::Binary(data) => (None, Some(data)),
    }
}

/// The body back from its two columns.
pub(crate) fn content_from_columns(text: Option<String>, data: Option<Vec<u8>>) -> Content {
    match text {
        Some(text) => Content::Text(text),
        None => Content::Binary(data.unwrap_or_default()),
    }
}

/// registered_delivery's SMSC receipt field: 1 every final state, 2 failures only,
/// 3 (reserved in 3.4, success only in 5.0).
const SMSC_RECEIPT: u8 = 0x03;

/// What a long message asks of the upstream, from its parts' registered_delivery:
/// the least request that covers every part's. Clients such as Jasmin ask only on
/// the last part, so the first part's value alone would ask for nothing. The SMSC
/// receipt field is the value the parts agree on, or 1 (every final state) when
/// they ask for different ones; the SME acknowledgement bits and the intermediate
/// 0x10 are ORed. Receipts still follow each part's own value (`add_receipts`).
pub(crate) fn covering_request(parts: impl IntoIterator<Item = u8>) -> u8 {
    let mut receipt = 0;
    let mut others = 0;
    for requested in parts {
        others |= requested & !SMSC_RECEIPT;
        receipt = match (receipt, requested & SMSC_RECEIPT) {
            (r, 0) => r,
            (0, asked) => asked,
            (r, asked) if r == asked => r,
            _ => 1,
        };
    }
    others | receipt
}

/// Which of `reports` apply, per outbox id: the last intermediate one before
/// the first final one, and that final one. Returns their indexes.
pub(crate) fn effective(reports: &[UpstreamReport]) -> (Vec<usize>, Vec<usize>) {
    let mut intermediate: HashMap<i64, usize> = HashMap::new();
    let mut last: HashMap<i64, usize> = HashMap::new();
    for (i, report) in reports.iter().enumerate() {
        if last.contains_key(&report.outbox_id) {
            continue;
        }
        match report.state {
            None => {
                intermediate.insert(report.outbox_id, i);
            }
            Some(_) => {
                last.insert(report.outbox_id, i);
            }
        }
    }
    let mut intermediate: Vec<usize> = intermediate.into_values().collect();
    let mut last: Vec<usize> = last.into_values().collect();
    intermediate.sort_unstable();
    last.sort_unstable();
    (intermediate, last)
}

/// An outbox row as a claim returns it: an element of one JSON array (a row
/// each would be a hand-off each between SQLite's thread and the writer).
#[derive(serde::Deserialize)]
pub(crate) struct ClaimedRow {
    id: i64,
    system_id: String,
    route: String,
    upstream: Option<String>,
    dest_ton: i64,
    dest_addr: String,
    source_addr: String,
    text: Option<String>,
    /// In hexadecimal: JSON holds no octets.
    data: Option<String>,
    data_coding: i64,
    registered_delivery: i64,
    priority: i64,
    expires_at: i64,
    attempts: i64,
    created_at: i64,
    lease_until: Option<i64>,
}

impl TryFrom<ClaimedRow> for Dispatch {
    type Error = hex::FromHexError;

    fn try_from(r: ClaimedRow) -> Result<Dispatch, hex::FromHexError> {
        let data = r.data.map(hex::decode).transpose()?;
        Ok(Dispatch {
            outbox_id: r.id,
            system_id: r.system_id,
            route: r.route,
            upstream: r.upstream,
            dest_ton: r.dest_ton as u8,
            dest_addr: r.dest_addr,
            source_addr: r.source_addr,
            content: content_from_columns(r.text, data),
            data_coding: r.data_coding as u8,
            registered_delivery: r.registered_delivery as u8,
            priority: r.priority as u8,
            expires_at: r.expires_at,
            attempts: r.attempts.max(0) as u32,
            created_at: r.created_at,
            lease_until: r.lease_until.unwrap_or(0),
        })
    }
}

/// Parts members took in one batch of outcomes, summed per member and period
/// so that the batch costs one upsert per period, not one per message.
#[derive(Default)]
pub(crate) struct UsageTally {
    /// (upstream, period, starts_at) → (ends_at, parts)
    parts: BTreeMap<(String, &'static str, i64), (i64, i64)>,
}

impl UsageTally {
    pub(crate) fn add(&mut self, upstream: String, charge: &UsageCharge) {
        for period in &charge.periods {
            let key = (upstream.clone(), period.period, period.starts_at);
            let entry = self.parts.entry(key).or_insert((period.ends_at, 0));
            entry.1 += i64::from(charge.parts);
        }
    }

    /// Its sums: (upstream, period, starts_at, ends_at, parts).
    pub(crate) fn rows(self) -> impl Iterator<Item = (String, &'static str, i64, i64, i64)> {
        self.parts
            .into_iter()
            .map(|((upstream, period, starts_at), (ends_at, parts))| {
                (upstream, period, starts_at, ends_at, parts)
            })
    }
}

/// A receipt or incoming message waiting for an ESME, with (for a receipt) the
/// original message's columns.
#[derive(sqlx::FromRow)]
pub(crate) struct DeliveryRow {
    id: i64,
    kind: String,
    attempts: i64,
    message_id: Option<i64>,
    state: Option<String>,
    error_code: Option<i64>,
    done_at: Option<i64>,
    mo_source: Option<String>,
    mo_dest: Option<String>,
    text: Option<String>,
    data: Option<Vec<u8>>,
    submitted_at: Option<i64>,
    source_ton: Option<i64>,
    source_npi: Option<i64>,
    source_addr: Option<String>,
    dest_ton: Option<i64>,
    dest_npi: Option<i64>,
    dest_addr: Option<String>,
    charset: Option<String>,
    body: Option<Vec<u8>>,
    user_message_reference: Option<i64>,
    smpp_state: i64,
    stat: String,
}

impl DeliveryRow {
    /// None for a receipt whose message is gone (purged meanwhile).
    pub(crate) fn into_pending(self) -> Option<PendingDelivery> {
        let content = match self.kind.as_str() {
            "receipt" => {
                let charset = Charset::parse(self.charset.as_deref()?).unwrap_or(Charset::Binary);
                let text = match crate::text::decode_as(charset, &self.body.unwrap_or_default()) {
                    Some(Content::Text(text)) => text,
                    _ => String::new(),
                };
                let party = |ton: Option<i64>, npi: Option<i64>, addr: Option<String>| Party {
                    ton: ton.unwrap_or(0) as u8,
                    npi: npi.unwrap_or(0) as u8,
                    addr: addr.unwrap_or_default(),
                };
                DeliveryContent::Receipt(ReceiptFacts {
                    message_id: self.message_id?.to_string(),
                    state: MessageState::parse(self.state.as_deref().unwrap_or_default()),
                    smpp_state: self.smpp_state.clamp(1, 8) as u8,
                    stat: self.stat,
                    error_code: self.error_code.unwrap_or(0).clamp(0, 255) as u8,
                    done_at: self.done_at,
                    submitted_at: self.submitted_at?,
                    source: party(self.source_ton, self.source_npi, self.source_addr),
                    dest: party(self.dest_ton, self.dest_npi, self.dest_addr),
                    text,
                    user_message_reference: self
                        .user_message_reference
                        .map(|v| v.clamp(0, 0xFFFF) as u16),
                })
            }
            _ => DeliveryContent::Incoming {
                source_addr: self.mo_source.unwrap_or_default(),
                dest_addr: self.mo_dest.unwrap_or_default(),
                content: content_from_columns(self.text, self.data),
            },
        };
        Some(PendingDelivery {
            id: self.id,
            attempts: self.attempts.max(0) as u32,
            content,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_message_asks_for_what_any_part_asks() {
        assert_eq!(covering_request([0, 0, 1]), 1, "Jasmin: the last part asks");
        assert_eq!(covering_request([1, 0, 0]), 1);
        assert_eq!(covering_request([0, 0, 0]), 0);
        assert_eq!(covering_request([0, 2, 0]), 2, "failures only stays so");
        assert_eq!(
            covering_request([2, 1]),
            1,
            "every final state covers failures"
        );
        assert_eq!(
            covering_request([2, 3]),
            1,
            "failures and successes: every one"
        );
        assert_eq!(covering_request([0x10, 0, 2]), 0x12);
        assert_eq!(covering_request([0x04, 0x08, 0]), 0x0C);
        assert_eq!(covering_request([]), 0);
    }

    fn report(outbox_id: i64, upstream_state: &str, state: Option<MessageState>) -> UpstreamReport {
        UpstreamReport {
            outbox_id,
            upstream_state: upstream_state.into(),
            state,
            error_code: 0,
            error: None,
            at: 0,
        }
    }

    #[test]
    fn per_message_the_last_intermediate_before_the_first_final_and_that_final() {
        let reports = [
            report(1, "Processed", None),
            report(1, "Sent", None),
            report(2, "Delivered", Some(MessageState::Delivered)),
            report(1, "Delivered", Some(MessageState::Delivered)),
            // After its final report: nothing more for 1 or 2.
            report(1, "Sent", None),
            report(2, "Failed", Some(MessageState::Undeliverable)),
            report(3, "Sent", None),
        ];
        assert_eq!(effective(&reports), (vec![1, 6], vec![2, 3]));
    }
}
