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
    /// A retryable failure: store `outcome`, and the member takes nothing new
    /// for a while: `retry_after` when the upstream said, else the next wait of
    /// its own schedule (the member counts its failures in a row).
    Retry {
        outcome: DispatchOutcome,
        retry_after: Option<Duration>,
    },
    /// The upstream has a message with our id: ask for its state.
    FetchState,
    /// The upstream refuses us: pause it until `until`, and hand the message back
    /// uncharged, still bound to the member when `stay`.
    Pause {
        until: i64,
        reason: String,
        stay: bool,
    },
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
    pub fn expired(message: &Dispatch, now: i64) -> Option<DispatchOutcome> {
        (now >= message.expires_at).then(|| DispatchOutcome::Failed {
            state: MessageState::Expired,
            error_code: ErrorCode::Expired.code(),
            error: "validity period ended before the upstream took the message".into(),
        })
    }

    /// The step after an answer to the send request, at `now`. `unsettled`:
    /// an earlier request to this member has no definite answer, so it may hold
    /// the message whatever it says now, and the message stays with it.
    pub fn decide(
        &self,
        outcome: SendOutcome,
        message: &Dispatch,
        unsettled: bool,
        now: i64,
        sample: f64,
    ) -> Decision {
        match outcome {
            SendOutcome::Accepted { upstream_id, state } => {
                Decision::Record(self.accepted(upstream_id, state, now))
            }
            // The member may hold it: only the same member may be asked again.
            SendOutcome::Unknown { reason } => {
                if let Some(expired) = Self::expired(message, now) {
                    return Decision::Record(expired);
                }
                let wait = ms(self.retry.delay(message.attempts, sample));
                Decision::Retry {
                    outcome: DispatchOutcome::Retry {
                        due_at: now + wait,
                        error: reason,
                        charged: true,
                        stay: true,
                        claim: Some(message.lease_until),
                    },
                    retry_after: None,
                }
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
                stay: unsettled,
            },
            // Not taken now: the message may go to another member at once
            // (unless an earlier request here is unsettled), while this one
            // cools down for the wait.
            SendOutcome::Retry { after, reason } => {
                if let Some(expired) = Self::expired(message, now) {
                    return Decision::Record(expired);
                }
                Decision::Retry {
                    outcome: DispatchOutcome::Retry {
                        due_at: now,
                        error: reason,
                        charged: true,
                        stay: unsettled,
                        claim: Some(message.lease_until),
                    },
                    retry_after: after,
                }
            }
        }
    }

    /// Taken; the charge against the member's limits is added by the caller.
    pub fn accepted(&self, upstream_id: String, state: String, now: i64) -> DispatchOutcome {
        DispatchOutcome::Accepted {
            upstream_id,
            upstream_state: state,
            check_at: now + ms(self.check_after),
            charge: None,
        }
    }

    /// A message the member did not take (it refused the broker) goes back
    /// to the queue at once, uncharged: free for any member unless `stay`.
    pub fn hand_back(message: &Dispatch, reason: String, now: i64, stay: bool) -> DispatchOutcome {
        DispatchOutcome::Retry {
            due_at: now,
            error: reason,
            charged: false,
            stay,
            claim: Some(message.lease_until),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::Content;

    const NOW: i64 = 1_800_000_000_000;
    const LEASE: i64 = NOW + 60_000;

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
            route: "phone".into(),
            upstream: None,
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
            lease_until: LEASE,
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
    fn a_message_not_taken_may_move_at_once_while_the_member_cools_down() {
        let p = policy();
        assert_eq!(
            p.decide(retry("HTTP 503"), &message(0), false, NOW, 0.5),
            Decision::Retry {
                outcome: DispatchOutcome::Retry {
                    due_at: NOW,
                    error: "HTTP 503".into(),
                    charged: true,
                    stay: false,
                    claim: Some(LEASE),
                },
                // The member's own schedule decides how long it cools down.
                retry_after: None,
            }
        );
    }

    #[test]
    fn a_refusal_after_an_unsettled_attempt_keeps_the_message_with_its_member() {
        // The member may hold it from the earlier attempt, whatever it says now.
        let p = policy();
        assert!(matches!(
            p.decide(retry("HTTP 503"), &message(1), true, NOW, 0.5),
            Decision::Retry {
                outcome: DispatchOutcome::Retry { stay: true, .. },
                ..
            }
        ));
        let refused = SendOutcome::Refused {
            status: 401,
            reason: "HTTP 401".into(),
        };
        assert!(matches!(
            p.decide(refused, &message(1), true, NOW, 0.5),
            Decision::Pause { stay: true, .. }
        ));
    }

    #[test]
    fn an_unknown_outcome_stays_with_the_member_on_the_schedule() {
        let unknown = SendOutcome::Unknown {
            reason: "request timed out".into(),
        };
        assert_eq!(
            policy().decide(unknown, &message(3), false, NOW, 0.5),
            Decision::Retry {
                outcome: DispatchOutcome::Retry {
                    due_at: NOW + 60_000,
                    error: "request timed out".into(),
                    charged: true,
                    stay: true,
                    claim: Some(LEASE),
                },
                retry_after: None,
            }
        );
    }

    #[test]
    fn retry_after_overrides_the_schedule() {
        let outcome = SendOutcome::Retry {
            after: Some(Duration::from_secs(7)),
            reason: "HTTP 429".into(),
        };
        assert!(matches!(
            policy().decide(outcome, &message(0), false, NOW, 0.9),
            Decision::Retry { retry_after: Some(after), .. } if after == Duration::from_secs(7)
        ));
    }

    #[test]
    fn a_refusal_pauses_the_upstream_without_charging_the_message() {
        let outcome = SendOutcome::Refused {
            status: 401,
            reason: "HTTP 401: Unauthorized".into(),
        };
        assert_eq!(
            policy().decide(outcome, &message(2), false, NOW, 0.5),
            Decision::Pause {
                until: NOW + 60_000,
                reason: "HTTP 401: Unauthorized".into(),
                stay: false,
            }
        );
        assert_eq!(
            Policy::hand_back(&message(2), "paused".into(), NOW, false),
            DispatchOutcome::Retry {
                due_at: NOW,
                error: "paused".into(),
                charged: false,
                stay: false,
                claim: Some(LEASE),
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
            p.decide(rejected, &message(0), false, NOW, 0.5),
            Decision::Record(DispatchOutcome::Failed {
                state: MessageState::Rejected,
                error_code: ErrorCode::UpstreamRejected.code(),
                error: "HTTP 400: invalid phone number".into()
            })
        );
        assert_eq!(
            p.decide(SendOutcome::Duplicate, &message(0), false, NOW, 0.5),
            Decision::FetchState
        );
        let accepted = SendOutcome::Accepted {
            upstream_id: "1".into(),
            state: "Pending".into(),
        };
        assert_eq!(
            p.decide(accepted, &message(0), false, NOW, 0.5),
            Decision::Record(DispatchOutcome::Accepted {
                upstream_id: "1".into(),
                upstream_state: "Pending".into(),
                check_at: NOW + 600_000,
                charge: None,
            })
        );
    }

    #[test]
    fn past_validity_expires_instead_of_retrying() {
        let p = policy();
        let mut m = message(0);
        assert_eq!(Policy::expired(&m, NOW), None);
        m.expires_at = NOW;
        let expired = Policy::expired(&m, NOW).expect("expired");
        assert!(matches!(
            &expired,
            DispatchOutcome::Failed {
                state: MessageState::Expired,
                ..
            }
        ));
        assert_eq!(
            p.decide(retry("HTTP 500"), &m, false, NOW, 0.5),
            Decision::Record(expired)
        );
    }
}
