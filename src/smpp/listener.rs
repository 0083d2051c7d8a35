//! Accept loops for the plain and TLS listeners. Accepting does nothing slow: the
//! TLS handshake and the bind happen inside the spawned session task.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::session::{run_session, SessionContext};
use crate::accept::Acceptor;
use crate::log_throttle::LogThrottle;

pub enum Transport {
    Plain,
    Tls(TlsAcceptor),
}

/// Accepts connections until shutdown. `connections` caps the sessions of all
/// listeners together; a connection beyond it is closed at once.
pub async fn accept_loop(
    listener: TcpListener,
    transport: Transport,
    ctx: Arc<SessionContext>,
    connections: Arc<Semaphore>,
    tracker: TaskTracker,
) {
    let transport = Arc::new(transport);
    // A failing accept (EMFILE) is logged once per interval and backed off from.
    let mut acceptor = Acceptor::new(listener, "smpp");
    let mut refused = LogThrottle::default();
    while let Some((stream, peer)) = acceptor.next(&ctx.shutdown).await {
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            if let Some(count) = refused.record(Instant::now()) {
                warn!(
                    %peer,
                    count,
                    "connection refused: max_connections reached (count since the last such line)"
                );
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let ctx = Arc::clone(&ctx);
        let transport = Arc::clone(&transport);
        tracker.spawn(async move {
            let _permit = permit;
            match transport.as_ref() {
                Transport::Plain => run_session(stream, peer, "tcp", ctx).await,
                Transport::Tls(acceptor) => {
                    let handshake_timeout = ctx.settings.session_init_timeout;
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => run_session(tls, peer, "tls", ctx).await,
                        Ok(Err(err)) => debug!(%peer, error = %err, "TLS handshake failed"),
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}
