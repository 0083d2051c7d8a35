//! New messages: numbering, the multi-row INSERTs of a group commit, and joining
//! the parts of a long message into one outbox row once the set is whole.

use sqlx::sqlite::SqliteConnection;
use sqlx::{QueryBuilder, Sqlite};
use tracing::warn;

use super::writer::{AfterCommit, Command, Finisher, WriterState};
use super::{ErrorCode, SubmitError};
use crate::store::intake::{
    accept_all, cacheable_chunks, join_set, outbox_rows, touched_sets, Accepted, AssemblingPart,
    OutboxRow, SetJoin,
};
use crate::store::message_ids::first_id_at;
use crate::store::rules::{content_columns, schedule};

pub(super) async fn submit_all(
    conn: &mut SqliteConnection,
    state: &mut WriterState,
    now: i64,
    submits: Vec<Command>,
    after: &mut AfterCommit,
    finishers: &mut Vec<Finisher>,
) -> Result<(), sqlx::Error> {
    let accepted = accept_all(
        submits,
        |system_id, count| {
            if let Some(&max) = state.limits.max_waiting.get(system_id) {
                let waiting = state.waiting.get(system_id).copied().unwrap_or(0) as i64
                    + after.pending(system_id);
                if waiting + count as i64 > max as i64 {
                    return Err(SubmitError::QueueFull(max));
                }
            }
            after.add(system_id, count as i64);
            Ok(())
        },
        || {
            state.last_id = first_id_at(now).max(state.last_id + 1);
            state.last_id
        },
        finishers,
    );
    if accepted.is_empty() {
        return Ok(());
    }
    let (outbox_rows, undecodable) = outbox_rows(&accepted, now);
    after.count_submitted(outbox_rows.len());
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
    for key in touched_sets(&accepted) {
        complete_set_if_whole(conn, now, key, after).await?;
    }
    Ok(())
}

async fn insert_outbox(
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

async fn insert_messages(
    conn: &mut SqliteConnection,
    now: i64,
    rows: &[Accepted],
) -> Result<(), sqlx::Error> {
    let mut insert: QueryBuilder<Sqlite> = QueryBuilder::new(
        "INSERT INTO messages (message_id, system_id, route, state, service_type, \
         source_ton, source_npi, source_addr, dest_ton, dest_npi, dest_addr, esm_class, \
         protocol_id, priority, registered_delivery, data_coding, charset, \
         user_message_reference, body, concat_key, concat_total, concat_seq, outbox_id, \
         submitted_at, scheduled_at, expires_at, session) ",
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
            .push_bind(m.expires_at)
            .push_bind(m.session);
    });
    insert.build().execute(&mut *conn).await?;
    Ok(())
}

/// When every part of a long message is in, joins them (in part order, first copy of
/// a duplicated part) into one outbox row and moves the parts on.
async fn complete_set_if_whole(
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
    let row = match join_set(&parts, now) {
        SetJoin::Incomplete => return Ok(()),
        SetJoin::Undecodable { system_id } => {
            let failed = sqlx::query(
                "UPDATE messages SET state = 'rejected', final_at = ?1, error_code = ?2 \
                 WHERE concat_key = ?3 AND state = 'assembling'",
            )
            .bind(now)
            .bind(i64::from(ErrorCode::Undecodable))
            .bind(key)
            .execute(&mut *conn)
            .await?;
            after.add(system_id, -(failed.rows_affected() as i64));
            warn!(
                concat_key = key,
                "long message does not decode once joined; rejected"
            );
            return Ok(());
        }
        SetJoin::Whole(row) => row,
    };
    let (state, first_id) = (row.state, row.id);
    insert_outbox(conn, now, &[row]).await?;
    after.count_submitted(1);
    after.mark_ready();
    sqlx::query(
        "UPDATE messages SET state = ?1, outbox_id = ?2 WHERE concat_key = ?3 AND state = 'assembling'",
    )
    .bind(state)
    .bind(first_id)
    .bind(key)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
