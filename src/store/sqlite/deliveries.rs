//! Receipts and incoming messages waiting for an ESME: written in the same
//! transaction as the state change they report, so none is lost or doubled.

use std::collections::HashMap;

use sqlx::sqlite::SqliteConnection;
use sqlx::Row;

use super::sql::{insert_receipts, CARRIED_BY_OUTBOX_1};
use super::writer::AfterCommit;
use super::{Incoming, MessageState};
use crate::store::rules::content_columns;
use crate::store::{Acknowledged, SessionBind, SESSION_SEEN_EVERY_MS};
use crate::store::{DropReason, WriterLimits};

/// Receipts the ESMEs asked for (registered_delivery) for the messages the
/// outbox row `?1` carries that are now in `state`: 1 = every final state,
/// 2 = failures only, 0x10 = intermediate (ENROUTE once the phone sent it).
pub(super) async fn add_receipts(
    conn: &mut SqliteConnection,
    outbox_id: i64,
    state: MessageState,
    now: i64,
    expires_at: i64,
    after: &mut AfterCommit,
) -> Result<(), sqlx::Error> {
    let condition = format!("{CARRIED_BY_OUTBOX_1} AND messages.state = ?4");
    let enroute = state == MessageState::Enroute;
    let added = sqlx::query(&format!(
        "{} RETURNING system_id",
        insert_receipts("?2", "?3", "messages", &condition, enroute)
    ))
    .bind(outbox_id)
    .bind(now)
    .bind(expires_at)
    .bind(state.as_str())
    .fetch_all(&mut *conn)
    .await?;
    for row in &added {
        after.delivery_added(row.get::<&str, _>(0));
    }
    Ok(())
}

/// Drops the oldest deliveries of each account that got new ones in this
/// transaction beyond its limit (`max_undelivered`); what was dropped, per account.
pub(super) async fn enforce_caps(
    conn: &mut SqliteConnection,
    limits: &WriterLimits,
    added: &HashMap<String, usize>,
) -> Result<Vec<(String, DropReason, u64)>, sqlx::Error> {
    let mut dropped_all = Vec::new();
    for system_id in added.keys() {
        let max = limits.max_undelivered_of(system_id);
        let dropped = sqlx::query(
            "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries WHERE system_id = ?1 \
             ORDER BY id DESC LIMIT -1 OFFSET ?2)",
        )
        .bind(system_id)
        .bind(max as i64)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if dropped > 0 {
            // Logged after the commit, summed per account (AfterCommit::publish).
            dropped_all.push((system_id.clone(), DropReason::OverLimit, dropped));
        }
    }
    Ok(dropped_all)
}

/// Forgets the dedupe keys of incoming messages seen more than 7 days ago.
pub(super) async fn forget_seen(conn: &mut SqliteConnection, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM incoming_seen WHERE seen_at < ?1")
        .bind(now - SEEN_FOR_MS)
        .execute(conn)
        .await?;
    Ok(())
}

/// Drops deliveries kept longer than their retention; returns (account, count).
pub(super) async fn expire(
    conn: &mut SqliteConnection,
    now: i64,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let rows = sqlx::query("DELETE FROM deliveries WHERE expires_at <= ?1 RETURNING system_id")
        .bind(now)
        .fetch_all(&mut *conn)
        .await?;
    let mut counts: Vec<(String, i64)> = Vec::new();
    for row in &rows {
        let system_id: &str = row.get(0);
        match counts.iter_mut().find(|(s, _)| s == system_id) {
            Some((_, n)) => *n += 1,
            None => counts.push((system_id.to_owned(), 1)),
        }
    }
    Ok(counts)
}

pub(super) async fn acknowledge(
    conn: &mut SqliteConnection,
    now: i64,
    acks: &[Acknowledged],
) -> Result<(), sqlx::Error> {
    if acks.is_empty() {
        return Ok(());
    }
    let rows: Vec<(i64, u64, i64)> = acks
        .iter()
        .map(|a| (a.id, a.session_id, a.sent_at))
        .collect();
    let rows = serde_json::to_string(&rows).unwrap_or_else(|_| "[]".into());
    // A receipt's life keeps who took it and when, before its row goes. One
    // statement each for the lot: each is a round trip to SQLite's thread.
    // CROSS JOIN: the acknowledged ids look up their rows, where the planner
    // would rather scan every waiting delivery.
    sqlx::query(&format!(
        "INSERT INTO message_events (message_id, at, event, detail) \
         SELECT d.message_id, ?2, 'receipt_delivered', {} \
         FROM json_each(?1) AS j CROSS JOIN deliveries AS d ON d.id = j.value->>0 \
         WHERE d.kind = 'receipt'",
        ACK_DETAIL
    ))
    .bind(&rows)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let ids: Vec<i64> = acks.iter().map(|a| a.id).collect();
    sqlx::query("DELETE FROM deliveries WHERE id IN (SELECT value FROM json_each(?1))")
        .bind(json_ids(&ids))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The detail of a `receipt_delivered` event, at `?2`: how long before the
/// receipt (`d`) was stored, the session (`j.value->>1`), and when its
/// deliver_sm went out (`->>2`).
const ACK_DETAIL: &str = "'stored ' || (?2 - d.created_at) || ' ms before; deliver_sm to \
     session #' || (j.value->>1) || ', acknowledged ' || (?2 - (j.value->>2)) || ' ms after it was sent'";

pub(super) async fn attempted(
    conn: &mut SqliteConnection,
    now: i64,
    ids: &[i64],
) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO message_events (message_id, at, event, detail) \
         SELECT message_id, ?2, 'receipt_refused', \
         'deliver_sm not acknowledged (refused, or the session ended), attempt ' || (attempts + 1) \
         FROM deliveries WHERE id IN (SELECT value FROM json_each(?1)) AND kind = 'receipt'",
    )
    .bind(json_ids(ids))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE deliveries SET attempts = attempts + 1 \
         WHERE id IN (SELECT value FROM json_each(?1))",
    )
    .bind(json_ids(ids))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Ids as the JSON array a `json_each` reads.
fn json_ids(ids: &[i64]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

/// How long an incoming message's dedupe key outlives its delivery.
const SEEN_FOR_MS: i64 = 7 * 24 * 3_600_000;

/// Returns whether the message is new: not seen in the last 7 days, acknowledged
/// or not.
pub(super) async fn add_incoming(
    conn: &mut SqliteConnection,
    incoming: &Incoming,
    now: i64,
    expires_at: i64,
) -> Result<bool, sqlx::Error> {
    let first_time =
        sqlx::query("INSERT OR IGNORE INTO incoming_seen (dedupe_key, seen_at) VALUES (?1, ?2)")
            .bind(&incoming.dedupe_key)
            .bind(now)
            .execute(&mut *conn)
            .await?;
    if first_time.rows_affected() == 0 {
        return Ok(false);
    }
    let (text, data) = content_columns(&incoming.content);
    let inserted = sqlx::query(
        "INSERT OR IGNORE INTO deliveries (system_id, kind, source_addr, dest_addr, text, data, \
         created_at, expires_at, dedupe_key) VALUES (?1, 'mo', ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
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
    conn: &mut SqliteConnection,
    upstream: &str,
    read_until: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO inbox_cursors (upstream, started_at, read_until) VALUES (?1, ?2, ?2) \
         ON CONFLICT (upstream) DO UPDATE SET read_until = max(read_until, excluded.read_until)",
    )
    .bind(upstream)
    .bind(read_until)
    .execute(conn)
    .await?;
    Ok(())
}

/// A successful bind; returns its number (never reused: AUTOINCREMENT).
pub(super) async fn record_bind(
    conn: &mut SqliteConnection,
    bind: &SessionBind,
    now: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO session_binds (system_id, bind_type, peer, bound_at, seen_at) \
         VALUES (?1, ?2, ?3, ?4, ?4) RETURNING session",
    )
    .bind(&bind.system_id)
    .bind(bind.bind_type)
    .bind(&bind.peer)
    .bind(now)
    .fetch_one(&mut *conn)
    .await
}

pub(super) async fn binds_seen(
    conn: &mut SqliteConnection,
    sessions: &[i64],
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE session_binds SET seen_at = ?2 WHERE session IN (SELECT value FROM json_each(?1))",
    )
    .bind(json_ids(sessions))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Binds no kept message can name: not seen (bound) since well before the
/// oldest message kept was submitted (SESSION_SEEN_EVERY_MS).
pub(super) async fn forget_binds(conn: &mut SqliteConnection, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM session_binds WHERE seen_at < coalesce((SELECT submitted_at FROM messages \
         ORDER BY message_id LIMIT 1), ?1) - ?2",
    )
    .bind(now)
    .bind(2 * SESSION_SEEN_EVERY_MS)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
