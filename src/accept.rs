//! Accepting connections for the SMPP and HTTP listeners. When accept fails
//! (EMFILE when the open-file limit is reached, ENFILE, ENOBUFS) the failure is
//! logged once per interval with a count, and the next try waits, longer while
//! the failures go on.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::error;

use crate::log_throttle::LogThrottle;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

pub struct Acceptor {
    listener: TcpListener,
    failures: AcceptFailures,
}

impl Acceptor {
    /// `name` names the listener in the log ("smpp", "http").
    pub fn new(listener: TcpListener, name: &'static str) -> Self {
        Acceptor {
            listener,
            failures: AcceptFailures::new(name),
        }
    }

    /// The next connection; None once `shutdown` is cancelled.
    pub async fn next(&mut self, shutdown: &CancellationToken) -> Option<(TcpStream, SocketAddr)> {
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => return None,
                accepted = self.listener.accept() => accepted,
            };
            match accepted {
                Ok(connection) => {
                    self.failures.succeeded();
                    return Some(connection);
                }
                Err(err) => {
                    let (wait, _) = self.failures.failed(&err, Instant::now());
                    tokio::select! {
                        _ = shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }
}

struct AcceptFailures {
    listener: &'static str,
    log: LogThrottle,
    backoff: Duration,
}

impl AcceptFailures {
    fn new(listener: &'static str) -> Self {
        AcceptFailures {
            listener,
            log: LogThrottle::default(),
            backoff: FIRST_BACKOFF,
        }
    }

    /// Counts a failure at `now`, logs when a line is due, and tells how long to
    /// wait before accepting again, and the count a line logged now, if one was.
    fn failed(&mut self, err: &io::Error, now: Instant) -> (Duration, Option<u64>) {
        let logged = self.log.record(now);
        if let Some(failures) = logged {
            error!(
                listener = self.listener,
                error = %err,
                failures,
                "accept failed (failures counted since the last such line; logged at most every 10 s)"
            );
        }
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        (wait, logged)
    }

    fn succeeded(&mut self) {
        self.backoff = FIRST_BACKOFF;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emfile_ten_times_a_second_is_logged_once_per_ten_seconds_with_the_count() {
        // The counts, not captured log text: a thread-local subscriber in a
        // test misses lines when another test changes the global callsite
        // interest meanwhile (it failed 1 run in 4 that way).
        let emfile = io::Error::from_raw_os_error(24);
        let start = Instant::now();
        let mut failures = AcceptFailures::new("smpp");
        // 25 s of failures every 100 ms, as the loop saw them before.
        let lines: Vec<u64> = (0..250)
            .filter_map(|i| {
                failures
                    .failed(&emfile, start + Duration::from_millis(i * 100))
                    .1
            })
            .collect();
        assert_eq!(lines, [1, 100, 100]);
    }

    #[test]
    fn the_wait_doubles_up_to_a_second_and_resets_after_a_success() {
        let err = io::Error::from_raw_os_error(24);
        let now = Instant::now();
        let mut failures = AcceptFailures::new("http");
        let waits: Vec<u128> = (0..6)
            .map(|_| failures.failed(&err, now).0.as_millis())
            .collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        failures.succeeded();
        assert_eq!(failures.failed(&err, now).0, Duration::from_millis(100));
    }
}
