//! Upstream reports (webhooks, polls, the sandbox) on PostgreSQL, as sets:
//! every report of a batch in a few statements over column arrays. The result
//! is what applying them one after another would give (rules::effective).

use std::collections::HashMap;

use sqlx::postgres::PgConnection;

use super::deliveries::add_receipts;
use super::writer::AfterCommit;
use super::CARRIED;
use crate::store::rules::effective;
use crate::store::{MessageState, UpstreamReport};

/// Applies `reports`; returns, for each, whether it changed something.
pub(super) async fn record_reports(
    conn: &mut PgConnection,
    now: i64,
    keep: i64,
    reports: &[UpstreamReport],
    after: &mut AfterCommit,
) -> Result<Vec<bool>, sqlx::Error> {
    let mut changed = vec![false; reports.len()];
    let (intermediate, last) = effective(reports);

    // Still on their way (sent, not yet delivered): only the upstream's state
    // moves on; the phone having sent it is the intermediate receipt.
    let ids: Vec<i64> = intermediate.iter().map(|&i| reports[i].outbox_id).collect();
    let states: Vec<&str> = intermediate
        .iter()
        .map(|&i| reports[i].upstream_state.as_str())
        .collect();
    let moved: Vec<i64> = if ids.is_empty() {
        Vec::new()
    } else {
        sqlx::query_scalar(
            "WITH moved AS (UPDATE outbox o SET upstream_state = j.us \
               FROM unnest($1::bigint[], $2::text[]) AS j(id, us) \
               WHERE o.id = j.id AND o.id = ANY($1) AND o.state <> 'done' \
               AND o.upstream_state IS DISTINCT FROM j.us \
               RETURNING o.id, o.upstream_state), \
             events AS (INSERT INTO message_events (message_id, at, event, detail) \
               SELECT id, $3, 'upstream', upstream_state FROM moved) \
             SELECT id FROM moved",
        )
        .bind(&ids)
        .bind(&states)
        .bind(now)
        .fetch_all(&mut *conn)
        .await?
    };
    let by_id: HashMap<i64, usize> = intermediate
        .iter()
        .map(|&i| (reports[i].outbox_id, i))
        .collect();
    let mut sent = Vec::new();
    for id in &moved {
        if let Some(&i) = by_id.get(id) {
            changed[i] = true;
            if reports[i].upstream_state == "Sent" {
                sent.push(*id);
            }
        }
    }
    let enroute = vec![MessageState::Enroute.as_str(); sent.len()];
    add_receipts(conn, &sent, &enroute, true, now, keep, after).await?;

    // Final: the row is done, its messages final, their receipts stored.
    let ids: Vec<i64> = last.iter().map(|&i| reports[i].outbox_id).collect();
    if ids.is_empty() {
        return Ok(changed);
    }
    let states: Vec<&str> = last
        .iter()
        .map(|&i| reports[i].upstream_state.as_str())
        .collect();
    let errors: Vec<Option<&str>> = last.iter().map(|&i| reports[i].error.as_deref()).collect();
    let finished: Vec<i64> = sqlx::query_scalar(
        "UPDATE outbox o SET state = 'done', lease_until = NULL, upstream_state = j.us, \
         last_error = coalesce(j.err, o.last_error) \
         FROM unnest($1::bigint[], $2::text[], $3::text[]) AS j(id, us, err) \
         WHERE o.id = j.id AND o.id = ANY($1) AND o.state <> 'done' RETURNING o.id",
    )
    .bind(&ids)
    .bind(&states)
    .bind(&errors)
    .fetch_all(&mut *conn)
    .await?;
    let by_id: HashMap<i64, usize> = last.iter().map(|&i| (reports[i].outbox_id, i)).collect();
    let finished: Vec<usize> = finished
        .iter()
        .filter_map(|id| by_id.get(id).copied())
        .collect();
    for &i in &finished {
        changed[i] = true;
        if let Some(state) = reports[i].state {
            after.count_final(state);
        }
    }
    let ids: Vec<i64> = finished.iter().map(|&i| reports[i].outbox_id).collect();
    let states: Vec<&str> = finished
        .iter()
        .map(|&i| {
            reports[i]
                .state
                .map(MessageState::as_str)
                .unwrap_or_default()
        })
        .collect();
    let ats: Vec<i64> = finished.iter().map(|&i| reports[i].at).collect();
    let codes: Vec<i64> = finished
        .iter()
        .map(|&i| i64::from(reports[i].error_code))
        .collect();
    finish_messages(conn, &ids, &states, &ats, &codes, after).await?;
    add_receipts(conn, &ids, &states, false, now, keep, after).await?;
    Ok(changed)
}

/// Moves the messages the outbox rows `ids` carry to their final state (the
/// one beside each id, with its time and error code), whether they still
/// waited or were on their way.
pub(super) async fn finish_messages(
    conn: &mut PgConnection,
    ids: &[i64],
    states: &[&str],
    ats: &[i64],
    codes: &[i64],
    after: &mut AfterCommit,
) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    let steps = CARRIED.into_iter().flat_map(|carried| {
        [("'scheduled', 'queued'", true), ("'enroute'", false)]
            .map(|(from, counted)| (carried, from, counted))
    });
    for (carried, from, counted) in steps {
        let moved: Vec<String> = sqlx::query_scalar(&format!(
            "UPDATE messages m SET state = j.state, final_at = j.at, error_code = j.code \
             FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[]) \
               AS j(id, state, at, code) \
             WHERE {carried} AND m.state IN ({from}) RETURNING m.system_id"
        ))
        .bind(ids)
        .bind(states)
        .bind(ats)
        .bind(codes)
        .fetch_all(&mut *conn)
        .await?;
        if counted {
            for system_id in &moved {
                after.add(system_id, -1);
            }
        }
    }
    Ok(())
}
