//! What the console shows, gathered once per request: the node, every
//! configured account with its bound sessions, queue and waiting deliveries,
//! and every upstream's state. `/api/status` is this as JSON; `/` renders it.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;

use super::ConsoleState;
use crate::dispatch::Unavailable;
use crate::reload::LastReload;
use crate::smpp::activity::SubmitRates;
use crate::store::traffic::Minute;
use crate::store::StoreError;

#[derive(Debug, Serialize)]
pub struct Status {
    pub node: Node,
    pub accounts: Vec<AccountStatus>,
    pub upstreams: Vec<UpstreamStatus>,
    /// This node's traffic per minute over the last hour, oldest first.
    pub traffic: Vec<Minute>,
    /// The last configuration reload since startup (SIGHUP or the console).
    pub last_reload: Option<LastReload>,
}

#[derive(Debug, Serialize)]
pub struct Node {
    /// When this was read (Unix ms): the times below are against it.
    pub now_ms: i64,
    pub version: &'static str,
    pub uptime_s: u64,
    /// The SQLite file, or PostgreSQL's URL (password masked) and this node.
    pub store: String,
    /// `ok`, or why writes fail.
    pub health: String,
    /// On a shared store: this node's name and the leases it holds.
    pub node_id: Option<String>,
    pub leases: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct AccountStatus {
    pub system_id: String,
    pub sessions: Vec<SessionStatus>,
    /// Messages not yet handed to an upstream (assembling, scheduled, queued).
    pub waiting: i64,
    /// Every message the database keeps for the account, by state.
    pub by_state: BTreeMap<String, i64>,
    /// Receipts and incoming messages waiting for its ESMEs.
    pub deliveries_waiting: i64,
    /// How long the oldest of those has waited, in seconds.
    pub oldest_delivery_s: Option<u64>,
    /// Accepted submits a second over the last 1 and 15 minutes, and the
    /// refusals by status since startup (this node's).
    pub submits: SubmitRates,
}

#[derive(Debug, Serialize)]
pub struct SessionStatus {
    /// What `/api/sessions/{id}/disconnect` names it by.
    pub session_id: u64,
    pub bind_type: &'static str,
    pub peer: String,
    /// Unix ms.
    pub bound_at_ms: i64,
    pub bound_for_s: u64,
}

#[derive(Debug, Serialize)]
pub struct UpstreamStatus {
    pub name: String,
    /// sending, hold, paused, cooling_down, over_limit or elsewhere.
    pub state: &'static str,
    pub reason: Option<String>,
    /// Until when a pause or cool-down lasts (Unix ms).
    pub until_ms: Option<i64>,
    pub rate: f64,
    pub max_in_flight: usize,
    /// Messages sent to it and not yet answered.
    pub in_flight: usize,
    /// Its last refusal or failure: when (Unix ms) and what it said.
    pub last_error_at_ms: Option<i64>,
    pub last_error: Option<String>,
    /// When it last took a message (Unix ms).
    pub last_taken_at_ms: Option<i64>,
    /// Each limit set: `period` (day or month), parts `used`, the `limit`.
    pub limits: Vec<LimitUse>,
}

#[derive(Debug, Serialize)]
pub struct LimitUse {
    pub period: &'static str,
    pub used: u64,
    pub limit: u32,
}

/// States in which a message still waits for an upstream.
const WAITING: [&str; 3] = ["assembling", "scheduled", "queued"];

impl Status {
    pub async fn gather(state: &ConsoleState) -> Result<Status, StoreError> {
        let now_ms = state.clock.now_ms();
        let wall = SystemTime::now();
        let depth = state.store.queue_depth().await?;
        let deliveries = state.store.waiting_deliveries().await?;
        let configured = state.configured.load();
        let accounts = configured
            .accounts
            .iter()
            .map(|system_id| {
                let by_state: BTreeMap<String, i64> = depth
                    .iter()
                    .filter(|(s, _, _)| s == system_id)
                    .map(|(_, message_state, n)| (message_state.clone(), *n))
                    .collect();
                let waiting = WAITING.iter().filter_map(|s| by_state.get(*s)).sum();
                let backlog = deliveries.iter().find(|d| &d.system_id == system_id);
                let sessions = state
                    .registry
                    .sessions(system_id)
                    .into_iter()
                    .map(|s| SessionStatus {
                        session_id: s.session_id,
                        bind_type: s.kind.name(),
                        peer: s.peer.to_string(),
                        bound_at_ms: crate::time::unix_ms(s.bound_at),
                        bound_for_s: wall
                            .duration_since(s.bound_at)
                            .unwrap_or_default()
                            .as_secs(),
                    })
                    .collect();
                AccountStatus {
                    system_id: system_id.clone(),
                    sessions,
                    waiting,
                    by_state,
                    deliveries_waiting: backlog.map_or(0, |b| b.waiting),
                    oldest_delivery_s: backlog.map(|b| (now_ms - b.oldest_at).max(0) as u64 / 1000),
                    submits: state.activity.rates(system_id),
                }
            })
            .collect();
        let upstreams = configured
            .members
            .iter()
            .map(|member| {
                let why = member.unavailable(now_ms);
                let until_ms = match &why {
                    Some(Unavailable::Paused { until, .. })
                    | Some(Unavailable::CoolingDown { until, .. }) => Some(*until),
                    _ => None,
                };
                let recent = member.recent(now_ms);
                let (last_error_at_ms, last_error) = match recent.last_error {
                    Some((at, what)) => (Some(at), Some(what)),
                    None => (None, None),
                };
                UpstreamStatus {
                    in_flight: recent.in_flight,
                    last_error_at_ms,
                    last_error,
                    last_taken_at_ms: recent.last_taken_at,
                    limits: recent
                        .limits
                        .into_iter()
                        .map(|(period, used, limit)| LimitUse {
                            period,
                            used,
                            limit,
                        })
                        .collect(),
                    name: member.name.clone(),
                    state: why.as_ref().map_or("sending", Unavailable::state),
                    reason: why.as_ref().map(Unavailable::reason),
                    until_ms,
                    rate: member.rate,
                    max_in_flight: member.max_in_flight,
                }
            })
            .collect();
        let cluster = state.store.cluster();
        Ok(Status {
            node: Node {
                now_ms,
                version: env!("CARGO_PKG_VERSION"),
                uptime_s: state.started.elapsed().as_secs(),
                store: state.store_description.clone(),
                health: state
                    .store
                    .write_failure()
                    .unwrap_or_else(|| "ok".to_owned()),
                node_id: cluster.as_ref().map(|c| c.node_id().to_owned()),
                leases: cluster.map(|c| c.held()).unwrap_or_default(),
            },
            accounts,
            upstreams,
            traffic: state.store.traffic().last_hour(now_ms),
            last_reload: state.reloader.last(),
        })
    }
}
