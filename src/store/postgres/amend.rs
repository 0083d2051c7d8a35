//! What cancel_sm and replace_sm change on PostgreSQL: messages not yet handed
//! to an upstream. The outbox row is locked before it is judged unsent, so a
//! dispatcher on another node cannot claim it in between.

use sqlx::postgres::PgConnection;
use sqlx::Row;

use super::writer::AfterCommit;
use crate::store::rules::{content_columns, decode_content, schedule};
use crate::store::{
    parse_message_id, CancelOutcome, CancelTarget, MessageState, ReplaceOutcome, Replacement,
};
use crate::text::Charset;

/// Outbox rows no upstream can have: no dispatcher holds the row, and no
/// earlier attempt left it bound to a member that may hold it.
const UNSENT: &str = "state IN ('scheduled', 'queued', 'retry') AND upstream IS NULL";

/// The one rule for which message a request may touch: its id `$1`, its
/// account `$2`, and its source address `$3` when the request gives one.
const OWNED_MESSAGE: &str = "message_id = $1 AND system_id = $2 AND ($3 = '' OR source_addr = $3)";

pub(super) async fn cancel(
    conn: &mut PgConnection,
    now: i64,
    system_id: &str,
    target: CancelTarget,
    after: &mut AfterCommit,
) -> Result<CancelOutcome, sqlx::Error> {
    let rows = match &target {
        CancelTarget::MessageId {
            message_id,
            source_addr,
        } => {
            let Some(message_id) = parse_message_id(message_id) else {
                return Ok(CancelOutcome::NotFound);
            };
            sqlx::query(&format!(
                "SELECT message_id, state, outbox_id, concat_key FROM messages \
                 WHERE {OWNED_MESSAGE}"
            ))
            .bind(message_id)
            .bind(system_id)
            .bind(source_addr)
            .fetch_all(&mut *conn)
            .await?
        }
        CancelTarget::Addresses {
            service_type,
            source_addr,
            dest_addr,
        } => {
            sqlx::query(
                "SELECT message_id, state, outbox_id, concat_key FROM messages \
                 WHERE system_id = $1 AND source_addr = $2 AND dest_addr = $3 \
                 AND ($4 = '' OR service_type = $4)",
            )
            .bind(system_id)
            .bind(source_addr)
            .bind(dest_addr)
            .bind(service_type)
            .fetch_all(&mut *conn)
            .await?
        }
    };
    if rows.is_empty() {
        return Ok(CancelOutcome::NotFound);
    }
    let mut cancelled = 0usize;
    for row in rows {
        if !MessageState::parse(row.get::<&str, _>(1)).is_waiting() {
            continue;
        }
        let outbox_id: Option<i64> = row.get(2);
        let concat_key: Option<String> = row.get(3);
        // A part cancels its whole set: upstream, the set is one message.
        let done =
            match (outbox_id, concat_key) {
                (Some(outbox_id), _) => {
                    let unsent = sqlx::query(&format!(
                        "UPDATE outbox SET state = 'done', last_error = 'cancelled' \
                     WHERE id = $1 AND {UNSENT}"
                    ))
                    .bind(outbox_id)
                    .execute(&mut *conn)
                    .await?;
                    if unsent.rows_affected() == 0 {
                        continue;
                    }
                    sqlx::query(
                        "UPDATE messages SET state = 'deleted', final_at = $1 \
                     WHERE ((message_id = $2 AND concat_key IS NULL) \
                     OR (outbox_id = $2 AND concat_key IS NOT NULL)) \
                     AND state IN ('scheduled', 'queued')",
                    )
                    .bind(now)
                    .bind(outbox_id)
                    .execute(&mut *conn)
                    .await?
                }
                (None, Some(key)) => {
                    sqlx::query(
                        "UPDATE messages SET state = 'deleted', final_at = $1 \
                     WHERE concat_key = $2 AND state = 'assembling'",
                    )
                    .bind(now)
                    .bind(key)
                    .execute(&mut *conn)
                    .await?
                }
                (None, None) => sqlx::query(
                    "UPDATE messages SET state = 'deleted', final_at = $1 WHERE message_id = $2",
                )
                .bind(now)
                .bind(row.get::<i64, _>(0))
                .execute(&mut *conn)
                .await?,
            };
        let count = done.rows_affected() as usize;
        after.add(system_id, -(count as i64));
        cancelled += count;
    }
    Ok(if cancelled > 0 {
        CancelOutcome::Cancelled(cancelled)
    } else {
        CancelOutcome::TooLate
    })
}

pub(super) async fn replace(
    conn: &mut PgConnection,
    now: i64,
    system_id: &str,
    r: Replacement,
) -> Result<ReplaceOutcome, sqlx::Error> {
    let Some(message_id) = parse_message_id(&r.message_id) else {
        return Ok(ReplaceOutcome::NotFound);
    };
    let row = sqlx::query(&format!(
        "SELECT message_id, state, outbox_id, concat_key, charset, scheduled_at, expires_at \
         FROM messages WHERE {OWNED_MESSAGE}"
    ))
    .bind(message_id)
    .bind(system_id)
    .bind(&r.source_addr)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(ReplaceOutcome::NotFound);
    };
    let state = MessageState::parse(row.get::<&str, _>(1));
    let outbox_id: Option<i64> = row.get(2);
    let concat_key: Option<String> = row.get(3);
    let (Some(outbox_id), None, true) = (
        outbox_id,
        concat_key,
        matches!(state, MessageState::Queued | MessageState::Scheduled),
    ) else {
        return Ok(ReplaceOutcome::NotReplaceable);
    };
    let charset = Charset::parse(row.get::<&str, _>(4)).unwrap_or(Charset::Binary);
    let Some(content) = decode_content(charset, &r.body) else {
        return Ok(ReplaceOutcome::NotReplaceable);
    };
    let unsent: Option<i64> = sqlx::query_scalar(&format!(
        "SELECT id FROM outbox WHERE id = $1 AND {UNSENT} FOR UPDATE"
    ))
    .bind(outbox_id)
    .fetch_optional(&mut *conn)
    .await?;
    if unsent.is_none() {
        return Ok(ReplaceOutcome::NotReplaceable);
    }
    let scheduled_at = r.scheduled_at.or(row.get(5));
    let expires_at = r.expires_at.unwrap_or(row.get(6));
    let (new_state, due_at) = schedule(scheduled_at, now);
    let (text, data) = content_columns(&content);
    sqlx::query(
        "UPDATE messages SET body = $1, registered_delivery = $2, scheduled_at = $3, \
         expires_at = $4, state = $5 WHERE message_id = $6",
    )
    .bind(&r.body)
    .bind(i64::from(r.registered_delivery))
    .bind(scheduled_at)
    .bind(expires_at)
    .bind(new_state)
    .bind(row.get::<i64, _>(0))
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE outbox SET text = $1, data = $2, registered_delivery = $3, due_at = $4, \
         expires_at = $5, state = $6 WHERE id = $7",
    )
    .bind(text)
    .bind(data)
    .bind(i64::from(r.registered_delivery))
    .bind(due_at)
    .bind(expires_at)
    .bind(new_state)
    .bind(outbox_id)
    .execute(&mut *conn)
    .await?;
    Ok(ReplaceOutcome::Replaced)
}
