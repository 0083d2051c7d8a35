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
use tower::Service;
use tracing::warn;

use super::upstream::{upstream_report, Call, Reply, SendOutcome, StatusOutcome};
use crate::clock::Clock;
use crate::config::UpstreamSettings;
use crate::store::Store;
use crate::tasks::Tasks;

#[derive(Clone)]
pub struct Sandbox {
    store: Store,
    clock: Arc<dyn Clock>,
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
        Sandbox {
            store,
            clock,
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
            this.report("Sent", outbox_id, None).await;
            tokio::time::sleep(this.delivered_after.saturating_sub(this.sent_after)).await;
            if this.fails(outbox_id) {
                let reason = "sandbox: simulated delivery failure";
                this.report("Failed", outbox_id, Some(reason)).await;
            } else {
                this.report("Delivered", outbox_id, None).await;
            }
        });
    }

    async fn report(&self, upstream_state: &str, outbox_id: i64, reason: Option<&str>) {
        let report = upstream_report(
            outbox_id,
            upstream_state,
            reason.map(str::to_owned),
            self.clock.now_ms(),
            &self.store.upstream_states(),
        );
        // A lost simulated report is what polling is for; it is not retried here.
        if let Err(err) = self.store.record_reports(vec![report]).await {
            warn!(error = %err, outbox_id, upstream_state, "sandbox report not stored");
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
