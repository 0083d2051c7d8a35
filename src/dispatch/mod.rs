//! Dispatchers drain the outbox to the upstreams: one per upstream, each with
//! its own throttle (tower layers), retries, pause and polling.

pub mod pace;
pub mod policy;
pub mod sandbox;
pub mod smsgate;
pub mod upstream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;
use tower::{BoxError, ServiceExt};
use tracing::{info, warn};

use crate::clock::Clock;
use crate::config::{UpstreamKind, UpstreamSettings};
use crate::metrics::Metrics;
use crate::store::{Dispatch, DispatchOutcome, PendingCheck, Store, StoreError, UpstreamReport};
use crate::tasks::Tasks;
use policy::{Decision, Policy, RetryPolicy};
use upstream::upstream_report;
pub use upstream::{throttled, Call, Reply, SendOutcome, StatusOutcome, UpstreamService};

/// Whether each upstream is paused, and why: for health checks and metrics.
#[derive(Debug, Default)]
pub struct UpstreamHealth {
    paused: Mutex<HashMap<String, (i64, String)>>,
}

impl UpstreamHealth {
    /// The end of the pause (Unix ms) and its reason, while paused at `now`.
    pub fn paused(&self, upstream: &str, now: i64) -> Option<(i64, String)> {
        let paused = self.paused.lock().unwrap_or_else(|e| e.into_inner());
        paused
            .get(upstream)
            .filter(|(until, _)| *until > now)
            .cloned()
    }

    fn pause(&self, upstream: &str, until: i64, reason: String) {
        let mut paused = self.paused.lock().unwrap_or_else(|e| e.into_inner());
        paused.insert(upstream.to_owned(), (until, reason));
    }
}

/// Drains one upstream's queue.
pub struct Dispatcher {
    upstream: String,
    store: Store,
    service: UpstreamService,
    policy: Policy,
    clock: Arc<dyn Clock>,
    health: Arc<UpstreamHealth>,
    metrics: Arc<Metrics>,
    /// Messages claimed and not yet recorded, at most.
    window: usize,
    lease_ms: i64,
    check_interval: Duration,
}

/// The requests a dispatcher awaits.
type InFlight = FuturesUnordered<BoxFuture<'static, Finished>>;

/// What settling a batch of finished requests has to store.
#[derive(Default)]
struct Settled {
    outcomes: Vec<(i64, DispatchOutcome)>,
    reports: Vec<UpstreamReport>,
}

/// What one in-flight task came back with.
enum Finished {
    Sent(Dispatch, Result<Reply, BoxError>),
    /// The state fetched after a 409.
    Fetched(Dispatch, Result<Reply, BoxError>),
}

impl Dispatcher {
    pub fn new(
        settings: &UpstreamSettings,
        store: Store,
        service: UpstreamService,
        clock: Arc<dyn Clock>,
        health: Arc<UpstreamHealth>,
        metrics: Arc<Metrics>,
    ) -> Dispatcher {
        // Claimed ahead: at least a second's worth at the configured rate, so that
        // a slow claim (a busy disk) does not leave the upstream idle.
        let window = (settings.max_in_flight() * 2)
            .max(settings.rate().ceil() as usize)
            .clamp(2, 512);
        // Long enough for a whole window to pass the rate limit and time out.
        let queueing = Duration::from_secs_f64(window as f64 / settings.rate());
        let lease = settings.request_timeout * 2 + queueing + Duration::from_secs(30);
        Dispatcher {
            upstream: settings.name.clone(),
            store,
            service,
            policy: Policy {
                retry: RetryPolicy {
                    schedule: settings.retry_schedule(),
                    jitter: 0.2,
                },
                pause_cooldown: settings.pause_cooldown,
                check_after: settings.check_after,
            },
            clock,
            health,
            metrics,
            window,
            lease_ms: lease.as_millis() as i64,
            check_interval: settings.check_interval,
        }
    }

    /// Builds the dispatcher of one configured upstream.
    pub fn for_upstream(
        settings: &UpstreamSettings,
        store: Store,
        clock: Arc<dyn Clock>,
        health: Arc<UpstreamHealth>,
        metrics: Arc<Metrics>,
        tasks: &Tasks,
    ) -> Dispatcher {
        let (rate, in_flight, timeout) = (
            settings.rate(),
            settings.max_in_flight(),
            settings.request_timeout,
        );
        let service = match settings.kind {
            UpstreamKind::Sandbox => throttled(
                sandbox::Sandbox::new(settings, store.clone(), clock.clone(), tasks.clone()),
                rate,
                in_flight,
                timeout,
            ),
            UpstreamKind::Smsgate => throttled(
                smsgate::client::SmsGateClient::from_settings(settings),
                rate,
                in_flight,
                timeout,
            ),
        };
        Dispatcher::new(settings, store, service, clock, health, metrics)
    }

    /// Runs until `shutdown`. Rows still in flight then keep their lease and go
    /// back to the queue when it ends; the upstream's idempotency makes a resend
    /// harmless.
    pub async fn run(self, shutdown: CancellationToken) {
        info!(upstream = %self.upstream, window = self.window, "dispatcher started");
        let ready = self.store.ready_signal();
        let mut in_flight = FuturesUnordered::new();
        let mut next_check = self.clock.now_ms();
        loop {
            let notified = ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();

            let now = self.clock.now_ms();
            let paused = self.health.paused(&self.upstream, now).is_some();
            self.metrics
                .upstream_paused
                .get_or_create(&Metrics::upstream(&self.upstream))
                .set(i64::from(paused));
            if !paused && in_flight.len() <= self.window / 2 {
                match self.fill(&mut in_flight, now).await {
                    Ok(()) => {}
                    Err(err) => warn!(upstream = %self.upstream, error = %err, "claim failed"),
                }
            }
            if !paused && now >= next_check {
                next_check = now + self.check_interval.as_millis().min(60_000) as i64;
                self.check_pending(now).await;
            }

            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(first) = in_flight.next(), if !in_flight.is_empty() => {
                    let mut finished = vec![first];
                    while let Some(Some(more)) = in_flight.next().now_or_never() {
                        finished.push(more);
                    }
                    self.settle(finished, &mut in_flight).await;
                }
                _ = &mut notified, if !paused && in_flight.len() < self.window => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        info!(upstream = %self.upstream, "dispatcher stopped");
    }

    /// Claims up to a window of messages and starts sending them.
    async fn fill(&self, in_flight: &mut InFlight, now: i64) -> Result<(), StoreError> {
        let room = self.window - in_flight.len();
        let claimed = self
            .store
            .claim(&self.upstream, room, self.lease_ms)
            .await?;
        let mut expired = Vec::new();
        for message in claimed {
            if let Some(outcome) = self.policy.expired(&message, now) {
                expired.push((message.outbox_id, outcome));
                continue;
            }
            let service = self.service.clone();
            let timer = self
                .metrics
                .upstream_request_seconds
                .get_or_create(&Metrics::upstream(&self.upstream))
                .clone();
            in_flight.push(
                async move {
                    let started = tokio::time::Instant::now();
                    let reply = service.oneshot(Call::Send(message.clone())).await;
                    timer.observe(started.elapsed().as_secs_f64());
                    Finished::Sent(message, reply)
                }
                .boxed(),
            );
        }
        if !expired.is_empty() {
            self.store.record_dispatch(expired).await?;
        }
        Ok(())
    }

    /// Stores what became of finished requests, starting state fetches for 409s.
    async fn settle(&self, finished: Vec<Finished>, in_flight: &mut InFlight) {
        let now = self.clock.now_ms();
        let mut settled = Settled::default();
        for done in finished {
            match done {
                Finished::Sent(message, reply) => {
                    self.settle_sent(message, reply, now, &mut settled, in_flight)
                }
                Finished::Fetched(message, reply) => {
                    self.settle_fetched(message, reply, now, &mut settled)
                }
            }
        }
        let Settled { outcomes, reports } = settled;
        if !outcomes.is_empty() {
            if let Err(err) = self.store.record_dispatch(outcomes).await {
                // The rows stay leased and are sent again after the lease: the
                // upstream recognises our id.
                warn!(upstream = %self.upstream, error = %err, "dispatch outcomes not stored");
            }
        }
        if !reports.is_empty() {
            if let Err(err) = self.store.record_reports(reports).await {
                warn!(upstream = %self.upstream, error = %err, "upstream states not stored");
            }
        }
    }

    /// The answer to a send: counted, then recorded, fetched (a 409) or a pause.
    fn settle_sent(
        &self,
        message: Dispatch,
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
                SendOutcome::transport_failure(format!("unexpected reply {other:?}").into()),
                "transport_error",
            ),
            Err(err) => (SendOutcome::transport_failure(err), "transport_error"),
        };
        self.metrics.response(&self.upstream, class);
        if let SendOutcome::Accepted { .. } = outcome {
            let waited = (now - message.created_at).max(0) as f64 / 1000.0;
            self.metrics
                .dispatch_latency_seconds
                .get_or_create(&Metrics::upstream(&self.upstream))
                .observe(waited);
        }
        match self.policy.decide(outcome, &message, now, rand::random()) {
            Decision::Record(outcome) => {
                self.log_outcome(&message, &outcome);
                settled.outcomes.push((message.outbox_id, outcome));
            }
            Decision::FetchState => {
                let service = self.service.clone();
                let key = message.upstream_key();
                in_flight.push(
                    async move {
                        let reply = service.oneshot(Call::Status(key)).await;
                        Finished::Fetched(message, reply)
                    }
                    .boxed(),
                );
            }
            Decision::Pause { until, reason } => {
                if self.health.paused(&self.upstream, now).is_none() {
                    warn!(upstream = %self.upstream, %reason, pause_until_ms = until,
                        "upstream refuses the broker: paused, messages wait");
                }
                self.health.pause(&self.upstream, until, reason.clone());
                settled
                    .outcomes
                    .push((message.outbox_id, Policy::hand_back(reason, now)));
            }
        }
    }

    /// The state fetched after a 409: the earlier attempt was taken after all,
    /// or, when the state cannot be read, the message is retried.
    fn settle_fetched(
        &self,
        message: Dispatch,
        reply: Result<Reply, BoxError>,
        now: i64,
        settled: &mut Settled,
    ) {
        match reply {
            Ok(Reply::Status(StatusOutcome::Found { state, error })) => {
                let key = message.upstream_key();
                let states = self.store.upstream_states();
                let report = upstream_report(message.outbox_id, &state, error, now, &states);
                if report.state.is_some() {
                    settled.reports.push(report);
                }
                settled
                    .outcomes
                    .push((message.outbox_id, self.policy.accepted(key, state, now)));
            }
            other => {
                let reason = format!("409 but the message cannot be read back: {other:?}");
                let retry = SendOutcome::Retry {
                    after: None,
                    reason,
                };
                if let Decision::Record(outcome) =
                    self.policy.decide(retry, &message, now, rand::random())
                {
                    settled.outcomes.push((message.outbox_id, outcome));
                }
            }
        }
    }

    fn log_outcome(&self, message: &Dispatch, outcome: &DispatchOutcome) {
        match outcome {
            DispatchOutcome::Accepted { .. } => {}
            DispatchOutcome::Retry { due_at, error, .. } => warn!(
                upstream = %self.upstream, message_id = message.outbox_id,
                attempts = message.attempts + 1, retry_at_ms = due_at, %error,
                "upstream did not take the message; retrying"
            ),
            DispatchOutcome::Failed { state, error, .. } => warn!(
                upstream = %self.upstream, message_id = message.outbox_id,
                state = state.as_str(), %error, "message failed"
            ),
        }
    }

    /// Polls messages the upstream took whose final state has not come.
    async fn check_pending(&self, now: i64) {
        let due = match self.store.due_checks(&self.upstream, now, 50).await {
            Ok(due) => due,
            Err(err) => {
                warn!(upstream = %self.upstream, error = %err, "reading due polls failed");
                return;
            }
        };
        if due.is_empty() {
            return;
        }
        let states = self.store.upstream_states();
        let mut reports = Vec::new();
        let mut later = Vec::new();
        for PendingCheck {
            outbox_id,
            upstream_id,
            expires_at,
        } in due
        {
            let reply = self
                .service
                .clone()
                .oneshot(Call::Status(upstream_id))
                .await;
            match reply {
                Ok(Reply::Status(StatusOutcome::Found { state, error })) => {
                    let report = upstream_report(outbox_id, &state, error, now, &states);
                    if report.state.is_some() {
                        reports.push(report);
                    } else {
                        later.push(outbox_id);
                    }
                }
                // Gone from the upstream, or still unknown long after its validity:
                // nobody will tell us any more.
                Ok(Reply::Status(StatusOutcome::NotFound)) if now > expires_at => {
                    reports.push(upstream_report(outbox_id, "NotFound", None, now, &states))
                }
                _ => later.push(outbox_id),
            }
        }
        let at = now + self.check_interval.as_millis() as i64;
        if let Err(err) = self.store.record_reports(reports).await {
            warn!(upstream = %self.upstream, error = %err, "polled states not stored");
        }
        if let Err(err) = self.store.check_later(later, at).await {
            warn!(upstream = %self.upstream, error = %err, "next polls not stored");
        }
    }
}
