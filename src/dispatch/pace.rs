//! A tower layer that spaces requests evenly at a fixed rate, without drift.
//!
//! tower's `RateLimit` starts each new window when the waiting task wakes, so
//! every wake-up's latency adds to the spacing: at 40/s against an instant
//! upstream it held 38.3/s (measured in `tests/it/dispatch.rs`). Here each slot
//! follows the previous *slot*, not the moment the request went out, so late
//! wake-ups do not add up; after an idle spell the schedule restarts from now.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

/// tokio's timers fire on a 1 ms grid.
const TIMER_TICK: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, Copy)]
pub struct PaceLayer {
    spacing: Duration,
}

impl PaceLayer {
    /// One request every `spacing`.
    pub fn new(spacing: Duration) -> PaceLayer {
        PaceLayer { spacing }
    }
}

impl<S> Layer<S> for PaceLayer {
    type Service = Pace<S>;

    fn layer(&self, inner: S) -> Pace<S> {
        Pace {
            inner,
            spacing: self.spacing,
            next: None,
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
        }
    }
}

pub struct Pace<S> {
    inner: S,
    spacing: Duration,
    /// The earliest moment of the next request.
    next: Option<Instant>,
    sleep: Pin<Box<Sleep>>,
}

impl<S, R> Service<R> for Pace<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if let Some(next) = self.next {
            // Below the timer's tick a request may go up to a tick ahead of its
            // slot: waiting for each slot would let through only the few a
            // wake-up finds due, whatever the rate (about 5,000/s at 1,000,000/s).
            let early = if self.spacing < TIMER_TICK {
                TIMER_TICK
            } else {
                Duration::ZERO
            };
            let due = next - early;
            if Instant::now() < due {
                if self.sleep.deadline() != due {
                    self.sleep.as_mut().reset(due);
                }
                if self.sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let now = Instant::now();
        let slot = match self.next {
            // Busy: this request had the slot it waited for.
            Some(next) if next + self.spacing >= now => next,
            // Idle for more than a spacing: start again from now.
            _ => now,
        };
        self.next = Some(slot + self.spacing);
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};
    use tower::ServiceExt;

    #[tokio::test(start_paused = true)]
    async fn requests_keep_their_slots_and_an_idle_spell_restarts_the_schedule() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let inner = tower::service_fn(move |_: ()| {
            record.lock().unwrap().push(Instant::now());
            async { Ok::<_, Infallible>(()) }
        });
        let mut paced = PaceLayer::new(Duration::from_millis(100)).layer(inner);
        let start = Instant::now();
        for _ in 0..3 {
            paced.ready().await.unwrap().call(()).await.unwrap();
        }
        // A late caller (150 ms after its slot, more than a spacing) is not
        // held back to make up for lost time, and sets the schedule afresh.
        tokio::time::sleep(Duration::from_millis(450)).await;
        for _ in 0..2 {
            paced.ready().await.unwrap().call(()).await.unwrap();
        }
        let offsets: Vec<u128> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|t| (*t - start).as_millis())
            .collect();
        assert_eq!(offsets, [0, 100, 200, 650, 750]);
    }

    #[tokio::test(start_paused = true)]
    async fn below_the_timer_tick_the_rate_holds_on_average() {
        let inner = tower::service_fn(|_: ()| async { Ok::<_, Infallible>(()) });
        // 10,000 a second: 100 µs apart, a tenth of the timer's tick.
        let mut paced = PaceLayer::new(Duration::from_micros(100)).layer(inner);
        let start = Instant::now();
        for _ in 0..1_000 {
            paced.ready().await.unwrap().call(()).await.unwrap();
        }
        let took = start.elapsed();
        // 1,000 in a tenth of a second, give or take the one tick ahead.
        assert!(
            took >= Duration::from_millis(98) && took <= Duration::from_millis(101),
            "{took:?}"
        );
    }
}
