//! The ledger of what the ESME saw, and the promise checked against it and the
//! fake's list at the end.

use std::collections::HashMap;

use smpp_broker::smpp::pdu::CommandStatus;

use super::*;

/// What the ESME saw. Submits are numbered 1, 2, …; submit n carries the text
/// "soak n", which is how the fake's list is matched to them.
#[derive(Default)]
pub(super) struct Ledger {
    pub(super) submitted: usize,
    /// message_id → n, for every submit_sm_resp with ESME_ROK.
    pub(super) acknowledged: HashMap<String, u32>,
    /// Submits answered with another status (not acknowledged).
    pub(super) refused: Vec<(u32, CommandStatus)>,
    /// Submits on the wire when their connection died: never answered.
    pub(super) unanswered: Vec<u32>,
    /// Submits waiting for their answer on the current connection.
    pub(super) pending: usize,
    /// receipted_message_id → the connection (1, 2, …) of each deliver_sm carrying it.
    pub(super) receipts: HashMap<String, Vec<usize>>,
    pub(super) deliver_sms: usize,
    /// Receipts that had arrived, but not their deliver_sm_resp, when their
    /// connection died.
    pub(super) unacknowledged_receipts: usize,
    pub(super) connections: usize,
    /// Anything the ESME did not expect; the test fails on it.
    pub(super) problem: Option<String>,
}

pub(super) struct Report {
    pub(super) acknowledged_once: usize,
    pub(super) acknowledged_with_receipt: usize,
    pub(super) duplicates: usize,
    pub(super) unanswered_arrived: usize,
    pub(super) failures: Vec<String>,
}

/// The promise, checked against what the ESME and the fake recorded.
pub(super) fn verify(ledger: &Ledger, accepted: &[testkit::fake_smsgate::Accepted]) -> Report {
    let mut failures = Vec::new();
    let mut by_id: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut by_text: HashMap<&str, usize> = HashMap::new();
    for a in accepted {
        let text = a.text.as_deref().unwrap_or_default();
        by_id.entry(&a.id).or_default().push(text);
        *by_text.entry(text).or_default() += 1;
    }
    let duplicates = by_id.values().map(|t| t.len() - 1).sum::<usize>()
        + by_text.values().map(|&n| n - 1).sum::<usize>();
    for (id, texts) in &by_id {
        if texts.len() > 1 {
            failures.push(format!("id {id} accepted {} times: {texts:?}", texts.len()));
        }
    }
    for (text, &n) in &by_text {
        if n > 1 {
            failures.push(format!("{text:?} accepted {n} times"));
        }
    }
    let submitted: HashSet<String> = (1..=ledger.submitted as u32)
        .map(|n| format!("soak {n}"))
        .collect();
    for text in by_text.keys() {
        if !submitted.contains(*text) {
            failures.push(format!("the upstream got {text:?}, never submitted"));
        }
    }
    let mut acknowledged_once = 0;
    let mut acknowledged_with_receipt = 0;
    for (id, n) in &ledger.acknowledged {
        match by_id.get(id.as_str()).map(Vec::as_slice) {
            Some([text]) if *text == format!("soak {n}") => acknowledged_once += 1,
            Some(texts) => {
                failures.push(format!("acknowledged {id} (soak {n}) arrived as {texts:?}"))
            }
            None => failures.push(format!("acknowledged {id} (soak {n}) never arrived")),
        }
        if ledger.receipts.contains_key(id) {
            acknowledged_with_receipt += 1;
        } else {
            failures.push(format!("acknowledged {id} (soak {n}): no receipt"));
        }
    }
    for id in ledger.receipts.keys() {
        if !by_id.contains_key(id.as_str()) {
            failures.push(format!("a receipt for {id}, which the upstream never got"));
        }
    }
    let unanswered_arrived = ledger
        .unanswered
        .iter()
        .filter(|n| by_text.contains_key(format!("soak {n}").as_str()))
        .count();
    Report {
        acknowledged_once,
        acknowledged_with_receipt,
        duplicates,
        unanswered_arrived,
        failures,
    }
}
