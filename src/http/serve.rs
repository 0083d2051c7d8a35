//! The HTTP listener: one hyper http1 connection per client, each with its
//! head and idle timeouts (src/http/connection.rs), and at most
//! http.max_connections of them. At the cap, the connection that has waited
//! longest for its client without a request in progress is closed for the new
//! one, so that a flood of idle or slow connections cannot keep `/healthz` out;
//! only when every connection is inside a request is the new one refused.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::{debug, warn};

use super::connection::{Activity, ConnectionTimeouts, Watched};
use crate::accept::Acceptor;
use crate::log_throttle::LogThrottle;

/// Largest read buffer of a connection: bounds a request head (a larger one gets
/// 431) and the body bytes read ahead. hyper's minimum is 8 KiB.
const MAX_READ_BUFFER: usize = 16 * 1024;

/// How long a new connection waits for the one closed to make room for it.
const EVICTION_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    pub max_connections: usize,
    pub timeouts: ConnectionTimeouts,
}

/// Serves `router` on `listener` until `shutdown`; connections run on `tracker`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let table = Arc::new(ConnectionTable::new(limits.max_connections));
    let mut acceptor = Acceptor::new(listener, "http");
    let (mut refused, mut evicted) = (LogThrottle::default(), LogThrottle::default());
    while let Some((stream, peer)) = acceptor.next(&shutdown).await {
        let slot = match table.admit().await {
            Admission::Free(slot) => slot,
            Admission::MadeRoom(slot) => {
                if let Some(count) = evicted.record(Instant::now()) {
                    warn!(
                        %peer,
                        count,
                        "http.max_connections reached: the connection waiting longest was closed for a new one (count since the last such line)"
                    );
                }
                slot
            }
            Admission::Refused => {
                if let Some(count) = refused.record(Instant::now()) {
                    warn!(
                        %peer,
                        count,
                        "HTTP connection refused: http.max_connections reached with every connection inside a request (count since the last such line)"
                    );
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tracker.spawn(serve_connection(
            stream,
            peer,
            router.clone(),
            slot,
            limits.timeouts,
            shutdown.clone(),
        ));
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    slot: Slot,
    timeouts: ConnectionTimeouts,
    shutdown: CancellationToken,
) {
    let activity = Arc::clone(&slot.activity);
    let io = TokioIo::new(Watched::new(stream, Arc::clone(&activity)));
    let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
        // The peer, for handlers that need it (the console's failed-login back-off).
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        let busy = activity.request_started();
        let router = router.clone();
        async move {
            let response = router.oneshot(request).await;
            drop(busy);
            response
        }
    });
    let connection = http1::Builder::new()
        .max_buf_size(MAX_READ_BUFFER)
        // Timed by Activity instead: hyper's would also close idle connections.
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(connection);
    let mut stopping = false;
    loop {
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(err) = served {
                    debug!(%peer, error = %err, "HTTP connection ended");
                }
                return;
            }
            why = slot.activity.expired(timeouts) => {
                debug!(%peer, why, "HTTP connection closed");
                return;
            }
            _ = slot.evict.cancelled() => {
                debug!(%peer, "HTTP connection closed to make room for a new one");
                return;
            }
            _ = shutdown.cancelled(), if !stopping => {
                // A request in progress is answered first; a client that is
                // not in one has nothing to lose.
                if slot.activity.waiting_since().is_some() {
                    return;
                }
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

enum Admission {
    Free(Slot),
    MadeRoom(Slot),
    Refused,
}

/// The open connections, each holding one of `max_connections` permits.
struct ConnectionTable {
    permits: Arc<Semaphore>,
    open: Mutex<Tenants>,
}

#[derive(Default)]
struct Tenants {
    next_id: u64,
    by_id: HashMap<u64, Tenant>,
}

struct Tenant {
    activity: Arc<Activity>,
    evict: CancellationToken,
}

/// A connection's place in the table, given back when dropped.
struct Slot {
    id: u64,
    table: Arc<ConnectionTable>,
    activity: Arc<Activity>,
    evict: CancellationToken,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table.tenants().by_id.remove(&self.id);
    }
}

impl ConnectionTable {
    fn new(max_connections: usize) -> Self {
        ConnectionTable {
            permits: Arc::new(Semaphore::new(max_connections)),
            open: Mutex::new(Tenants::default()),
        }
    }

    fn tenants(&self) -> std::sync::MutexGuard<'_, Tenants> {
        // Nothing panics while holding the lock; a poisoned map is still consistent.
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn admit(self: &Arc<Self>) -> Admission {
        if let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() {
            return Admission::Free(self.seat(permit));
        }
        if !self.evict_longest_waiting() {
            return Admission::Refused;
        }
        // The evicted connection's task gives its permit back as it ends.
        match tokio::time::timeout(EVICTION_WAIT, Arc::clone(&self.permits).acquire_owned()).await {
            Ok(Ok(permit)) => Admission::MadeRoom(self.seat(permit)),
            _ => Admission::Refused,
        }
    }

    fn seat(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Slot {
        let activity = Arc::new(Activity::opened(Instant::now()));
        let evict = CancellationToken::new();
        let mut tenants = self.tenants();
        let id = tenants.next_id;
        tenants.next_id += 1;
        tenants.by_id.insert(
            id,
            Tenant {
                activity: Arc::clone(&activity),
                evict: evict.clone(),
            },
        );
        Slot {
            id,
            table: Arc::clone(self),
            activity,
            evict,
            _permit: permit,
        }
    }

    /// Tells the connection that has waited longest without a request in
    /// progress to close; false when every connection is inside a request.
    fn evict_longest_waiting(&self) -> bool {
        let tenants = self.tenants();
        // Ties (the same instant) go to the one admitted first.
        let longest = tenants
            .by_id
            .iter()
            .filter(|(_, t)| !t.evict.is_cancelled())
            .filter_map(|(id, t)| t.activity.waiting_since().map(|since| (since, *id, t)))
            .min_by_key(|(since, id, _)| (*since, *id));
        match longest {
            Some((_, _, tenant)) => {
                tenant.evict.cancel();
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn at_the_cap_the_longest_waiting_connection_makes_room_unless_all_are_busy() {
        let table = Arc::new(ConnectionTable::new(3));
        let mut slots = Vec::new();
        for _ in 0..3 {
            match table.admit().await {
                Admission::Free(slot) => slots.push(slot),
                _ => panic!("below the cap"),
            }
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        // The oldest is inside a request: the second has waited longest.
        let busy = slots[0].activity.request_started();
        let admitting = {
            let table = Arc::clone(&table);
            tokio::spawn(async move { table.admit().await })
        };
        tokio::task::yield_now().await;
        assert!(!slots[0].evict.is_cancelled());
        assert!(slots[1].evict.is_cancelled());
        assert!(!slots[2].evict.is_cancelled());
        drop(slots.remove(1));
        let Admission::MadeRoom(fourth) = admitting.await.unwrap() else {
            panic!("room was made");
        };
        // All three now inside a request: refused.
        let _busy = [
            busy,
            slots[1].activity.request_started(),
            fourth.activity.request_started(),
        ];
        assert!(matches!(table.admit().await, Admission::Refused));
    }
}
