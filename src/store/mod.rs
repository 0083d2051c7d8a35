//! The only module that speaks SQL. `Store` is the interface the rest of the
//! broker uses, over the vocabulary of `model`; a backend sits behind it. Today
//! that is SQLite (`sqlite/`: one file, one process, a single writer with group
//! commit). A second backend becomes another variant of `Store`, with its own SQL
//! and migrations, and must pass the same suite (`conformance`).
//!
//! Every write is committed before its call returns Ok: nothing is acknowledged
//! before it is durable.

mod after_commit;
mod commands;
mod dropped;
mod health;
mod intake;
mod limits;
pub mod message_ids;
mod model;
pub mod postgres;
mod rules;
pub mod sqlite;
mod states;
pub mod traffic;
mod views;
mod writer_time;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Notify;

use crate::clock::Clock;
use crate::config::StoreSettings;

pub use after_commit::Signals;
pub use commands::Writer;
pub use dropped::{DropReason, DroppedDeliveries};
pub use health::WriteHealth;
pub use limits::WriterLimits;
pub use model::*;
pub use postgres::cluster::{ClusterHandle, Timing as ClusterTiming};
pub use postgres::{PostgresSettings, PostgresStore, MAINTENANCE_LEASE};

/// How far back a search by destination looks: a day of messages.
pub const DESTINATION_SEARCH_MS: i64 = 24 * 3_600_000;

/// The lease under which one node at a time dispatches for an upstream, so
/// that its rate and max_in_flight hold for the whole cluster.
pub fn upstream_lease(upstream: &str) -> String {
    format!("upstream:{upstream}")
}
pub use sqlite::{lock_path, SqliteStore};
pub use states::{FinalState, UpstreamStates};
pub use views::{ReadOnlyStore, RouteDepth, UpstreamUsage};
pub use writer_time::{WriterStep, WriterTime};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database {path}: {source}")]
    Open { path: PathBuf, source: sqlx::Error },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{database} is in use by another smpp-broker{}: one process owns a database; \
         stop that one first, or give this one another store.path",
        owner.map(|pid| format!(" (PID {pid})")).unwrap_or_default()
    )]
    Locked {
        database: PathBuf,
        owner: Option<u32>,
    },
    #[error(
        "store.path: {} is not writable by this process (uid {uid}{}): the data folder and \
         its files must belong to the broker's user: chown -R {uid} {} (in Docker: on the \
         host folder or volume mounted there)",
        path.display(),
        owner.map(|o| format!("; it belongs to uid {o}")).unwrap_or_default(),
        folder.display()
    )]
    NotWritable {
        path: PathBuf,
        folder: PathBuf,
        uid: u32,
        owner: Option<u32>,
    },
    #[error("no database at {0}: `smpp-broker migrate` or `serve` creates it")]
    Missing(PathBuf),
    #[error("no broker schema in {0}: `smpp-broker migrate` or `serve` creates it")]
    NoSchema(String),
    #[error("database migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(
        "the writer connection is not durable: PRAGMA synchronous is {0}, FULL (2) is required"
    )]
    NotDurable(i64),
    #[error("cannot connect to the PostgreSQL store {0}: {1}")]
    Connect(String, sqlx::Error),
    #[error(
        "the PostgreSQL store does not make a COMMIT durable ({0}): set synchronous_commit \
         to on and fsync to on"
    )]
    NotDurablePostgres(String),
    #[error(
        "node_id {0:?} is in use by another running smpp-broker on this database: \
         give each node its own cluster.node_id"
    )]
    NodeInUse(String),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("the database writer has stopped")]
    WriterGone,
    #[error("the transaction was rolled back: {0}")]
    Commit(String),
    #[error(
        "the database stayed locked by another connection for {0:?} (store.busy_timeout); \
         nothing was written"
    )]
    Busy(std::time::Duration),
    #[error(
        "the database file {0} was deleted or replaced while the broker ran: nothing is \
         acknowledged until it is back or the broker is restarted"
    )]
    Replaced(PathBuf),
}

/// The database, whichever backend holds it. Cheap to clone: every clone is a
/// handle on the same database.
#[derive(Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

/// Runs `$body` with `$s` bound to the backend, whichever it is.
macro_rules! backend {
    ($self:ident, $s:ident => $body:expr) => {
        match $self {
            Store::Sqlite($s) => $body,
            Store::Postgres($s) => $body,
        }
    };
}

impl Store {
    /// Opens the database `settings` name (creating and migrating it if needed):
    /// an SQLite file as its only owner, or a PostgreSQL database as one node
    /// among others.
    pub async fn open(
        settings: &StoreSettings,
        limits: WriterLimits,
        clock: Arc<dyn Clock>,
    ) -> Result<Store, StoreError> {
        match &settings.url {
            None => SqliteStore::open(settings, limits, clock)
                .await
                .map(Store::Sqlite),
            Some(_) => PostgresStore::open(&PostgresSettings::of(settings), limits, clock)
                .await
                .map(Store::Postgres),
        }
    }

    /// Creates the database or brings its schema up to date (`smpp-broker
    /// migrate`). SQLite: as its owner, refused while a broker runs on it.
    /// PostgreSQL: beside running nodes, which apply the same migrations at
    /// their start (sqlx takes a lock while it migrates).
    pub async fn migrate(
        settings: &StoreSettings,
        limits: WriterLimits,
        clock: Arc<dyn Clock>,
    ) -> Result<(), StoreError> {
        match &settings.url {
            None => Store::open(settings, limits, clock).await?.close().await,
            Some(_) => {
                postgres::connect(&PostgresSettings::of(settings))
                    .await?
                    .close()
                    .await;
                Ok(())
            }
        }
    }

    /// The database, for logs and messages: SQLite's file, or PostgreSQL's URL
    /// (its password masked) and this node's name.
    pub fn describe(settings: &StoreSettings) -> String {
        match &settings.url {
            None => format!("SQLite {}", settings.sqlite_path().display()),
            Some(url) => format!(
                "PostgreSQL {} as node {}",
                postgres::masked(url.expose()),
                settings.node_id()
            ),
        }
    }

    /// This node's part in a cluster of nodes on one database: None on SQLite,
    /// where one process owns the database.
    pub fn cluster(&self) -> Option<ClusterHandle> {
        match self {
            Store::Sqlite(_) => None,
            Store::Postgres(s) => Some(s.cluster()),
        }
    }

    /// Whether this node may do the work the lease `name` guards now (an
    /// upstream's dispatch, maintenance): always on SQLite; on PostgreSQL
    /// while its last heartbeat holds the lease.
    pub fn holds(&self, name: &str) -> bool {
        match self {
            Store::Sqlite(_) => true,
            Store::Postgres(s) => s.holds(name),
        }
    }

    /// This node has no session left to hand `system_id`'s receipts and
    /// incoming messages to: on a shared store, the deliveries it claimed
    /// are free for the other nodes at once. Nothing to do on SQLite.
    pub async fn release_deliveries(&self, system_id: &str) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(_) => Ok(()),
            Store::Postgres(s) => s.release_deliveries(system_id).await,
        }
    }

    /// Whether writes fail now (disk full, a lock held past busy_timeout, the file
    /// deleted or replaced), and why; None while they succeed.
    pub fn write_failure(&self) -> Option<String> {
        backend!(self, s => s.write_failure())
    }

    /// Writes what the WAL holds into the database file and stops the writer,
    /// which lets go of the database's lock: a copy of the file alone then holds
    /// everything. Commands sent after this fail with WriterGone.
    pub async fn close(&self) -> Result<(), StoreError> {
        backend!(self, s => s.close().await)
    }

    /// Receipts and incoming messages dropped unread since startup.
    pub fn dropped_deliveries(&self) -> Vec<(String, DropReason, u64)> {
        backend!(self, s => s.signals().dropped.snapshot())
    }

    /// What the upstreams' own states stand for (the `upstream_states` table).
    pub fn upstream_states(&self) -> Arc<UpstreamStates> {
        backend!(self, s => s.upstream_states())
    }

    /// The size of the write-ahead log not yet checkpointed into the database
    /// file, in bytes (0 when the backend keeps none).
    pub fn wal_bytes(&self) -> u64 {
        match self {
            Store::Sqlite(s) => s.wal_bytes(),
            Store::Postgres(_) => 0,
        }
    }

    /// Where the writer's time went so far, by step.
    pub fn writer_time(&self) -> Arc<WriterTime> {
        backend!(self, s => s.writer_time())
    }

    /// Stores messages atomically and returns their message_ids, in order, once
    /// they are committed.
    pub async fn submit(&self, messages: Vec<NewMessage>) -> Result<Vec<String>, SubmitError> {
        backend!(self, s => s.writer().submit(messages).await)
    }

    pub async fn cancel(
        &self,
        system_id: &str,
        target: CancelTarget,
    ) -> Result<CancelOutcome, StoreError> {
        backend!(self, s => s.writer().cancel(system_id, target).await)
    }

    pub async fn replace(
        &self,
        system_id: &str,
        replacement: Replacement,
    ) -> Result<ReplaceOutcome, StoreError> {
        backend!(self, s => s.writer().replace(system_id, replacement).await)
    }

    /// Promotes due scheduled messages and fails long messages whose parts did not
    /// all arrive in time. Runs every second on its own; tests call it directly.
    pub async fn maintain(&self) -> Result<(), StoreError> {
        backend!(self, s => s.writer().maintain().await)
    }

    /// Claims up to `limit` queued messages of `route`, highest priority first,
    /// for `lease_ms`: a row whose lease runs out goes back to the queue. A
    /// message bound to a member is claimed only while that member is among
    /// `reachable`. `place` decides, for each, in the same transaction, the
    /// member it is bound to, or that it waits; the messages placed with a
    /// member (or as they are) are returned, committed.
    pub async fn claim(
        &self,
        route: &str,
        limit: usize,
        lease_ms: i64,
        reachable: &[String],
        place: Placer,
    ) -> Result<Vec<Dispatch>, StoreError> {
        backend!(self, s => s.writer().claim(route, limit, lease_ms, reachable, place).await)
    }

    /// Expires queued messages of `route` whose validity ended while they
    /// waited, for any member or for the one they are bound to (as a claim
    /// would). Returns them (outbox id, bound member), at most 1000 a call.
    pub async fn expire_waiting(&self, route: &str) -> Result<Vec<ExpiredWaiting>, StoreError> {
        backend!(self, s => s.writer().expire_waiting(route).await)
    }

    /// The parts `upstream` took in the `period` ("day" or "month") that holds
    /// the instant `at`: the periods counted under any time zone, so that a
    /// changed `limits_timezone` keeps the count.
    pub async fn usage_parts(
        &self,
        upstream: &str,
        period: &str,
        at: i64,
    ) -> Result<u64, StoreError> {
        backend!(self, s => s.usage_parts(upstream, period, at).await)
    }

    /// Stores what became of claimed messages (by outbox id).
    pub async fn record_dispatch(
        &self,
        outcomes: Vec<(i64, DispatchOutcome)>,
    ) -> Result<(), StoreError> {
        backend!(self, s => s.writer().record_dispatch(outcomes).await)
    }

    /// Stores states reported by an upstream; returns how many were news (a
    /// repeated or stale report changes nothing).
    pub async fn record_reports(&self, reports: Vec<UpstreamReport>) -> Result<usize, StoreError> {
        backend!(self, s => s.writer().record_reports(reports).await)
    }

    /// Polls of these enroute rows are next due at `at`.
    pub async fn check_later(&self, outbox_ids: Vec<i64>, at: i64) -> Result<(), StoreError> {
        backend!(self, s => s.writer().check_later(outbox_ids, at).await)
    }

    /// Enroute messages of `upstream` whose poll is due.
    pub async fn due_checks(
        &self,
        upstream: &str,
        now: i64,
        limit: usize,
    ) -> Result<Vec<PendingCheck>, StoreError> {
        backend!(self, s => s.due_checks(upstream, now, limit).await)
    }

    /// The oldest receipts and incoming messages of `system_id` after `after_id`.
    pub async fn pending_deliveries(
        &self,
        system_id: &str,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<PendingDelivery>, StoreError> {
        backend!(self, s => s.pending_deliveries(system_id, after_id, limit).await)
    }

    /// Stores an incoming message for the account's receivers; false when it was
    /// stored before.
    pub async fn record_incoming(&self, incoming: Incoming) -> Result<bool, StoreError> {
        backend!(self, s => s.writer().record_incoming(incoming).await)
    }

    /// Stores messages read from `upstream`'s inbox and moves its cursor to
    /// `read_until`, in one transaction; returns how many were new.
    pub async fn record_inbox(
        &self,
        upstream: &str,
        messages: Vec<Incoming>,
        read_until: i64,
    ) -> Result<usize, StoreError> {
        backend!(self, s => s.writer().record_inbox(upstream, messages, read_until).await)
    }

    /// When `upstream`'s inbox was first read and how far it has been read (Unix
    /// ms), if ever.
    pub async fn inbox_cursor(&self, upstream: &str) -> Result<Option<(i64, i64)>, StoreError> {
        backend!(self, s => s.inbox_cursor(upstream).await)
    }

    /// The messages an operator looks for (`query`): the one of that
    /// message_id, and the latest 50 to that destination number submitted in
    /// the day before `now` (Unix ms), newest first.
    pub async fn find_messages(
        &self,
        query: &str,
        now: i64,
    ) -> Result<Vec<MessageLife>, StoreError> {
        let query = query.trim();
        let message_id = parse_message_id(query).unwrap_or(-1);
        let since = message_ids::first_id_at(now - DESTINATION_SEARCH_MS);
        backend!(self, s => s.find_messages(message_id, query, since).await)
    }

    /// Receipts and incoming messages waiting per account: (system_id, count).
    pub async fn waiting_deliveries(&self) -> Result<Vec<WaitingDeliveries>, StoreError> {
        backend!(self, s => s.waiting_deliveries().await)
    }

    /// The ESME acknowledged these deliveries: they are done.
    pub async fn acknowledge_deliveries(&self, acks: Vec<Acknowledged>) -> Result<(), StoreError> {
        backend!(self, s => s.writer().acknowledge_deliveries(acks).await)
    }

    /// Records a successful bind; returns the number its session's messages
    /// name it by.
    pub async fn record_bind(&self, bind: SessionBind) -> Result<i64, StoreError> {
        backend!(self, s => s.writer().record_bind(bind).await)
    }

    /// These binds' sessions are still bound.
    pub async fn binds_seen(&self, sessions: Vec<i64>) -> Result<(), StoreError> {
        backend!(self, s => s.writer().binds_seen(sessions).await)
    }

    /// The limits of a reloaded configuration: from the next transaction on.
    pub async fn reconfigure(&self, limits: WriterLimits) -> Result<(), StoreError> {
        backend!(self, s => s.writer().reconfigure(limits).await)
    }

    /// These deliveries were not acknowledged; they wait for another attempt.
    pub async fn delivery_attempted(&self, ids: Vec<i64>) -> Result<(), StoreError> {
        backend!(self, s => s.writer().delivery_attempted(ids).await)
    }

    /// Messages through this node's store per minute (store/traffic.rs).
    pub fn traffic(&self) -> Arc<traffic::Traffic> {
        backend!(self, s => s.signals().traffic.clone())
    }

    /// Wakes the delivery hub when receipts or incoming messages were stored.
    pub fn deliveries_signal(&self) -> Arc<Notify> {
        backend!(self, s => s.signals().deliveries.clone())
    }

    /// Wakes dispatchers when messages may have become ready to send.
    pub fn ready_signal(&self) -> Arc<Notify> {
        backend!(self, s => s.signals().ready.clone())
    }

    /// The status of one of the account's messages, for query_sm. The source
    /// address must match the original submission (an empty one matches any).
    pub async fn query(
        &self,
        system_id: &str,
        message_id: &str,
        source_addr: &str,
    ) -> Result<Option<MessageStatus>, StoreError> {
        backend!(self, s => s.query(system_id, message_id, source_addr).await)
    }

    /// Outbox rows not yet done: (route, state, count). Each state is counted
    /// through its own partial index, so a scrape costs what is open, not the
    /// outbox's whole history, and the write path carries no extra index.
    pub async fn open_outbox(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        backend!(self, s => s.open_outbox().await)
    }

    /// Rows of the `queue_depth` view: (system_id, state, messages).
    pub async fn queue_depth(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        backend!(self, s => s.queue_depth().await)
    }
}

#[cfg(test)]
mod conformance;
