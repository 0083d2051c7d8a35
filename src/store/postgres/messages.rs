//! New messages on PostgreSQL: a batch's rows go in as column arrays
//! (`unnest`), one statement per table whatever the batch's size, and a long
//! message's parts are joined into one outbox row once the set is whole.

use std::collections::HashMap;

use sqlx::postgres::PgConnection;
use tracing::warn;

use super::writer::{AfterCommit, WriterState};
use crate::store::commands::{Command, Finisher};
use crate::store::intake::{
    accept_all, join_set, outbox_rows, touched_sets, Accepted, AssemblingPart, OutboxRow, SetJoin,
};
use crate::store::rules::{content_columns, schedule};
use crate::store::{ErrorCode, SubmitError};

/// Stores the batch's submits. Their message_ids were reserved before the
/// transaction began (ids.rs), from `first_id` on.
pub(super) async fn submit_all(
    conn: &mut PgConnection,
    state: &WriterState,
    now: i64,
    first_id: i64,
    submits: Vec<Command>,
    after: &mut AfterCommit,
    finishers: &mut Vec<Finisher>,
) -> Result<(), sqlx::Error> {
    let accounts = limited_accounts(state, &submits);
    let stale = state
        .waiting_counts()
        .stale(&accounts, std::time::Instant::now());
    let counted = count_waiting(conn, &stale).await?;
    let waiting = state
        .waiting_counts()
        .refreshed(counted, &accounts, std::time::Instant::now());
    let mut next_id = first_id;
    let accepted = accept_all(
        submits,
        |system_id, count| {
            if let Some(&max) = state.limits.max_waiting.get(system_id) {
                let now_waiting =
                    waiting.get(system_id).copied().unwrap_or(0) + after.pending(system_id);
                if now_waiting + count as i64 > max as i64 {
                    return Err(SubmitError::QueueFull(max));
                }
            }
            after.add(system_id, count as i64);
            Ok(())
        },
        || {
            next_id += 1;
            next_id - 1
        },
        finishers,
    );
    if accepted.is_empty() {
        return Ok(());
    }
    let (rows, undecodable) = outbox_rows(&accepted, now);
    after.count_submitted(rows.len());
    if !rows.is_empty() {
        after.mark_ready();
    }
    insert_outbox(conn, now, &rows).await?;
    insert_messages(conn, now, &accepted).await?;
    if !undecodable.is_empty() {
        warn!(message_ids = ?undecodable, "stored messages do not decode; rejected");
        sqlx::query(
            "UPDATE messages SET state = 'rejected', final_at = $1, error_code = $2 \
             WHERE message_id = ANY($3)",
        )
        .bind(now)
        .bind(i64::from(ErrorCode::Undecodable))
        .bind(&undecodable)
        .execute(&mut *conn)
        .await?;
    }
    for key in touched_sets(&accepted) {
        complete_set_if_whole(conn, now, key, after).await?;
    }
    Ok(())
}

/// The accounts that submit in this batch and have a `max_waiting`.
fn limited_accounts(state: &WriterState, submits: &[Command]) -> Vec<String> {
    let mut accounts: Vec<String> = submits
        .iter()
        .filter_map(|c| match c {
            Command::Submit { messages, .. } => messages.first().map(|m| m.system_id.clone()),
            _ => None,
        })
        .filter(|system_id| state.limits.max_waiting.contains_key(system_id))
        .collect();
    accounts.sort_unstable();
    accounts.dedup();
    accounts
}

/// Messages waiting now, per account of `accounts`, counted in the database,
/// which every node writes.
async fn count_waiting(
    conn: &mut PgConnection,
    accounts: &[String],
) -> Result<HashMap<String, i64>, sqlx::Error> {
    if accounts.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT system_id, count(*) FROM messages \
         WHERE system_id = ANY($1) AND state IN ('assembling', 'scheduled', 'queued') \
         GROUP BY system_id",
    )
    .bind(accounts)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().collect())
}

async fn insert_outbox(
    conn: &mut PgConnection,
    now: i64,
    rows: &[OutboxRow<'_>],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut c = OutboxColumns::default();
    for row in rows {
        let (text, data) = content_columns(&row.content);
        c.id.push(row.id);
        c.system_id.push(row.system_id);
        c.route.push(row.route);
        c.state.push(row.state);
        c.priority.push(i64::from(row.priority));
        c.due_at.push(row.due_at);
        c.expires_at.push(row.expires_at);
        c.dest_ton.push(i64::from(row.dest_ton));
        c.dest_addr.push(row.dest_addr);
        c.source_addr.push(row.source_addr);
        c.text.push(text);
        c.data.push(data);
        c.data_coding.push(i64::from(row.data_coding));
        c.registered_delivery
            .push(i64::from(row.registered_delivery));
    }
    sqlx::query(
        "INSERT INTO outbox (id, system_id, route, state, priority, due_at, expires_at, \
         dest_ton, dest_addr, source_addr, text, data, data_coding, registered_delivery, \
         created_at) \
         SELECT *, $15 FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], \
         $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], $9::text[], $10::text[], \
         $11::text[], $12::bytea[], $13::bigint[], $14::bigint[])",
    )
    .bind(c.id)
    .bind(c.system_id)
    .bind(c.route)
    .bind(c.state)
    .bind(c.priority)
    .bind(c.due_at)
    .bind(c.expires_at)
    .bind(c.dest_ton)
    .bind(c.dest_addr)
    .bind(c.source_addr)
    .bind(c.text)
    .bind(c.data)
    .bind(c.data_coding)
    .bind(c.registered_delivery)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Outbox rows as the columns `unnest` takes.
#[derive(Default)]
struct OutboxColumns<'a> {
    id: Vec<i64>,
    system_id: Vec<&'a str>,
    route: Vec<&'a str>,
    state: Vec<&'static str>,
    priority: Vec<i64>,
    due_at: Vec<i64>,
    expires_at: Vec<i64>,
    dest_ton: Vec<i64>,
    dest_addr: Vec<&'a str>,
    source_addr: Vec<&'a str>,
    text: Vec<Option<&'a str>>,
    data: Vec<Option<&'a [u8]>>,
    data_coding: Vec<i64>,
    registered_delivery: Vec<i64>,
}

async fn insert_messages(
    conn: &mut PgConnection,
    now: i64,
    rows: &[Accepted],
) -> Result<(), sqlx::Error> {
    let mut c = MessageColumns::default();
    for a in rows {
        let m = &a.message;
        let state = match &m.concat {
            Some(_) => "assembling",
            None => schedule(m.scheduled_at, now).0,
        };
        c.message_id.push(a.message_id);
        c.system_id.push(&m.system_id);
        c.route.push(&m.route);
        c.state.push(state);
        c.service_type.push(&m.service_type);
        c.source_ton.push(i64::from(m.source.ton));
        c.source_npi.push(i64::from(m.source.npi));
        c.source_addr.push(&m.source.addr);
        c.dest_ton.push(i64::from(m.dest.ton));
        c.dest_npi.push(i64::from(m.dest.npi));
        c.dest_addr.push(&m.dest.addr);
        c.esm_class.push(i64::from(m.esm_class));
        c.protocol_id.push(i64::from(m.protocol_id));
        c.priority.push(i64::from(m.priority));
        c.registered_delivery.push(i64::from(m.registered_delivery));
        c.data_coding.push(i64::from(m.data_coding));
        c.charset.push(m.charset.as_str());
        c.user_message_reference
            .push(m.user_message_reference.map(i64::from));
        c.body.push(&m.body);
        c.concat_key.push(m.concat.as_ref().map(|p| p.key.as_str()));
        c.concat_total
            .push(m.concat.as_ref().map(|p| i64::from(p.total)));
        c.concat_seq
            .push(m.concat.as_ref().map(|p| i64::from(p.seq)));
        c.outbox_id.push(a.outbox_id);
        c.scheduled_at.push(m.scheduled_at);
        c.expires_at.push(m.expires_at);
        c.session.push(m.session);
    }
    sqlx::query(
        "INSERT INTO messages (message_id, system_id, route, state, service_type, \
         source_ton, source_npi, source_addr, dest_ton, dest_npi, dest_addr, esm_class, \
         protocol_id, priority, registered_delivery, data_coding, charset, \
         user_message_reference, body, concat_key, concat_total, concat_seq, outbox_id, \
         scheduled_at, expires_at, session, submitted_at) \
         SELECT *, $27 FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], \
         $5::text[], $6::bigint[], $7::bigint[], $8::text[], $9::bigint[], $10::bigint[], \
         $11::text[], $12::bigint[], $13::bigint[], $14::bigint[], $15::bigint[], \
         $16::bigint[], $17::text[], $18::bigint[], $19::bytea[], $20::text[], \
         $21::bigint[], $22::bigint[], $23::bigint[], $24::bigint[], $25::bigint[], \
         $26::bigint[])",
    )
    .bind(c.message_id)
    .bind(c.system_id)
    .bind(c.route)
    .bind(c.state)
    .bind(c.service_type)
    .bind(c.source_ton)
    .bind(c.source_npi)
    .bind(c.source_addr)
    .bind(c.dest_ton)
    .bind(c.dest_npi)
    .bind(c.dest_addr)
    .bind(c.esm_class)
    .bind(c.protocol_id)
    .bind(c.priority)
    .bind(c.registered_delivery)
    .bind(c.data_coding)
    .bind(c.charset)
    .bind(c.user_message_reference)
    .bind(c.body)
    .bind(c.concat_key)
    .bind(c.concat_total)
    .bind(c.concat_seq)
    .bind(c.outbox_id)
    .bind(c.scheduled_at)
    .bind(c.expires_at)
    .bind(c.session)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Messages as the columns `unnest` takes.
#[derive(Default)]
struct MessageColumns<'a> {
    message_id: Vec<i64>,
    system_id: Vec<&'a str>,
    route: Vec<&'a str>,
    state: Vec<&'static str>,
    service_type: Vec<&'a str>,
    source_ton: Vec<i64>,
    source_npi: Vec<i64>,
    source_addr: Vec<&'a str>,
    dest_ton: Vec<i64>,
    dest_npi: Vec<i64>,
    dest_addr: Vec<&'a str>,
    esm_class: Vec<i64>,
    protocol_id: Vec<i64>,
    priority: Vec<i64>,
    registered_delivery: Vec<i64>,
    data_coding: Vec<i64>,
    charset: Vec<&'static str>,
    user_message_reference: Vec<Option<i64>>,
    body: Vec<&'a [u8]>,
    session: Vec<Option<i64>>,
    concat_key: Vec<Option<&'a str>>,
    concat_total: Vec<Option<i64>>,
    concat_seq: Vec<Option<i64>>,
    outbox_id: Vec<Option<i64>>,
    scheduled_at: Vec<Option<i64>>,
    expires_at: Vec<i64>,
}

/// When every part of a long message is in, joins them into one outbox row
/// and moves the parts on. The parts are locked first: two nodes that each
/// got the last part of a set at once (an ESME bound to both) would otherwise
/// each join it.
async fn complete_set_if_whole(
    conn: &mut PgConnection,
    now: i64,
    key: &str,
    after: &mut AfterCommit,
) -> Result<(), sqlx::Error> {
    let parts: Vec<AssemblingPart> = sqlx::query_as(
        "SELECT message_id, concat_seq, concat_total, body, charset, data_coding, system_id, \
         route, priority, scheduled_at, expires_at, dest_ton, dest_addr, source_addr, \
         registered_delivery FROM messages \
         WHERE concat_key = $1 AND state = 'assembling' ORDER BY concat_seq, message_id \
         FOR UPDATE",
    )
    .bind(key)
    .fetch_all(&mut *conn)
    .await?;
    let row = match join_set(&parts, now) {
        SetJoin::Incomplete => return Ok(()),
        SetJoin::Undecodable { system_id } => {
            let failed = sqlx::query(
                "UPDATE messages SET state = 'rejected', final_at = $1, error_code = $2 \
                 WHERE concat_key = $3 AND state = 'assembling'",
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
        "UPDATE messages SET state = $1, outbox_id = $2 \
         WHERE concat_key = $3 AND state = 'assembling'",
    )
    .bind(state)
    .bind(first_id)
    .bind(key)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// How long an account's waiting count, read from the database, stands in
/// for it: counting a large backlog on every batch would cost more than the
/// batch. Meanwhile this node adds its own committed changes; the other
/// nodes' show at the next count.
const WAITING_COUNT_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// Waiting messages per account as this node last counted them, plus its own
/// changes committed since.
#[derive(Debug, Default)]
pub(super) struct WaitingCounts {
    counted: HashMap<String, (i64, std::time::Instant)>,
}

impl WaitingCounts {
    /// The accounts among `accounts` whose count is too old to stand in.
    fn stale(&self, accounts: &[String], now: std::time::Instant) -> Vec<String> {
        accounts
            .iter()
            .filter(|a| {
                self.counted
                    .get(*a)
                    .is_none_or(|(_, at)| now.duration_since(*at) >= WAITING_COUNT_FOR)
            })
            .cloned()
            .collect()
    }

    /// Takes the fresh counts (an account absent from `counted` has none
    /// waiting); returns the counts of `accounts`.
    fn refreshed(
        &mut self,
        counted: HashMap<String, i64>,
        accounts: &[String],
        now: std::time::Instant,
    ) -> HashMap<String, i64> {
        for account in accounts {
            if !self.counted.contains_key(account)
                || now.duration_since(self.counted[account].1) >= WAITING_COUNT_FOR
            {
                let fresh = counted.get(account).copied().unwrap_or(0);
                self.counted.insert(account.clone(), (fresh, now));
            }
        }
        accounts
            .iter()
            .map(|a| (a.clone(), self.counted.get(a).map_or(0, |(n, _)| *n)))
            .collect()
    }

    /// A transaction of this node committed these changes.
    pub(super) fn committed(&mut self, changes: &HashMap<String, i64>) {
        for (account, delta) in changes {
            if let Some((count, _)) = self.counted.get_mut(account) {
                *count = (*count + delta).max(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_count_stands_for_a_second_with_this_nodes_changes_added() {
        let t0 = Instant::now();
        let mut counts = WaitingCounts::default();
        let acme = vec!["acme".to_owned()];
        assert_eq!(counts.stale(&acme, t0), acme);
        let fresh = HashMap::from([("acme".to_owned(), 10)]);
        assert_eq!(counts.refreshed(fresh, &acme, t0)["acme"], 10);
        counts.committed(&HashMap::from([("acme".to_owned(), 5)]));
        let later = t0 + Duration::from_millis(500);
        assert!(counts.stale(&acme, later).is_empty());
        assert_eq!(counts.refreshed(HashMap::new(), &acme, later)["acme"], 15);
        let stale_at = t0 + WAITING_COUNT_FOR;
        assert_eq!(counts.stale(&acme, stale_at), acme);
        // Counted again: none waiting any more.
        assert_eq!(counts.refreshed(HashMap::new(), &acme, stale_at)["acme"], 0);
    }
}
