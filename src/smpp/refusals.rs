//! Refused requests summed up in the log. An account's first refusal is logged
//! at once; those after it at most once per interval, as a count with the
//! reasons. A flood (a full disk, a lock held too long, a full queue) so writes
//! one line per account per interval instead of one per request.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use tracing::{error, warn};

/// Distinct reasons on one line, "other" included: the rest count as "other".
const MAX_REASONS: usize = 8;

/// Why the broker refused a request that was otherwise valid.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Refusal {
    /// The store failed (ESME_RSYSERR), with what it said.
    Database(String),
    /// The account's queue holds max_queued messages (ESME_RMSGQFUL).
    QueueFull,
    /// Reasons beyond [`MAX_REASONS`] on one line.
    Other,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Database(err) => write!(f, "database error ({err})"),
            Refusal::QueueFull => f.write_str("queue full (max_queued)"),
            Refusal::Other => f.write_str("other"),
        }
    }
}

/// One line for the log: an account's refusals since its previous line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub system_id: String,
    pub refused: u64,
    pub reasons: BTreeMap<Refusal, u64>,
}

impl Summary {
    /// Writes the line: ERROR when the database failed, otherwise WARN.
    pub fn log(&self) {
        let reasons = self
            .reasons
            .iter()
            .map(|(reason, count)| format!("{reason} x{count}"))
            .collect::<Vec<_>>()
            .join(", ");
        let system_id = self.system_id.as_str();
        let refused = self.refused;
        if self
            .reasons
            .keys()
            .any(|r| matches!(r, Refusal::Database(_)))
        {
            error!(system_id, refused, reasons, "requests refused");
        } else {
            warn!(system_id, refused, reasons, "requests refused");
        }
    }
}

#[derive(Debug)]
struct AccountRefusals {
    /// When the account's last line was due (ms).
    logged_at: i64,
    /// Refusals since that line, by reason.
    pending: BTreeMap<Refusal, u64>,
}

/// The refusals not yet logged, per account. Times are Unix milliseconds the
/// caller passes in, so tests drive it without a clock.
#[derive(Debug)]
pub struct RefusalLog {
    interval_ms: i64,
    accounts: HashMap<String, AccountRefusals>,
}

impl RefusalLog {
    pub fn new(interval: Duration) -> RefusalLog {
        RefusalLog {
            interval_ms: i64::try_from(interval.as_millis()).unwrap_or(i64::MAX),
            accounts: HashMap::new(),
        }
    }

    /// Counts a refusal; the line to log now, when the account had none within
    /// the interval.
    pub fn record(&mut self, system_id: &str, reason: Refusal, now_ms: i64) -> Option<Summary> {
        let interval_ms = self.interval_ms;
        let account = self
            .accounts
            .entry(system_id.to_owned())
            .or_insert_with(|| AccountRefusals {
                logged_at: now_ms.saturating_sub(interval_ms),
                pending: BTreeMap::new(),
            });
        let full = account.pending.len() >= MAX_REASONS - 1;
        let reason = if full && !account.pending.contains_key(&reason) {
            Refusal::Other
        } else {
            reason
        };
        *account.pending.entry(reason).or_default() += 1;
        let due = now_ms.saturating_sub(account.logged_at) >= interval_ms;
        due.then(|| take(system_id, account, now_ms))
    }

    /// The lines of accounts whose refusals have waited an interval since their
    /// last line; accounts quiet for an interval are forgotten.
    pub fn due(&mut self, now_ms: i64) -> Vec<Summary> {
        let interval_ms = self.interval_ms;
        let mut lines = Vec::new();
        self.accounts.retain(|system_id, account| {
            let waited = now_ms.saturating_sub(account.logged_at) >= interval_ms;
            if waited && !account.pending.is_empty() {
                lines.push(take(system_id, account, now_ms));
                return true;
            }
            !waited
        });
        lines.sort_by(|a, b| a.system_id.cmp(&b.system_id));
        lines
    }

    /// Every refusal not yet logged, whatever the time (at shutdown).
    pub fn drain(&mut self) -> Vec<Summary> {
        let mut lines: Vec<Summary> = self
            .accounts
            .drain()
            .filter(|(_, account)| !account.pending.is_empty())
            .map(|(system_id, mut account)| take(&system_id, &mut account, 0))
            .collect();
        lines.sort_by(|a, b| a.system_id.cmp(&b.system_id));
        lines
    }
}

fn take(system_id: &str, account: &mut AccountRefusals, now_ms: i64) -> Summary {
    account.logged_at = now_ms;
    let reasons = std::mem::take(&mut account.pending);
    Summary {
        system_id: system_id.to_owned(),
        refused: reasons.values().sum(),
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(err: &str) -> Refusal {
        Refusal::Database(err.to_owned())
    }

    fn reasons(summary: &Summary) -> Vec<(String, u64)> {
        summary
            .reasons
            .iter()
            .map(|(r, n)| (r.to_string(), *n))
            .collect()
    }

    #[test]
    fn the_first_refusal_is_logged_at_once_then_one_line_per_interval() {
        let mut log = RefusalLog::new(Duration::from_secs(10));
        let first = log.record("acme", db("disk full"), 1_000).unwrap();
        assert_eq!((first.system_id.as_str(), first.refused), ("acme", 1));
        for t in 1_001..1_500 {
            assert_eq!(log.record("acme", db("disk full"), t), None);
        }
        assert_eq!(log.record("acme", Refusal::QueueFull, 1_500), None);
        assert!(log.due(10_999).is_empty(), "not before the interval");
        let lines = log.due(11_000);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].refused, 500);
        assert_eq!(
            reasons(&lines[0]),
            [
                ("database error (disk full)".to_owned(), 499),
                ("queue full (max_queued)".to_owned(), 1)
            ]
        );
        // The next refusal is within the interval of that line: it waits too.
        assert_eq!(log.record("acme", Refusal::QueueFull, 12_000), None);
        assert!(log.due(20_999).is_empty());
        assert_eq!(log.due(21_000)[0].refused, 1);
    }

    #[test]
    fn accounts_are_summed_up_apart() {
        let mut log = RefusalLog::new(Duration::from_secs(10));
        assert!(log.record("acme", Refusal::QueueFull, 0).is_some());
        assert!(log.record("other", Refusal::QueueFull, 5).is_some());
        log.record("acme", Refusal::QueueFull, 10);
        log.record("acme", Refusal::QueueFull, 11);
        log.record("other", Refusal::QueueFull, 12);
        let lines: Vec<(String, u64)> = log
            .due(10_005)
            .into_iter()
            .map(|s| (s.system_id, s.refused))
            .collect();
        assert_eq!(lines, [("acme".to_owned(), 2), ("other".to_owned(), 1)]);
    }

    #[test]
    fn a_quiet_account_is_forgotten_and_logged_at_once_again() {
        let mut log = RefusalLog::new(Duration::from_secs(10));
        assert!(log.record("acme", Refusal::QueueFull, 0).is_some());
        assert!(log.due(10_000).is_empty());
        assert!(log.accounts.is_empty());
        assert!(log.record("acme", Refusal::QueueFull, 10_001).is_some());
    }

    #[test]
    fn many_distinct_reasons_are_capped() {
        let mut log = RefusalLog::new(Duration::from_secs(10));
        log.record("acme", db("first"), 0);
        for i in 0..20 {
            log.record("acme", db(&format!("error {i}")), 1);
        }
        let line = &log.due(10_000)[0];
        assert_eq!(line.refused, 20);
        assert_eq!(line.reasons.len(), MAX_REASONS);
        assert_eq!(line.reasons[&Refusal::Other], 13);
    }

    #[test]
    fn drain_gives_everything_pending() {
        let mut log = RefusalLog::new(Duration::from_secs(10));
        log.record("acme", Refusal::QueueFull, 0);
        log.record("acme", Refusal::QueueFull, 1);
        log.record("acme", Refusal::QueueFull, 2);
        let lines = log.drain();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].refused, 2);
        assert!(log.drain().is_empty());
    }
}
