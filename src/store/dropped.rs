//! Receipts and incoming messages dropped before an ESME acknowledged them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Why a receipt or incoming message was dropped before an ESME acknowledged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// The account held its `max_undelivered`; the oldest went.
    OverLimit,
    /// Kept past `undelivered_retention`.
    Expired,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::OverLimit => "over_limit",
            DropReason::Expired => "expired",
        }
    }
}

/// Deliveries dropped unread since startup, by account and reason: what the
/// `deliveries_dropped_total` metric reports. Counted only once the drop committed.
#[derive(Debug, Clone, Default)]
pub struct DroppedDeliveries(Arc<Mutex<BTreeMap<(String, DropReason), u64>>>);

impl DroppedDeliveries {
    pub(super) fn add(&self, drops: Vec<(String, DropReason, u64)>) {
        if drops.is_empty() {
            return;
        }
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for (system_id, reason, count) in drops {
            *counts.entry((system_id, reason)).or_default() += count;
        }
    }

    pub fn snapshot(&self) -> Vec<(String, DropReason, u64)> {
        let counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        counts
            .iter()
            .map(|((system_id, reason), count)| (system_id.clone(), *reason, *count))
            .collect()
    }
}
