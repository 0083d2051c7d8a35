//! Polling one upstream for the final state of messages it took when no
//! report has come (no webhook reached us, or it was lost).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::warn;

use super::members::Member;
use super::upstream::{upstream_report, Call, Reply, StatusOutcome};
use crate::clock::Clock;
use crate::store::{PendingCheck, Store};

/// Asks one upstream for the states of its enroute messages whose poll is due.
pub struct StatePoller {
    member: Arc<Member>,
    store: Store,
    clock: Arc<dyn Clock>,
}

impl StatePoller {
    pub fn new(member: Arc<Member>, store: Store, clock: Arc<dyn Clock>) -> StatePoller {
        StatePoller {
            member,
            store,
            clock,
        }
    }

    /// Polls every `check_interval` (at least once a minute) until `shutdown`,
    /// except while the upstream refuses the broker, or while another node of
    /// the cluster dispatches for it (and polls it).
    pub async fn run(self, shutdown: CancellationToken) {
        let mut next_check = self.clock.now_ms();
        loop {
            let now = self.clock.now_ms();
            // On hold (configured, or from the console) it is asked nothing.
            let asked = !self.member.is_paused(now) && self.member.is_ours();
            if now >= next_check && asked && !self.member.is_held() {
                next_check = now + self.member.check_interval.as_millis().min(60_000) as i64;
                self.check_pending(now).await;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Polls messages the upstream took whose final state has not come.
    pub async fn check_pending(&self, now: i64) {
        let name = &self.member.name;
        let due = match self.store.due_checks(name, now, 50).await {
            Ok(due) => due,
            Err(err) => {
                warn!(upstream = %name, error = %err, "reading due polls failed");
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
                .member
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
        let at = now + self.member.check_interval.as_millis() as i64;
        if let Err(err) = self.store.record_reports(reports).await {
            warn!(upstream = %name, error = %err, "polled states not stored");
        }
        if let Err(err) = self.store.check_later(later, at).await {
            warn!(upstream = %name, error = %err, "next polls not stored");
        }
    }
}
