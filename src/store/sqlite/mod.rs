//! The SQLite backend: one file in WAL mode, owned by one process (`lock`).
//!
//! Writes go through one writer task that owns the only read-write connection and
//! commits in groups: it takes every command that has gathered, runs one
//! `BEGIN IMMEDIATE … COMMIT`, and answers each caller only after COMMIT returned,
//! so nothing is acknowledged before it is on disk (`synchronous=FULL`). Reads use a
//! small read-only pool.
//!
//! - `writer`: the group-commit loop; what each command changes lives in
//!   `messages` (submits, long-message sets), `amend` (cancel, replace), `outbox`
//!   (claims, dispatch outcomes, upstream reports), `deliveries` (receipts,
//!   incoming messages, acknowledgements) and `maintenance` (periodic work).
//! - `lock` (one process per database), `checkpoint` (the WAL back into the file),
//!   `states` (the upstream state table), `sql` (shared fragments and columns).

mod access;
mod amend;
mod checkpoint;
mod deliveries;
mod lock;
mod maintenance;
mod messages;
mod outbox;
mod reports;
mod sql;
mod writer;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection, Row};
use std::sync::Mutex;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::StoreSettings;

pub use checkpoint::WAL_LIMIT;
pub use lock::lock_path;

use super::commands::Writer;
use super::health::WriteHealth;
use super::model::*;
use super::rules::DeliveryRow;
use super::writer_time::WriterTime;
use super::StoreError;
use super::{Signals, UpstreamStates, WriterLimits};

/// Commands that wait for the writer at most; beyond it callers wait (backpressure).
const WRITER_QUEUE: usize = 8192;

/// An open SQLite database: the writer's channel and a read-only pool.
#[derive(Clone)]
pub struct SqliteStore {
    writer: Writer,
    reader: SqlitePool,
    path: Arc<PathBuf>,
    signals: Signals,
    upstream_states: Arc<UpstreamStates>,
    health: Arc<WriteHealth>,
    writer_time: Arc<WriterTime>,
    checkpoints: Arc<Checkpoints>,
}

/// The checkpoint task, which `close` stops before the final checkpoint: two
/// checkpoints at once would leave the last one unfinished.
struct Checkpoints {
    stop: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl SqliteStore {
    /// Takes the database's lock (one process owns a database: lock.rs), opens it
    /// (creating it if needed), migrates it, checks that the writer connection is
    /// durable, and starts the writer task, which holds the lock until it stops.
    pub async fn open(
        settings: &StoreSettings,
        limits: WriterLimits,
        clock: Arc<dyn Clock>,
    ) -> Result<SqliteStore, StoreError> {
        let path = settings.sqlite_path();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                action: "create the directory of",
                path: path.to_owned(),
                source,
            })?;
        }
        access::check_writable(path)?;
        let lock = lock::DatabaseLock::acquire(path)?;
        // SQLite says only "unable to open database file"; the OS says why.
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|source| StoreError::Io {
                action: "open the database",
                path: path.to_owned(),
                source,
            })?;
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let base = connect_options(path, settings.busy_timeout)?;
        let write_options = base
            .clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .pragma("temp_store", "MEMORY")
            .pragma("cache_size", "-65536")
            .pragma("journal_size_limit", checkpoint::WAL_LIMIT.to_string())
            // The checkpoint task copies the WAL back; COMMITs never do (checkpoint.rs).
            .pragma("wal_autocheckpoint", "0");
        let mut conn = SqliteConnection::connect_with(&write_options)
            .await
            .map_err(open_err)?;
        sqlx::migrate!("./migrations/sqlite").run(&mut conn).await?;
        let synchronous: i64 = sqlx::query("PRAGMA synchronous")
            .fetch_one(&mut conn)
            .await?
            .get(0);
        if synchronous != 2 {
            return Err(StoreError::NotDurable(synchronous));
        }
        let file = lock::DatabaseFile::identify(path).map_err(|source| StoreError::Io {
            action: "read the metadata of",
            path: path.to_owned(),
            source,
        })?;
        let reader = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(base.read_only(true))
            .await
            .map_err(open_err)?;
        let checkpointer = SqliteConnection::connect_with(&write_options)
            .await
            .map_err(open_err)?;
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        let stop_checkpoints = CancellationToken::new();
        let checkpoints = tokio::spawn(checkpoint::run(
            checkpointer,
            tx.downgrade(),
            stop_checkpoints.clone(),
        ));
        let finals = sqlx::query_as(UpstreamStates::FINALS)
            .fetch_all(&mut conn)
            .await?;
        let upstream_states = Arc::new(UpstreamStates::from_finals(finals));
        let signals = Signals::default();
        let health = Arc::new(WriteHealth::default());
        let writer_time = Arc::new(WriterTime::default());
        let state = writer::WriterState::load(
            &mut conn,
            writer::Surroundings {
                limits,
                clock,
                signals: signals.clone(),
                health: health.clone(),
                time: writer_time.clone(),
                file,
                busy_timeout: settings.busy_timeout,
                lock,
            },
        )
        .await?;
        tokio::spawn(writer::run(conn, rx, state));
        Ok(SqliteStore {
            writer: Writer::new(tx, settings.busy_timeout),
            reader,
            path: Arc::new(path.to_owned()),
            signals,
            upstream_states,
            health,
            writer_time,
            checkpoints: Arc::new(Checkpoints {
                stop: stop_checkpoints,
                task: Mutex::new(Some(checkpoints)),
            }),
        })
    }

    /// Where the writer's commits are made known.
    pub fn signals(&self) -> &Signals {
        &self.signals
    }

    /// The writer task, which takes every write.
    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// Where the writer's time went so far, by step.
    pub fn writer_time(&self) -> Arc<WriterTime> {
        Arc::clone(&self.writer_time)
    }

    /// Whether writes fail now (disk full, a lock held past busy_timeout, the file
    /// deleted or replaced), and why; None while they succeed.
    pub fn write_failure(&self) -> Option<String> {
        self.health.failure()
    }

    /// Writes what the WAL holds into the database file and stops the writer,
    /// which lets go of the database's lock: a copy of the file alone then holds
    /// everything. Commands sent after this fail with WriterGone.
    pub async fn close(&self) -> Result<(), StoreError> {
        self.checkpoints.stop.cancel();
        let task = self
            .checkpoints
            .task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
        self.writer.close().await
    }

    /// The size of `{database}-wal`, in bytes (0 while there is none).
    pub fn wal_bytes(&self) -> u64 {
        lock::wal_bytes(self.path())
    }

    /// What the upstreams' own states stand for (the `upstream_states` table).
    pub fn upstream_states(&self) -> Arc<UpstreamStates> {
        self.upstream_states.clone()
    }

    /// The read-only pool, for tests that look at rows directly.
    #[cfg(test)]
    pub(crate) fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub async fn usage_parts(
        &self,
        upstream: &str,
        period: &str,
        at: i64,
    ) -> Result<u64, StoreError> {
        let parts: Option<i64> = sqlx::query_scalar(
            "SELECT sum(parts) FROM upstream_usage_counts \
             WHERE upstream = ?1 AND period = ?2 AND starts_at <= ?3 AND ?3 < ends_at",
        )
        .bind(upstream)
        .bind(period)
        .bind(at)
        .fetch_one(&self.reader)
        .await?;
        Ok(parts.unwrap_or(0).max(0) as u64)
    }

    /// Enroute messages of `upstream` whose poll is due.
    pub async fn due_checks(
        &self,
        upstream: &str,
        now: i64,
        limit: usize,
    ) -> Result<Vec<PendingCheck>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, upstream_id, expires_at FROM outbox \
             WHERE state = 'enroute' AND upstream = ?1 AND due_at <= ?2 ORDER BY due_at LIMIT ?3",
        )
        .bind(upstream)
        .bind(now)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .iter()
            .map(|r| PendingCheck {
                outbox_id: r.get(0),
                upstream_id: r.get::<Option<String>, _>(1).unwrap_or_default(),
                expires_at: r.get(2),
            })
            .collect())
    }

    /// The oldest receipts and incoming messages of `system_id` after `after_id`.
    pub async fn pending_deliveries(
        &self,
        system_id: &str,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<PendingDelivery>, StoreError> {
        let rows: Vec<DeliveryRow> = sqlx::query_as(
            "SELECT d.id, d.kind, d.attempts, d.message_id, d.state, d.error_code, d.done_at, \
             d.source_addr AS mo_source, d.dest_addr AS mo_dest, d.text, d.data, \
             m.submitted_at, m.source_ton, m.source_npi, m.source_addr, m.dest_ton, \
             m.dest_npi, m.dest_addr, m.charset, m.body, m.user_message_reference, \
             coalesce(s.smpp_state, 7) AS smpp_state, coalesce(s.stat, 'UNKNOWN') AS stat \
             FROM deliveries d LEFT JOIN messages m ON m.message_id = d.message_id \
             LEFT JOIN message_states s ON s.state = d.state \
             WHERE d.system_id = ?1 AND d.id > ?2 ORDER BY d.id LIMIT ?3",
        )
        .bind(system_id)
        .bind(after_id)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(DeliveryRow::into_pending)
            .collect())
    }

    /// When `upstream`'s inbox was first read and how far it has been read (Unix
    /// ms), if ever.
    pub async fn inbox_cursor(&self, upstream: &str) -> Result<Option<(i64, i64)>, StoreError> {
        let row =
            sqlx::query("SELECT started_at, read_until FROM inbox_cursors WHERE upstream = ?1")
                .bind(upstream)
                .fetch_optional(&self.reader)
                .await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    /// The console's search (`MessageLife::sql`).
    pub async fn find_messages(
        &self,
        message_id: i64,
        dest_addr: &str,
        since_id: i64,
    ) -> Result<Vec<MessageLife>, StoreError> {
        // One snapshot for both reads: the events match the rows.
        let mut read = self.reader.begin().await?;
        let mut found: Vec<MessageLife> = sqlx::query_as(&MessageLife::sql("?1", "?2", "?3"))
            .bind(message_id)
            .bind(dest_addr)
            .bind(since_id)
            .fetch_all(&mut *read)
            .await?;
        let ids = serde_json::to_string(&MessageEvent::ids_of(&found)).unwrap_or_default();
        let events: Vec<MessageEvent> = sqlx::query_as(
            "SELECT message_id, at, event, detail FROM message_events \
             WHERE message_id IN (SELECT value FROM json_each(?1))",
        )
        .bind(ids)
        .fetch_all(&mut *read)
        .await?;
        read.commit().await?;
        MessageEvent::attach(&mut found, &events);
        Ok(found)
    }

    /// Receipts and incoming messages waiting per account: (system_id, count).
    pub async fn waiting_deliveries(&self) -> Result<Vec<WaitingDeliveries>, StoreError> {
        Ok(sqlx::query_as(WaitingDeliveries::SQL)
            .fetch_all(&self.reader)
            .await?)
    }

    /// The status of one of the account's messages, for query_sm. The source
    /// address must match the original submission (an empty one matches any).
    pub async fn query(
        &self,
        system_id: &str,
        message_id: &str,
        source_addr: &str,
    ) -> Result<Option<MessageStatus>, StoreError> {
        let Some(message_id) = parse_message_id(message_id) else {
            return Ok(None);
        };
        let row = sqlx::query(concat!(
            "SELECT m.message_id, m.state, m.final_at, m.error_code, coalesce(s.smpp_state, 7) \
             FROM messages m LEFT JOIN message_states s ON s.state = m.state WHERE ",
            sql::owned_message!("m")
        ))
        .bind(message_id)
        .bind(system_id)
        .bind(source_addr)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(|row| MessageStatus {
            message_id: row.get::<i64, _>(0).to_string(),
            state: MessageState::parse(row.get::<&str, _>(1)),
            final_at: row.get(2),
            error_code: row.get::<i64, _>(3).clamp(0, 255) as u8,
            smpp_state: row.get::<i64, _>(4).clamp(1, 8) as u8,
        }))
    }

    /// Outbox rows not yet done: (route, state, count). Each state is counted
    /// through its own partial index, so a scrape costs what is open, not the
    /// outbox's whole history, and the write path carries no extra index.
    pub async fn open_outbox(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.counts_by_two(
            "SELECT route, 'queued', count(*) FROM outbox WHERE state = 'queued' \
             GROUP BY route \
             UNION ALL SELECT route, state, count(*) FROM outbox \
             WHERE state IN ('scheduled', 'retry') GROUP BY route, state \
             UNION ALL SELECT route, 'sending', count(*) FROM outbox WHERE state = 'sending' \
             GROUP BY route \
             UNION ALL SELECT route, 'enroute', count(*) FROM outbox WHERE state = 'enroute' \
             GROUP BY route",
        )
        .await
    }

    /// Rows of the `queue_depth` view: (system_id, state, messages).
    pub async fn queue_depth(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.counts_by_two(super::views::QUEUE_DEPTH).await
    }

    async fn counts_by_two(&self, sql: &str) -> Result<Vec<(String, String, i64)>, StoreError> {
        counts_by_two(&self.reader, sql).await
    }
}

/// The database opened read-only, for commands an operator runs beside a live
/// broker (`smpp-broker queues`): it takes no lock, migrates nothing, recovers
/// nothing and writes nothing.
pub async fn open_read_only(settings: &StoreSettings) -> Result<SqlitePool, StoreError> {
    let path = settings.sqlite_path();
    if !path.exists() {
        return Err(StoreError::Missing(path.to_owned()));
    }
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(connect_options(path, settings.busy_timeout)?.read_only(true))
        .await
        .map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })
}

fn connect_options(
    path: &Path,
    busy_timeout: Duration,
) -> Result<SqliteConnectOptions, StoreError> {
    Ok(SqliteConnectOptions::from_str("sqlite://")
        .map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?
        .filename(path)
        .busy_timeout(busy_timeout)
        .foreign_keys(true))
}

/// Rows of two text columns and a count.
async fn counts_by_two(
    reader: &SqlitePool,
    sql: &str,
) -> Result<Vec<(String, String, i64)>, StoreError> {
    let rows = sqlx::query(sql).fetch_all(reader).await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

#[cfg(test)]
mod tests;
