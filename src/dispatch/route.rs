//! Draining one route's queue: claim its messages, choose for each the member
//! that carries it (when it is sent, from the members that can take it then),
//! bind it to that member in the store before the request leaves, send, and
//! store what came of it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::{BoxError, ServiceExt};
use tracing::{info, warn};

use super::members::{Member, Members};
use super::policy::{Decision, Policy};
use super::upstream::{upstream_report, Call, Reply, SendOutcome, StatusOutcome};
use crate::clock::Clock;
use crate::log_throttle::LogThrottle;
use crate::metrics::Metrics;
use crate::routing::select::Selector;
use crate::routing::Route;
use crate::store::{Dispatch, DispatchOutcome, Placement, Store, StoreError, UpstreamReport};
use crate::text::segments::sms_parts;

/// How long a message no member can take now waits before it is tried again.
const WAIT_FOR_A_MEMBER_MS: i64 = 1_000;
/// How often a route looks for waiting messages past their validity.
const EXPIRY_SWEEP_MS: i64 = 10_000;

/// The member for `message`: the one it is bound to (an earlier attempt there
/// has no definite answer), else the route's choice among those that can take
/// its `parts` now.
fn choose(
    selector: &mut Selector,
    members: &Members,
    message: &Dispatch,
    parts: u32,
    now: i64,
) -> Option<Arc<Member>> {
    if let Some(bound) = &message.upstream {
        let id = message.outbox_id;
        return members
            .get(bound)
            .filter(|m| m.can_take_again(id, parts, now))
            .cloned();
    }
    let can_take = |name: &str| members.get(name).is_some_and(|m| m.can_take(parts, now));
    let name = selector.choose(&message.dest_addr, can_take)?;
    members.get(name).cloned()
}

/// A claimed message placed with a member: the member, its parts, whether it
/// was bound to the member before (an earlier attempt there is unsettled), and
/// whether its parts were reserved by this placement (not held already).
type Placed = (Arc<Member>, u32, bool, bool);

/// The placements of one claim, by outbox id.
type Reserved = HashMap<i64, Placed>;

/// A message on its way to a member.
struct Sending {
    message: Dispatch,
    member: Arc<Member>,
    /// Its SMS parts, reserved against the member's limits until answered.
    parts: u32,
    /// An earlier request to the member has no definite answer: the member
    /// may hold the message whatever it answers now.
    unsettled: bool,
}

/// What one in-flight task came back with.
enum Finished {
    Sent(Sending, Result<Reply, BoxError>),
    /// The state fetched after a 409.
    Fetched(Sending, Result<Reply, BoxError>),
}

/// The requests a dispatcher awaits.
type InFlight = FuturesUnordered<BoxFuture<'static, Finished>>;

/// What settling finished requests has to store.
#[derive(Default)]
struct Settled {
    outcomes: Vec<(i64, DispatchOutcome)>,
    reports: Vec<UpstreamReport>,
}

impl Settled {
    fn is_empty(&self) -> bool {
        self.outcomes.is_empty() && self.reports.is_empty()
    }
}

/// Drains one route's queue.
pub struct RouteDispatcher {
    route: Arc<Route>,
    /// Shared with the placer that runs inside the claim.
    selector: Arc<Mutex<Selector>>,
    members: Arc<Members>,
    store: Store,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    /// Messages claimed and not yet recorded, at most: the members' windows.
    window: usize,
    /// Whether a member of the route has a carrier limit (then each message's
    /// parts decide where it may go).
    limited: bool,
    /// Retry and failure log lines, summed per (upstream, kind).
    logs: Mutex<HashMap<(String, &'static str), LogThrottle>>,
    lease_ms: i64,
}

impl RouteDispatcher {
    pub fn new(
        route: Arc<Route>,
        members: Arc<Members>,
        store: Store,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> RouteDispatcher {
        let own: Vec<&Arc<Member>> = route.members().filter_map(|m| members.get(m)).collect();
        let window = own.iter().map(|m| m.window).sum::<usize>().clamp(2, 1024);
        let limited = own.iter().any(|m| m.has_limits());
        // Long enough for the whole window to pass the slowest member (the
        // weights may send it more than its own window): its rate, and its
        // requests timing out max_in_flight at a time (the timeout bounds a
        // request, not its wait in the throttle's queue). A late answer past
        // the lease changes nothing anyway (see DispatchOutcome::Retry::claim).
        let lease = own
            .iter()
            .map(|m| {
                let rounds = window.div_ceil(m.max_in_flight.max(1)) as u32 + 1;
                let queueing =
                    Duration::try_from_secs_f64(window as f64 / m.rate).unwrap_or(Duration::MAX);
                (m.request_timeout.saturating_mul(rounds))
                    .saturating_add(queueing)
                    .saturating_add(Duration::from_secs(30))
            })
            .max()
            .unwrap_or(Duration::from_secs(60));
        let lease_ms = lease.as_millis().min(i64::MAX as u128) as i64;
        RouteDispatcher {
            selector: Arc::new(Mutex::new(Selector::new(&route))),
            route,
            members,
            store,
            clock,
            metrics,
            window,
            limited,
            lease_ms,
            logs: Mutex::default(),
        }
    }

    /// Runs until `shutdown`. Rows still in flight then keep their lease and
    /// their member, and go back to that member when the lease ends; the
    /// upstream's idempotency makes a resend harmless. Once `retire` (a
    /// reload replaces the dispatcher), it claims nothing more and ends when
    /// what it sent is answered and stored.
    pub async fn run(mut self, shutdown: CancellationToken, retire: CancellationToken) {
        info!(route = %self.route.name, window = self.window, "dispatcher started");
        let ready = self.store.ready_signal();
        let mut in_flight = FuturesUnordered::new();
        // Outcomes are stored while the next messages are claimed and sent: one
        // batch at a time, and those that finish meanwhile wait to be the next
        // batch, so that a busy writer gets fewer, larger batches.
        let mut recording = JoinSet::new();
        let mut waiting = Settled::default();
        let mut next_sweep = self.clock.now_ms();
        loop {
            let notified = ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();

            let now = self.clock.now_ms();
            let retiring = retire.is_cancelled();
            if retiring && in_flight.is_empty() && recording.is_empty() {
                break;
            }
            let reachable = self.members.reachable(now);
            let open = !retiring
                && self
                    .route
                    .members()
                    .any(|m| reachable.iter().any(|r| r == m));
            if open && in_flight.len() <= self.window / 2 {
                if let Err(err) = self.fill(&mut in_flight, &reachable, now).await {
                    warn!(route = %self.route.name, error = %err, "claim failed");
                }
            }
            // Nothing is claimed while no member can take messages, nor a
            // message bound to a member that cannot (paused, over its limit,
            // removed): those whose validity ends are expired here.
            if now >= next_sweep {
                next_sweep = now + EXPIRY_SWEEP_MS;
                match self.store.expire_waiting(&self.route.name).await {
                    Ok(expired) if expired.is_empty() => {}
                    Ok(expired) => {
                        // Parts held for them at their members are free again.
                        for (id, bound) in &expired {
                            let member = bound.as_deref().and_then(|m| self.members.get(m));
                            if let Some(member) = member {
                                member.release(*id);
                            }
                        }
                        warn!(route = %self.route.name, expired = expired.len(),
                            "messages expired waiting for a member of the route");
                    }
                    Err(err) => warn!(route = %self.route.name, error = %err, "expiry failed"),
                }
            }

            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = retire.cancelled(), if !retiring => {}
                Some(first) = in_flight.next(), if !in_flight.is_empty() => {
                    let mut finished = vec![first];
                    while let Some(Some(more)) = in_flight.next().now_or_never() {
                        finished.push(more);
                    }
                    self.settle(finished, &mut in_flight, &mut waiting);
                    self.record_next(&mut recording, &mut waiting);
                }
                Some(_) = recording.join_next(), if !recording.is_empty() => {
                    self.record_next(&mut recording, &mut waiting);
                }
                _ = &mut notified, if open && in_flight.len() < self.window => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        while recording.join_next().await.is_some() {}
        self.record(waiting).await;
        info!(route = %self.route.name, "dispatcher stopped");
    }

    /// Claims up to a window of messages, each bound to its member in the same
    /// transaction, and starts sending them.
    async fn fill(
        &mut self,
        in_flight: &mut InFlight,
        reachable: &[String],
        now: i64,
    ) -> Result<(), StoreError> {
        let room = self.window - in_flight.len();
        // What the placer reserved, by outbox id: given back if the claim fails.
        let reserved: Arc<Mutex<Reserved>> = Arc::default();
        let place = {
            let (selector, members) = (Arc::clone(&self.selector), Arc::clone(&self.members));
            let reserved = Arc::clone(&reserved);
            let limited = self.limited;
            Box::new(move |message: &Dispatch| {
                if Policy::expired(message, now).is_some() {
                    return Placement::AsIs;
                }
                // The placer runs in the writer's transaction: the text is
                // encoded there only when a limit needs its parts.
                let parts = if limited {
                    sms_parts(&message.content)
                } else {
                    0
                };
                let mut selector = selector.lock().unwrap_or_else(|e| e.into_inner());
                match choose(&mut selector, &members, message, parts, now) {
                    Some(member) => {
                        let unsettled = message.upstream.is_some();
                        let newly = member.reserve(message.outbox_id, parts);
                        let name = member.name.clone();
                        let mut reserved = reserved.lock().unwrap_or_else(|e| e.into_inner());
                        reserved.insert(message.outbox_id, (member, parts, unsettled, newly));
                        Placement::Member(name)
                    }
                    None => Placement::Wait {
                        until: now + WAIT_FOR_A_MEMBER_MS,
                        reason: "no member of the route can take it now".into(),
                    },
                }
            })
        };
        let claimed = self
            .store
            .claim(&self.route.name, room, self.lease_ms, reachable, place)
            .await;
        let mut reserved = std::mem::take(&mut *reserved.lock().unwrap_or_else(|e| e.into_inner()));
        let claimed = match claimed {
            Ok(claimed) => claimed,
            Err(err) => {
                // Nothing was bound: the rows are as they were, and so are
                // the parts held for unsettled messages.
                for (id, (member, _, _, newly)) in reserved {
                    if newly {
                        member.release(id);
                    }
                }
                return Err(err);
            }
        };
        let mut expired = Vec::new();
        for message in claimed {
            let Some((member, parts, unsettled, _)) = reserved.remove(&message.outbox_id) else {
                if let Some(outcome) = Policy::expired(&message, now) {
                    // Parts held for it at its member are free again.
                    let bound = message
                        .upstream
                        .as_deref()
                        .and_then(|m| self.members.get(m));
                    if let Some(member) = bound {
                        member.release(message.outbox_id);
                    }
                    expired.push((message.outbox_id, outcome));
                }
                continue;
            };
            let timer = self
                .metrics
                .upstream_request_seconds
                .get_or_create(&Metrics::upstream(&member.name))
                .clone();
            let service = member.service.clone();
            // Counted when the member takes it, limits or not.
            let parts = if self.limited {
                parts
            } else {
                sms_parts(&message.content)
            };
            let sending = Sending {
                message,
                member,
                parts,
                unsettled,
            };
            in_flight.push(
                async move {
                    let started = tokio::time::Instant::now();
                    let reply = service.oneshot(Call::Send(sending.message.clone())).await;
                    timer.observe(started.elapsed().as_secs_f64());
                    Finished::Sent(sending, reply)
                }
                .boxed(),
            );
        }
        if !expired.is_empty() {
            self.store.record_dispatch(expired).await?;
        }
        Ok(())
    }

    /// Settles finished requests, starting state fetches for 409s; adds what
    /// became of them to `settled`, to be stored. Their rows stay leased until
    /// it is, so nothing claims them meanwhile.
    fn settle(&self, finished: Vec<Finished>, in_flight: &mut InFlight, settled: &mut Settled) {
        let now = self.clock.now_ms();
        for done in finished {
            match done {
                Finished::Sent(sending, reply) => {
                    self.settle_sent(sending, reply, now, settled, in_flight)
                }
                Finished::Fetched(sending, reply) => {
                    self.settle_fetched(sending, reply, now, settled)
                }
            }
        }
    }

    /// Starts storing what waits, unless a batch is being stored already.
    fn record_next(&self, recording: &mut JoinSet<()>, waiting: &mut Settled) {
        if recording.is_empty() && !waiting.is_empty() {
            recording.spawn(self.record(std::mem::take(waiting)));
        }
    }

    /// Stores what became of settled requests.
    fn record(&self, settled: Settled) -> BoxFuture<'static, ()> {
        let Settled { outcomes, reports } = settled;
        let (store, route) = (self.store.clone(), Arc::clone(&self.route));
        async move {
            if !outcomes.is_empty() {
                if let Err(err) = store.record_dispatch(outcomes).await {
                    // The rows stay leased and bound, and go to the same member
                    // again after the lease: it recognises our id.
                    warn!(route = %route.name, error = %err, "dispatch outcomes not stored");
                }
            }
            if !reports.is_empty() {
                if let Err(err) = store.record_reports(reports).await {
                    warn!(route = %route.name, error = %err, "upstream states not stored");
                }
            }
        }
        .boxed()
    }

    /// The answer to a send: counted, then recorded, fetched (a 409), a
    /// cool-down or a pause.
    fn settle_sent(
        &self,
        sending: Sending,
        reply: Result<Reply, BoxError>,
        now: i64,
        settled: &mut Settled,
        in_flight: &mut InFlight,
    ) {
        let (outcome, class) = match reply {
            Ok(Reply::Send(outcome)) => {
                let class = outcome.class();
                (outcome, class)
            }
            Ok(other) => (
                SendOutcome::Unknown {
                    reason: format!("unexpected reply {other:?}"),
                },
                "transport_error",
            ),
            Err(err) => (SendOutcome::transport_failure(err), "transport_error"),
        };
        let member = &sending.member;
        let message = &sending.message;
        self.metrics.response(&member.name, class);
        if let SendOutcome::Accepted { .. } = outcome {
            let waited = (now - message.created_at).max(0) as f64 / 1000.0;
            self.metrics
                .dispatch_latency_seconds
                .get_or_create(&Metrics::upstream(&member.name))
                .observe(waited);
        }
        let unsettled = sending.unsettled;
        match (member.policy).decide(outcome, message, unsettled, now, rand::random()) {
            Decision::Record(outcome) => {
                let outcome = self.charged(&sending, outcome, now);
                self.log_outcome(&sending, &outcome);
                settled.outcomes.push((message.outbox_id, outcome));
            }
            Decision::Retry {
                outcome,
                retry_after,
            } => {
                if let DispatchOutcome::Retry { error, stay, .. } = &outcome {
                    // A message that stays may be at the phone: its parts stay held.
                    if !stay {
                        member.release(message.outbox_id);
                    }
                    member.failed(now, retry_after, error.clone(), rand::random());
                }
                self.log_outcome(&sending, &outcome);
                settled.outcomes.push((message.outbox_id, outcome));
            }
            Decision::FetchState => {
                let service = member.service.clone();
                let key = message.upstream_key();
                in_flight.push(
                    async move {
                        let reply = service.oneshot(Call::Status(key)).await;
                        Finished::Fetched(sending, reply)
                    }
                    .boxed(),
                );
            }
            Decision::Pause {
                until,
                reason,
                stay,
            } => {
                if !stay {
                    member.release(message.outbox_id);
                }
                if member.pause(until, reason.clone(), now) {
                    warn!(upstream = %member.name, %reason, pause_until_ms = until,
                        "upstream refuses the broker: paused, its messages go to other members or wait");
                }
                settled.outcomes.push((
                    message.outbox_id,
                    Policy::hand_back(message, reason, now, stay),
                ));
            }
        }
    }

    /// The state fetched after a 409: the earlier attempt was taken after all,
    /// or, when the state cannot be read, the message is retried at the same
    /// member.
    fn settle_fetched(
        &self,
        sending: Sending,
        reply: Result<Reply, BoxError>,
        now: i64,
        settled: &mut Settled,
    ) {
        let message = &sending.message;
        let member = &sending.member;
        match reply {
            Ok(Reply::Status(StatusOutcome::Found { state, error })) => {
                let key = message.upstream_key();
                let states = self.store.upstream_states();
                let report = upstream_report(message.outbox_id, &state, error, now, &states);
                if report.state.is_some() {
                    settled.reports.push(report);
                }
                let accepted = member.policy.accepted(key, state, now);
                let outcome = self.charged(&sending, accepted, now);
                settled.outcomes.push((message.outbox_id, outcome));
            }
            other => {
                // The earlier attempt may have been taken: its parts stay held.
                let unknown = SendOutcome::Unknown {
                    reason: format!("409 but the message cannot be read back: {other:?}"),
                };
                let decided = (member.policy).decide(unknown, message, true, now, rand::random());
                let outcome = match decided {
                    Decision::Record(outcome) | Decision::Retry { outcome, .. } => outcome,
                    Decision::FetchState | Decision::Pause { .. } => return,
                };
                settled.outcomes.push((message.outbox_id, outcome));
            }
        }
    }

    /// An acceptance counts the parts against the member's limits (and the
    /// route's metric); any other outcome gives the reservation back.
    fn charged(&self, sending: &Sending, outcome: DispatchOutcome, now: i64) -> DispatchOutcome {
        match outcome {
            DispatchOutcome::Accepted {
                upstream_id,
                upstream_state,
                check_at,
                charge: _,
            } => {
                let id = sending.message.outbox_id;
                let charge = sending.member.commit(id, sending.parts, now);
                self.metrics.routed(&self.route.name, &sending.member.name);
                DispatchOutcome::Accepted {
                    upstream_id,
                    upstream_state,
                    check_at,
                    charge: Some(charge),
                }
            }
            other => {
                sending.member.release(sending.message.outbox_id);
                other
            }
        }
    }

    /// Retries and failures, summed per upstream: the first at once, then at
    /// most one line every 10 s with the count and the latest example.
    fn log_outcome(&self, sending: &Sending, outcome: &DispatchOutcome) {
        let (message, upstream) = (&sending.message, &sending.member.name);
        let kind = match outcome {
            DispatchOutcome::Accepted { .. } => return,
            DispatchOutcome::Retry { .. } => "retry",
            DispatchOutcome::Failed { .. } => "failed",
        };
        let due = {
            let mut logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
            let key = (upstream.clone(), kind);
            logs.entry(key)
                .or_default()
                .record(tokio::time::Instant::now())
        };
        let Some(count) = due else {
            return;
        };
        match outcome {
            DispatchOutcome::Accepted { .. } => {}
            DispatchOutcome::Retry {
                due_at,
                error,
                stay,
                ..
            } => warn!(
                route = %self.route.name, %upstream, messages = count,
                message_id = message.outbox_id, attempts = message.attempts + 1,
                retry_at_ms = due_at, same_upstream = stay, %error,
                "upstream did not take messages; retrying (counted since the last such line; \
                 at most one every 10 s per upstream)"
            ),
            DispatchOutcome::Failed { state, error, .. } => warn!(
                route = %self.route.name, %upstream, messages = count,
                message_id = message.outbox_id, state = state.as_str(), %error,
                "messages failed (counted since the last such line; at most one every 10 s \
                 per upstream)"
            ),
        }
    }
}
