//! Dispatching on PostgreSQL: claiming queued messages with a lease (`FOR
//! UPDATE SKIP LOCKED`, so nodes claiming at once take different rows), and
//! storing what the upstream made of them.

use std::collections::HashMap;

use sqlx::postgres::PgConnection;

use super::deliveries::add_receipts;
use super::writer::AfterCommit;
use super::CARRIED;
use crate::store::rules::{ClaimedRow, UsageTally};
use crate::store::{
    Dispatch, DispatchOutcome, ErrorCode, ExpiredWaiting, MessageState, Placement, Placer,
    UpstreamLimits,
};

/// What a route's dispatcher asks for.
pub(super) struct Claim<'a> {
    /// The claiming node, which the rows name until they are settled.
    pub node_id: &'a str,
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
    conn: &mut PgConnection,
    mut claim: Claim<'_>,
) -> Result<Vec<Dispatch>, sqlx::Error> {
    // Each row comes back as the JSON array both backends read (rules::ClaimedRow).
    let rows: Vec<String> = sqlx::query_scalar(
        "WITH next AS (SELECT id FROM outbox \
           WHERE state = 'queued' AND route = $1 AND (upstream IS NULL OR upstream = ANY($2)) \
           ORDER BY priority DESC, id LIMIT $3 FOR UPDATE SKIP LOCKED) \
         UPDATE outbox o SET state = 'sending', lease_until = $4, claimed_by = $5 FROM next WHERE o.id = next.id \
         RETURNING json_build_array(o.id, o.system_id, o.route, o.upstream, o.dest_ton, \
           o.dest_addr, o.source_addr, o.text, encode(o.data, 'hex'), o.data_coding, \
           o.registered_delivery, o.priority, o.expires_at, o.attempts, o.created_at, \
           o.lease_until)::text",
    )
    .bind(claim.route)
    .bind(claim.reachable)
    .bind(claim.limit as i64)
    .bind(claim.lease_until)
    .bind(claim.node_id)
    .fetch_all(&mut *conn)
    .await?;
    let unreadable = |err: String| sqlx::Error::Protocol(format!("claimed rows: {err}"));
    let mut claimed = rows
        .iter()
        .map(|row| {
            let row: ClaimedRow =
                serde_json::from_str(row).map_err(|e| unreadable(e.to_string()))?;
            Dispatch::try_from(row).map_err(|e| unreadable(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    // RETURNING has no order; the upstream sees the claim order.
    claimed.sort_by_key(|d| (std::cmp::Reverse(d.priority), d.outbox_id));
    let mut placed = Vec::with_capacity(claimed.len());
    let (mut bound, mut members) = (Vec::new(), Vec::new());
    let (mut waiting, mut untils, mut reasons) = (Vec::new(), Vec::new(), Vec::new());
    for mut message in claimed {
        match (claim.place)(&message) {
            Placement::Member(member) => {
                if message.upstream.as_deref() != Some(member.as_str()) {
                    bound.push(message.outbox_id);
                    members.push(member.clone());
                    message.upstream = Some(member);
                }
                placed.push(message);
            }
            Placement::Wait { until, reason } => {
                waiting.push(message.outbox_id);
                untils.push(until);
                reasons.push(reason);
            }
            Placement::AsIs => placed.push(message),
        }
    }
    if !bound.is_empty() {
        sqlx::query(
            "UPDATE outbox o SET upstream = j.member \
             FROM unnest($1::bigint[], $2::text[]) AS j(id, member) WHERE o.id = j.id AND o.id = ANY($1)",
        )
        .bind(&bound)
        .bind(&members)
        .execute(&mut *conn)
        .await?;
    }
    if !waiting.is_empty() {
        sqlx::query(
            "UPDATE outbox o SET state = 'retry', due_at = j.until, lease_until = NULL, \
             last_error = j.reason \
             FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS j(id, until, reason) \
             WHERE o.id = j.id AND o.id = ANY($1)",
        )
        .bind(&waiting)
        .bind(&untils)
        .bind(&reasons)
        .execute(&mut *conn)
        .await?;
    }
    Ok(placed)
}

/// Messages of `route` whose validity ended while they waited (for any member,
/// or for the one they are bound to): expired, with their receipts, a batch at
/// a time, as a claim would have found them.
pub(super) async fn expire_waiting(
    conn: &mut PgConnection,
    now: i64,
    keep_until: i64,
    route: &str,
    after: &mut AfterCommit,
) -> Result<Vec<ExpiredWaiting>, sqlx::Error> {
    let expired: Vec<ExpiredWaiting> = sqlx::query_as(
        "SELECT id, upstream FROM outbox WHERE state = 'queued' AND route = $1 \
         AND expires_at <= $2 ORDER BY id LIMIT 1000 FOR UPDATE SKIP LOCKED",
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

/// The configured limits, for the `upstream_usage` view. Every node writes the
/// same configuration.
pub(super) async fn write_upstream_limits(
    conn: &mut PgConnection,
    limits: &[UpstreamLimits],
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM upstream_limits")
        .execute(&mut *conn)
        .await?;
    for l in limits {
        sqlx::query(
            "INSERT INTO upstream_limits (upstream, daily_limit, monthly_limit, timezone) \
             VALUES ($1, $2, $3, $4)",
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

/// Adds the tally's parts to the usage counts, one upsert per member and period.
async fn store_usage(conn: &mut PgConnection, usage: UsageTally) -> Result<(), sqlx::Error> {
    for (upstream, period, starts_at, ends_at, parts) in usage.rows() {
        sqlx::query(
            "INSERT INTO upstream_usage_counts (upstream, period, starts_at, ends_at, parts) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (upstream, period, starts_at) \
             DO UPDATE SET parts = upstream_usage_counts.parts + excluded.parts",
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

pub(super) async fn record_dispatch(
    conn: &mut PgConnection,
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
                    "UPDATE outbox SET state = $1, due_at = $2, lease_until = NULL, \
                     attempts = attempts + $3, last_error = $4, \
                     upstream = CASE WHEN $6 THEN upstream END \
                     WHERE id = $5 AND state = 'sending' \
                     AND ($7::bigint IS NULL OR lease_until = $7)",
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
                     attempts = attempts + 1, last_error = $1 WHERE id = $2 AND state <> 'done'",
                )
                .bind(&error)
                .bind(outbox_id)
                .execute(&mut *conn)
                .await?;
                if updated.rows_affected() > 0 {
                    add_event(conn, outbox_id, now, "failed", &error).await?;
                    after.count_final(state);
                    finish_carried(conn, outbox_id, state, now, error_code, after).await?;
                    let ids = [outbox_id];
                    let states = [state.as_str()];
                    add_receipts(conn, &ids, &states, false, now, keep_until, after).await?;
                }
            }
        }
    }
    Ok(())
}

/// A step of a message's life (`message_events`), at `at`.
pub(super) async fn add_event(
    conn: &mut PgConnection,
    message_id: i64,
    at: i64,
    event: &str,
    detail: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO message_events (message_id, at, event, detail) VALUES ($1, $2, $3, $4)",
    )
    .bind(message_id)
    .bind(at)
    .bind(event)
    .bind(detail)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Messages the upstreams took, as one set: enroute, their parts counted
/// against the member that took them. An acceptance of a row a report has
/// made final already is not undone; a repeated one changes nothing.
async fn record_accepted(
    conn: &mut PgConnection,
    now: i64,
    accepted: Vec<(i64, DispatchOutcome)>,
    after: &mut AfterCommit,
) -> Result<(), sqlx::Error> {
    let mut charges = HashMap::new();
    let (mut ids, mut uids, mut states, mut dues) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
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
        ids.push(outbox_id);
        uids.push(upstream_id);
        states.push(upstream_state);
        dues.push(check_at);
    }
    if ids.is_empty() {
        return Ok(());
    }
    let taken: Vec<(i64, Option<String>)> = sqlx::query_as(
        "UPDATE outbox o SET state = 'enroute', lease_until = NULL, attempts = o.attempts + 1, \
         upstream_id = j.uid, upstream_state = j.us, due_at = j.due, last_error = NULL, \
         sent_at = $5 \
         FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[]) AS j(id, uid, us, due) \
         WHERE o.id = j.id AND o.id = ANY($1) AND o.state NOT IN ('enroute', 'done') \
         RETURNING o.id, o.upstream",
    )
    .bind(&ids)
    .bind(&uids)
    .bind(&states)
    .bind(&dues)
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    let mut usage = UsageTally::default();
    for (outbox_id, member) in &taken {
        if let (Some(member), Some(Some(charge))) = (member, charges.get(outbox_id)) {
            usage.add(member.clone(), charge);
        }
    }
    let taken: Vec<i64> = taken.into_iter().map(|(id, _)| id).collect();
    after.count_sent(taken.len());
    for carried in CARRIED {
        let stopped: Vec<String> = sqlx::query_scalar(&format!(
            "UPDATE messages m SET state = 'enroute', final_at = NULL, error_code = 0 \
             FROM unnest($1::bigint[]) AS j(id) \
             WHERE {carried} AND m.state IN ('scheduled', 'queued') RETURNING m.system_id"
        ))
        .bind(&taken)
        .fetch_all(&mut *conn)
        .await?;
        for system_id in &stopped {
            after.add(system_id, -1);
        }
    }
    store_usage(conn, usage).await
}

/// Moves the messages the outbox row carries to their final `state`, whether
/// they still waited or were on their way.
async fn finish_carried(
    conn: &mut PgConnection,
    outbox_id: i64,
    state: MessageState,
    at: i64,
    error_code: u8,
    after: &mut AfterCommit,
) -> Result<(), sqlx::Error> {
    let ids = [outbox_id];
    let states = [state.as_str()];
    let ats = [at];
    let codes = [i64::from(error_code)];
    super::reports::finish_messages(conn, &ids, &states, &ats, &codes, after).await
}

pub(super) async fn check_later(
    conn: &mut PgConnection,
    outbox_ids: &[i64],
    at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE outbox SET due_at = $1 WHERE id = ANY($2) AND state = 'enroute'")
        .bind(at)
        .bind(outbox_ids)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
