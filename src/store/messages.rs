//! New messages: numbering, the multi-row INSERTs of a group commit, and joining
//! the parts of a long message into one outbox row once the set is whole.

use std::collections::BTreeMap;

use sqlx::sqlite::SqliteConnection;
use sqlx::{QueryBuilder, Row, Sqlite};
use tracing::warn;

use super::writer::{finisher, AfterCommit, Command, Finisher, WriterState};
use super::{deliveries, ErrorCode, NewMessage, SubmitError};
use crate::text::{self, Charset, Content};

/// Rows per multi-row INSERT, well inside SQLite's bound-parameter limit; a power
/// of two (see `cacheable_chunks`).
pub(super) const ROWS_PER_INSERT: usize = 256;
/// message_ids are milliseconds since 2020-01-01 shifted left 20 bits plus a
/// counter: unique, increasing across restarts, at most 19 decimal digits.
const ID_EPOCH_MS: i64 = 1_577_836_800_000;

/// The smallest message_id handed out at `ms` (Unix ms) or later.
pub(super) fn first_id_at(ms: i64) -> i64 {
    (ms - ID_EPOCH_MS).max(0) << 20
}

/// A message the writer accepted, with its ids.
pub(super) struct Accepted {
    message: NewMessage,
    message_id: i64,
    /// The outbox row of a whole message; None for a part that waits for its set.
    outbox_id: Option<i64>,
}

pub(super) fn decode_content(charset: Charset, body: &[u8]) -> Option<Content> {
    // The charset was resolved at submit time, with the account's choice for
    // data_coding 0, so the same reading applies here.
    text::decode_as(charset, body)
}

pub(super) struct OutboxRow<'a> {
    id: i64,
    message: &'a NewMessage,
    content: Content,
    state: &'static str,
    due_at: i64,
}

pub(super) async fn submit_all(
    conn: &mut SqliteConnection,
    state: &mut WriterState,
    now: i64,
    submits: Vec<Command>,
    after: &mut AfterCommit,
    finishers: &mut Vec<Finisher>,
) -> Result<(), sqlx::Error> {
    let mut accepted: Vec<Accepted> = Vec::new();
    for command in submits {
        let Command::Submit { messages, reply } = command else {
            continue;
        };
        let Some(first) = messages.first() else {
            finishers.push(finisher(reply, Ok(Vec::new())));
            continue;
        };
        let system_id = first.system_id.clone();
        if let Some(&max) = state.limits.max_waiting.get(&system_id) {
            let waiting = state.waiting.get(&system_id).copied().unwrap_or(0) as i64
                + after.pending(&system_id);
            if waiting + messages.len() as i64 > max as i64 {
                finishers.push(finisher(reply, Err(SubmitError::QueueFull(max))));
                continue;
            }
        }
        after.add(&system_id, messages.len() as i64);
        let ids: Vec<i64> = messages
            .iter()
            .map(|_| state.next_message_id(now))
            .collect();
        finishers.push(finisher(
            reply,
            Ok(ids.iter().map(i64::to_string).collect()),
        ));
        for (message, message_id) in messages.into_iter().zip(ids) {
            let outbox_id = message.concat.is_none().then_some(message_id);
            accepted.push(Accepted {
                message,
                message_id,
                outbox_id,
            });
        }
    }
    if accepted.is_empty() {
        return Ok(());
    }

    // Whole messages get their outbox row straight away; parts wait for their set.
    let mut outbox_rows = Vec::new();
    let mut undecodable = Vec::new();
    for a in &accepted {
        let Some(id) = a.outbox_id else { continue };
        let message = &a.message;
        let content = message
            .content
            .clone()
            .or_else(|| decode_content(message.charset, &message.body));
        match content {
            Some(content) => {
                let (state, due_at) = schedule(message.scheduled_at, now);
                outbox_rows.push(OutboxRow {
                    id,
                    message,
                    content,
                    state,
                    due_at,
                });
            }
            // Validated before it reached the store, so this is a bug if it happens.
            None => undecodable.push(a.message_id),
        }
    }
    if !outbox_rows.is_empty() {
        after.mark_ready();
    }
    for chunk in cacheable_chunks(&outbox_rows) {
        insert_outbox(conn, now, chunk).await?;
    }
    for chunk in cacheable_chunks(&accepted) {
        insert_messages(conn, now, chunk).await?;
    }
    for id in undecodable {
        warn!(message_id = %id, "stored message does not decode; rejected");
        sqlx::query("UPDATE messages SET state = 'rejected', final_at = ?1, error_code = ?2 WHERE message_id = ?3")
            .bind(now)
            .bind(i64::from(ErrorCode::Undecodable))
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    let mut sets: Vec<&str> = accepted
        .iter()
        .filter_map(|a| a.message.concat.as_ref().map(|c| c.key.as_str()))
        .collect();
    sets.sort_unstable();
    sets.dedup();
    for key in sets {
        complete_set_if_whole(conn, now, key, after).await?;
    }
    Ok(())
}

/// Splits rows into chunks of ROWS_PER_INSERT, 128, 64, … 1 rows: a multi-row
/// INSERT's text depends on its row count, so a handful of sizes keeps every
/// statement in the connection's prepared-statement cache instead of preparing a
/// new one for each batch.
pub(super) fn cacheable_chunks<T>(mut rows: &[T]) -> Vec<&[T]> {
    let mut chunks = Vec::new();
    let mut size = ROWS_PER_INSERT;
    while !rows.is_empty() {
        while size > rows.len() {
            size /= 2;
        }
        let (chunk, rest) = rows.split_at(size);
        chunks.push(chunk);
        rows = rest;
    }
    chunks
}

/// A message scheduled in the future waits as 'scheduled'; otherwise it is queued now.
pub(super) fn schedule(scheduled_at: Option<i64>, now: i64) -> (&'static str, i64) {
    match scheduled_at {
        Some(at) if at > now => ("scheduled", at),
        _ => ("queued", now),
    }
}

pub(super) async fn insert_outbox(
    conn: &mut SqliteConnection,
    now: i64,
    rows: &[OutboxRow<'_>],
) -> Result<(), sqlx::Error> {
    let mut insert: QueryBuilder<Sqlite> = QueryBuilder::new(
        "INSERT INTO outbox (id, system_id, upstream, state, priority, due_at, expires_at, \
         dest_ton, dest_addr, source_addr, text, data, data_coding, registered_delivery, \
         created_at) ",
    );
    insert.push_values(rows, |mut b, row| {
        let m = row.message;
        let (text, data) = match &row.content {
            Content::Text(t) => (Some(t.clone()), None),
            Content::Binary(d) => (None, Some(d.clone())),
        };
        b.push_bind(row.id)
            .push_bind(&m.system_id)
            .push_bind(&m.upstream)
            .push_bind(row.state)
            .push_bind(i64::from(m.priority))
            .push_bind(row.due_at)
            .push_bind(m.expires_at)
            .push_bind(i64::from(m.dest.ton))
            .push_bind(&m.dest.addr)
            .push_bind(&m.source.addr)
            .push_bind(text)
            .push_bind(data)
            .push_bind(i64::from(m.data_coding))
            .push_bind(i64::from(m.registered_delivery))
            .push_bind(now);
    });
    insert.build().execute(&mut *conn).await?;
    Ok(())
}

pub(super) async fn insert_messages(
    conn: &mut SqliteConnection,
    now: i64,
    rows: &[Accepted],
) -> Result<(), sqlx::Error> {
    let mut insert: QueryBuilder<Sqlite> = QueryBuilder::new(
        "INSERT INTO messages (message_id, system_id, upstream, state, service_type, \
         source_ton, source_npi, source_addr, dest_ton, dest_npi, dest_addr, esm_class, \
         protocol_id, priority, registered_delivery, data_coding, charset, \
         user_message_reference, body, concat_key, concat_total, concat_seq, outbox_id, \
         submitted_at, scheduled_at, expires_at) ",
    );
    insert.push_values(rows, |mut b, a| {
        let (m, id) = (&a.message, a.message_id);
        let state = match &m.concat {
            Some(_) => "assembling",
            None => schedule(m.scheduled_at, now).0,
        };
        b.push_bind(id)
            .push_bind(&m.system_id)
            .push_bind(&m.upstream)
            .push_bind(state)
            .push_bind(&m.service_type)
            .push_bind(i64::from(m.source.ton))
            .push_bind(i64::from(m.source.npi))
            .push_bind(&m.source.addr)
            .push_bind(i64::from(m.dest.ton))
            .push_bind(i64::from(m.dest.npi))
            .push_bind(&m.dest.addr)
            .push_bind(i64::from(m.esm_class))
            .push_bind(i64::from(m.protocol_id))
            .push_bind(i64::from(m.priority))
            .push_bind(i64::from(m.registered_delivery))
            .push_bind(i64::from(m.data_coding))
            .push_bind(m.charset.as_str())
            .push_bind(m.user_message_reference.map(i64::from))
            .push_bind(&m.body)
            .push_bind(m.concat.as_ref().map(|c| c.key.clone()))
            .push_bind(m.concat.as_ref().map(|c| i64::from(c.total)))
            .push_bind(m.concat.as_ref().map(|c| i64::from(c.seq)));
        b.push_bind(a.outbox_id)
            .push_bind(now)
            .push_bind(m.scheduled_at)
            .push_bind(m.expires_at);
    });
    insert.build().execute(&mut *conn).await?;
    Ok(())
}

/// When every part of a long message is in, joins them (in part order, first copy of
/// a duplicated part) into one outbox row and moves the parts on.
pub(super) async fn complete_set_if_whole(
    conn: &mut SqliteConnection,
    now: i64,
    key: &str,
    after: &mut AfterCommit,
) -> Result<(), sqlx::Error> {
    let parts = sqlx::query(
        "SELECT message_id, concat_seq, concat_total, body, charset, data_coding, system_id, \
         upstream, priority, scheduled_at, expires_at, dest_ton, dest_addr, source_addr, \
         registered_delivery FROM messages \
         WHERE concat_key = ?1 AND state = 'assembling' ORDER BY concat_seq, message_id",
    )
    .bind(key)
    .fetch_all(&mut *conn)
    .await?;
    let Some(first) = parts.first() else {
        return Ok(());
    };
    let total = first.get::<i64, _>(2) as usize;
    let mut by_seq: BTreeMap<i64, &[u8]> = BTreeMap::new();
    for part in &parts {
        by_seq
            .entry(part.get(1))
            .or_insert_with(|| part.get::<&[u8], _>(3));
    }
    if by_seq.len() < total {
        return Ok(());
    }
    let joined: Vec<u8> = by_seq
        .values()
        .flat_map(|body| body.iter().copied())
        .collect();
    let charset = Charset::parse(first.get::<&str, _>(4)).unwrap_or(Charset::Binary);
    let data_coding = first.get::<i64, _>(5) as u8;
    let system_id: String = first.get(6);
    let Some(content) = decode_content(charset, &joined) else {
        let failed = sqlx::query(
            "UPDATE messages SET state = 'rejected', final_at = ?1, error_code = ?2 \
             WHERE concat_key = ?3 AND state = 'assembling'",
        )
        .bind(now)
        .bind(i64::from(ErrorCode::Undecodable))
        .bind(key)
        .execute(&mut *conn)
        .await?;
        after.add(&system_id, -(failed.rows_affected() as i64));
        warn!(
            concat_key = key,
            "long message does not decode once joined; rejected"
        );
        return Ok(());
    };
    let (text, data) = match content {
        Content::Text(t) => (Some(t), None),
        Content::Binary(d) => (None, Some(d)),
    };
    // The first part's message_id names the set's outbox row, and upstream.
    let outbox_id: i64 = first.get(0);
    let scheduled_at: Option<i64> = first.get(9);
    let (state, due_at) = schedule(scheduled_at, now);
    let expires_at = parts
        .iter()
        .map(|p| p.get::<i64, _>(10))
        .min()
        .unwrap_or(now);
    // Any part may be the one that asks for a report; each part's own receipts
    // follow its own value (see receipts.rs).
    let registered_delivery =
        deliveries::covering_request(parts.iter().map(|p| p.get::<i64, _>(14) as u8));
    sqlx::query(
        "INSERT INTO outbox (id, system_id, upstream, state, priority, due_at, expires_at, \
         dest_ton, dest_addr, source_addr, text, data, data_coding, registered_delivery, \
         created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )
    .bind(outbox_id)
    .bind(&system_id)
    .bind(first.get::<String, _>(7))
    .bind(state)
    .bind(first.get::<i64, _>(8))
    .bind(due_at)
    .bind(expires_at)
    .bind(first.get::<i64, _>(11))
    .bind(first.get::<String, _>(12))
    .bind(first.get::<String, _>(13))
    .bind(text)
    .bind(data)
    .bind(i64::from(data_coding))
    .bind(i64::from(registered_delivery))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    after.mark_ready();
    sqlx::query(
        "UPDATE messages SET state = ?1, outbox_id = ?2 WHERE concat_key = ?3 AND state = 'assembling'",
    )
    .bind(state)
    .bind(outbox_id)
    .bind(key)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::cacheable_chunks;

    #[test]
    fn chunks_use_few_distinct_sizes() {
        let rows: Vec<u32> = (0..700).collect();
        let sizes: Vec<usize> = cacheable_chunks(&rows).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [256, 256, 128, 32, 16, 8, 4]);
        assert_eq!(sizes.iter().sum::<usize>(), 700);
        assert!(cacheable_chunks::<u32>(&[]).is_empty());
    }
}
