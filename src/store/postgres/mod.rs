//! The PostgreSQL backend (issue 15), for several broker nodes on one
//! database: its own SQL and its own migrations (migrations/postgres/).
//!
//! Writes go through the node's writer task (`writer`), which commits in groups
//! as the SQLite writer does; what each command changes lives in `messages`,
//! `amend`, `outbox`, `reports`, `deliveries` and `maintenance`, in
//! PostgreSQL's SQL. Reads use the pool. message_ids come from one row every
//! node reserves blocks from (`ids`); heartbeats and leases let several nodes
//! share the work (`cluster`). The conformance suite holds this backend to the
//! SQLite backend's behaviour.

mod amend;
pub mod cluster;
mod deliveries;
pub mod ids;
mod maintenance;
mod messages;
mod outbox;
mod reports;
mod wake;
mod writer;

pub use writer::MAINTENANCE_LEASE;

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::Row;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::commands::Writer;
use super::health::WriteHealth;
use super::model::*;
use super::rules::DeliveryRow;
use super::writer_time::WriterTime;
use super::{Signals, StoreError, UpstreamStates, WriterLimits};
use crate::clock::Clock;

/// The messages that outbox row `j.id` carries, as two join conditions on
/// `m`, one statement each: the whole message of that id, and the parts of a
/// set (the first part's id names the row); `$1` holds every `j.id`. Each
/// finds its rows through its own index: one OR of the two made PostgreSQL
/// scan `messages`. The `= ANY($1)` keeps it on the index when the table's
/// statistics lag behind its growth: estimating a state rare that had become
/// common, the planner scanned the table once per row of `j`.
const CARRIED: [&str; 2] = [
    "m.message_id = j.id AND m.message_id = ANY($1) AND m.concat_key IS NULL",
    "m.outbox_id = j.id AND m.outbox_id = ANY($1) AND m.concat_key IS NOT NULL",
];

/// Commands that wait for the writer at most; beyond it callers wait (backpressure).
const WRITER_QUEUE: usize = 8192;

/// How the PostgreSQL store connects.
#[derive(Debug, Clone)]
pub struct PostgresSettings {
    /// `postgres://user:password@host:port/database`.
    pub url: String,
    /// The pool's size.
    pub max_connections: u32,
    /// How long connecting (and later, waiting for a pooled connection) may take.
    pub connect_timeout: Duration,
    /// This node's name among the nodes on the database (`store.node_id`).
    pub node_id: String,
    /// How often the node writes its heartbeat (`store.heartbeat`).
    pub heartbeat: Duration,
}

impl PostgresSettings {
    /// `url` as node `node_id`, the other keys at the configuration's defaults.
    pub fn new(url: impl Into<String>, node_id: impl Into<String>) -> PostgresSettings {
        let defaults = crate::config::StoreSettings::default();
        PostgresSettings {
            url: url.into(),
            max_connections: defaults.max_connections,
            connect_timeout: defaults.busy_timeout,
            node_id: node_id.into(),
            heartbeat: defaults.heartbeat,
        }
    }

    /// The `[store]` section's PostgreSQL keys (`url` given).
    pub fn of(store: &crate::config::StoreSettings) -> PostgresSettings {
        PostgresSettings {
            url: store
                .url
                .as_ref()
                .map(|url| url.expose().to_owned())
                .unwrap_or_default(),
            max_connections: store.max_connections,
            connect_timeout: store.busy_timeout,
            node_id: store.node_id(),
            heartbeat: store.heartbeat,
        }
    }
}

/// Connects, checks that a COMMIT is durable, and brings the schema up to date.
/// Every statement is planned with its values (`plan_cache_mode =
/// force_custom_plan`): a plan cached while a table was nearly empty scanned it
/// whole once it had grown, until autovacuum's next ANALYZE, a minute or more
/// later (pipeline bench, one node: 4,514–5,005 → 5,067–5,122 receipts/s).
pub async fn connect(settings: &PostgresSettings) -> Result<PgPool, StoreError> {
    let options: PgConnectOptions = settings
        .url
        .parse::<PgConnectOptions>()
        .map_err(|source| StoreError::Connect(masked(&settings.url), source))?
        .options([("plan_cache_mode", "force_custom_plan")]);
    let pool = PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.connect_timeout)
        .connect_with(options)
        .await
        .map_err(|source| StoreError::Connect(masked(&settings.url), source))?;
    check_durable(&pool).await?;
    sqlx::migrate!("./migrations/postgres").run(&pool).await?;
    Ok(pool)
}

/// A small pool whose COMMITs do not wait for the WAL flush
/// (`synchronous_commit = off`), for bookkeeping nothing acknowledged rests on:
/// message_id reservations and delivery claims. A reservation is made durable
/// by the batch that uses its ids, whose COMMIT flushes the WAL that far; one
/// lost in a crash numbered nothing acknowledged. A lost delivery claim lets
/// the next reader take the delivery. Each saves a flush, which every other
/// COMMIT on the server would otherwise queue behind.
async fn connect_bookkeeping(settings: &PostgresSettings) -> Result<PgPool, StoreError> {
    let options: PgConnectOptions = settings
        .url
        .parse::<PgConnectOptions>()
        .map_err(|source| StoreError::Connect(masked(&settings.url), source))?
        .options([("synchronous_commit", "off")]);
    PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(settings.connect_timeout)
        .connect_with(options)
        .await
        .map_err(|source| StoreError::Connect(masked(&settings.url), source))
}

/// A pool for reading the views beside the live nodes (`smpp-broker queues`):
/// it migrates nothing, and says so when the schema is not there yet.
pub async fn open_read_only(settings: &PostgresSettings) -> Result<PgPool, StoreError> {
    let options: PgConnectOptions = settings
        .url
        .parse()
        .map_err(|source| StoreError::Connect(masked(&settings.url), source))?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(settings.connect_timeout)
        .connect_with(options)
        .await
        .map_err(|source| StoreError::Connect(masked(&settings.url), source))?;
    let schema: Option<String> = sqlx::query_scalar("SELECT to_regclass('queue_depth')::text")
        .fetch_one(&pool)
        .await?;
    if schema.is_none() {
        return Err(StoreError::NoSchema(masked(&settings.url)));
    }
    Ok(pool)
}

/// A submit_sm_resp goes back only after COMMIT returned, so COMMIT must wait
/// for the WAL flush: `synchronous_commit` anything but `off`.
async fn check_durable(pool: &PgPool) -> Result<(), StoreError> {
    let setting: String = sqlx::query("SHOW synchronous_commit")
        .fetch_one(pool)
        .await?
        .get(0);
    if setting == "off" {
        return Err(StoreError::NotDurablePostgres(setting));
    }
    let fsync: String = sqlx::query("SHOW fsync").fetch_one(pool).await?.get(0);
    if fsync != "on" {
        return Err(StoreError::NotDurablePostgres(format!("fsync = {fsync}")));
    }
    Ok(())
}

/// The URL with its password masked, for messages and logs.
pub fn masked(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("****"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "(an unreadable store.url)".to_owned(),
    }
}

/// A PostgreSQL database shared by the broker's nodes: this node's writer and
/// a pool for reads.
#[derive(Clone)]
pub struct PostgresStore {
    writer: Writer,
    pool: PgPool,
    /// For reservations and claims (connect_bookkeeping).
    bookkeeping: PgPool,
    signals: Signals,
    upstream_states: Arc<UpstreamStates>,
    health: Arc<WriteHealth>,
    writer_time: Arc<WriterTime>,
    clock: Arc<dyn Clock>,
    node_id: String,
    held: Arc<cluster::HeldLeases>,
    timing: cluster::Timing,
    /// Stops the wake-up listener (wake.rs) when the store closes.
    listening: CancellationToken,
}

/// How long a node keeps the deliveries it read for its sessions before
/// another node with a session of the account may take them: renewed at each
/// read, so only a node that died or lost its sessions lets them go.
const DELIVERY_CLAIM_MS: i64 = 30_000;

impl PostgresStore {
    /// Connects (migrating the schema if needed), writes this node's view of
    /// the upstreams' limits, and starts the writer task.
    pub async fn open(
        settings: &PostgresSettings,
        limits: WriterLimits,
        clock: Arc<dyn Clock>,
    ) -> Result<PostgresStore, StoreError> {
        let pool = connect(settings).await?;
        let bookkeeping = connect_bookkeeping(settings).await?;
        let node_lock = cluster::NodeLock::acquire(&settings.url, &settings.node_id).await?;
        let requeued = cluster::forget_previous_run(&pool, &settings.node_id).await?;
        if requeued > 0 {
            tracing::info!(
                messages = requeued,
                node_id = %settings.node_id,
                "this node's claims of its previous run returned to the queue"
            );
        }
        let finals = sqlx::query_as(UpstreamStates::FINALS)
            .fetch_all(&pool)
            .await?;
        let upstream_states = Arc::new(UpstreamStates::from_finals(finals));
        {
            let mut tx = pool.begin().await?;
            outbox::write_upstream_limits(&mut tx, &limits.upstream_limits).await?;
            tx.commit().await?;
        }
        let signals = Signals::default();
        let health = Arc::new(WriteHealth::default());
        let writer_time = Arc::new(WriterTime::default());
        let held = Arc::new(cluster::HeldLeases::default());
        let timing = cluster::Timing {
            heartbeat_ms: settings.heartbeat.as_millis().min(i64::MAX as u128) as i64,
        };
        let state = writer::WriterState::new(
            pool.clone(),
            bookkeeping.clone(),
            writer::Surroundings {
                limits,
                clock: clock.clone(),
                signals: signals.clone(),
                health: health.clone(),
                time: writer_time.clone(),
                patience: settings.connect_timeout,
                node_id: settings.node_id.clone(),
                node_lock,
                held: held.clone(),
                dead_after_ms: timing.dead_after_ms(),
            },
        );
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        tokio::spawn(writer::run(rx, state));
        let listening = CancellationToken::new();
        tokio::spawn(wake::listen(
            pool.clone(),
            settings.node_id.clone(),
            signals.clone(),
            listening.clone(),
        ));
        Ok(PostgresStore {
            writer: Writer::new(tx, settings.connect_timeout),
            pool,
            bookkeeping,
            signals,
            upstream_states,
            health,
            writer_time,
            clock,
            node_id: settings.node_id.clone(),
            held,
            timing,
            listening,
        })
    }

    /// This node's part in the cluster: heartbeat, leases, sessions.
    pub fn cluster(&self) -> cluster::ClusterHandle {
        cluster::ClusterHandle {
            pool: self.pool.clone(),
            node_id: self.node_id.clone(),
            clock: self.clock.clone(),
            held: self.held.clone(),
            timing: self.timing,
        }
    }

    /// Frees the deliveries of `system_id` this node claimed, and tells the
    /// other nodes.
    pub async fn release_deliveries(&self, system_id: &str) -> Result<(), StoreError> {
        let mut tx = self.bookkeeping.begin().await?;
        let freed = sqlx::query(
            "UPDATE deliveries SET claimed_by = NULL, claim_until = NULL \
             WHERE claimed_by = $1 AND system_id = $2",
        )
        .bind(&self.node_id)
        .bind(system_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let wake = wake::Wake {
            ready: false,
            deliveries: freed > 0,
        };
        wake::notify(&mut tx, wake, &self.node_id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether this node holds the lease `name` now.
    pub fn holds(&self, name: &str) -> bool {
        self.held.holds(name)
    }

    /// Where the writer's commits (and the other nodes') are made known.
    pub fn signals(&self) -> &Signals {
        &self.signals
    }

    /// The writer task, which takes every write.
    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// The pool, for tests that look at rows directly.
    #[cfg(test)]
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn writer_time(&self) -> Arc<WriterTime> {
        Arc::clone(&self.writer_time)
    }

    pub fn write_failure(&self) -> Option<String> {
        self.health.failure()
    }

    /// Stops the writer; everything it answered is committed already.
    pub async fn close(&self) -> Result<(), StoreError> {
        self.listening.cancel();
        self.writer.close().await
    }

    pub fn upstream_states(&self) -> Arc<UpstreamStates> {
        self.upstream_states.clone()
    }

    pub async fn usage_parts(
        &self,
        upstream: &str,
        period: &str,
        at: i64,
    ) -> Result<u64, StoreError> {
        let parts: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(parts), 0)::bigint FROM upstream_usage_counts \
             WHERE upstream = $1 AND period = $2 AND starts_at <= $3 AND $3 < ends_at",
        )
        .bind(upstream)
        .bind(period)
        .bind(at)
        .fetch_one(&self.pool)
        .await?;
        Ok(parts.max(0) as u64)
    }

    pub async fn due_checks(
        &self,
        upstream: &str,
        now: i64,
        limit: usize,
    ) -> Result<Vec<PendingCheck>, StoreError> {
        let rows: Vec<(i64, Option<String>, i64)> = sqlx::query_as(
            "SELECT id, upstream_id, expires_at FROM outbox \
             WHERE state = 'enroute' AND upstream = $1 AND due_at <= $2 ORDER BY due_at LIMIT $3",
        )
        .bind(upstream)
        .bind(now)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(outbox_id, upstream_id, expires_at)| PendingCheck {
                outbox_id,
                upstream_id: upstream_id.unwrap_or_default(),
                expires_at,
            })
            .collect())
    }

    pub async fn pending_deliveries(
        &self,
        system_id: &str,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<PendingDelivery>, StoreError> {
        // Read is claim: the deliveries go to this node's sessions, and no
        // other node's, until the claim runs out (DELIVERY_CLAIM_MS).
        let now = self.clock.now_ms();
        let rows: Vec<DeliveryRow> = sqlx::query_as(
            "WITH next AS (SELECT id FROM deliveries \
               WHERE system_id = $1 AND id > $2 \
               AND (claimed_by IS NULL OR claimed_by = $4 OR claim_until <= $5) \
               ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED), \
             claimed AS (UPDATE deliveries d SET claimed_by = $4, claim_until = $5 + $6 \
               FROM next WHERE d.id = next.id RETURNING d.*) \
             SELECT d.id, d.kind, d.attempts, d.message_id, d.state, d.error_code, d.done_at, \
             d.source_addr AS mo_source, d.dest_addr AS mo_dest, d.text, d.data, \
             m.submitted_at, m.source_ton, m.source_npi, m.source_addr, m.dest_ton, \
             m.dest_npi, m.dest_addr, m.charset, m.body, m.user_message_reference, \
             coalesce(s.smpp_state, 7) AS smpp_state, coalesce(s.stat, 'UNKNOWN') AS stat \
             FROM claimed d LEFT JOIN messages m ON m.message_id = d.message_id \
             LEFT JOIN message_states s ON s.state = d.state ORDER BY d.id",
        )
        .bind(system_id)
        .bind(after_id)
        .bind(limit as i64)
        .bind(&self.node_id)
        .bind(now)
        .bind(DELIVERY_CLAIM_MS)
        .fetch_all(&self.bookkeeping)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(DeliveryRow::into_pending)
            .collect())
    }

    pub async fn inbox_cursor(&self, upstream: &str) -> Result<Option<(i64, i64)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT started_at, read_until FROM inbox_cursors WHERE upstream = $1")
                .bind(upstream)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn find_messages(
        &self,
        message_id: i64,
        dest_addr: &str,
        since_id: i64,
    ) -> Result<Vec<MessageLife>, StoreError> {
        // One snapshot for both reads: the events match the rows.
        let mut read = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *read)
            .await?;
        let mut found: Vec<MessageLife> = sqlx::query_as(&MessageLife::sql("$1", "$2", "$3"))
            .bind(message_id)
            .bind(dest_addr)
            .bind(since_id)
            .fetch_all(&mut *read)
            .await?;
        let events: Vec<MessageEvent> = sqlx::query_as(
            "SELECT message_id, at, event, detail FROM message_events WHERE message_id = ANY($1)",
        )
        .bind(MessageEvent::ids_of(&found))
        .fetch_all(&mut *read)
        .await?;
        read.commit().await?;
        MessageEvent::attach(&mut found, &events);
        Ok(found)
    }

    pub async fn waiting_deliveries(&self) -> Result<Vec<WaitingDeliveries>, StoreError> {
        Ok(sqlx::query_as(WaitingDeliveries::SQL)
            .fetch_all(&self.pool)
            .await?)
    }

    pub async fn query(
        &self,
        system_id: &str,
        message_id: &str,
        source_addr: &str,
    ) -> Result<Option<MessageStatus>, StoreError> {
        let Some(message_id) = parse_message_id(message_id) else {
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT m.message_id, m.state, m.final_at, m.error_code, coalesce(s.smpp_state, 7) \
             FROM messages m LEFT JOIN message_states s ON s.state = m.state \
             WHERE m.message_id = $1 AND m.system_id = $2 AND ($3 = '' OR m.source_addr = $3)",
        )
        .bind(message_id)
        .bind(system_id)
        .bind(source_addr)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| MessageStatus {
            message_id: row.get::<i64, _>(0).to_string(),
            state: MessageState::parse(row.get::<&str, _>(1)),
            final_at: row.get(2),
            error_code: row.get::<i64, _>(3).clamp(0, 255) as u8,
            smpp_state: row.get::<i64, _>(4).clamp(1, 8) as u8,
        }))
    }

    /// Outbox rows not yet done: (route, state, count), each state through its
    /// own partial index.
    pub async fn open_outbox(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT route, 'queued', count(*) FROM outbox WHERE state = 'queued' GROUP BY route \
             UNION ALL SELECT route, state, count(*) FROM outbox \
             WHERE state IN ('scheduled', 'retry') GROUP BY route, state \
             UNION ALL SELECT route, 'sending', count(*) FROM outbox WHERE state = 'sending' \
             GROUP BY route \
             UNION ALL SELECT route, 'enroute', count(*) FROM outbox WHERE state = 'enroute' \
             GROUP BY route",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Rows of the `queue_depth` view: (system_id, state, messages).
    pub async fn queue_depth(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT system_id, state, messages FROM queue_depth")
                .fetch_all(&self.pool)
                .await?,
        )
    }
}

/// A pool on a new database `database` of a throwaway cluster, migrated.
#[cfg(test)]
async fn test_pool(cluster: &testkit::postgres::TestPostgres, database: &str) -> PgPool {
    cluster.create_database(database).unwrap();
    connect(&PostgresSettings::new(cluster.url(database), "test"))
        .await
        .unwrap()
}

#[cfg(test)]
mod tests;
