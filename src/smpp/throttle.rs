//! Rate limits on the SMPP side: a token bucket per account (submits per second,
//! ESME_RTHROTTLED above it) and a back-off for peers that keep failing to bind
//! or bind many times at once.
//! Both read tokio's clock, so tests drive them with paused time.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::debug;

/// A token bucket holding up to one second's worth of tokens.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    pub fn new(rate_per_second: f64) -> Self {
        let capacity = rate_per_second.max(1.0);
        TokenBucket {
            rate: rate_per_second,
            capacity,
            tokens: capacity,
            refilled_at: Instant::now(),
        }
    }

    /// Takes `cost` tokens if they are there; otherwise takes nothing.
    pub fn try_take(&mut self, cost: u32) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled_at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.refilled_at = now;
        let cost = f64::from(cost);
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }
}

/// Slows down peers whose binds fail. An attempt from an address waits
/// `base * 2^(n-1)`, at most `max`, where n counts the address's failures in a row
/// plus its attempts still in flight: those may fail too, so parallel binds are
/// slowed as a sequence of failures would be. A success clears the record and
/// releases the attempts waiting behind it. Failures older than `forget_after` no
/// longer count, and such records are dropped so the map cannot grow without bound.
#[derive(Debug)]
pub struct FailedBinds {
    base: Duration,
    max: Duration,
    forget_after: Duration,
    peers: HashMap<IpAddr, PeerRecord>,
}

#[derive(Debug)]
struct PeerRecord {
    failures: u32,
    failed_at: Instant,
    in_flight: u32,
    /// Successes so far: a waiting attempt sees the record cleared when this moves.
    successes: u64,
}

/// One bind attempt admitted by [`FailedBinds::begin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    /// How long the attempt waits before its credentials are checked.
    pub delay: Duration,
    successes: u64,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindOutcome {
    Bound,
    Refused,
    /// The connection went away first: neither a success nor a failure.
    Abandoned,
}

impl FailedBinds {
    pub fn new(base: Duration, max: Duration) -> Self {
        FailedBinds {
            base,
            max,
            forget_after: Duration::from_secs(600),
            peers: HashMap::new(),
        }
    }

    /// Admits an attempt from `ip`; end it with [`FailedBinds::end`].
    pub fn begin(&mut self, ip: IpAddr) -> Ticket {
        let now = Instant::now();
        if self.peers.len() > 10_000 {
            let forget_after = self.forget_after;
            self.peers.retain(|_, record| {
                record.in_flight > 0 || now.duration_since(record.failed_at) < forget_after
            });
        }
        let forget_after = self.forget_after;
        let record = self.peers.entry(ip).or_insert(PeerRecord {
            failures: 0,
            failed_at: now,
            in_flight: 0,
            successes: 0,
        });
        if now.duration_since(record.failed_at) >= forget_after {
            record.failures = 0;
        }
        let earlier = record.failures.saturating_add(record.in_flight);
        record.in_flight = record.in_flight.saturating_add(1);
        let successes = record.successes;
        Ticket {
            delay: self.backoff(earlier),
            successes,
        }
    }

    fn backoff(&self, earlier: u32) -> Duration {
        if earlier == 0 {
            return Duration::ZERO;
        }
        let factor = 2u32.saturating_pow((earlier - 1).min(16));
        self.base.saturating_mul(factor).min(self.max)
    }

    /// Whether a bind from the address succeeded since `ticket` was issued.
    pub fn cleared_since(&self, ip: IpAddr, ticket: Ticket) -> bool {
        self.peers
            .get(&ip)
            .is_none_or(|record| record.successes != ticket.successes)
    }

    pub fn end(&mut self, ip: IpAddr, outcome: BindOutcome) {
        let Some(record) = self.peers.get_mut(&ip) else {
            return;
        };
        record.in_flight = record.in_flight.saturating_sub(1);
        match outcome {
            BindOutcome::Bound => {
                record.failures = 0;
                record.successes = record.successes.wrapping_add(1);
            }
            BindOutcome::Refused => {
                record.failures = record.failures.saturating_add(1);
                record.failed_at = Instant::now();
            }
            BindOutcome::Abandoned => {}
        }
        if record.in_flight == 0 && record.failures == 0 {
            self.peers.remove(&ip);
        }
    }
}

/// [`FailedBinds`] shared by the sessions: the waiting happens here, and a success
/// wakes the attempts of its address that wait.
#[derive(Debug)]
pub struct BindThrottle {
    records: Mutex<FailedBinds>,
    cleared: Notify,
}

impl BindThrottle {
    pub fn new(base: Duration, max: Duration) -> Self {
        BindThrottle {
            records: Mutex::new(FailedBinds::new(base, max)),
            cleared: Notify::new(),
        }
    }

    fn records(&self) -> MutexGuard<'_, FailedBinds> {
        // Every update leaves the map consistent, so a panicked holder changes nothing.
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits out the address's back-off; the attempt counts as in flight until
    /// it is ended (dropping it ends it as abandoned).
    pub async fn admit(&self, ip: IpAddr) -> BindAttempt<'_> {
        let ticket = self.records().begin(ip);
        let attempt = BindAttempt {
            throttle: self,
            ip,
            ended: false,
        };
        if ticket.delay.is_zero() {
            return attempt;
        }
        debug!(
            delay_ms = ticket.delay.as_millis() as u64,
            "slowing down a peer with failed or parallel binds"
        );
        let deadline = Instant::now() + ticket.delay;
        loop {
            let cleared = self.cleared.notified();
            tokio::pin!(cleared);
            // Registered before the check, so a success between the two is not missed.
            cleared.as_mut().enable();
            if self.records().cleared_since(ip, ticket) {
                return attempt;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return attempt,
                _ = cleared => {}
            }
        }
    }

    fn end(&self, ip: IpAddr, outcome: BindOutcome) {
        self.records().end(ip, outcome);
        if outcome == BindOutcome::Bound {
            self.cleared.notify_waiters();
        }
    }
}

/// A bind attempt in flight.
#[derive(Debug)]
pub struct BindAttempt<'a> {
    throttle: &'a BindThrottle,
    ip: IpAddr,
    ended: bool,
}

impl BindAttempt<'_> {
    pub fn end(mut self, outcome: BindOutcome) {
        self.ended = true;
        self.throttle.end(self.ip, outcome);
    }
}

impl Drop for BindAttempt<'_> {
    fn drop(&mut self) {
        if !self.ended {
            self.throttle.end(self.ip, BindOutcome::Abandoned);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bucket_allows_its_rate_and_refills_with_time() {
        let mut bucket = TokenBucket::new(10.0);
        let granted = (0..25).filter(|_| bucket.try_take(1)).count();
        assert_eq!(granted, 10, "a full bucket holds one second of tokens");
        tokio::time::advance(Duration::from_millis(500)).await;
        let granted = (0..25).filter(|_| bucket.try_take(1)).count();
        assert_eq!(granted, 5);
        assert!(!bucket.try_take(1));
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(
            bucket.try_take(10),
            "refill is capped at capacity, which is 10"
        );
        assert!(!bucket.try_take(1));
    }

    #[tokio::test(start_paused = true)]
    async fn bucket_cost_counts_every_part() {
        let mut bucket = TokenBucket::new(5.0);
        assert!(bucket.try_take(3));
        assert!(
            !bucket.try_take(3),
            "a cost that does not fit takes nothing"
        );
        assert!(bucket.try_take(2));
    }

    /// One attempt from `ip`, ended at once: the delay it was given.
    fn attempt(binds: &mut FailedBinds, ip: IpAddr, outcome: BindOutcome) -> Duration {
        let ticket = binds.begin(ip);
        binds.end(ip, outcome);
        ticket.delay
    }

    #[tokio::test(start_paused = true)]
    async fn failed_binds_back_off_exponentially_and_are_forgotten() {
        use BindOutcome::{Bound, Refused};
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        let mut binds = FailedBinds::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<u64> = (0..6)
            .map(|_| attempt(&mut binds, ip, Refused).as_millis() as u64)
            .collect();
        assert_eq!(delays, [0, 100, 200, 400, 800, 1000], "capped at max");
        assert_eq!(
            attempt(&mut binds, other, Refused),
            Duration::ZERO,
            "per address"
        );
        tokio::time::advance(Duration::from_secs(601)).await;
        assert_eq!(
            attempt(&mut binds, ip, Refused),
            Duration::ZERO,
            "forgotten after ten minutes"
        );
        assert_eq!(attempt(&mut binds, ip, Bound), Duration::from_millis(100));
        assert_eq!(attempt(&mut binds, ip, Refused), Duration::ZERO, "cleared");
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_in_flight_count_like_failures() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        let mut binds = FailedBinds::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<u64> = (0..6)
            .map(|_| binds.begin(ip).delay.as_millis() as u64)
            .collect();
        assert_eq!(delays, [0, 100, 200, 400, 800, 1000]);
        assert_eq!(binds.begin(other).delay, Duration::ZERO, "per address");
        // Two end refused, two go away: only the refusals remain once all are done.
        binds.end(ip, BindOutcome::Refused);
        binds.end(ip, BindOutcome::Refused);
        for _ in 0..4 {
            binds.end(ip, BindOutcome::Abandoned);
        }
        assert_eq!(binds.begin(ip).delay, Duration::from_millis(200));
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_clears_the_record_for_the_attempts_waiting() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let mut binds = FailedBinds::new(Duration::from_millis(100), Duration::from_secs(1));
        let first = binds.begin(ip);
        let waiting = binds.begin(ip);
        assert!(!binds.cleared_since(ip, waiting));
        binds.end(ip, BindOutcome::Refused);
        assert!(
            !binds.cleared_since(ip, waiting),
            "a failure clears nothing"
        );
        assert_eq!(first.delay, Duration::ZERO);
        let third = binds.begin(ip);
        binds.end(ip, BindOutcome::Bound);
        assert!(binds.cleared_since(ip, waiting));
        assert!(binds.cleared_since(ip, third));
        binds.end(ip, BindOutcome::Abandoned);
        binds.end(ip, BindOutcome::Abandoned);
        assert!(binds.peers.is_empty(), "nothing left to remember");
    }

    #[tokio::test(start_paused = true)]
    async fn parallel_attempts_wait_in_turn_and_a_success_releases_them() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let throttle = BindThrottle::new(Duration::from_secs(1), Duration::from_secs(8));
        let start = Instant::now();
        let first = throttle.admit(ip).await;
        // The second waits 1 s, the third 2 s (two attempts ahead of it).
        let second = async {
            let attempt = throttle.admit(ip).await;
            (start.elapsed(), attempt)
        };
        let third = async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let attempt = throttle.admit(ip).await;
            (start.elapsed(), attempt)
        };
        let ((second_at, second), (third_at, third)) = tokio::join!(second, third);
        assert_eq!(second_at, Duration::from_secs(1));
        assert_eq!(third_at, Duration::from_millis(2010));
        first.end(BindOutcome::Refused);
        second.end(BindOutcome::Refused);
        third.end(BindOutcome::Refused);
        // Three failures: the next waits 4 s, unless a bind succeeds meanwhile.
        let start = Instant::now();
        let waiting = async {
            throttle.admit(ip).await;
            start.elapsed()
        };
        let succeeding = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            throttle.records().begin(ip);
            throttle.end(ip, BindOutcome::Bound);
        };
        let (released_at, ()) = tokio::join!(waiting, succeeding);
        assert_eq!(released_at, Duration::from_millis(500));
    }
}
