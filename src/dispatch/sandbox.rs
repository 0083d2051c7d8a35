//! The sandbox: a simulated network for trying the broker without a phone. It
//! takes every message at once and, after the configured delays, reports it
//! sent and then delivered (or failed, for `failure_ratio` of the messages)
//! with the state names SMSGate's events stand for, so that simulated and real
//! reports are stored alike. Nothing is sent anywhere.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tower::Service;
use tracing::warn;

use super::upstream::{upstream_report, Call, Reply, SendOutcome, StatusOutcome};
use crate::clock::Clock;
use crate::config::UpstreamSettings;
use crate::store::Store;
use crate::tasks::Tasks;

#[derive(Clone)]
pub struct Sandbox {
    /// The simulated reports, stored in batches by one task (`report_in_batches`).
    reports: mpsc::UnboundedSender<SimulatedReport>,
    sent_after: Duration,
    delivered_after: Duration,
    failure_ratio: f64,
    /// The simulations in progress end with the broker.
    tasks: Tasks,
}

impl Sandbox {
    pub fn new(
        settings: &UpstreamSettings,
        store: Store,
        clock: Arc<dyn Clock>,
        tasks: Tasks,
    ) -> Sandbox {
        warn!(
            upstream = %settings.name,
            "upstream is the sandbox: a simulation, no SMS is really sent"
        );
        let (reports, queue) = mpsc::unbounded_channel();
        tasks.spawn_until_stopped(report_in_batches(store.clone(), clock.clone(), queue));
        Sandbox {
            reports,
            sent_after: settings.sent_after(),
            delivered_after: settings.delivered_after(),
            failure_ratio: settings.failure_ratio(),
            tasks,
        }
    }

    /// Whether the simulated network fails this message: fixed per message, so a
    /// poll after a restart agrees with the report it replaces.
    fn fails(&self, outbox_id: i64) -> bool {
        // Fibonacci hashing spreads consecutive ids evenly over [0, 1).
        let spread = (outbox_id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
        (spread as f64 / (1u64 << 53) as f64) < self.failure_ratio
    }

    fn simulate(&self, outbox_id: i64) {
        let this = self.clone();
        self.tasks.spawn_until_stopped(async move {
            tokio::time::sleep(this.sent_after).await;
            let _ = this.reports.send(("Sent", outbox_id, None));
            tokio::time::sleep(this.delivered_after.saturating_sub(this.sent_after)).await;
            let last = if this.fails(outbox_id) {
                (
                    "Failed",
                    outbox_id,
                    Some("sandbox: simulated delivery failure"),
                )
            } else {
                ("Delivered", outbox_id, None)
            };
            let _ = this.reports.send(last);
        });
    }
}

/// A simulated report: the upstream state, the outbox id, the failure reason.
type SimulatedReport = (&'static str, i64, Option<&'static str>);

/// Stores the simulated reports as they come, all that wait at once in one
/// call, as a phone's webhooks arriving together would be. A lost simulated
/// report is what polling is for; it is not retried here.
async fn report_in_batches(
    store: Store,
    clock: Arc<dyn Clock>,
    mut queue: mpsc::UnboundedReceiver<SimulatedReport>,
) {
    let mut waiting = Vec::new();
    while queue.recv_many(&mut waiting, 4096).await > 0 {
        let (now, states) = (clock.now_ms(), store.upstream_states());
        let reports = waiting
            .drain(..)
            .map(|(state, outbox_id, reason)| {
                upstream_report(outbox_id, state, reason.map(str::to_owned), now, &states)
            })
            .collect();
        if let Err(err) = store.record_reports(reports).await {
            warn!(error = %err, "sandbox reports not stored");
        }
    }
}

impl Service<Call> for Sandbox {
    type Response = Reply;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Reply, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call) -> Self::Future {
        let reply = match call {
            Call::Send(message) => {
                self.simulate(message.outbox_id);
                Reply::Send(SendOutcome::Accepted {
                    upstream_id: message.upstream_key(),
                    state: "Pending".into(),
                })
            }
            Call::Status(upstream_id) => {
                let failed = upstream_id.parse().is_ok_and(|id| self.fails(id));
                Reply::Status(StatusOutcome::Found {
                    state: if failed { "Failed" } else { "Delivered" }.into(),
                    error: failed.then(|| "sandbox: simulated delivery failure".into()),
                })
            }
        };
        Box::pin(async move { Ok(reply) })
    }
}
