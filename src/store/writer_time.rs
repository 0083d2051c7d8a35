//! Where the store's single writer spends its time, by step, and how many
//! transactions it commits: exported as metrics, so that an operator sees how
//! close the writer is to saturation (its seconds per second summed over the
//! steps approach 1) and which work fills it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The steps of a writer transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterStep {
    /// Storing submitted messages.
    Submit,
    /// Claiming queued messages for dispatchers.
    Claim,
    /// Storing what upstreams answered to sends.
    Dispatch,
    /// Storing upstream reports: states, final states, receipts.
    Reports,
    /// Storing ESMEs' acknowledgements and delivery attempts, and keeping
    /// each account's deliveries within its cap.
    Deliveries,
    /// BEGIN and COMMIT (with its fsync).
    Commit,
    /// Copying the WAL into the database file when it grew past its limit.
    Checkpoint,
    /// Everything else: other commands, maintenance.
    Other,
}

impl WriterStep {
    pub const ALL: [WriterStep; 8] = [
        WriterStep::Submit,
        WriterStep::Claim,
        WriterStep::Dispatch,
        WriterStep::Reports,
        WriterStep::Deliveries,
        WriterStep::Commit,
        WriterStep::Checkpoint,
        WriterStep::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WriterStep::Submit => "submit",
            WriterStep::Claim => "claim",
            WriterStep::Dispatch => "dispatch",
            WriterStep::Reports => "reports",
            WriterStep::Deliveries => "deliveries",
            WriterStep::Commit => "commit",
            WriterStep::Checkpoint => "checkpoint",
            WriterStep::Other => "other",
        }
    }
}

/// Running totals, written by the writer and read at scrape time.
#[derive(Debug, Default)]
pub struct WriterTime {
    nanos: [AtomicU64; 8],
    transactions: AtomicU64,
}

impl WriterTime {
    pub fn add(&self, step: WriterStep, spent: Duration) {
        let nanos = spent.as_nanos().min(u128::from(u64::MAX)) as u64;
        self.nanos[step as usize].fetch_add(nanos, Ordering::Relaxed);
    }

    pub fn committed(&self) {
        self.transactions.fetch_add(1, Ordering::Relaxed);
    }

    /// Seconds spent in `step` so far.
    pub fn seconds(&self, step: WriterStep) -> f64 {
        self.nanos[step as usize].load(Ordering::Relaxed) as f64 / 1e9
    }

    pub fn transactions(&self) -> u64 {
        self.transactions.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_add_up_separately() {
        let time = WriterTime::default();
        time.add(WriterStep::Claim, Duration::from_millis(1500));
        time.add(WriterStep::Claim, Duration::from_millis(500));
        time.add(WriterStep::Other, Duration::from_micros(250));
        time.committed();
        assert_eq!(time.seconds(WriterStep::Claim), 2.0);
        assert_eq!(time.seconds(WriterStep::Other), 0.00025);
        assert_eq!(time.seconds(WriterStep::Submit), 0.0);
        assert_eq!(time.transactions(), 1);
    }
}
