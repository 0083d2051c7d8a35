//! Each account's recent submits, for the console: how many a second over the
//! last minute and the last 15, and its refusals by status since startup.
//! Counted on every submit response, so the count is a few atomic operations
//! on 10-second buckets, not a lock.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// Seconds per bucket, and buckets kept: 15 minutes.
const BUCKET_S: u64 = 10;
const BUCKETS: usize = 90;

/// Every account's activity, by system_id.
#[derive(Debug)]
pub struct Activity {
    started: Instant,
    accounts: Mutex<HashMap<String, Arc<AccountActivity>>>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            started: Instant::now(),
            accounts: Mutex::default(),
        }
    }
}

/// One account's counts; a session keeps its account's for its lifetime.
#[derive(Debug)]
pub struct AccountActivity {
    started: Instant,
    /// (bucket number, submits accepted in it), each slot reused every 15 min.
    buckets: Vec<(AtomicU64, AtomicU64)>,
    refusals: Mutex<BTreeMap<String, u64>>,
}

/// What the console shows of an account's submits.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SubmitRates {
    pub per_second_1m: f64,
    pub per_second_15m: f64,
    /// Refused submits since startup, by command_status name.
    pub refusals: BTreeMap<String, u64>,
}

impl Activity {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<AccountActivity>>> {
        self.accounts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `system_id`'s counts, made on first use.
    pub fn account(&self, system_id: &str) -> Arc<AccountActivity> {
        let mut accounts = self.lock();
        let entry = accounts
            .entry(system_id.to_owned())
            .or_insert_with(|| Arc::new(AccountActivity::new(self.started)));
        Arc::clone(entry)
    }

    /// `system_id`'s rates now (zeros for an account that never submitted).
    pub fn rates(&self, system_id: &str) -> SubmitRates {
        let activity = self.lock().get(system_id).cloned();
        activity
            .map(|a| a.rates(Instant::now()))
            .unwrap_or_default()
    }
}

impl AccountActivity {
    fn new(started: Instant) -> AccountActivity {
        AccountActivity {
            started,
            buckets: (0..BUCKETS)
                .map(|_| (AtomicU64::new(u64::MAX), AtomicU64::new(0)))
                .collect(),
            refusals: Mutex::default(),
        }
    }

    fn bucket_at(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.started).as_secs() / BUCKET_S
    }

    /// A submit was accepted at `at`.
    pub fn accepted(&self, at: Instant) {
        let bucket = self.bucket_at(at);
        let (number, count) = &self.buckets[bucket as usize % BUCKETS];
        // The slot held an older bucket: it starts over. Two sessions racing
        // here may lose a count, which a rate shown to people can afford.
        if number.swap(bucket, Ordering::Relaxed) != bucket {
            count.store(0, Ordering::Relaxed);
        }
        count.fetch_add(1, Ordering::Relaxed);
    }

    /// A submit was refused with `status`.
    pub fn refused(&self, status: &str) {
        let mut refusals = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        *refusals.entry(status.to_owned()).or_default() += 1;
    }

    /// Accepted submits a second over the last minute and the last 15, at `now`.
    pub fn rates(&self, now: Instant) -> SubmitRates {
        let current = self.bucket_at(now);
        let within = |buckets: u64| -> u64 {
            self.buckets
                .iter()
                .filter(|(number, _)| {
                    let n = number.load(Ordering::Relaxed);
                    n != u64::MAX && n <= current && current - n < buckets
                })
                .map(|(_, count)| count.load(Ordering::Relaxed))
                .sum()
        };
        let refusals = self
            .refusals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        SubmitRates {
            per_second_1m: within(60 / BUCKET_S) as f64 / 60.0,
            per_second_15m: within(BUCKETS as u64) as f64 / (BUCKETS as u64 * BUCKET_S) as f64,
            refusals,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rates_count_the_last_minute_and_the_last_15() {
        let t0 = Instant::now();
        let activity = AccountActivity::new(t0);
        for _ in 0..120 {
            activity.accepted(t0);
        }
        let rates = activity.rates(t0 + Duration::from_secs(5));
        assert_eq!(rates.per_second_1m, 2.0);
        assert_eq!(rates.per_second_15m, 120.0 / 900.0);
        // Ten minutes on: out of the last minute, still in the last 15.
        let later = t0 + Duration::from_secs(600);
        activity.accepted(later);
        let rates = activity.rates(later);
        assert_eq!(rates.per_second_1m, 1.0 / 60.0);
        assert_eq!(rates.per_second_15m, 121.0 / 900.0);
        // Past 15 minutes the old bucket is forgotten, and its slot reused.
        let much_later = t0 + Duration::from_secs(900);
        activity.accepted(much_later);
        assert_eq!(activity.rates(much_later).per_second_15m, 2.0 / 900.0);
        activity.refused("ESME_RTHROTTLED");
        activity.refused("ESME_RTHROTTLED");
        assert_eq!(activity.rates(much_later).refusals["ESME_RTHROTTLED"], 2);
    }
}
