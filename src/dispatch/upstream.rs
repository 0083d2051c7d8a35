//! What the dispatcher says to any upstream and what it hears back, whatever the
//! gateway behind it: the requests, the classified answers, the throttle every
//! upstream gets, and the report a named upstream state stands for. The SMSGate
//! adapter (`smsgate/`) and the sandbox speak this; the policy decides on it.

use std::time::Duration;

use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceBuilder};

use super::pace;
use crate::store::{Dispatch, UpstreamReport, UpstreamStates};

/// A request to an upstream.
#[derive(Debug, Clone)]
pub enum Call {
    Send(Dispatch),
    /// The state of the message the upstream knows by this id.
    Status(String),
}

/// The upstream's answer, already classified.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Send(SendOutcome),
    Status(StatusOutcome),
}

/// What an answer to a send means.
#[derive(Debug, Clone, PartialEq)]
pub enum SendOutcome {
    /// The upstream holds the message.
    Accepted { upstream_id: String, state: String },
    /// A message with our id exists already, from an earlier attempt whose
    /// answer was lost. Its state is to be fetched.
    Duplicate,
    /// The upstream will never take this message.
    Rejected { reason: String },
    /// The upstream refuses us, not the message (credentials, scope, URL): pause.
    Refused { status: u16, reason: String },
    /// The upstream did not take the message now (429, 503, no connection):
    /// try again later, after `after` when the upstream said so. Another
    /// member may take it meanwhile.
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// The upstream may or may not hold the message (a timeout, a connection
    /// lost after the request left, a server error): it is sent to the same
    /// upstream again, which knows our id, and to no other.
    Unknown { reason: String },
}

impl SendOutcome {
    /// A transport failure is retried: elsewhere when the request cannot have
    /// left (no connection was made), else at the same upstream.
    pub fn transport_failure(err: BoxError) -> SendOutcome {
        if err.is::<tower::timeout::error::Elapsed>() {
            return SendOutcome::Unknown {
                reason: "request timed out".to_owned(),
            };
        }
        let not_sent = err
            .downcast_ref::<reqwest::Error>()
            .is_some_and(|e| e.is_connect() || e.is_builder());
        let mut reason = err.to_string();
        let mut source = err.source();
        while let Some(cause) = source {
            reason.push_str(": ");
            reason.push_str(&cause.to_string());
            source = cause.source();
        }
        if not_sent {
            SendOutcome::Retry {
                after: None,
                reason,
            }
        } else {
            SendOutcome::Unknown { reason }
        }
    }

    /// The `class` label of smpp_broker_upstream_responses_total.
    pub fn class(&self) -> &'static str {
        match self {
            SendOutcome::Accepted { .. } => "accepted",
            SendOutcome::Duplicate => "duplicate",
            SendOutcome::Rejected { .. } => "rejected",
            SendOutcome::Refused { .. } => "refused",
            SendOutcome::Retry { .. } => "retry",
            SendOutcome::Unknown { .. } => "unknown",
        }
    }
}

/// What an answer to a state query means.
#[derive(Debug, Clone, PartialEq)]
pub enum StatusOutcome {
    Found {
        state: String,
        /// The first recipient's error, for a failed message.
        error: Option<String>,
    },
    NotFound,
    Refused {
        status: u16,
        reason: String,
    },
    Retry {
        reason: String,
    },
}

/// The report of `upstream_state` (the upstream's name for it) about the message
/// whose outbox id is `outbox_id`. What the name stands for comes from the
/// `upstream_states` table; a state it does not list as final leaves the message
/// on its way.
pub fn upstream_report(
    outbox_id: i64,
    upstream_state: &str,
    error: Option<String>,
    at: i64,
    states: &UpstreamStates,
) -> UpstreamReport {
    let final_state = states.final_state(upstream_state);
    UpstreamReport {
        outbox_id,
        upstream_state: upstream_state.to_owned(),
        state: final_state.map(|f| f.state),
        error_code: final_state.map_or(0, |f| f.error_code),
        error,
        at,
    }
}

/// An upstream behind its throttle: cloneable, shared by the dispatcher's tasks.
pub type UpstreamService = BoxCloneSyncService<Call, Reply, BoxError>;

/// Wraps an upstream in the layers every upstream gets, outermost first: a
/// buffer (so clones share one throttle), at most `max_in_flight` requests
/// waiting for answers, `rate` requests a second spaced evenly (`pace`), and a
/// timeout.
pub fn throttled<S>(inner: S, rate: f64, max_in_flight: usize, timeout: Duration) -> UpstreamService
where
    S: tower::Service<Call, Response = Reply> + Send + 'static,
    S::Error: Into<BoxError> + Send + Sync,
    S::Future: Send + 'static,
{
    // One request every 1/rate seconds: no bursts for the phone to absorb.
    let spacing = Duration::from_secs_f64(1.0 / rate);
    let service = ServiceBuilder::new()
        .buffer(1024)
        .concurrency_limit(max_in_flight)
        .layer(pace::PaceLayer::new(spacing))
        .timeout(timeout)
        .service(inner);
    BoxCloneSyncService::new(service)
}
