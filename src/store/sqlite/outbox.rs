//! The writer's side of dispatching: claiming queued messages with a lease, and
//! storing what the upstream made of them.

use sqlx::sqlite::SqliteConnection;
use sqlx::Row;

use super::deliveries::add_receipts;
use super::sql::{content_from_columns, CARRIED_BY_OUTBOX_1};
use super::writer::AfterCommit;
use super::{Dispatch, DispatchOutcome, MessageState, UpstreamReport};

/// An outbox row as a claim returns it.
#[derive(sqlx::FromRow)]
struct ClaimedRow {
    id: i64,
    system_id: String,
    dest_ton: i64,
    dest_addr: String,
    source_addr: String,
    text: Option<String>,
    data: Option<Vec<u8>>,
    data_coding: i64,
    registered_delivery: i64,
    priority: i64,
    expires_at: i64,
    attempts: i64,
    created_at: i64,
}

impl From<ClaimedRow> for Dispatch {
    fn from(r: ClaimedRow) -> Dispatch {
        Dispatch {
            outbox_id: r.id,
            system_id: r.system_id,
            dest_ton: r.dest_ton as u8,
            dest_addr: r.dest_addr,
            source_addr: r.source_addr,
            content: content_from_columns(r.text, r.data),
            data_coding: r.data_coding as u8,
            registered_delivery: r.registered_delivery as u8,
            priority: r.priority as u8,
            expires_at: r.expires_at,
            attempts: r.attempts.max(0) as u32,
            created_at: r.created_at,
        }
    }
}

pub(super) async fn claim(
    conn: &mut SqliteConnection,
    now: i64,
    upstream: &str,
    limit: usize,
    lease_ms: i64,
) -> Result<Vec<Dispatch>, sqlx::Error> {
    let rows: Vec<ClaimedRow> = sqlx::query_as(
        "UPDATE outbox SET state = 'sending', lease_until = ?1 WHERE id IN \
         (SELECT id FROM outbox WHERE state = 'queued' AND upstream = ?2 \
          ORDER BY priority DESC, id LIMIT ?3) \
         RETURNING id, system_id, dest_ton, dest_addr, source_addr, text, data, data_coding, \
         registered_delivery, priority, expires_at, attempts, created_at",
    )
    .bind(now + lease_ms)
    .bind(upstream)
    .bind(limit as i64)
    .fetch_all(&mut *conn)
    .await?;
    let mut claimed: Vec<Dispatch> = rows.into_iter().map(Dispatch::from).collect();
    // RETURNING gives no order; the upstream sees the claim order.
    claimed.sort_by_key(|d| (std::cmp::Reverse(d.priority), d.outbox_id));
    Ok(claimed)
}

pub(super) async fn record_dispatch(
    conn: &mut SqliteConnection,
    now: i64,
    keep_until: i64,
    outcomes: Vec<(i64, DispatchOutcome)>,
    after: &mut AfterCommit,
) -> Result<(), sqlx::Error> {
    for (outbox_id, outcome) in outcomes {
        match outcome {
            DispatchOutcome::Accepted {
                upstream_id,
                upstream_state,
                check_at,
            } => {
                // A report may have overtaken the answer; it is not undone.
                let updated = sqlx::query(
                    "UPDATE outbox SET state = 'enroute', lease_until = NULL, \
                     attempts = attempts + 1, upstream_id = ?1, upstream_state = ?2, \
                     due_at = ?3, last_error = NULL \
                     WHERE id = ?4 AND state NOT IN ('enroute', 'done')",
                )
                .bind(&upstream_id)
                .bind(&upstream_state)
                .bind(check_at)
                .bind(outbox_id)
                .execute(&mut *conn)
                .await?;
                if updated.rows_affected() > 0 {
                    set_message_state(conn, outbox_id, MessageState::Enroute, None, after).await?;
                }
            }
            DispatchOutcome::Retry {
                due_at,
                error,
                charged,
            } => {
                let requeued = due_at <= now;
                sqlx::query(
                    "UPDATE outbox SET state = ?1, due_at = ?2, lease_until = NULL, \
                     attempts = attempts + ?3, last_error = ?4 WHERE id = ?5 AND state = 'sending'",
                )
                .bind(if requeued { "queued" } else { "retry" })
                .bind(due_at)
                .bind(i64::from(charged))
                .bind(&error)
                .bind(outbox_id)
                .execute(&mut *conn)
                .await?;
                if requeued {
                    after.mark_ready();
                }
            }
            DispatchOutcome::Failed {
                state,
                error_code,
                error,
            } => {
                let updated = sqlx::query(
                    "UPDATE outbox SET state = 'done', lease_until = NULL, \
                     attempts = attempts + 1, last_error = ?1 WHERE id = ?2 AND state != 'done'",
                )
                .bind(&error)
                .bind(outbox_id)
                .execute(&mut *conn)
                .await?;
                if updated.rows_affected() > 0 {
                    let done = Some((now, error_code));
                    set_message_state(conn, outbox_id, state, done, after).await?;
                    add_receipts(conn, outbox_id, state, now, keep_until, after).await?;
                }
            }
        }
    }
    Ok(())
}

/// Returns how many reports changed something.
pub(super) async fn record_reports(
    conn: &mut SqliteConnection,
    now: i64,
    keep_until: i64,
    reports: Vec<UpstreamReport>,
    after: &mut AfterCommit,
) -> Result<usize, sqlx::Error> {
    let mut news = 0;
    for report in reports {
        let changed = match report.state {
            // Still on its way (e.g. sent, not yet delivered): only the upstream's
            // state moves on.
            None => {
                let moved = sqlx::query(
                    "UPDATE outbox SET upstream_state = ?1 \
                     WHERE id = ?2 AND state != 'done' AND upstream_state IS NOT ?1",
                )
                .bind(&report.upstream_state)
                .bind(report.outbox_id)
                .execute(&mut *conn)
                .await?
                .rows_affected()
                    > 0;
                // Sent by the phone: the intermediate receipt, for those who asked.
                if moved && report.upstream_state == "Sent" {
                    let enroute = MessageState::Enroute;
                    add_receipts(conn, report.outbox_id, enroute, now, keep_until, after).await?;
                }
                moved
            }
            Some(state) => {
                let updated = sqlx::query(
                    "UPDATE outbox SET state = 'done', lease_until = NULL, upstream_state = ?1, \
                     last_error = coalesce(?2, last_error) WHERE id = ?3 AND state != 'done'",
                )
                .bind(&report.upstream_state)
                .bind(&report.error)
                .bind(report.outbox_id)
                .execute(&mut *conn)
                .await?;
                if updated.rows_affected() > 0 {
                    let done = Some((report.at, report.error_code));
                    set_message_state(conn, report.outbox_id, state, done, after).await?;
                    add_receipts(conn, report.outbox_id, state, now, keep_until, after).await?;
                }
                updated.rows_affected() > 0
            }
        };
        news += usize::from(changed);
    }
    Ok(news)
}

/// Moves the messages an outbox row carries to `state`, final when `done` gives
/// the time and error code. Messages that stop waiting leave the queue counts.
async fn set_message_state(
    conn: &mut SqliteConnection,
    outbox_id: i64,
    state: MessageState,
    done: Option<(i64, u8)>,
    after: &mut AfterCommit,
) -> Result<(), sqlx::Error> {
    let (final_at, error_code) = match done {
        Some((at, code)) => (Some(at), i64::from(code)),
        None => (None, 0),
    };
    let was_waiting = sqlx::query(&format!(
        "UPDATE messages SET state = ?2, final_at = ?3, error_code = ?4 \
         WHERE {CARRIED_BY_OUTBOX_1} AND state IN ('scheduled', 'queued') RETURNING system_id"
    ))
    .bind(outbox_id)
    .bind(state.as_str())
    .bind(final_at)
    .bind(error_code)
    .fetch_all(&mut *conn)
    .await?;
    for row in &was_waiting {
        after.add(row.get::<&str, _>(0), -1);
    }
    if done.is_some() {
        sqlx::query(&format!(
            "UPDATE messages SET state = ?2, final_at = ?3, error_code = ?4 \
             WHERE {CARRIED_BY_OUTBOX_1} AND state = 'enroute'"
        ))
        .bind(outbox_id)
        .bind(state.as_str())
        .bind(final_at)
        .bind(error_code)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

pub(super) async fn check_later(
    conn: &mut SqliteConnection,
    outbox_ids: &[i64],
    at: i64,
) -> Result<(), sqlx::Error> {
    for id in outbox_ids {
        sqlx::query("UPDATE outbox SET due_at = ?1 WHERE id = ?2 AND state = 'enroute'")
            .bind(at)
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
