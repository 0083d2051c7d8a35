//! Periodic work on PostgreSQL: due messages back to the queue, claims whose
//! lease ran out, long messages whose parts never all came, and the retention
//! of final messages and of deliveries.

use sqlx::postgres::PgConnection;
use tracing::{debug, warn};

use super::deliveries;
use super::writer::{AfterCommit, WriterState};
use super::CARRIED;
use crate::store::message_ids::first_id_at;
use crate::store::{DropReason, ErrorCode};

/// Final messages deleted per run at most: a large backlog goes over many runs.
const PURGE_BATCH: i64 = 2_000;

pub(super) async fn maintain(
    conn: &mut PgConnection,
    state: &WriterState,
    now: i64,
    after: &mut AfterCommit,
) -> Result<(), sqlx::Error> {
    let limits = &state.limits;
    take_over_dead_nodes(conn, now - state.dead_after_ms, after).await?;
    // Scheduled messages and retries that are due, and claims whose lease ran
    // out (a crashed or hung dispatch, on any node), go back to the queue.
    let due: Vec<i64> = sqlx::query_scalar(
        "UPDATE outbox SET state = 'queued', lease_until = NULL \
         WHERE (state IN ('scheduled', 'retry') AND due_at <= $1) \
         OR (state = 'sending' AND lease_until <= $1) RETURNING id",
    )
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    if !due.is_empty() {
        after.mark_ready();
        for carried in CARRIED {
            sqlx::query(&format!(
                "UPDATE messages m SET state = 'queued' FROM unnest($1::bigint[]) AS j(id) \
                 WHERE {carried} AND m.state = 'scheduled'"
            ))
            .bind(&due)
            .execute(&mut *conn)
            .await?;
        }
    }
    let cutoff = now - limits.assembly_timeout.as_millis() as i64;
    let timed_out: Vec<String> = sqlx::query_scalar(
        "UPDATE messages SET state = 'undeliverable', final_at = $1, error_code = $2 \
         WHERE state = 'assembling' AND submitted_at <= $3 RETURNING system_id",
    )
    .bind(now)
    .bind(i64::from(ErrorCode::AssemblyTimeout))
    .bind(cutoff)
    .fetch_all(&mut *conn)
    .await?;
    for system_id in &timed_out {
        after.add(system_id, -1);
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
    for (system_id, dropped) in deliveries::expire(conn, now).await? {
        after
            .dropped
            .push((system_id, DropReason::Expired, dropped as u64));
    }
    Ok(())
}

/// What nodes not seen since `seen_before` held: their claims go back to the
/// queue (SMSGate answers a repeated id with 409, so a message that had left
/// is not sent twice), their deliveries to whichever node reads them next,
/// and their sessions count no more.
async fn take_over_dead_nodes(
    conn: &mut PgConnection,
    seen_before: i64,
    after: &mut AfterCommit,
) -> Result<(), sqlx::Error> {
    let dead: Vec<String> = sqlx::query_scalar("SELECT node_id FROM nodes WHERE last_seen < $1")
        .bind(seen_before)
        .fetch_all(&mut *conn)
        .await?;
    if dead.is_empty() {
        return Ok(());
    }
    let requeued = sqlx::query(
        "UPDATE outbox SET state = 'queued', lease_until = NULL, claimed_by = NULL \
         WHERE state = 'sending' AND claimed_by = ANY($1)",
    )
    .bind(&dead)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let freed = sqlx::query(
        "UPDATE deliveries SET claimed_by = NULL, claim_until = NULL WHERE claimed_by = ANY($1)",
    )
    .bind(&dead)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    // Their rows go too: a node that comes back writes its heartbeat again.
    sqlx::query("DELETE FROM sessions WHERE node_id = ANY($1)")
        .bind(&dead)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM nodes WHERE node_id = ANY($1)")
        .bind(&dead)
        .execute(&mut *conn)
        .await?;
    if requeued > 0 {
        after.mark_ready();
    }
    if freed > 0 {
        after.wake_deliveries();
    }
    if requeued > 0 || freed > 0 {
        warn!(nodes = ?dead, messages = requeued, deliveries = freed,
            "nodes not seen for a while: their claims were taken over");
    }
    Ok(())
}

/// The messages `purge_final` deletes in one go: `$1` the first id at the
/// cutoff, `$2` the cutoff, `$3` how many at most.
const PURGED: &str = "SELECT message_id FROM messages \
     WHERE message_id < $1 AND final_at IS NOT NULL AND final_at < $2 \
     ORDER BY message_id LIMIT $3";

/// Deletes messages that became final before `cutoff` (and were submitted
/// before it: message_ids grow with time), then the done outbox rows none of
/// whose messages is left, and their life (`message_events`).
async fn purge_final(conn: &mut PgConnection, cutoff: i64) -> Result<u64, sqlx::Error> {
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
            "DELETE FROM outbox WHERE id IN (SELECT o.id FROM outbox o WHERE o.id < $1 \
             AND o.state = 'done' AND NOT EXISTS (SELECT 1 FROM messages m \
             WHERE m.message_id = o.id OR (m.outbox_id = o.id AND m.concat_key IS NOT NULL)) \
             ORDER BY o.id LIMIT $2)",
        )
        .bind(below_id)
        .bind(PURGE_BATCH)
        .execute(&mut *conn)
        .await?;
    }
    Ok(purged)
}
