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
use std::sync::OnceLock;

use serde_json::json;
use sqlx::sqlite::SqliteConnection;
use sqlx::Row;

use super::sql::{insert_receipts, json_value, Script};

use super::writer::AfterCommit;
use super::{MessageState, UpstreamReport};
use crate::store::rules::effective;

/// The messages the outbox rows of the scratch table `table` carry, as `j`
/// joined to `messages`: its own, and the parts of a long one. The `IN` steers
/// SQLite to look the rows up from the scratch table's ids: without
/// statistics on it, an UPDATE … FROM would scan `messages` instead.
pub(super) fn carried(table: &str) -> [String; 2] {
    [
        format!("messages.message_id = j.id AND messages.message_id IN (SELECT id FROM {table})"),
        format!(
            "messages.outbox_id = j.id AND messages.concat_key IS NOT NULL \
             AND messages.outbox_id IN (SELECT id FROM {table})"
        ),
    ]
}

/// Applies `reports` in one script (one round trip); returns, for each,
/// whether it changed something.
pub(super) async fn record_reports(
    conn: &mut SqliteConnection,
    now: i64,
    keep_until: i64,
    reports: &[UpstreamReport],
    after: &mut AfterCommit,
) -> Result<Vec<bool>, sqlx::Error> {
    let mut changed = vec![false; reports.len()];
    let (intermediate, last) = effective(reports);
    let intermediate_rows: Vec<serde_json::Value> = intermediate
        .iter()
        .map(|&i| json!({"id": reports[i].outbox_id, "us": reports[i].upstream_state}))
        .collect();
    let final_rows: Vec<serde_json::Value> = last
        .iter()
        .map(|&i| {
            let r = &reports[i];
            json!({"id": r.outbox_id, "us": r.upstream_state, "err": r.error,
                "state": r.state.map(MessageState::as_str), "at": r.at,
                "code": i64::from(r.error_code)})
        })
        .collect();

    let ReportsScript {
        script,
        moved,
        finished,
        stopped_waiting,
        receipts_for,
    } = ReportsScript::get();
    let params = json!({"moved": intermediate_rows, "final": final_rows, "now": now,
        "keep": keep_until});
    let results = script.run(conn, &params).await?;

    let by_id: HashMap<i64, usize> = intermediate
        .iter()
        .map(|&i| (reports[i].outbox_id, i))
        .collect();
    for id in json_value::<Vec<i64>>(&results[*moved])? {
        if let Some(&i) = by_id.get(&id) {
            changed[i] = true;
        }
    }
    let by_id: HashMap<i64, usize> = last.iter().map(|&i| (reports[i].outbox_id, i)).collect();
    for id in json_value::<Vec<i64>>(&results[*finished])? {
        if let Some(&i) = by_id.get(&id) {
            changed[i] = true;
            if let Some(state) = reports[i].state {
                after.count_final(state);
            }
        }
    }
    for &statement in stopped_waiting {
        for row in &results[statement] {
            after.add(row.get::<&str, _>(0), -1);
        }
    }
    for system_id in json_value::<Vec<String>>(&results[*receipts_for])? {
        after.delivery_added(&system_id);
    }
    Ok(changed)
}

/// The script that applies a set of reports, built once: `?1` holds `moved`
/// (intermediate reports), `final`, `now` and `keep`.
pub(super) struct ReportsScript {
    pub(super) script: Script,
    /// Its statements returning, as JSON arrays, the ids of the rows an
    /// intermediate report moved, and of those a final one finished.
    moved: usize,
    finished: usize,
    /// Those returning (system_id) messages that stopped waiting: rare, a
    /// report overtaking the upstream's acceptance.
    stopped_waiting: Vec<usize>,
    /// The one returning the accounts that got receipts, as a JSON array.
    receipts_for: usize,
}

impl ReportsScript {
    pub(super) fn get() -> &'static ReportsScript {
        static SCRIPT: OnceLock<ReportsScript> = OnceLock::new();
        SCRIPT.get_or_init(ReportsScript::build)
    }

    fn build() -> ReportsScript {
        let mut script = Script::default();
        // Receipts added by this script are those past the newest before it.
        script.add("DELETE FROM temp.receipt_mark");
        script
            .add("INSERT INTO temp.receipt_mark (id) SELECT coalesce(max(id), 0) FROM deliveries");
        // Still on their way (sent, not yet delivered): only the upstream's state
        // moves on; the phone having sent it is the intermediate receipt.
        script.add("DELETE FROM temp.report_moved");
        script.add(
            "INSERT OR IGNORE INTO temp.report_moved (id, us) SELECT j.id, j.us \
             FROM (SELECT value->>'id' AS id, value->>'us' AS us FROM json_each(?1, '$.moved')) AS j \
             JOIN outbox ON outbox.id = j.id \
             WHERE outbox.state != 'done' AND outbox.upstream_state IS NOT j.us",
        );
        script.add(
            "UPDATE outbox SET upstream_state = m.us FROM temp.report_moved AS m \
             WHERE outbox.id = m.id AND outbox.id IN (SELECT id FROM temp.report_moved)",
        );
        script.add(
            "INSERT INTO message_events (message_id, at, event, detail) \
             SELECT id, ?1->>'now', 'upstream', us FROM temp.report_moved",
        );
        add_receipts(&mut script, "temp.report_moved", true);
        let moved = script.add("SELECT json_group_array(id) FROM temp.report_moved");

        script.add("DELETE FROM temp.report_final");
        script.add(
            "INSERT OR IGNORE INTO temp.report_final (id, us, err, state, at, code) \
             SELECT j.id, j.us, j.err, j.state, j.at, j.code \
             FROM (SELECT value->>'id' AS id, value->>'us' AS us, value->>'err' AS err, \
                   value->>'state' AS state, value->>'at' AS at, value->>'code' AS code \
                   FROM json_each(?1, '$.final')) AS j \
             JOIN outbox ON outbox.id = j.id WHERE outbox.state != 'done'",
        );
        script.add(
            "UPDATE outbox SET state = 'done', lease_until = NULL, upstream_state = f.us, \
             last_error = coalesce(f.err, outbox.last_error) FROM temp.report_final AS f \
             WHERE outbox.id = f.id AND outbox.id IN (SELECT id FROM temp.report_final)",
        );
        let stopped_waiting = finish_messages(&mut script, "temp.report_final");
        add_receipts(&mut script, "temp.report_final", false);
        let finished = script.add("SELECT json_group_array(id) FROM temp.report_final");
        // NOT INDEXED: by id from the mark, where the planner would rather scan
        // the account index for the DISTINCT.
        let receipts_for = script.add(
            "SELECT json_group_array(DISTINCT system_id) FROM deliveries NOT INDEXED \
             WHERE id > (SELECT id FROM temp.receipt_mark)",
        );

        ReportsScript {
            script,
            moved,
            finished,
            stopped_waiting,
            receipts_for,
        }
    }
}

/// Adds to `script` the statements that move the messages the outbox rows of
/// `table` (`id, state, at, code`) carry to their final state; returns the
/// statements whose rows (system_id) are messages that stopped waiting.
fn finish_messages(script: &mut Script, table: &str) -> Vec<usize> {
    let mut counted = Vec::new();
    for carried in carried(table) {
        for (states, counts) in [("'scheduled', 'queued'", true), ("'enroute'", false)] {
            let returning = if counts {
                "RETURNING messages.system_id"
            } else {
                ""
            };
            let statement = script.add(&format!(
                "UPDATE messages SET state = j.state, final_at = j.at, error_code = j.code \
                 FROM {table} AS j \
                 WHERE {carried} AND messages.state IN ({states}) {returning}"
            ));
            if counts {
                counted.push(statement);
            }
        }
    }
    counted
}

/// Adds to `script` the statements that store the receipts the ESMEs asked for
/// (registered_delivery) for the messages the outbox rows of `table` carry:
/// with `enroute`, the intermediate one (0x10) for rows now at 'Sent', else the
/// final one, 1 = every final state, 2 = failures only. `?1` gives `now`, and
/// `keep`: when an unread receipt is dropped.
fn add_receipts(script: &mut Script, table: &str, enroute: bool) {
    let condition = if enroute {
        "j.us = 'Sent' AND messages.state = 'enroute'"
    } else {
        "messages.state = j.state"
    };
    for carried in carried(table) {
        let from = format!("{table} AS j JOIN messages ON {carried}");
        script.add(&insert_receipts(
            "?1->>'now'",
            "?1->>'keep'",
            &from,
            condition,
            enroute,
        ));
    }
}
