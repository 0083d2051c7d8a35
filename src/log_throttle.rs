//! One log line per interval for an event that can repeat thousands of times a
//! second (a failing accept, a refused connection): the first occurrence is logged
//! at once, later ones are counted and reported with the next line an interval on.

use std::time::Duration;

use tokio::time::Instant;

/// How often a repeating event is logged at most.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct LogThrottle {
    interval: Duration,
    last_logged: Option<Instant>,
    /// Occurrences since the last line, not yet reported.
    unreported: u64,
}

impl LogThrottle {
    pub fn new(interval: Duration) -> Self {
        LogThrottle {
            interval,
            last_logged: None,
            unreported: 0,
        }
    }

    /// Counts one occurrence at `now`. When a line is due, returns how many
    /// occurrences it stands for (this one included).
    pub fn record(&mut self, now: Instant) -> Option<u64> {
        self.record_many(now, 1)
    }

    /// Counts `count` occurrences at once (rows dropped by one statement).
    pub fn record_many(&mut self, now: Instant, count: u64) -> Option<u64> {
        self.unreported += count;
        let due = self
            .last_logged
            .is_none_or(|last| now.saturating_duration_since(last) >= self.interval);
        if !due {
            return None;
        }
        self.last_logged = Some(now);
        Some(std::mem::take(&mut self.unreported))
    }
}

impl Default for LogThrottle {
    fn default() -> Self {
        LogThrottle::new(LOG_INTERVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_occurrence_is_logged_then_one_line_per_interval_with_the_count() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut throttle = LogThrottle::new(Duration::from_secs(10));
        assert_eq!(throttle.record(at(0)), Some(1));
        // Ten a second, as the accept loop failed before: silent until 10 s on.
        let silent = (1..100)
            .map(|i| throttle.record(at(i * 100)))
            .filter(Option::is_some)
            .count();
        assert_eq!(silent, 0);
        // The 99 counted meanwhile and this one.
        assert_eq!(throttle.record(at(10_000)), Some(100));
        assert_eq!(throttle.record(at(10_001)), None);
        assert_eq!(throttle.record(at(19_999)), None);
        assert_eq!(throttle.record(at(20_000)), Some(3));
    }

    #[test]
    fn after_a_quiet_spell_the_next_occurrence_is_logged_at_once() {
        let start = Instant::now();
        let mut throttle = LogThrottle::new(Duration::from_secs(10));
        assert_eq!(throttle.record(start), Some(1));
        assert_eq!(throttle.record(start + Duration::from_secs(3600)), Some(1));
    }

    #[test]
    fn many_at_once_are_summed_into_the_next_line() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut throttle = LogThrottle::new(Duration::from_secs(10));
        assert_eq!(throttle.record_many(at(0), 7), Some(7));
        assert_eq!(throttle.record_many(at(1_000), 40), None);
        assert_eq!(throttle.record_many(at(2_000), 3), None);
        assert_eq!(throttle.record_many(at(10_000), 5), Some(48));
    }
}
