//! Receipts and incoming messages waiting for an ESME, on PostgreSQL: written in
//! the same transaction as the state change they report, so none is lost or
//! doubled (their dedupe keys are unique across nodes).

use std::collections::HashMap;

use sqlx::postgres::PgConnection;

use super::writer::AfterCommit;
use super::CARRIED;
use crate::store::rules::content_columns;
use crate::store::{
    Acknowledged, DropReason, Incoming, SessionBind, WriterLimits, SESSION_SEEN_EVERY_MS,
};

/// Which receipts the ESMEs asked for (registered_delivery) of messages `m`:
/// the intermediate one (0x10), or the final one: 1 every final state, 2
/// failures only.
fn wanted(enroute: bool) -> &'static str {
    if enroute {
        "m.registered_delivery & 16 = 16"
    } else {
        "(m.registered_delivery & 3 = 1 \
          OR (m.registered_delivery & 3 = 2 AND m.state <> 'delivered'))"
    }
}

/// Stores the receipts asked for of the messages that the outbox rows `ids`
/// carry and that are now in the state given beside each (`states`):
/// intermediate ones with `enroute`, else final ones. `keep`: when an unread
/// receipt is dropped.
pub(super) async fn add_receipts(
    conn: &mut PgConnection,
    ids: &[i64],
    states: &[&str],
    enroute: bool,
    now: i64,
    keep: i64,
    after: &mut AfterCommit,
) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    for carried in CARRIED {
        let added: Vec<String> = sqlx::query_scalar(&format!(
            "INSERT INTO deliveries (system_id, kind, message_id, state, error_code, done_at, \
             created_at, expires_at, dedupe_key) \
             SELECT m.system_id, 'receipt', m.message_id, m.state, m.error_code, m.final_at, \
             $3, $4, 'receipt:' || m.message_id || ':' || m.state \
             FROM unnest($1::bigint[], $2::text[]) AS j(id, state) JOIN messages m ON {carried} \
             WHERE m.state = j.state AND {} \
             ORDER BY m.message_id \
             ON CONFLICT (dedupe_key) DO NOTHING RETURNING system_id",
            wanted(enroute)
        ))
        .bind(ids)
        .bind(states)
        .bind(now)
        .bind(keep)
        .fetch_all(&mut *conn)
        .await?;
        for system_id in &added {
            after.delivery_added(system_id);
        }
    }
    Ok(())
}

/// Drops the oldest deliveries of each account that got new ones in this
/// transaction beyond its limit (`max_undelivered`); what was dropped, per account.
pub(super) async fn enforce_caps(
    conn: &mut PgConnection,
    limits: &WriterLimits,
    added: &HashMap<String, usize>,
) -> Result<Vec<(String, DropReason, u64)>, sqlx::Error> {
    let mut dropped_all = Vec::new();
    for system_id in added.keys() {
        let max = limits.max_undelivered_of(system_id);
        let dropped = sqlx::query(
            "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries WHERE system_id = $1 \
             ORDER BY id DESC OFFSET $2)",
        )
        .bind(system_id)
        .bind(max as i64)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if dropped > 0 {
            dropped_all.push((system_id.clone(), DropReason::OverLimit, dropped));
        }
    }
    Ok(dropped_all)
}

/// How long an incoming message's dedupe key outlives its delivery.
const SEEN_FOR_MS: i64 = 7 * 24 * 3_600_000;

/// Forgets the dedupe keys of incoming messages seen more than 7 days ago.
pub(super) async fn forget_seen(conn: &mut PgConnection, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM incoming_seen WHERE seen_at < $1")
        .bind(now - SEEN_FOR_MS)
        .execute(conn)
        .await?;
    Ok(())
}

/// Drops deliveries kept longer than their retention; returns (account, count).
pub(super) async fn expire(
    conn: &mut PgConnection,
    now: i64,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "WITH gone AS (DELETE FROM deliveries WHERE expires_at <= $1 RETURNING system_id) \
         SELECT system_id, count(*) FROM gone GROUP BY system_id",
    )
    .bind(now)
    .fetch_all(conn)
    .await
}

pub(super) async fn acknowledge(
    conn: &mut PgConnection,
    now: i64,
    acks: &[Acknowledged],
) -> Result<(), sqlx::Error> {
    if acks.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = acks.iter().map(|a| a.id).collect();
    let sessions: Vec<i64> = acks.iter().map(|a| a.session_id as i64).collect();
    let sent: Vec<i64> = acks.iter().map(|a| a.sent_at).collect();
    // The rows go, and a receipt's life keeps who took it and when.
    sqlx::query(
        "WITH gone AS (DELETE FROM deliveries AS d \
           USING unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS j (id, session, sent) \
           WHERE d.id = j.id AND d.id = ANY($1) \
           RETURNING d.message_id, d.kind, d.created_at, j.session, j.sent) \
         INSERT INTO message_events (message_id, at, event, detail) \
         SELECT message_id, $4, 'receipt_delivered', 'stored ' || ($4 - created_at) \
           || ' ms before; deliver_sm to session #' || session \
           || ', acknowledged ' || ($4 - sent) || ' ms after it was sent' \
         FROM gone WHERE kind = 'receipt'",
    )
    .bind(&ids)
    .bind(sessions)
    .bind(sent)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

pub(super) async fn attempted(
    conn: &mut PgConnection,
    now: i64,
    ids: &[i64],
) -> Result<(), sqlx::Error> {
    if !ids.is_empty() {
        sqlx::query(
            "INSERT INTO message_events (message_id, at, event, detail) \
             SELECT message_id, $2, 'receipt_refused', \
             'deliver_sm not acknowledged (refused, or the session ended), attempt ' || (attempts + 1) \
             FROM deliveries WHERE id = ANY($1) AND kind = 'receipt'",
        )
        .bind(ids)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        sqlx::query("UPDATE deliveries SET attempts = attempts + 1 WHERE id = ANY($1)")
            .bind(ids)
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Returns whether the message is new: not seen in the last 7 days, acknowledged
/// or not, on any node.
pub(super) async fn add_incoming(
    conn: &mut PgConnection,
    incoming: &Incoming,
    now: i64,
    expires_at: i64,
) -> Result<bool, sqlx::Error> {
    let first_time = sqlx::query(
        "INSERT INTO incoming_seen (dedupe_key, seen_at) VALUES ($1, $2) \
         ON CONFLICT (dedupe_key) DO NOTHING",
    )
    .bind(&incoming.dedupe_key)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    if first_time.rows_affected() == 0 {
        return Ok(false);
    }
    let (text, data) = content_columns(&incoming.content);
    let inserted = sqlx::query(
        "INSERT INTO deliveries (system_id, kind, source_addr, dest_addr, text, data, \
         created_at, expires_at, dedupe_key) VALUES ($1, 'mo', $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (dedupe_key) DO NOTHING",
    )
    .bind(&incoming.system_id)
    .bind(&incoming.source_addr)
    .bind(&incoming.dest_addr)
    .bind(text)
    .bind(data)
    .bind(now)
    .bind(expires_at)
    .bind(&incoming.dedupe_key)
    .execute(&mut *conn)
    .await?;
    Ok(inserted.rows_affected() > 0)
}

/// Records that `upstream`'s inbox has been read up to `read_until` (never back).
pub(super) async fn move_inbox_cursor(
    conn: &mut PgConnection,
    upstream: &str,
    read_until: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO inbox_cursors (upstream, started_at, read_until) VALUES ($1, $2, $2) \
         ON CONFLICT (upstream) DO UPDATE \
         SET read_until = greatest(inbox_cursors.read_until, excluded.read_until)",
    )
    .bind(upstream)
    .bind(read_until)
    .execute(conn)
    .await?;
    Ok(())
}

/// A successful bind; returns its number.
pub(super) async fn record_bind(
    conn: &mut PgConnection,
    bind: &SessionBind,
    now: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO session_binds (system_id, bind_type, peer, bound_at, seen_at) \
         VALUES ($1, $2, $3, $4, $4) RETURNING session",
    )
    .bind(&bind.system_id)
    .bind(bind.bind_type)
    .bind(&bind.peer)
    .bind(now)
    .fetch_one(&mut *conn)
    .await
}

pub(super) async fn binds_seen(
    conn: &mut PgConnection,
    sessions: &[i64],
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE session_binds SET seen_at = $2 WHERE session = ANY($1)")
        .bind(sessions)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Binds no kept message can name: not seen (bound, on any node) since well
/// before the oldest message kept was submitted (SESSION_SEEN_EVERY_MS).
pub(super) async fn forget_binds(conn: &mut PgConnection, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM session_binds WHERE seen_at < coalesce((SELECT submitted_at FROM messages \
         ORDER BY message_id LIMIT 1), $1) - $2",
    )
    .bind(now)
    .bind(2 * SESSION_SEEN_EVERY_MS)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
