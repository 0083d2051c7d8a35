//! Upstream reports (webhooks, polls, the sandbox) as sets: every report of a
//! writer cycle, from however many callers, is applied in a few statements,
//! not a few statements each. Each statement is a round trip to SQLite's
//! worker thread; under load those round trips, not the work, were the cost.
//!
//! The result is what applying the reports one after another, in order,
//! would give: per message the intermediate report before its first final
//! one, then that final one; later reports of a message that is final change
//! nothing.

use std::collections::HashMap;

use serde_json::json;
use sqlx::sqlite::SqliteConnection;

use super::writer::AfterCommit;
use super::{MessageState, UpstreamReport};

/// The messages an outbox row carries, `j.id` (a JSON array's objects with the
/// outbox `id`): its own, and the parts of a long one.
pub(super) const CARRIED: [&str; 2] = [
    "messages.message_id = j.id",
    "messages.outbox_id = j.id AND messages.concat_key IS NOT NULL",
];

/// Which of `reports` apply, per outbox id: the last intermediate one before
/// the first final one, and that final one. Returns their indexes.
fn effective(reports: &[UpstreamReport]) -> (Vec<usize>, Vec<usize>) {
    let mut intermediate: HashMap<i64, usize> = HashMap::new();
    let mut last: HashMap<i64, usize> = HashMap::new();
    for (i, report) in reports.iter().enumerate() {
        if last.contains_key(&report.outbox_id) {
            continue;
        }
        match report.state {
            None => {
                intermediate.insert(report.outbox_id, i);
            }
            Some(_) => {
                last.insert(report.outbox_id, i);
            }
        }
    }
    let mut intermediate: Vec<usize> = intermediate.into_values().collect();
    let mut last: Vec<usize> = last.into_values().collect();
    intermediate.sort_unstable();
    last.sort_unstable();
    (intermediate, last)
}

/// Applies `reports`; returns, for each, whether it changed something.
pub(super) async fn record_reports(
    conn: &mut SqliteConnection,
    now: i64,
    keep_until: i64,
    reports: &[UpstreamReport],
    after: &mut AfterCommit,
) -> Result<Vec<bool>, sqlx::Error> {
    let mut changed = vec![false; reports.len()];
    let (intermediate, last) = effective(reports);

    // Still on their way (sent, not yet delivered): only the upstream's state
    // moves on; the phone having sent it is the intermediate receipt.
    if !intermediate.is_empty() {
        let rows: Vec<serde_json::Value> = intermediate
            .iter()
            .map(|&i| json!({"id": reports[i].outbox_id, "us": reports[i].upstream_state}))
            .collect();
        let moved: Vec<(i64, String)> = sqlx::query_as(
            "UPDATE outbox SET upstream_state = j.us \
             FROM (SELECT value->>'id' AS id, value->>'us' AS us FROM json_each(?1)) AS j \
             WHERE outbox.id = j.id AND outbox.state != 'done' AND outbox.upstream_state IS NOT j.us \
             RETURNING outbox.id, outbox.upstream_state",
        )
        .bind(serde_json::Value::Array(rows).to_string())
        .fetch_all(&mut *conn)
        .await?;
        let by_id: HashMap<i64, usize> = intermediate
            .iter()
            .map(|&i| (reports[i].outbox_id, i))
            .collect();
        let mut sent = Vec::new();
        for (id, upstream_state) in moved {
            if let Some(&i) = by_id.get(&id) {
                changed[i] = true;
            }
            if upstream_state == "Sent" {
                sent.push(json!({"id": id, "state": MessageState::Enroute.as_str()}));
            }
        }
        add_receipts(conn, &sent, true, now, keep_until, after).await?;
    }

    if !last.is_empty() {
        let rows: Vec<serde_json::Value> = last
            .iter()
            .map(|&i| {
                let r = &reports[i];
                json!({"id": r.outbox_id, "us": r.upstream_state, "err": r.error,
                    "state": r.state.map(MessageState::as_str), "at": r.at,
                    "code": i64::from(r.error_code)})
            })
            .collect();
        let rows = serde_json::Value::Array(rows).to_string();
        let done: Vec<i64> = sqlx::query_scalar(
            "UPDATE outbox SET state = 'done', lease_until = NULL, upstream_state = j.us, \
             last_error = coalesce(j.err, outbox.last_error) \
             FROM (SELECT value->>'id' AS id, value->>'us' AS us, value->>'err' AS err \
                   FROM json_each(?1)) AS j \
             WHERE outbox.id = j.id AND outbox.state != 'done' RETURNING outbox.id",
        )
        .bind(&rows)
        .fetch_all(&mut *conn)
        .await?;
        let by_id: HashMap<i64, usize> = last.iter().map(|&i| (reports[i].outbox_id, i)).collect();
        let finals: Vec<serde_json::Value> = done
            .iter()
            .filter_map(|id| {
                let i = *by_id.get(id)?;
                changed[i] = true;
                let r = &reports[i];
                Some(json!({"id": id, "state": r.state.map(MessageState::as_str),
                    "at": r.at, "code": i64::from(r.error_code)}))
            })
            .collect();
        finish_messages(conn, &finals, after).await?;
        add_receipts(conn, &finals, false, now, keep_until, after).await?;
    }
    Ok(changed)
}

/// Moves the messages the outbox rows `finals` carry to their final state
/// (`{id, state, at, code}`); those that stop waiting leave the queue counts.
async fn finish_messages(
    conn: &mut SqliteConnection,
    finals: &[serde_json::Value],
    after: &mut AfterCommit,
) -> Result<(), sqlx::Error> {
    if finals.is_empty() {
        return Ok(());
    }
    let rows = serde_json::Value::Array(finals.to_vec()).to_string();
    for carried in CARRIED {
        for (states, counted) in [("'scheduled', 'queued'", true), ("'enroute'", false)] {
            let moved: Vec<String> = sqlx::query_scalar(&format!(
                "UPDATE messages SET state = j.state, final_at = j.at, error_code = j.code \
                 FROM (SELECT value->>'id' AS id, value->>'state' AS state, value->>'at' AS at, \
                       value->>'code' AS code FROM json_each(?1)) AS j \
                 WHERE {carried} AND messages.state IN ({states}) RETURNING messages.system_id"
            ))
            .bind(&rows)
            .fetch_all(&mut *conn)
            .await?;
            if counted {
                for system_id in &moved {
                    after.add(system_id, -1);
                }
            }
        }
    }
    Ok(())
}

/// The receipts the ESMEs asked for (registered_delivery) for the messages of
/// `rows` (`{id, state}`: the outbox row and the state its messages are now
/// in): with `enroute`, the intermediate one (0x10), else 1 = every final
/// state, 2 = failures only.
async fn add_receipts(
    conn: &mut SqliteConnection,
    rows: &[serde_json::Value],
    enroute: bool,
    now: i64,
    expires_at: i64,
    after: &mut AfterCommit,
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let wanted = if enroute {
        "messages.registered_delivery & 16 = 16"
    } else {
        "(messages.registered_delivery & 3 = 1 \
          OR (messages.registered_delivery & 3 = 2 AND messages.state != 'delivered'))"
    };
    let rows = serde_json::Value::Array(rows.to_vec()).to_string();
    for carried in CARRIED {
        let added: Vec<String> = sqlx::query_scalar(&format!(
            "INSERT OR IGNORE INTO deliveries (system_id, kind, message_id, state, error_code, \
             done_at, created_at, expires_at, dedupe_key) \
             SELECT messages.system_id, 'receipt', messages.message_id, messages.state, \
             messages.error_code, messages.final_at, ?2, ?3, \
             'receipt:' || messages.message_id || ':' || messages.state \
             FROM (SELECT value->>'id' AS id, value->>'state' AS state FROM json_each(?1)) AS j \
             JOIN messages ON {carried} \
             WHERE messages.state = j.state AND {wanted} RETURNING system_id"
        ))
        .bind(&rows)
        .bind(now)
        .bind(expires_at)
        .fetch_all(&mut *conn)
        .await?;
        for system_id in &added {
            after.delivery_added(system_id);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(outbox_id: i64, upstream_state: &str, state: Option<MessageState>) -> UpstreamReport {
        UpstreamReport {
            outbox_id,
            upstream_state: upstream_state.into(),
            state,
            error_code: 0,
            error: None,
            at: 0,
        }
    }

    #[test]
    fn per_message_the_last_intermediate_before_the_first_final_and_that_final() {
        let reports = [
            report(1, "Processed", None),
            report(1, "Sent", None),
            report(2, "Delivered", Some(MessageState::Delivered)),
            report(1, "Delivered", Some(MessageState::Delivered)),
            // After its final report: nothing more for 1 or 2.
            report(1, "Sent", None),
            report(2, "Failed", Some(MessageState::Undeliverable)),
            report(3, "Sent", None),
        ];
        assert_eq!(effective(&reports), (vec![1, 6], vec![2, 3]));
    }
}
