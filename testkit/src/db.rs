//! Typed peeks at a test broker's database, read as an operator's sqlite3 would
//! (a read-only connection beside the running broker), and a write lock held as
//! an operator's sqlite3 could hold one.

use std::path::{Path, PathBuf};

use smpp_broker::store::MessageState;
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{Connection, FromRow, Row};

/// The database of a broker whose data directory is `dir` (`dir/broker.db`).
pub struct Db {
    path: PathBuf,
}

/// An outbox row's state (migrations/sqlite/0001_outbox.sql).
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(rename_all = "lowercase")]
pub enum OutboxState {
    Scheduled,
    Queued,
    Retry,
    Sending,
    Enroute,
    Done,
}

/// One row of the outbox: a message (or a whole long one) to hand to an upstream.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub state: OutboxState,
    pub attempts: i64,
    /// When a scheduled or retry row becomes due, in ms since the epoch.
    pub due_at: i64,
    pub text: Option<String>,
    pub data_coding: i64,
    pub upstream_state: Option<String>,
    pub last_error: Option<String>,
    /// The route the message takes.
    pub route: String,
    /// The member it is bound to (or that took it); None while it may go to any.
    pub upstream: Option<String>,
    /// Set while a request is out.
    pub lease_until: Option<i64>,
}

/// The columns of [`OutboxRow`].
const OUTBOX_ROW: &str = "SELECT id, state, attempts, due_at, text, data_coding, upstream_state, \
     last_error, route, upstream, lease_until FROM outbox";

/// One row of messages: a message_id the broker handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    pub message_id: i64,
    pub state: MessageState,
    pub dest_addr: String,
    pub outbox_id: Option<i64>,
    pub submitted_at: i64,
    pub final_at: Option<i64>,
}

impl<'r> FromRow<'r, SqliteRow> for MessageRow {
    fn from_row(row: &'r SqliteRow) -> Result<Self, sqlx::Error> {
        let stored: String = row.try_get("state")?;
        let state = MessageState::parse(&stored);
        // parse() takes any other spelling for "unknown"; a test must not.
        if state.as_str() != stored {
            return Err(sqlx::Error::ColumnDecode {
                index: "state".into(),
                source: format!("not a message state: {stored:?}").into(),
            });
        }
        Ok(MessageRow {
            message_id: row.try_get("message_id")?,
            state,
            dest_addr: row.try_get("dest_addr")?,
            outbox_id: row.try_get("outbox_id")?,
            submitted_at: row.try_get("submitted_at")?,
            final_at: row.try_get("final_at")?,
        })
    }
}

impl Db {
    pub fn at(dir: &Path) -> Db {
        Db {
            path: dir.join("broker.db"),
        }
    }

    /// Every outbox row, by id.
    pub async fn outbox(&self) -> Vec<OutboxRow> {
        self.rows(&format!("{OUTBOX_ROW} ORDER BY id")).await
    }

    /// The outbox row `id` (as the broker hands it out, in decimal).
    pub async fn outbox_row(&self, id: &str) -> OutboxRow {
        let sql = format!("{OUTBOX_ROW} WHERE id = ?1");
        let id: i64 = id.parse().expect("an outbox id");
        let mut conn = self.read_only().await;
        sqlx::query_as(&sql)
            .bind(id)
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|err| panic!("outbox row {id}: {err}"))
    }

    /// Every messages row, by message_id.
    pub async fn messages(&self) -> Vec<MessageRow> {
        self.rows(
            "SELECT message_id, state, dest_addr, outbox_id, submitted_at, final_at \
             FROM messages ORDER BY message_id",
        )
        .await
    }

    /// Receipts and incoming messages not yet acknowledged by an ESME.
    pub async fn deliveries_waiting(&self) -> i64 {
        self.scalar("SELECT count(*) FROM deliveries").await
    }

    /// The rows of any query, typed (a struct deriving `FromRow`, or a tuple).
    pub async fn rows<T>(&self, sql: &str) -> Vec<T>
    where
        T: for<'r> FromRow<'r, SqliteRow> + Send + Unpin,
    {
        let mut conn = self.read_only().await;
        sqlx::query_as(sql)
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|err| panic!("{sql}: {err}"))
    }

    /// The one value of a query, such as a count.
    pub async fn scalar<T>(&self, sql: &str) -> T
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite> + Send + Unpin,
    {
        let mut conn = self.read_only().await;
        sqlx::query_scalar(sql)
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|err| panic!("{sql}: {err}"))
    }

    async fn read_only(&self) -> SqliteConnection {
        let url = format!("sqlite://{}?mode=ro", self.path.display());
        SqliteConnection::connect(&url)
            .await
            .expect("open test database")
    }

    /// An operator's sqlite3 holding a write transaction on the database, until
    /// [`WriteLock::release`].
    pub async fn hold_write_lock(&self) -> WriteLock {
        let url = format!("sqlite://{}", self.path.display());
        let mut intruder = SqliteConnection::connect(&url)
            .await
            .expect("open test database");
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut intruder)
            .await
            .expect("take the write lock");
        WriteLock(intruder)
    }
}

/// A write transaction held on a broker's database from outside.
pub struct WriteLock(SqliteConnection);

impl WriteLock {
    pub async fn release(mut self) {
        sqlx::query("ROLLBACK")
            .execute(&mut self.0)
            .await
            .expect("release the write lock");
    }
}
