//! Rate limits on the SMPP side: a token bucket per account (submits per second,
//! ESME_RTHROTTLED above it) and a back-off for peers that keep failing to bind.
//! Both read tokio's clock, so tests drive them with paused time.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

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

/// Slows down peers whose binds fail: after n failures in a row the next bind from
/// that address waits `base * 2^(n-1)`, at most `max`. A success clears the record;
/// records older than `forget_after` are dropped so the map cannot grow without bound.
#[derive(Debug)]
pub struct FailedBinds {
    base: Duration,
    max: Duration,
    forget_after: Duration,
    peers: HashMap<IpAddr, (u32, Instant)>,
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

    pub fn delay_for(&self, ip: IpAddr) -> Duration {
        match self.peers.get(&ip) {
            Some(&(failures, at)) if at.elapsed() < self.forget_after && failures > 0 => {
                let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
                self.base.saturating_mul(factor).min(self.max)
            }
            _ => Duration::ZERO,
        }
    }

    pub fn record_failure(&mut self, ip: IpAddr) {
        let now = Instant::now();
        if self.peers.len() > 10_000 {
            let forget_after = self.forget_after;
            self.peers
                .retain(|_, (_, at)| now.duration_since(*at) < forget_after);
        }
        let entry = self.peers.entry(ip).or_insert((0, now));
        if now.duration_since(entry.1) >= self.forget_after {
            entry.0 = 0;
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
    }

    pub fn record_success(&mut self, ip: IpAddr) {
        self.peers.remove(&ip);
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

    #[tokio::test(start_paused = true)]
    async fn failed_binds_back_off_exponentially_and_are_forgotten() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        let mut binds = FailedBinds::new(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(binds.delay_for(ip), Duration::ZERO);
        binds.record_failure(ip);
        assert_eq!(binds.delay_for(ip), Duration::from_millis(100));
        binds.record_failure(ip);
        binds.record_failure(ip);
        assert_eq!(binds.delay_for(ip), Duration::from_millis(400));
        for _ in 0..10 {
            binds.record_failure(ip);
        }
        assert_eq!(binds.delay_for(ip), Duration::from_secs(1), "capped");
        assert_eq!(binds.delay_for(other), Duration::ZERO, "per address");
        tokio::time::advance(Duration::from_secs(601)).await;
        assert_eq!(
            binds.delay_for(ip),
            Duration::ZERO,
            "forgotten after ten minutes"
        );
        binds.record_failure(ip);
        binds.record_success(ip);
        assert_eq!(binds.delay_for(ip), Duration::ZERO);
    }
}
