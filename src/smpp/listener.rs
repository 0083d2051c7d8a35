//! Accept loops for the plain and TLS listeners. Accepting does nothing slow: the
//! TLS handshake and the bind happen inside the spawned session task.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, warn};

use super::session::{run_session, SessionContext};

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
    loop {
        let accepted = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(ok) => ok,
            Err(err) => {
                // Usually EMFILE: back off instead of spinning, and keep serving.
                error!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            warn!(%peer, "connection refused: max_connections reached");
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
