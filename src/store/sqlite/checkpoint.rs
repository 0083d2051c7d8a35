//! Copies committed WAL frames into the database file on a connection of its own.
//!
//! SQLite's automatic checkpoint runs inside the COMMIT that crosses the threshold,
//! so one writer batch in a few hundred paid for copying the whole WAL and the
//! submits waiting on it saw their latency double (measured in README, "Write
//! path"). The writer therefore turns it off and this task checkpoints in PASSIVE
//! mode beside it: a passive checkpoint never blocks the writer or the readers.

use std::time::Duration;

use sqlx::sqlite::SqliteConnection;
use sqlx::Row;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::writer::Request;

/// How often the WAL is copied back. Short enough to keep the WAL small at full
/// load (tens of MB), long enough that each checkpoint moves many pages at once.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);

/// The WAL's size past which the writer checkpoints it itself (`writer.rs`,
/// `bound_wal`); also the size SQLite truncates it back to (journal_size_limit).
pub const WAL_LIMIT: u64 = 64 * 1024 * 1024;

/// Runs until `stop` (the store closes) or until the store is dropped (the
/// writer's channel has no senders left).
pub async fn run(
    mut conn: SqliteConnection,
    writer: mpsc::WeakSender<Request>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(CHECKPOINT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        if writer.upgrade().is_none() {
            return;
        }
        match checkpoint_once(&mut conn).await {
            Ok(progress) if progress.wal_pages > 0 => debug!(
                wal_pages = progress.wal_pages,
                copied = progress.copied,
                "WAL checkpoint"
            ),
            Ok(_) => {}
            Err(err) => warn!(error = %err, "WAL checkpoint failed; retrying"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Another connection was checkpointing: nothing was done this time.
    pub busy: bool,
    /// Frames in the WAL.
    pub wal_pages: i64,
    /// Frames now copied into the database file.
    pub copied: i64,
}

pub async fn checkpoint_once(conn: &mut SqliteConnection) -> Result<Progress, sqlx::Error> {
    checkpoint(conn, "PASSIVE").await
}

/// A checkpoint in `mode` (PASSIVE, FULL, RESTART or TRUNCATE).
pub async fn checkpoint(
    conn: &mut SqliteConnection,
    mode: &'static str,
) -> Result<Progress, sqlx::Error> {
    let row = sqlx::query(&format!("PRAGMA wal_checkpoint({mode})"))
        .fetch_one(conn)
        .await?;
    Ok(Progress {
        busy: row.get::<i64, _>(0) != 0,
        wal_pages: row.get(1),
        copied: row.get(2),
    })
}
