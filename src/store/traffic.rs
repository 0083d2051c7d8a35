//! Messages through this node's store, per minute over the last hour: taken
//! in (submitted), handed to an upstream (sent), and made final, delivered or
//! not (failed). Counted by the writers as their transactions commit; the
//! console draws them. Each counts outbox rows, the messages as an upstream
//! sees them: a long message is one.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

/// Minutes kept.
const MINUTES: usize = 60;
const MINUTE_MS: i64 = 60_000;

/// One minute's counts; `minute_ms` is its start (Unix ms).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Minute {
    pub minute_ms: i64,
    pub submitted: u64,
    pub sent: u64,
    pub delivered: u64,
    pub failed: u64,
}

impl Minute {
    fn add(&mut self, counts: &Minute) {
        self.submitted += counts.submitted;
        self.sent += counts.sent;
        self.delivered += counts.delivered;
        self.failed += counts.failed;
    }

    pub fn is_empty(&self) -> bool {
        self.submitted == 0 && self.sent == 0 && self.delivered == 0 && self.failed == 0
    }
}

#[derive(Debug, Default)]
pub struct Traffic {
    minutes: Mutex<VecDeque<Minute>>,
}

impl Traffic {
    /// Adds a transaction's counts (its `minute_ms` ignored) at `at_ms`.
    pub fn add(&self, at_ms: i64, counts: &Minute) {
        if counts.is_empty() {
            return;
        }
        let minute_ms = at_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
        let mut minutes = self.minutes.lock().unwrap_or_else(|e| e.into_inner());
        match minutes.back_mut() {
            Some(last) if last.minute_ms == minute_ms => last.add(counts),
            // A clock that went back counts into the latest minute.
            Some(last) if last.minute_ms > minute_ms => last.add(counts),
            _ => {
                let mut minute = Minute {
                    minute_ms,
                    ..Minute::default()
                };
                minute.add(counts);
                minutes.push_back(minute);
                while minutes.len() > MINUTES {
                    minutes.pop_front();
                }
            }
        }
    }

    /// The 60 minutes up to and with the one of `now_ms`, oldest first, a
    /// minute without traffic as zeros.
    pub fn last_hour(&self, now_ms: i64) -> Vec<Minute> {
        let current = now_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
        let minutes = self.minutes.lock().unwrap_or_else(|e| e.into_inner());
        (0..MINUTES as i64)
            .rev()
            .map(|back| {
                let minute_ms = current - back * MINUTE_MS;
                minutes
                    .iter()
                    .find(|m| m.minute_ms == minute_ms)
                    .copied()
                    .unwrap_or(Minute {
                        minute_ms,
                        ..Minute::default()
                    })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_790_000_000_000 - 1_790_000_000_000 % MINUTE_MS;

    fn counts(submitted: u64, sent: u64, delivered: u64, failed: u64) -> Minute {
        Minute {
            minute_ms: 0,
            submitted,
            sent,
            delivered,
            failed,
        }
    }

    #[test]
    fn an_hour_of_minutes_oldest_first_with_gaps_as_zeros() {
        let traffic = Traffic::default();
        traffic.add(T0 + 1_000, &counts(3, 0, 0, 0));
        traffic.add(T0 + 59_000, &counts(1, 2, 0, 0));
        traffic.add(T0 + 2 * MINUTE_MS, &counts(0, 0, 2, 1));
        let hour = traffic.last_hour(T0 + 2 * MINUTE_MS + 5_000);
        assert_eq!(hour.len(), 60);
        let last = &hour[59];
        assert_eq!(
            (last.minute_ms, last.delivered, last.failed),
            (T0 + 2 * MINUTE_MS, 2, 1)
        );
        assert!(hour[58].is_empty(), "a minute without traffic");
        let first = &hour[57];
        assert_eq!((first.minute_ms, first.submitted, first.sent), (T0, 4, 2));
        // An hour later the first minutes are gone.
        let later = traffic.last_hour(T0 + 61 * MINUTE_MS);
        assert_eq!(later.iter().map(|m| m.submitted).sum::<u64>(), 0);
        assert_eq!(later.iter().map(|m| m.delivered).sum::<u64>(), 2);
    }
}
