//! Several nodes on one database: heartbeats, so that a dead node's work is
//! taken over, and leases, for work one node at a time does (an upstream's
//! dispatch, maintenance). Plain rows with times, as solid_queue's process rows
//! and River's leader table are, rather than advisory locks, which last as long
//! as a connection rather than a span of time.

use sqlx::postgres::PgPool;

use crate::store::StoreError;

/// Records that `node` is alive at `now`.
pub async fn heartbeat(pool: &PgPool, node: &str, now: i64) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO nodes (node_id, started_at, last_seen) VALUES ($1, $2, $2) \
         ON CONFLICT (node_id) DO UPDATE SET last_seen = greatest(nodes.last_seen, $2)",
    )
    .bind(node)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

/// The nodes not seen for `silence_ms` at `now`.
pub async fn dead_nodes(
    pool: &PgPool,
    now: i64,
    silence_ms: i64,
) -> Result<Vec<String>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT node_id FROM nodes WHERE last_seen < $1 ORDER BY node_id")
            .bind(now - silence_ms)
            .fetch_all(pool)
            .await?,
    )
}

/// Takes the lease `name` for `node` until `now + span_ms`, or renews it if
/// `node` holds it; false while another node holds it. A lease past its end is
/// anyone's.
pub async fn try_lease(
    pool: &PgPool,
    name: &str,
    node: &str,
    now: i64,
    span_ms: i64,
) -> Result<bool, StoreError> {
    let taken: Option<String> = sqlx::query_scalar(
        "INSERT INTO leases (name, holder, until) VALUES ($1, $2, $3 + $4) \
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until \
         WHERE leases.holder = excluded.holder OR leases.until <= $3 \
         RETURNING holder",
    )
    .bind(name)
    .bind(node)
    .bind(now)
    .bind(span_ms)
    .fetch_optional(pool)
    .await?;
    Ok(taken.is_some())
}

/// Gives the lease `name` up, if `node` holds it, so another node need not
/// wait for its end (a graceful stop).
pub async fn release(pool: &PgPool, name: &str, node: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
        .bind(name)
        .bind(node)
        .execute(pool)
        .await?;
    Ok(())
}

/// This node's hold on its name: a session-level advisory lock on a connection
/// of its own, which PostgreSQL lets go the moment that connection ends (the
/// process stopped or died). Two processes given the same `node_id` would take
/// over each other's claims; the second is refused instead.
pub struct NodeLock {
    conn: sqlx::PgConnection,
}

impl NodeLock {
    pub async fn acquire(url: &str, node: &str) -> Result<NodeLock, StoreError> {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(url)
            .await
            .map_err(|source| StoreError::Connect(super::masked(url), source))?;
        let held: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext('smpp-broker node ' || $1))")
                .bind(node)
                .fetch_one(&mut conn)
                .await?;
        if !held {
            return Err(StoreError::NodeInUse(node.to_owned()));
        }
        Ok(NodeLock { conn })
    }

    /// Lets go of the name (a graceful stop), so a restart may take it at once.
    pub async fn release(self) {
        use sqlx::Connection;
        let _ = self.conn.close().await;
    }
}

/// Clears what `node` held in its previous run: its outbox claims go back to
/// the queue (no dispatcher of that run is alive to send them, since this run
/// holds the name's lock, NodeLock; the upstream recognises a message that had
/// arrived by its id), its delivery claims are free again, and its sessions
/// count no more. Returns the outbox claims queued again.
pub async fn forget_previous_run(pool: &PgPool, node: &str) -> Result<u64, StoreError> {
    let mut tx = pool.begin().await?;
    let requeued = sqlx::query(
        "UPDATE outbox SET state = 'queued', lease_until = NULL, claimed_by = NULL \
         WHERE state = 'sending' AND claimed_by = $1",
    )
    .bind(node)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query(
        "UPDATE deliveries SET claimed_by = NULL, claim_until = NULL WHERE claimed_by = $1",
    )
    .bind(node)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM sessions WHERE node_id = $1")
        .bind(node)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(requeued)
}

/// How often a node shows it is alive, and when it counts as dead.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// A node writes its heartbeat and renews its leases this often.
    pub heartbeat_ms: i64,
}

impl Timing {
    /// A node not seen for this long is dead: its claims, deliveries and
    /// sessions are taken over or forgotten. A lease lasts as long, so that a
    /// live holder renews it twice before it ends.
    pub fn dead_after_ms(&self) -> i64 {
        self.heartbeat_ms * 3
    }
}

/// The leases this node holds now, as its last heartbeat found them.
#[derive(Debug, Default)]
pub struct HeldLeases(std::sync::Mutex<std::collections::HashSet<String>>);

impl HeldLeases {
    pub fn holds(&self, name: &str) -> bool {
        self.lock().contains(name)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, name: &str, held: bool) {
        let mut names = self.lock();
        if held {
            names.insert(name.to_owned());
        } else {
            names.remove(name);
        }
    }
}

/// What a node does as one of several on the database: its heartbeat and
/// leases, and its sessions counted for the whole cluster.
#[derive(Clone)]
pub struct ClusterHandle {
    pub(super) pool: PgPool,
    pub(super) node_id: String,
    pub(super) clock: std::sync::Arc<dyn crate::clock::Clock>,
    pub(super) held: std::sync::Arc<HeldLeases>,
    pub(super) timing: Timing,
}

impl ClusterHandle {
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// The leases this node holds now, by name.
    pub fn held(&self) -> Vec<String> {
        let mut names: Vec<String> = self.held.lock().iter().cloned().collect();
        names.sort();
        names
    }

    /// Writes the heartbeat and takes or renews each of `wanted`. A lease
    /// whose renewal failed counts as lost: another node may take it once it
    /// runs out.
    pub async fn beat(&self, wanted: &[String]) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let beat = heartbeat(&self.pool, &self.node_id, now).await;
        for name in wanted {
            let span = self.timing.dead_after_ms();
            match try_lease(&self.pool, name, &self.node_id, now, span).await {
                Ok(held) => self.held.set(name, held),
                Err(err) => {
                    self.held.set(name, false);
                    return Err(err);
                }
            }
        }
        beat
    }

    /// Gives every lease and delivery claim up (a graceful stop): the other
    /// nodes take them at their next heartbeat or read, instead of when they
    /// run out.
    pub async fn leave(&self, names: &[String]) -> Result<(), StoreError> {
        for name in names {
            self.held.set(name, false);
            release(&self.pool, name, &self.node_id).await?;
        }
        sqlx::query(
            "UPDATE deliveries SET claimed_by = NULL, claim_until = NULL WHERE claimed_by = $1",
        )
        .bind(&self.node_id)
        .execute(&self.pool)
        .await?;
        sqlx::query("DELETE FROM sessions WHERE node_id = $1")
            .bind(&self.node_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Counts a new session of `system_id` unless the account has `max`
    /// sessions on the live nodes already; false then. Concurrent binds of one
    /// account, on any node, are counted one after the other.
    pub async fn admit_session(
        &self,
        system_id: &str,
        session_id: u64,
        max: usize,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now_ms();
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('smpp-broker sessions ' || $1))")
            .bind(system_id)
            .execute(&mut *tx)
            .await?;
        let bound: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sessions s LEFT JOIN nodes n ON n.node_id = s.node_id \
             WHERE s.system_id = $1 AND (s.node_id = $3 OR n.last_seen >= $2)",
        )
        .bind(system_id)
        .bind(now - self.timing.dead_after_ms())
        .bind(&self.node_id)
        .fetch_one(&mut *tx)
        .await?;
        if bound >= max as i64 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO sessions (node_id, session_id, system_id, bound_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(&self.node_id)
        .bind(session_id as i64)
        .bind(system_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// These sessions of this node ended.
    pub async fn sessions_ended(&self, session_ids: &[i64]) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE node_id = $1 AND session_id = ANY($2)")
            .bind(&self.node_id)
            .bind(session_ids)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::postgres::test_pool;
    use testkit::postgres::TestPostgres;

    const NOW: i64 = 1_790_000_000_000;
    const SPAN: i64 = 30_000;

    async fn pool(cluster: &TestPostgres) -> PgPool {
        test_pool(cluster, "cluster").await
    }

    fn cluster() -> TestPostgres {
        TestPostgres::start().unwrap_or_else(|err| panic!("{err}"))
    }

    #[tokio::test]
    async fn a_lease_is_one_nodes_until_it_ends_or_is_given_up() {
        let cluster = cluster();
        let pool = pool(&cluster).await;
        let dispatch = "dispatch:phone";
        assert!(try_lease(&pool, dispatch, "a", NOW, SPAN).await.unwrap());
        assert!(!try_lease(&pool, dispatch, "b", NOW + 1, SPAN)
            .await
            .unwrap());
        // The holder renews before the end: b still waits after the first end.
        assert!(try_lease(&pool, dispatch, "a", NOW + 20_000, SPAN)
            .await
            .unwrap());
        assert!(!try_lease(&pool, dispatch, "b", NOW + SPAN, SPAN)
            .await
            .unwrap());
        // a stops renewing (dead, or stuck): once the lease ends, b has it, and
        // a learns it lost it at its next renewal.
        let end = NOW + 20_000 + SPAN;
        assert!(try_lease(&pool, dispatch, "b", end, SPAN).await.unwrap());
        assert!(!try_lease(&pool, dispatch, "a", end + 1, SPAN)
            .await
            .unwrap());
        // Given up, it is anyone's at once; another lease is unaffected.
        assert!(try_lease(&pool, "maintenance", "a", end, SPAN)
            .await
            .unwrap());
        release(&pool, dispatch, "b").await.unwrap();
        assert!(try_lease(&pool, dispatch, "a", end + 2, SPAN)
            .await
            .unwrap());
        release(&pool, "maintenance", "b").await.unwrap();
        assert!(!try_lease(&pool, "maintenance", "b", end, SPAN)
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn of_many_nodes_asking_at_once_exactly_one_gets_the_lease() {
        let cluster = cluster();
        let pool = pool(&cluster).await;
        let mut tasks = tokio::task::JoinSet::new();
        for node in 0..8 {
            let pool = pool.clone();
            tasks.spawn(async move {
                let name = format!("node{node}");
                try_lease(&pool, "maintenance", &name, NOW, SPAN)
                    .await
                    .unwrap()
            });
        }
        let mut winners = 0;
        while let Some(won) = tasks.join_next().await {
            winners += usize::from(won.unwrap());
        }
        assert_eq!(winners, 1);
    }

    #[tokio::test]
    async fn a_node_silent_for_the_span_is_dead_and_a_late_beat_cannot_turn_back_time() {
        let cluster = cluster();
        let pool = pool(&cluster).await;
        heartbeat(&pool, "a", NOW).await.unwrap();
        heartbeat(&pool, "b", NOW).await.unwrap();
        heartbeat(&pool, "b", NOW + 20_000).await.unwrap();
        // A beat that arrives late, with an older time, changes nothing.
        heartbeat(&pool, "b", NOW + 5_000).await.unwrap();
        assert!(dead_nodes(&pool, NOW + 29_000, SPAN)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(dead_nodes(&pool, NOW + 31_000, SPAN).await.unwrap(), ["a"]);
        assert_eq!(
            dead_nodes(&pool, NOW + 51_000, SPAN).await.unwrap(),
            ["a", "b"]
        );
        // Back: alive again.
        heartbeat(&pool, "a", NOW + 51_000).await.unwrap();
        assert_eq!(dead_nodes(&pool, NOW + 51_000, SPAN).await.unwrap(), ["b"]);
    }
}
