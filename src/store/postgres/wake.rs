//! Wake-ups between nodes: a commit that gave other nodes work (messages ready
//! to send, deliveries to hand to sessions) notifies them (`pg_notify`, sent
//! by PostgreSQL at COMMIT), and each node's listener wakes its dispatchers or
//! its delivery hub. Only a hint: they also look on their own every second, so
//! a lost notification (a reconnect) costs at most that second.

use sqlx::postgres::{PgConnection, PgListener, PgPool};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::store::Signals;

const CHANNEL: &str = "smpp_broker_wake";

/// What a commit gave the other nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Wake {
    pub ready: bool,
    pub deliveries: bool,
}

impl Wake {
    fn payload(self, node_id: &str) -> Option<String> {
        let what = match (self.ready, self.deliveries) {
            (false, false) => return None,
            (true, false) => "ready",
            (false, true) => "deliveries",
            (true, true) => "ready,deliveries",
        };
        Some(format!("{what} {node_id}"))
    }

    /// The wake-up a payload names, unless `node_id` (this node) sent it.
    fn parse(payload: &str, node_id: &str) -> Option<Wake> {
        let (what, from) = payload.split_once(' ')?;
        if from == node_id {
            return None;
        }
        Some(Wake {
            ready: what.split(',').any(|w| w == "ready"),
            deliveries: what.split(',').any(|w| w == "deliveries"),
        })
    }
}

/// Queues the notification in the transaction on `conn`; PostgreSQL sends it
/// when (and only if) the transaction commits.
pub(super) async fn notify(
    conn: &mut PgConnection,
    wake: Wake,
    node_id: &str,
) -> Result<(), sqlx::Error> {
    if let Some(payload) = wake.payload(node_id) {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Listens until `stop`, waking `ready` and `deliveries` for other nodes' commits.
pub(super) async fn listen(
    pool: PgPool,
    node_id: String,
    signals: Signals,
    stop: CancellationToken,
) {
    loop {
        // Connected and listening, or a second's wait before trying again:
        // a server that refuses either must not be asked in a tight loop.
        let listening = match PgListener::connect_with(&pool).await {
            Ok(mut listener) => listener.listen(CHANNEL).await.map(|()| listener),
            Err(err) => Err(err),
        };
        let mut listener = match listening {
            Ok(listener) => listener,
            Err(err) => {
                debug!(error = %err, "wake-up listener cannot listen; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                }
            }
        };
        loop {
            let notification = tokio::select! {
                _ = stop.cancelled() => return,
                n = listener.recv() => n,
            };
            match notification {
                Ok(n) => {
                    if let Some(wake) = Wake::parse(n.payload(), &node_id) {
                        if wake.ready {
                            signals.ready.notify_waiters();
                        }
                        if wake.deliveries {
                            signals.deliveries.notify_waiters();
                        }
                    }
                }
                // The listener reconnects; notifications meanwhile are lost,
                // which the pollers' own second covers.
                Err(err) => {
                    debug!(error = %err, "wake-up listener lost its connection");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_hears_the_others_and_not_itself() {
        let both = Wake {
            ready: true,
            deliveries: true,
        };
        let payload = both.payload("a").unwrap();
        assert_eq!(Wake::parse(&payload, "b"), Some(both));
        assert_eq!(Wake::parse(&payload, "a"), None);
        let ready = Wake {
            ready: true,
            deliveries: false,
        };
        assert_eq!(Wake::parse(&ready.payload("a").unwrap(), "b"), Some(ready));
        assert_eq!(Wake::default().payload("a"), None);
    }
}
