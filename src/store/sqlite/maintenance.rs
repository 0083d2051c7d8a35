//! The writer's periodic work: due messages back to the queue, long messages whose
//! parts never all came, the retention of final messages and of deliveries.

use sqlx::sqlite::SqliteConnection;
use sqlx::Row;
use tracing::{debug, warn};

use super::deliveries;
use super::sql::CARRIED_BY_OUTBOX_1;
use super::writer::AfterCommit;
use super::ErrorCode;
use crate::store::message_ids::first_id_at;
use crate::store::{DropReason, WriterLimits};

/// Claims left from an earlier run go back to the queue at startup. Only the
/// database's owner calls this (under its lock, lock.rs), so such a claim belongs
/// to no live dispatcher: it is sent again now rather than when its lease ends, and
/// the upstream recognises the id if it had arrived.
pub(super) async fn requeue_orphaned_claims(
    conn: &mut SqliteConnection,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE outbox SET state = 'queued', lease_until = NULL WHERE state = 'sending'",
    )
    .execute(conn)
    .await?
    .rows_affected())
}

/// Promotes scheduled messages that are due and fails long messages still missing
/// parts after the assembly timeout.
pub(super) async fn maintain(
    conn: &mut SqliteConnection,
    limits: &WriterLimits,
    now: i64,
    after: &mut AfterCommit,
) -> Result<(), sqlx::Error> {
    // Scheduled messages and retries that are due, and claims whose lease ran out
    // (a crashed or hung dispatch), go back to the queue.
    let due = sqlx::query(
        "UPDATE outbox SET state = 'queued', lease_until = NULL \
         WHERE (state IN ('scheduled', 'retry') AND due_at <= ?1) \
         OR (state = 'sending' AND lease_until <= ?1) RETURNING id",
    )
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    if !due.is_empty() {
        after.mark_ready();
    }
    for row in &due {
        sqlx::query(&format!(
            "UPDATE messages SET state = 'queued' WHERE {CARRIED_BY_OUTBOX_1} AND state = 'scheduled'"
        ))
        .bind(row.get::<i64, _>(0))
        .execute(&mut *conn)
        .await?;
    }
    let cutoff = now - limits.assembly_timeout.as_millis() as i64;
    let timed_out = sqlx::query(
        "UPDATE messages SET state = 'undeliverable', final_at = ?1, error_code = ?2 \
         WHERE state = 'assembling' AND submitted_at <= ?3 RETURNING system_id",
    )
    .bind(now)
    .bind(i64::from(ErrorCode::AssemblyTimeout))
    .bind(cutoff)
    .fetch_all(&mut *conn)
    .await?;
    for row in &timed_out {
        after.add(row.get::<&str, _>(0), -1);
    }
    if !timed_out.is_empty() {
        warn!(
            parts = timed_out.len(),
            "long-message parts timed out waiting for the rest of their set"
        );
    }
    deliveries::forget_seen(conn, now).await?;
    let cutoff = now - limits.final_retention.as_millis() as i64;
    let purged = purge_final(conn, cutoff).await?;
    if purged > 0 {
        debug!(
            purged,
            "final messages past messages.final_retention deleted"
        );
    }
    // After the purge: the oldest message kept tells which binds none names.
    deliveries::forget_binds(conn, now).await?;
    // Logged after the commit, summed per account (AfterCommit::publish).
    for (system_id, dropped) in deliveries::expire(conn, now).await? {
        after
            .dropped
            .push((system_id, DropReason::Expired, dropped as u64));
    }
    Ok(())
}

/// Final messages deleted per maintenance tick at most: the writer holds its
/// transaction meanwhile, so a large backlog goes over many ticks.
pub(super) const PURGE_BATCH: i64 = 2_000;

/// The messages `purge_final` deletes in one go: `?1` the first id at the
/// cutoff, `?2` the cutoff, `?3` how many at most.
const PURGED: &str = "SELECT message_id FROM messages \
     WHERE message_id < ?1 AND final_at IS NOT NULL AND final_at < ?2 \
     ORDER BY message_id LIMIT ?3";

/// Deletes messages that became final before `cutoff` (and were submitted before
/// it: message_ids grow with time, so the scan walks the primary key from its
/// oldest end), then the done outbox rows none of whose messages is left.
pub(super) async fn purge_final(
    conn: &mut SqliteConnection,
    cutoff: i64,
) -> Result<u64, sqlx::Error> {
    let below_id = first_id_at(cutoff);
    // Their life goes with them: the same selection, before they go.
    sqlx::query(&format!(
        "DELETE FROM message_events WHERE message_id IN ({PURGED})"
    ))
    .bind(below_id)
    .bind(cutoff)
    .bind(PURGE_BATCH)
    .execute(&mut *conn)
    .await?;
    let purged = sqlx::query(&format!(
        "DELETE FROM messages WHERE message_id IN ({PURGED})"
    ))
    .bind(below_id)
    .bind(cutoff)
    .bind(PURGE_BATCH)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if purged > 0 {
        sqlx::query(
            "DELETE FROM outbox WHERE id IN (SELECT o.id FROM outbox o WHERE o.id < ?1 \
             AND o.state = 'done' AND NOT EXISTS (SELECT 1 FROM messages m \
             WHERE m.message_id = o.id OR (m.outbox_id = o.id AND m.concat_key IS NOT NULL)) \
             ORDER BY o.id LIMIT ?2)",
        )
        .bind(below_id)
        .bind(PURGE_BATCH)
        .execute(&mut *conn)
        .await?;
    }
    Ok(purged)
}
