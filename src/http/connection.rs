//! What one HTTP connection is doing, and when it has waited too long: its
//! request head must arrive within http.header_read_timeout, and a kept-alive
//! connection may sit without a request for http.idle_timeout. While a request
//! is inside the broker nothing here closes it (the body has its own timeout,
//! src/http/body.rs).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for a request head: since the connection opened, or since the
    /// first byte of a request after an idle spell.
    Head { since: Instant },
    /// A request is being answered.
    Busy,
    /// Kept alive after a response, no byte of a new request yet.
    Idle { since: Instant },
}

#[derive(Debug, Clone, Copy)]
pub struct ConnectionTimeouts {
    pub header_read: Duration,
    pub idle: Duration,
}

pub struct Activity {
    phase: watch::Sender<Phase>,
}

impl Activity {
    /// A connection just accepted: its first head is due.
    pub fn opened(now: Instant) -> Self {
        Activity {
            phase: watch::Sender::new(Phase::Head { since: now }),
        }
    }

    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Bytes came in: after an idle spell they start the next request's head.
    pub fn bytes_read(&self, now: Instant) {
        self.phase.send_if_modified(|phase| match phase {
            Phase::Idle { .. } => {
                *phase = Phase::Head { since: now };
                true
            }
            _ => false,
        });
    }

    /// A request head was read; the connection is idle again when the guard drops.
    pub fn request_started(self: &Arc<Self>) -> BusyGuard {
        self.phase.send_replace(Phase::Busy);
        BusyGuard(Arc::clone(self))
    }

    /// Since when it has waited for a client without a request in progress.
    pub fn waiting_since(&self) -> Option<Instant> {
        match self.phase() {
            Phase::Head { since } | Phase::Idle { since } => Some(since),
            Phase::Busy => None,
        }
    }

    /// Completes when the connection has waited past its timeout; tells which.
    pub async fn expired(&self, timeouts: ConnectionTimeouts) -> &'static str {
        let mut phases = self.phase.subscribe();
        loop {
            let deadline = match *phases.borrow_and_update() {
                Phase::Head { since } => Some((
                    since + timeouts.header_read,
                    "request head not complete within http.header_read_timeout",
                )),
                Phase::Idle { since } => {
                    Some((since + timeouts.idle, "no request within http.idle_timeout"))
                }
                Phase::Busy => None,
            };
            match deadline {
                Some((at, why)) => tokio::select! {
                    _ = tokio::time::sleep_until(at) => return why,
                    _ = phases.changed() => {}
                },
                // The sender lives in self, so this only returns on a change.
                None => {
                    let _ = phases.changed().await;
                }
            }
        }
    }
}

pub struct BusyGuard(Arc<Activity>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.phase.send_replace(Phase::Idle {
            since: Instant::now(),
        });
    }
}

/// The TCP stream, telling the connection's [`Activity`] when bytes arrive.
pub struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl Watched {
    pub fn new(stream: TcpStream, activity: Arc<Activity>) -> Self {
        Watched { stream, activity }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_read(Instant::now());
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUTS: ConnectionTimeouts = ConnectionTimeouts {
        header_read: Duration::from_secs(10),
        idle: Duration::from_secs(60),
    };

    /// How long `expired` takes from now, and why it fired.
    async fn time_to_expiry(activity: &Activity) -> (Duration, &'static str) {
        let start = Instant::now();
        let why = activity.expired(TIMEOUTS).await;
        (start.elapsed(), why)
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_connection_has_header_read_timeout_for_its_first_head() {
        let activity = Activity::opened(Instant::now());
        // Bytes of the head do not extend it.
        tokio::time::advance(Duration::from_secs(4)).await;
        activity.bytes_read(Instant::now());
        let (left, why) = time_to_expiry(&activity).await;
        assert_eq!(left, Duration::from_secs(6));
        assert!(why.contains("http.header_read_timeout"), "{why}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_progress_never_expires_and_idle_time_starts_after_it() {
        let activity = Arc::new(Activity::opened(Instant::now()));
        let busy = activity.request_started();
        assert_eq!(activity.waiting_since(), None);
        let watcher = {
            let activity = Arc::clone(&activity);
            tokio::spawn(async move { time_to_expiry(&activity).await })
        };
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(!watcher.is_finished(), "expired while busy");
        drop(busy);
        let idle_from = Instant::now();
        assert_eq!(activity.waiting_since(), Some(idle_from));
        let (left, why) = watcher.await.unwrap();
        assert_eq!(left, Duration::from_secs(3600) + TIMEOUTS.idle);
        assert!(why.contains("http.idle_timeout"), "{why}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_byte_after_an_idle_spell_starts_the_next_head() {
        let activity = Arc::new(Activity::opened(Instant::now()));
        drop(activity.request_started());
        tokio::time::advance(Duration::from_secs(50)).await;
        let first_byte = Instant::now();
        activity.bytes_read(first_byte);
        assert_eq!(activity.phase(), Phase::Head { since: first_byte });
        let (left, why) = time_to_expiry(&activity).await;
        assert_eq!(left, TIMEOUTS.header_read);
        assert!(why.contains("http.header_read_timeout"), "{why}");
    }
}
