//! The HTTP side: health, readiness, metrics and the upstreams' webhooks. The
//! handlers map requests to calls and typed refusals to status codes: what a
//! webhook does is in `dispatch/smsgate/webhook.rs`, the metrics refresh in
//! `metrics.rs`.

mod body;
mod connection;
mod serve;

pub use body::BodyLimits;
pub use connection::ConnectionTimeouts;
pub use serve::{serve, ServeLimits};

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tracing::warn;

use crate::clock::Clock;
use crate::dispatch::smsgate::webhook::{Accepted, WebhookRejection, Webhooks};
use crate::dispatch::{Members, Unavailable};
use crate::live::Live;
use crate::metrics::Metrics;
use crate::store::Store;

#[derive(Clone)]
pub struct HttpState {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    /// The bound SMPP sessions, for the sessions gauge.
    pub registry: Arc<crate::smpp::registry::Registry>,
    /// What the configuration made, replaced by a reload.
    pub configured: Arc<Live<Configured>>,
    /// http.max_body_size and http.body_read_timeout.
    pub body_limits: BodyLimits,
}

/// What the HTTP port and the console serve from the configuration: a
/// reload replaces it whole.
pub struct Configured {
    /// Every upstream with its state: available, or why not.
    pub members: Arc<Members>,
    /// Where the upstreams' webhook events go.
    pub webhooks: Webhooks,
    /// Every configured account: each has its sessions gauge, 0 when none is bound.
    pub accounts: Vec<String>,
    /// Every route: each has its queue_depth series, 0 when nothing waits.
    pub routes: Vec<String>,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/webhooks/{upstream}", post(webhook))
        .with_state(state)
}

/// The process is up and serving HTTP.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready to take messages: the database answers and takes writes. Each
/// upstream's state is shown, with why it takes nothing when it does not (on
/// hold, paused, cooling down, over a limit); that does not make the broker
/// unready, since messages go to other members or wait safely in the outbox.
async fn readyz(State(state): State<HttpState>) -> Response {
    let now = state.clock.now_ms();
    let configured = state.configured.load();
    let upstreams: serde_json::Map<String, serde_json::Value> = configured
        .members
        .iter()
        .map(|member| {
            let status = match member.unavailable(now) {
                None => json!({"state": "sending"}),
                Some(why) => {
                    let mut status = json!({"state": why.state(), "reason": why.reason()});
                    if let Unavailable::Paused { until, .. }
                    | Unavailable::CoolingDown { until, .. } = why
                    {
                        status["until_ms"] = json!(until);
                    }
                    status
                }
            };
            (member.name.clone(), status)
        })
        .collect();
    // Reads may still work when writes fail (disk full, a lock held past
    // busy_timeout, the file deleted): then nothing is acknowledged, so not ready.
    let read = state.store.queue_depth().await;
    let (code, store) = match (state.store.write_failure(), read) {
        (Some(reason), _) => (StatusCode::SERVICE_UNAVAILABLE, json!(reason)),
        (None, Err(err)) => (StatusCode::SERVICE_UNAVAILABLE, json!(err.to_string())),
        (None, Ok(_)) => (StatusCode::OK, json!("ok")),
    };
    let node = match state.store.cluster() {
        None => json!({"store": "sqlite"}),
        Some(cluster) => json!({
            "store": "postgresql",
            "node_id": cluster.node_id(),
            "leases": cluster.held(),
        }),
    };
    (
        code,
        Json(json!({"store": store, "node": node, "upstreams": upstreams})),
    )
        .into_response()
}

async fn metrics(State(state): State<HttpState>) -> Response {
    let configured = state.configured.load();
    state
        .metrics
        .refresh(
            &state.store,
            &state.registry.counts(),
            &configured.accounts,
            &configured.routes,
        )
        .await;
    configured
        .members
        .export(&state.metrics, state.clock.now_ms());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// `POST /webhooks/{upstream}`: an event from the upstream's phone, read within
/// the body limits, handled, and counted by its outcome.
async fn webhook(
    State(state): State<HttpState>,
    Path(upstream): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Accepted, WebhookRejection> {
    let handled = match body::read_body(body, &headers, state.body_limits).await {
        Ok(body) => {
            let now = state.clock.now_ms();
            let configured = state.configured.load();
            configured
                .webhooks
                .handle(&upstream, &headers, &body, now)
                .await
        }
        Err(err) => {
            warn!(%upstream, error = %err, "webhook refused");
            Err(WebhookRejection::from(err))
        }
    };
    let (event, outcome) = match &handled {
        Ok(accepted) => (accepted.event.as_str(), Accepted::OUTCOME),
        Err(rejection) => (rejection.event(), rejection.outcome()),
    };
    state.metrics.webhook(&upstream, event, outcome);
    handled
}

impl IntoResponse for Accepted {
    fn into_response(self) -> Response {
        message(StatusCode::OK, self.note)
    }
}

impl IntoResponse for WebhookRejection {
    fn into_response(self) -> Response {
        let status = match &self {
            WebhookRejection::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            WebhookRejection::TimedOut(_) => StatusCode::REQUEST_TIMEOUT,
            WebhookRejection::BodyBroken(_)
            | WebhookRejection::NotAnEvent(_)
            | WebhookRejection::NotBase64 { .. } => StatusCode::BAD_REQUEST,
            WebhookRejection::UnknownUpstream { .. } => StatusCode::NOT_FOUND,
            WebhookRejection::BadSignature { .. } => StatusCode::UNAUTHORIZED,
            // The phone sends it again.
            WebhookRejection::NotStored { .. } => StatusCode::SERVICE_UNAVAILABLE,
        };
        message(status, self.to_string())
    }
}

/// A webhook answer: `{"message": text}`.
fn message(code: StatusCode, text: impl Into<String>) -> Response {
    (code, Json(json!({ "message": text.into() }))).into_response()
}

impl From<body::BodyError> for WebhookRejection {
    fn from(err: body::BodyError) -> WebhookRejection {
        let text = err.to_string();
        match err {
            body::BodyError::TooLarge(_) => WebhookRejection::TooLarge(text),
            body::BodyError::TimedOut(_) => WebhookRejection::TimedOut(text),
            body::BodyError::Broken(_) => WebhookRejection::BodyBroken(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;
    use crate::dispatch::smsgate::webhook::{Envelope, SignatureError};

    #[tokio::test]
    async fn each_webhook_rejection_has_its_status_body_and_labels() {
        let not_json = serde_json::from_slice::<Envelope>(b"{}").unwrap_err();
        let not_base64 = base64::engine::general_purpose::STANDARD
            .decode("***")
            .unwrap_err();
        let event = || "sms:received".to_owned();
        let cases = [
            (
                WebhookRejection::TooLarge("request body larger than 10 bytes".into()),
                413,
                "too_large",
                "unreadable",
                "request body larger than 10 bytes".to_owned(),
            ),
            (
                WebhookRejection::TimedOut("not complete".into()),
                408,
                "timed_out",
                "unreadable",
                "not complete".to_owned(),
            ),
            (
                WebhookRejection::BodyBroken("reset".into()),
                400,
                "bad_request",
                "unreadable",
                "reset".to_owned(),
            ),
            (
                WebhookRejection::UnknownUpstream {
                    upstream: "elsewhere".into(),
                    event: event(),
                },
                404,
                "unknown_upstream",
                "sms:received",
                "no smsgate upstream named \"elsewhere\"".to_owned(),
            ),
            (
                WebhookRejection::BadSignature {
                    event: event(),
                    error: SignatureError::Missing,
                },
                401,
                "refused",
                "sms:received",
                "X-Signature or X-Timestamp missing".to_owned(),
            ),
            (
                WebhookRejection::NotAnEvent(not_json),
                400,
                "bad_request",
                "unreadable",
                "not an SMSGate event: missing field `event` at line 1 column 2".to_owned(),
            ),
            (
                WebhookRejection::NotBase64 {
                    event: "sms:data-received".into(),
                    error: not_base64,
                },
                400,
                "bad_request",
                "sms:data-received",
                "data is not base64: Invalid symbol 42, offset 0.".to_owned(),
            ),
            (
                WebhookRejection::NotStored { event: event() },
                503,
                "failed",
                "sms:received",
                "not stored, try again".to_owned(),
            ),
        ];
        for (rejection, status, outcome, event, text) in cases {
            assert_eq!(rejection.outcome(), outcome, "{rejection:?}");
            assert_eq!(rejection.event(), event, "{rejection:?}");
            let response = rejection.into_response();
            assert_eq!(response.status().as_u16(), status, "{outcome}");
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body, json!({ "message": text }), "{outcome}");
        }
    }
}
