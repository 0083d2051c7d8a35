//! What the dispatcher does with each answer: pure decisions on injected time.

use std::time::Duration;

use super::upstream::SendOutcome;
use crate::store::{Dispatch, DispatchOutcome, ErrorCode, MessageState};

/// Waits between attempts: the configured schedule (its last entry repeats),
/// spread by ±`jitter` so that a failed burst does not come back as one.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub schedule: Vec<Duration>,
    pub jitter: f64,
}

impl RetryPolicy {
    /// The wait after a failed attempt, given the attempts made before it and a
    /// uniform sample in [0, 1).
    pub fn delay(&self, attempts_before: u32, sample: f64) -> Duration {
        let index = (attempts_before as usize).min(self.schedule.len().saturating_sub(1));
        let base = self.schedule.get(index).copied().unwrap_or(Duration::ZERO);
        let factor = 1.0 - self.jitter + 2.0 * self.jitter * sample.clamp(0.0, 1.0);
        base.mul_f64(factor)
    }
}

/// The dispatcher's next step for one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Store this outcome.
    Record(DispatchOutcome),
    /// The upstream has a message with our id: ask for its state.
    FetchState,
    /// The upstream refuses us: pause it until `until`, and hand the message back
    /// uncharged.
    Pause { until: i64, reason: String },
}

/// Settings the decisions depend on.
#[derive(Debug, Clone)]
pub struct Policy {
    pub retry: RetryPolicy,
    pub pause_cooldown: Duration,
    pub check_after: Duration,
}

fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

impl Policy {
    /// A message whose validity has ended is not sent at all.
    pub fn expired(&self, message: &Dispatch, now: i64) -> Option<DispatchOutcome> {
        (now >= message.expires_at).then(|| DispatchOutcome::Failed {
            state: MessageState::Expired,
            error_code: ErrorCode::Expired.code(),
            error: "validity period ended before the upstream took the message".into(),
        })
    }

    /// The step after an answer to the send request, at `now`.
    pub fn decide(
        &self,
        outcome: SendOutcome,
        message: &Dispatch,
        now: i64,
        sample: f64,
    ) -> Decision {
        match outcome {
            SendOutcome::Accepted { upstream_id, state } => {
                Decision::Record(self.accepted(upstream_id, state, now))
            }
            SendOutcome::Duplicate => Decision::FetchState,
            SendOutcome::Rejected { reason } => Decision::Record(DispatchOutcome::Failed {
                state: MessageState::Rejected,
                error_code: ErrorCode::UpstreamRejected.code(),
                error: reason,
            }),
            SendOutcome::Refused { reason, .. } => Decision::Pause {
                until: now + ms(self.pause_cooldown),
                reason,
            },
            SendOutcome::Retry { after, reason } => {
                if let Some(expired) = self.expired(message, now) {
                    return Decision::Record(expired);
                }
                let wait = after.unwrap_or_else(|| self.retry.delay(message.attempts, sample));
                Decision::Record(DispatchOutcome::Retry {
                    due_at: now + ms(wait),
                    error: reason,
                    charged: true,
                })
            }
        }
    }

    pub fn accepted(&self, upstream_id: String, state: String, now: i64) -> DispatchOutcome {
        DispatchOutcome::Accepted {
            upstream_id,
            upstream_state: state,
            check_at: now + ms(self.check_after),
        }
    }

    /// A paused upstream's message goes back to the queue at once, uncharged.
    pub fn hand_back(reason: String, now: i64) -> DispatchOutcome {
        DispatchOutcome::Retry {
            due_at: now,
            error: reason,
            charged: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::Content;

    const NOW: i64 = 1_800_000_000_000;

    fn policy() -> Policy {
        Policy {
            retry: RetryPolicy {
                schedule: vec![Duration::from_secs(5), Duration::from_secs(60)],
                jitter: 0.2,
            },
            pause_cooldown: Duration::from_secs(60),
            check_after: Duration::from_secs(600),
        }
    }

    fn message(attempts: u32) -> Dispatch {
        Dispatch {
            outbox_id: 1,
            system_id: "demo".into(),
            dest_ton: 1,
            dest_addr: "4917612345678".into(),
            source_addr: "x".into(),
            content: Content::Text("hi".into()),
            data_coding: 0,
            registered_delivery: 1,
            priority: 0,
            expires_at: NOW + 3_600_000,
            attempts,
            created_at: NOW - 1_000,
        }
    }

    fn retry(reason: &str) -> SendOutcome {
        SendOutcome::Retry {
            after: None,
            reason: reason.into(),
        }
    }

    #[test]
    fn the_schedule_is_followed_with_jitter_and_its_last_wait_repeats() {
        let p = policy().retry;
        assert_eq!(p.delay(0, 0.5), Duration::from_secs(5));
        assert_eq!(p.delay(0, 0.0), Duration::from_secs(4));
        assert_eq!(p.delay(0, 1.0), Duration::from_secs(6));
        assert_eq!(p.delay(1, 0.5), Duration::from_secs(60));
        assert_eq!(p.delay(9, 0.5), Duration::from_secs(60));
    }

    #[test]
    fn failures_retry_on_the_schedule_and_are_charged() {
        let p = policy();
        assert_eq!(
            p.decide(retry("HTTP 503"), &message(0), NOW, 0.5),
            Decision::Record(DispatchOutcome::Retry {
                due_at: NOW + 5_000,
                error: "HTTP 503".into(),
                charged: true
            })
        );
        assert_eq!(
            p.decide(retry("timeout"), &message(3), NOW, 0.5),
            Decision::Record(DispatchOutcome::Retry {
                due_at: NOW + 60_000,
                error: "timeout".into(),
                charged: true
            })
        );
    }

    #[test]
    fn retry_after_overrides_the_schedule() {
        let outcome = SendOutcome::Retry {
            after: Some(Duration::from_secs(7)),
            reason: "HTTP 429".into(),
        };
        assert_eq!(
            policy().decide(outcome, &message(0), NOW, 0.9),
            Decision::Record(DispatchOutcome::Retry {
                due_at: NOW + 7_000,
                error: "HTTP 429".into(),
                charged: true
            })
        );
    }

    #[test]
    fn a_refusal_pauses_the_upstream_without_charging_the_message() {
        let outcome = SendOutcome::Refused {
            status: 401,
            reason: "HTTP 401: Unauthorized".into(),
        };
        assert_eq!(
            policy().decide(outcome, &message(2), NOW, 0.5),
            Decision::Pause {
                until: NOW + 60_000,
                reason: "HTTP 401: Unauthorized".into()
            }
        );
        assert_eq!(
            Policy::hand_back("paused".into(), NOW),
            DispatchOutcome::Retry {
                due_at: NOW,
                error: "paused".into(),
                charged: false
            }
        );
    }

    #[test]
    fn rejections_are_final_and_duplicates_fetch_the_state() {
        let p = policy();
        let rejected = SendOutcome::Rejected {
            reason: "HTTP 400: invalid phone number".into(),
        };
        assert_eq!(
            p.decide(rejected, &message(0), NOW, 0.5),
            Decision::Record(DispatchOutcome::Failed {
                state: MessageState::Rejected,
                error_code: ErrorCode::UpstreamRejected.code(),
                error: "HTTP 400: invalid phone number".into()
            })
        );
        assert_eq!(
            p.decide(SendOutcome::Duplicate, &message(0), NOW, 0.5),
            Decision::FetchState
        );
        let accepted = SendOutcome::Accepted {
            upstream_id: "1".into(),
            state: "Pending".into(),
        };
        assert_eq!(
            p.decide(accepted, &message(0), NOW, 0.5),
            Decision::Record(DispatchOutcome::Accepted {
                upstream_id: "1".into(),
                upstream_state: "Pending".into(),
                check_at: NOW + 600_000
            })
        );
    }

    #[test]
    fn past_validity_expires_instead_of_retrying() {
        let p = policy();
        let mut m = message(0);
        assert_eq!(p.expired(&m, NOW), None);
        m.expires_at = NOW;
        let expired = p.expired(&m, NOW).expect("expired");
        assert!(matches!(
            &expired,
            DispatchOutcome::Failed {
                state: MessageState::Expired,
                ..
            }
        ));
        assert_eq!(
            p.decide(retry("HTTP 500"), &m, NOW, 0.5),
            Decision::Record(expired)
        );
    }
}
