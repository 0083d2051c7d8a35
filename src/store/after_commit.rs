//! What a writer's transaction changed that is acted on only once it commits,
//! on either backend: the waiting counts, the dispatchers and the delivery hub
//! woken when it gave them work, and deliveries dropped unread counted and
//! logged.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Notify;
use tracing::warn;

use super::traffic::{Minute, Traffic};
use super::{DropReason, DroppedDeliveries, MessageState};
use crate::log_throttle::LogThrottle;

/// Where a writer's commits are made known, shared with the store's handles.
#[derive(Clone, Default)]
pub struct Signals {
    /// Wakes the dispatchers: messages may have become ready to send.
    pub ready: Arc<Notify>,
    /// Wakes the delivery hub: receipts or incoming messages were stored.
    pub deliveries: Arc<Notify>,
    /// Receipts and incoming messages dropped unread since startup.
    pub dropped: DroppedDeliveries,
    /// Messages through the store per minute, for the console.
    pub traffic: Arc<Traffic>,
}

/// The writer's own side of the signals: their log lines, summed per account
/// and reason.
#[derive(Default)]
pub(super) struct DropLogs(HashMap<(String, DropReason), LogThrottle>);

#[derive(Default)]
pub(super) struct AfterCommit {
    /// Messages that started (or stopped) waiting, per account.
    waiting: HashMap<String, i64>,
    ready: bool,
    /// Accounts that got new deliveries, whose limit is checked before COMMIT.
    pub(super) deliveries: HashMap<String, usize>,
    /// Deliveries became free to read (another node's claims taken over).
    deliveries_freed: bool,
    /// Deliveries dropped unread: (account, why, how many).
    pub(super) dropped: Vec<(String, DropReason, u64)>,
    /// Messages submitted, sent and made final in this transaction.
    traffic: Minute,
    /// Limits of a reloaded configuration, which hold once it committed.
    pub(super) reconfigured: Option<super::WriterLimits>,
}

impl AfterCommit {
    /// The transaction committed: the dispatchers and the delivery hub are
    /// woken if it gave them work, and drops are counted. Returns the changes
    /// to the waiting counts, which each backend keeps its own way.
    pub(super) fn publish(
        mut self,
        signals: &Signals,
        logs: &mut DropLogs,
        now_ms: i64,
    ) -> HashMap<String, i64> {
        signals.traffic.add(now_ms, &self.traffic);
        if self.ready {
            signals.ready.notify_waiters();
        }
        if !self.deliveries.is_empty() || self.deliveries_freed {
            signals.deliveries.notify_waiters();
        }
        let now = tokio::time::Instant::now();
        for (system_id, reason, dropped) in &self.dropped {
            let key = (system_id.clone(), *reason);
            let throttle = logs.0.entry(key).or_default();
            if let Some(dropped) = throttle.record_many(now, *dropped) {
                warn!(%system_id, reason = reason.as_str(), dropped,
                    "receipts and incoming messages dropped unread (over_limit: beyond the \
                     account's max_undelivered, oldest first; expired: past the retention), \
                     summed since the last such line: one line per account and reason every 10 s");
            }
        }
        signals.dropped.add(std::mem::take(&mut self.dropped));
        self.waiting
    }

    /// The reloaded limits, with the writer's own WAL limit kept.
    pub(super) fn take_limits(
        &mut self,
        current: &super::WriterLimits,
    ) -> Option<super::WriterLimits> {
        let mut limits = self.reconfigured.take()?;
        limits.wal_limit = current.wal_limit;
        Some(limits)
    }

    /// Outbox rows made: whole messages and completed long ones.
    pub(super) fn count_submitted(&mut self, rows: usize) {
        self.traffic.submitted += rows as u64;
    }

    /// Outbox rows an upstream took.
    pub(super) fn count_sent(&mut self, rows: usize) {
        self.traffic.sent += rows as u64;
    }

    /// An outbox row became final in `state`.
    pub(super) fn count_final(&mut self, state: MessageState) {
        if state == MessageState::Delivered {
            self.traffic.delivered += 1;
        } else {
            self.traffic.failed += 1;
        }
    }

    pub(super) fn add(&mut self, system_id: &str, delta: i64) {
        *self.waiting.entry(system_id.to_owned()).or_default() += delta;
    }

    pub(super) fn pending(&self, system_id: &str) -> i64 {
        self.waiting.get(system_id).copied().unwrap_or(0)
    }

    pub(super) fn mark_ready(&mut self) {
        self.ready = true;
    }

    pub(super) fn is_ready(&self) -> bool {
        self.ready
    }

    pub(super) fn delivery_added(&mut self, system_id: &str) {
        *self.deliveries.entry(system_id.to_owned()).or_default() += 1;
    }

    pub(super) fn wake_deliveries(&mut self) {
        self.deliveries_freed = true;
    }

    /// Whether the delivery hubs have something new to read.
    pub(super) fn has_deliveries(&self) -> bool {
        !self.deliveries.is_empty() || self.deliveries_freed
    }
}
