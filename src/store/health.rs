//! Whether the database takes writes now. The writer records the fate of every
//! transaction here; `/readyz` reads it, and the log gets one line when writes
//! start failing, a summary at most every `SUMMARY_INTERVAL` while they go on
//! failing (the writer retries every second), and one when they succeed again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::{error, info};

/// While writes fail, a summary line at most this often.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub struct WriteHealth {
    failing: Mutex<Option<Failing>>,
}

#[derive(Debug, Clone)]
struct Failing {
    reason: String,
    since: Instant,
    /// Failed transactions and refused requests since the last log line.
    batches: u64,
    refused: u64,
    logged_at: Instant,
}

/// What the log should say about a transaction's fate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    Nothing,
    /// Writes have just started failing.
    Failing {
        reason: String,
        refused: u64,
    },
    /// Still failing: totals since the last line.
    StillFailing {
        reason: String,
        batches: u64,
        refused: u64,
        for_: Duration,
    },
    /// Writes succeed again after failing for a while.
    Recovered {
        failed_for: Duration,
    },
}

impl WriteHealth {
    /// Why writes fail now; None while they succeed.
    pub fn failure(&self) -> Option<String> {
        self.lock().as_ref().map(|f| f.reason.clone())
    }

    /// A transaction committed.
    pub(super) fn succeeded(&self, now: Instant) -> Report {
        match self.lock().take() {
            Some(failing) => Report::Recovered {
                failed_for: now.saturating_duration_since(failing.since),
            },
            None => Report::Nothing,
        }
    }

    /// A transaction failed and `refused` requests in it were refused.
    pub(super) fn failed(&self, reason: String, refused: u64, now: Instant) -> Report {
        let mut failing = self.lock();
        let Some(current) = failing.as_mut() else {
            *failing = Some(Failing {
                reason: reason.clone(),
                since: now,
                batches: 0,
                refused: 0,
                logged_at: now,
            });
            return Report::Failing { reason, refused };
        };
        current.batches += 1;
        current.refused += refused;
        current.reason = reason;
        if now.saturating_duration_since(current.logged_at) < SUMMARY_INTERVAL {
            return Report::Nothing;
        }
        let report = Report::StillFailing {
            reason: current.reason.clone(),
            batches: current.batches,
            refused: current.refused,
            for_: now.saturating_duration_since(current.since),
        };
        current.batches = 0;
        current.refused = 0;
        current.logged_at = now;
        report
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Failing>> {
        self.failing.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Report {
    pub(super) fn log(self) {
        match self {
            Report::Nothing => {}
            Report::Failing { reason, refused } => error!(
                error = %reason,
                refused,
                "database writes fail: every request of a failed transaction is refused \
                 (ESME_RSYSERR, HTTP 503) and /readyz answers 503 until they succeed again"
            ),
            Report::StillFailing {
                reason,
                batches,
                refused,
                for_,
            } => error!(
                error = %reason,
                failed_transactions = batches,
                refused,
                failing_for_s = for_.as_secs(),
                "database writes still fail"
            ),
            Report::Recovered { failed_for } => info!(
                failed_for_ms = failed_for.as_millis() as u64,
                "database writes succeed again"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_logged_once_then_summed_up_then_its_end() {
        let health = WriteHealth::default();
        let t0 = Instant::now();
        assert_eq!(health.succeeded(t0), Report::Nothing);
        assert_eq!(
            health.failed("disk full".into(), 3, t0),
            Report::Failing {
                reason: "disk full".into(),
                refused: 3
            }
        );
        assert_eq!(health.failure().as_deref(), Some("disk full"));
        // One transaction a second: silent until the interval has passed.
        for s in 1..10 {
            let at = t0 + Duration::from_secs(s);
            assert_eq!(health.failed("disk full".into(), 2, at), Report::Nothing);
        }
        assert_eq!(
            health.failed("disk full".into(), 2, t0 + Duration::from_secs(10)),
            Report::StillFailing {
                reason: "disk full".into(),
                batches: 10,
                refused: 20,
                for_: Duration::from_secs(10)
            }
        );
        assert_eq!(
            health.failed("disk full".into(), 1, t0 + Duration::from_secs(11)),
            Report::Nothing
        );
        assert_eq!(
            health.succeeded(t0 + Duration::from_secs(12)),
            Report::Recovered {
                failed_for: Duration::from_secs(12)
            }
        );
        assert_eq!(health.failure(), None);
        assert_eq!(
            health.succeeded(t0 + Duration::from_secs(13)),
            Report::Nothing
        );
    }
}
