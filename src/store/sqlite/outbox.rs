//! The writer's side of dispatching: claiming queued messages with a lease, and
//! storing what the upstream made of them.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::json;

use sqlx::sqlite::SqliteConnection;
use sqlx::Row;

use super::deliveries::add_receipts;
use super::reports::carried;
use super::sql::{json_value, Script, CARRIED_BY_OUTBOX_1};
use super::writer::AfterCommit;
use super::{
    Dispatch, DispatchOutcome, ErrorCode, ExpiredWaiting, MessageState, Placement, Placer,
    UpstreamLimits,
};
use crate::store::rules::{ClaimedRow, UsageTally};

/// The script that claims a route's next messages, built once: `?1` holds
/// `route`, `limit`, `lease_until` and `reachable` (the members a bound
/// message may go to now). Its last statement returns the claimed rows as one
/// JSON array.
pub(super) fn claim_script() -> &'static Script {
    static SCRIPT: OnceLock<Script> = OnceLock::new();
    SCRIPT.get_or_init(|| {
        let mut script = Script::default();
        script.add("DELETE FROM temp.claimed");
        script.add(
            "INSERT INTO temp.claimed (id) SELECT id FROM outbox \
             WHERE state = 'queued' AND route = ?1->>'route' \
             AND (upstream IS NULL OR upstream IN (SELECT value FROM json_each(?1, '$.reachable'))) \
             ORDER BY priority DESC, id LIMIT ?1->>'limit'",
        );
        script.add(
            "UPDATE outbox SET state = 'sending', lease_until = ?1->>'lease_until' \
             WHERE id IN (SELECT id FROM temp.claimed)",
        );
        script.add(
            "SELECT json_group_array(json_array(id, system_id, route, upstream, dest_ton, \
             dest_addr, source_addr, text, CASE WHEN data IS NULL THEN NULL ELSE hex(data) END, \
             data_coding, registered_delivery, priority, expires_at, attempts, created_at, \
             lease_until)) FROM outbox WHERE id IN (SELECT id FROM temp.claimed)",
        );
        script
    })
}

/// What a route's dispatcher asks for.
pub(super) struct Claim<'a> {
    pub route: &'a str,
    pub limit: usize,
    pub lease_until: i64,
    /// Members a bound message may go to now; a message bound to another waits.
    pub reachable: &'a [String],
    pub place: Placer,
}

/// Claims the route's next messages and places each as `place` decides, in
/// the same transaction: a message is bound to its member before the commit
/// that lets its request leave.
pub(super) async fn claim(
    conn: &mut SqliteConnection,
    mut claim: Claim<'_>,
) -> Result<Vec<Dispatch>, sqlx::Error> {
    let params = json!({"route": claim.route, "limit": claim.limit, "lease_until": claim.lease_until,
        "reachable": claim.reachable});
    let script = claim_script();
    let results = script.run(conn, &params).await?;
    let unreadable = |err: String| sqlx::Error::Protocol(format!("claimed rows: {err}"));
    let rows: &str = results
        .last()
        .and_then(|rows| rows.first())
        .map(|row| row.try_get(0))
        .transpose()?
        .unwrap_or("[]");
    let rows: Vec<ClaimedRow> =
        serde_json::from_str(rows).map_err(|e| unreadable(e.to_string()))?;
    let mut claimed = rows
        .into_iter()
        .map(Dispatch::try_from)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(e.to_string()))?;
    // The array has no order; the upstream sees the claim order.
    claimed.sort_by_key(|d| (std::cmp::Reverse(d.priority), d.outbox_id));
    let mut placed = Vec::with_capacity(claimed.len());
    // Bound to a member, or put back to wait: stored together below.
    let (mut binds, mut waits) = (Vec::new(), Vec::new());
    for mut message in claimed {
        match (claim.place)(&message) {
            Placement::Member(member) => {
                if message.upstream.as_deref() != Some(member.as_str()) {
                    binds.push(json!({"id": message.outbox_id, "member": member}));
                    message.upstream = Some(member);
                }
                placed.push(message);
            }
            Placement::Wait { until, reason } => {
                waits.push(json!({"id": message.outbox_id, "until": until, "reason": reason}));
            }
            Placement::AsIs => placed.push(message),
        }
    }
    if !binds.is_empty() || !waits.is_empty() {
        placement_script()
            .run(conn, &json!({"binds": binds, "waits": waits}))
            .await?;
    }
    Ok(placed)
}

/// Messages of `route` whose validity ended while they waited (for any member,
/// or for the one they are bound to): expired, with their receipts, a batch at
/// a time, as a claim would have found them.
pub(super) async fn expire_waiting(
    conn: &mut SqliteConnection,
    now: i64,
    keep_until: i64,
    route: &str,
    after: &mut AfterCommit,
) -> Result<Vec<ExpiredWaiting>, sqlx::Error> {
    let expired: Vec<ExpiredWaiting> = sqlx::query_as(
        "SELECT id, upstream FROM outbox WHERE state = 'queued' AND route = ?1 \
         AND expires_at <= ?2 ORDER BY id LIMIT 1000",
    )
    .bind(route)
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    let outcomes = expired
        .iter()
        .map(|&(id, _)| {
            let outcome = DispatchOutcome::Failed {
                state: MessageState::Expired,
                error_code: ErrorCode::Expired.code(),
                error: "validity period ended while it waited for an upstream of its route".into(),
            };
            (id, outcome)
        })
        .collect();
    record_dispatch(conn, now, keep_until, outcomes, after).await?;
    Ok(expired)
}

/// Adds the tally's parts to the usage counts, one upsert per member and period.
async fn store_usage(conn: &mut SqliteConnection, usage: UsageTally) -> Result<(), sqlx::Error> {
    for (upstream, period, starts_at, ends_at, parts) in usage.rows() {
        sqlx::query(
            "INSERT INTO upstream_usage_counts (upstream, period, starts_at, ends_at, parts) \
             VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (upstream, period, starts_at) DO UPDATE SET parts = parts + excluded.parts",
        )
        .bind(upstream)
        .bind(period)
        .bind(starts_at)
        .bind(ends_at)
        .bind(parts)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The configured limits, for the `upstream_usage` view.
pub(super) async fn write_upstream_limits(
    conn: &mut SqliteConnection,
    limits: &[UpstreamLimits],
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM upstream_limits")
        .execute(&mut *conn)
        .await?;
    for l in limits {
        sqlx::query(
            "INSERT INTO upstream_limits (upstream, daily_limit, monthly_limit, timezone) \
             VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(&l.upstream)
        .bind(l.daily_limit.map(i64::from))
        .bind(l.monthly_limit.map(i64::from))
        .bind(&l.timezone)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

pub(super) async fn record_dispatch(
    conn: &mut SqliteConnection,
    now: i64,
    keep_until: i64,
    outcomes: Vec<(i64, DispatchOutcome)>,
    after: &mut AfterCommit,
) -> Result<(), sqlx::Error> {
    let (accepted, others): (Vec<_>, Vec<_>) = outcomes
        .into_iter()
        .partition(|(_, o)| matches!(o, DispatchOutcome::Accepted { .. }));
    record_accepted(conn, now, accepted, after).await?;
    for (outbox_id, outcome) in others {
        match outcome {
            // Taken together above.
            DispatchOutcome::Accepted { .. } => {}
            DispatchOutcome::Retry {
                due_at,
                error,
                charged,
                stay,
                claim,
            } => {
                let requeued = due_at <= now;
                // A late answer of an expired claim finds the row claimed again
                // (or queued): it changes nothing.
                let updated = sqlx::query(
                    "UPDATE outbox SET state = ?1, due_at = ?2, lease_until = NULL, \
                     attempts = attempts + ?3, last_error = ?4, \
                     upstream = CASE WHEN ?6 THEN upstream END \
                     WHERE id = ?5 AND state = 'sending' AND (?7 IS NULL OR lease_until = ?7)",
                )
                .bind(if requeued { "queued" } else { "retry" })
                .bind(due_at)
                .bind(i64::from(charged))
                .bind(&error)
                .bind(outbox_id)
                .bind(stay)
                .bind(claim)
                .execute(&mut *conn)
                .await?;
                if updated.rows_affected() > 0 {
                    add_event(conn, outbox_id, now, "retry", &error).await?;
                }
                if requeued {
                    after.mark_ready();
                }
            }
            DispatchOutcome::Failed {
                state,
                error_code,
                error,
            } => {
                let updated = sqlx::query(
                    "UPDATE outbox SET state = 'done', lease_until = NULL, \
                     attempts = attempts + 1, last_error = ?1 WHERE id = ?2 AND state != 'done'",
                )
                .bind(&error)
                .bind(outbox_id)
                .execute(&mut *conn)
                .await?;
                if updated.rows_affected() > 0 {
                    add_event(conn, outbox_id, now, "failed", &error).await?;
                    after.count_final(state);
                    let done = Some((now, error_code));
                    set_message_state(conn, outbox_id, state, done, after).await?;
                    add_receipts(conn, outbox_id, state, now, keep_until, after).await?;
                }
            }
        }
    }
    Ok(())
}

/// Messages the upstreams took, as one set: enroute, their parts counted
/// against the member that took them. An acceptance of a row a report has
/// made final already is not undone; a repeated one changes nothing.
async fn record_accepted(
    conn: &mut SqliteConnection,
    now: i64,
    accepted: Vec<(i64, DispatchOutcome)>,
    after: &mut AfterCommit,
) -> Result<(), sqlx::Error> {
    let mut charges = HashMap::new();
    let mut rows = Vec::with_capacity(accepted.len());
    for (outbox_id, outcome) in accepted {
        let DispatchOutcome::Accepted {
            upstream_id,
            upstream_state,
            check_at,
            charge,
        } = outcome
        else {
            continue;
        };
        // The first answer for a row is the one that counts.
        if charges.contains_key(&outbox_id) {
            continue;
        }
        charges.insert(outbox_id, charge);
        rows.push(
            json!({"id": outbox_id, "uid": upstream_id, "us": upstream_state,
            "due": check_at}),
        );
    }
    if rows.is_empty() {
        return Ok(());
    }
    let AcceptedScript {
        script,
        taken,
        stopped,
    } = AcceptedScript::get();
    let results = script
        .run(conn, &json!({ "rows": rows, "now": now }))
        .await?;
    let mut usage = UsageTally::default();
    let taken: Vec<(i64, Option<String>)> = json_value(&results[*taken])?;
    after.count_sent(taken.len());
    for (outbox_id, member) in taken {
        if let (Some(member), Some(Some(charge))) = (member, charges.get(&outbox_id)) {
            usage.add(member, charge);
        }
    }
    let stopped: HashMap<String, i64> = json_value(&results[*stopped])?;
    for (system_id, count) in stopped {
        after.add(&system_id, -count);
    }
    store_usage(conn, usage).await
}

/// A step of a message's life (`message_events`), at `at`.
pub(super) async fn add_event(
    conn: &mut SqliteConnection,
    message_id: i64,
    at: i64,
    event: &str,
    detail: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO message_events (message_id, at, event, detail) \
         VALUES (?1, ?2, ?3, ?4)",
    )
    .bind(message_id)
    .bind(at)
    .bind(event)
    .bind(detail)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The script that stores a set of acceptances, built once: `?1` holds
/// `rows` (`id, uid, us, due`) and `now`.
pub(super) struct AcceptedScript {
    pub(super) script: Script,
    /// Its statements returning, as JSON, the rows taken (`[id, upstream]`),
    /// and how many messages of each account stopped waiting.
    taken: usize,
    stopped: usize,
}

impl AcceptedScript {
    pub(super) fn get() -> &'static AcceptedScript {
        static SCRIPT: OnceLock<AcceptedScript> = OnceLock::new();
        SCRIPT.get_or_init(AcceptedScript::build)
    }

    fn build() -> AcceptedScript {
        let mut script = Script::default();
        script.add("DELETE FROM temp.accepted");
        script.add(
            "INSERT OR IGNORE INTO temp.accepted (id, uid, us, due) \
             SELECT j.id, j.uid, j.us, j.due \
             FROM (SELECT value->>'id' AS id, value->>'uid' AS uid, value->>'us' AS us, \
                   value->>'due' AS due FROM json_each(?1, '$.rows')) AS j \
             JOIN outbox ON outbox.id = j.id WHERE outbox.state NOT IN ('enroute', 'done')",
        );
        script.add(
            "UPDATE outbox SET state = 'enroute', lease_until = NULL, attempts = attempts + 1, \
             upstream_id = a.uid, upstream_state = a.us, due_at = a.due, last_error = NULL, \
             sent_at = ?1->>'now' FROM temp.accepted AS a \
             WHERE outbox.id = a.id AND outbox.id IN (SELECT id FROM temp.accepted)",
        );
        let taken = script.add(
            "SELECT json_group_array(json_array(a.id, outbox.upstream)) \
             FROM temp.accepted AS a JOIN outbox ON outbox.id = a.id",
        );
        // Their messages stop waiting: counted per account first, since a
        // RETURNING row each would be a hand-off each.
        let [whole, parts] = carried("temp.accepted");
        let stopped = script.add(&format!(
            "SELECT json_group_object(system_id, n) FROM \
             (SELECT system_id, count(*) AS n FROM \
              (SELECT messages.system_id FROM temp.accepted AS j JOIN messages ON {whole} \
               WHERE messages.state IN ('scheduled', 'queued') \
               UNION ALL \
               SELECT messages.system_id FROM temp.accepted AS j JOIN messages ON {parts} \
               WHERE messages.state IN ('scheduled', 'queued')) \
              GROUP BY system_id)"
        ));
        for carried in [whole, parts] {
            script.add(&format!(
                "UPDATE messages SET state = 'enroute', final_at = NULL, error_code = 0 \
                 FROM temp.accepted AS j \
                 WHERE {carried} AND messages.state IN ('scheduled', 'queued')"
            ));
        }
        AcceptedScript {
            script,
            taken,
            stopped,
        }
    }
}

/// The script that binds claimed rows to their members (`?1`: `binds`, of
/// `id, member`) and puts back those no member can take now (`waits`, of
/// `id, until, reason`), built once.
pub(super) fn placement_script() -> &'static Script {
    static SCRIPT: OnceLock<Script> = OnceLock::new();
    SCRIPT.get_or_init(|| {
        let mut script = Script::default();
        script.add(
            "UPDATE outbox SET upstream = j.member \
             FROM (SELECT value->>'id' AS id, value->>'member' AS member \
                   FROM json_each(?1, '$.binds')) AS j WHERE outbox.id = j.id",
        );
        script.add(
            "UPDATE outbox SET state = 'retry', due_at = j.until, lease_until = NULL, \
             last_error = j.reason \
             FROM (SELECT value->>'id' AS id, value->>'until' AS until, \
                   value->>'reason' AS reason FROM json_each(?1, '$.waits')) AS j \
             WHERE outbox.id = j.id",
        );
        script
    })
}

/// Moves the messages an outbox row carries to `state`, final when `done` gives
/// the time and error code. Messages that stop waiting leave the queue counts.
async fn set_message_state(
    conn: &mut SqliteConnection,
    outbox_id: i64,
    state: MessageState,
    done: Option<(i64, u8)>,
    after: &mut AfterCommit,
) -> Result<(), sqlx::Error> {
    let (final_at, error_code) = match done {
        Some((at, code)) => (Some(at), i64::from(code)),
        None => (None, 0),
    };
    let was_waiting = sqlx::query(&format!(
        "UPDATE messages SET state = ?2, final_at = ?3, error_code = ?4 \
         WHERE {CARRIED_BY_OUTBOX_1} AND state IN ('scheduled', 'queued') RETURNING system_id"
    ))
    .bind(outbox_id)
    .bind(state.as_str())
    .bind(final_at)
    .bind(error_code)
    .fetch_all(&mut *conn)
    .await?;
    for row in &was_waiting {
        after.add(row.get::<&str, _>(0), -1);
    }
    if done.is_some() {
        sqlx::query(&format!(
            "UPDATE messages SET state = ?2, final_at = ?3, error_code = ?4 \
             WHERE {CARRIED_BY_OUTBOX_1} AND state = 'enroute'"
        ))
        .bind(outbox_id)
        .bind(state.as_str())
        .bind(final_at)
        .bind(error_code)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

pub(super) async fn check_later(
    conn: &mut SqliteConnection,
    outbox_ids: &[i64],
    at: i64,
) -> Result<(), sqlx::Error> {
    for id in outbox_ids {
        sqlx::query("UPDATE outbox SET due_at = ?1 WHERE id = ?2 AND state = 'enroute'")
            .bind(at)
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
