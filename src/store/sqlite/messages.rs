//! New messages: numbering, the multi-row INSERTs of a group commit, and joining
//! the parts of a long message into one outbox row once the set is whole.

use std::collections::BTreeMap;

use sqlx::sqlite::SqliteConnection;
use sqlx::{QueryBuilder, Sqlite};
use tracing::warn;

use super::writer::{finisher, AfterCommit, Command, Finisher, WriterState};
use super::{ErrorCode, NewMessage, SubmitError};
use crate::store::rules::{content_columns, covering_request, decode_content, schedule};
use crate::text::{Charset, Content};

/// Rows per multi-row INSERT, well inside SQLite's bound-parameter limit; a power
/// of two (see `cacheable_chunks`).
pub(super) const ROWS_PER_INSERT: usize = 256;

/// A message the writer accepted, with its ids.
pub(super) struct Accepted {
    message: NewMessage,
    message_id: i64,
    /// The outbox row of a whole message; None for a part that waits for its set.
    outbox_id: Option<i64>,
}

/// An outbox row to insert: one whole message, or the joined parts of a set.
pub(super) struct OutboxRow<'a> {
    id: i64,
    system_id: &'a str,
    route: &'a str,
    state: &'static str,
    priority: u8,
    due_at: i64,
    expires_at: i64,
    dest_ton: u8,
    dest_addr: &'a str,
    source_addr: &'a str,
    content: Content,
    data_coding: u8,
    registered_delivery: u8,
}

impl<'a> OutboxRow<'a> {
    /// The row of a whole message, which takes the message's id.
    fn of_message(id: i64, m: &'a NewMessage, content: Content, now: i64) -> OutboxRow<'a> {
        let (state, due_at) = schedule(m.scheduled_at, now);
        OutboxRow {
            id,
            system_id: &m.system_id,
            route: &m.route,
            state,
            priority: m.priority,
            due_at,
            expires_at: m.expires_at,
            dest_ton: m.dest.ton,
            dest_addr: &m.dest.addr,
            source_addr: &m.source.addr,
            content,
            data_coding: m.data_coding,
            registered_delivery: m.registered_delivery,
        }
    }
}

/// A part of a long message that waits for the rest of its set.
#[derive(sqlx::FromRow)]
struct AssemblingPart {
    message_id: i64,
    concat_seq: i64,
    concat_total: i64,
    body: Vec<u8>,
    charset: String,
    data_coding: i64,
    system_id: String,
    route: String,
    priority: i64,
    scheduled_at: Option<i64>,
    expires_at: i64,
    dest_ton: i64,
    dest_addr: String,
    source_addr: String,
    registered_delivery: i64,
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
            Some(content) => outbox_rows.push(OutboxRow::of_message(id, message, content, now)),
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

pub(super) async fn insert_outbox(
    conn: &mut SqliteConnection,
    now: i64,
    rows: &[OutboxRow<'_>],
) -> Result<(), sqlx::Error> {
    let mut insert: QueryBuilder<Sqlite> = QueryBuilder::new(
        "INSERT INTO outbox (id, system_id, route, state, priority, due_at, expires_at, \
         dest_ton, dest_addr, source_addr, text, data, data_coding, registered_delivery, \
         created_at) ",
    );
    insert.push_values(rows, |mut b, row| {
        let (text, data) = content_columns(&row.content);
        b.push_bind(row.id)
            .push_bind(row.system_id)
            .push_bind(row.route)
            .push_bind(row.state)
            .push_bind(i64::from(row.priority))
            .push_bind(row.due_at)
            .push_bind(row.expires_at)
            .push_bind(i64::from(row.dest_ton))
            .push_bind(row.dest_addr)
            .push_bind(row.source_addr)
            .push_bind(text)
            .push_bind(data)
            .push_bind(i64::from(row.data_coding))
            .push_bind(i64::from(row.registered_delivery))
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
        "INSERT INTO messages (message_id, system_id, route, state, service_type, \
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
            .push_bind(&m.route)
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
    let parts: Vec<AssemblingPart> = sqlx::query_as(
        "SELECT message_id, concat_seq, concat_total, body, charset, data_coding, system_id, \
         route, priority, scheduled_at, expires_at, dest_ton, dest_addr, source_addr, \
         registered_delivery FROM messages \
         WHERE concat_key = ?1 AND state = 'assembling' ORDER BY concat_seq, message_id",
    )
    .bind(key)
    .fetch_all(&mut *conn)
    .await?;
    let Some(first) = parts.first() else {
        return Ok(());
    };
    let mut by_seq: BTreeMap<i64, &[u8]> = BTreeMap::new();
    for part in &parts {
        by_seq.entry(part.concat_seq).or_insert(&part.body);
    }
    if by_seq.len() < first.concat_total as usize {
        return Ok(());
    }
    let joined: Vec<u8> = by_seq
        .values()
        .flat_map(|body| body.iter().copied())
        .collect();
    let charset = Charset::parse(&first.charset).unwrap_or(Charset::Binary);
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
        after.add(&first.system_id, -(failed.rows_affected() as i64));
        warn!(
            concat_key = key,
            "long message does not decode once joined; rejected"
        );
        return Ok(());
    };
    let (state, due_at) = schedule(first.scheduled_at, now);
    // The first part's message_id names the set's outbox row, and its route.
    let row = OutboxRow {
        id: first.message_id,
        system_id: &first.system_id,
        route: &first.route,
        state,
        priority: first.priority as u8,
        due_at,
        expires_at: parts.iter().map(|p| p.expires_at).min().unwrap_or(now),
        dest_ton: first.dest_ton as u8,
        dest_addr: &first.dest_addr,
        source_addr: &first.source_addr,
        content,
        data_coding: first.data_coding as u8,
        // Any part may be the one that asks for a report; each part's own receipts
        // follow its own value (deliveries.rs).
        registered_delivery: covering_request(parts.iter().map(|p| p.registered_delivery as u8)),
    };
    insert_outbox(conn, now, &[row]).await?;
    after.mark_ready();
    sqlx::query(
        "UPDATE messages SET state = ?1, outbox_id = ?2 WHERE concat_key = ?3 AND state = 'assembling'",
    )
    .bind(state)
    .bind(first.message_id)
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
