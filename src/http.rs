//! The HTTP side: health, readiness, metrics and the upstreams' webhooks. The
//! handlers are short: what a webhook does is in `dispatch/smsgate/webhook.rs`,
//! the metrics refresh in `metrics.rs`.

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
use crate::dispatch::UpstreamHealth;
use crate::metrics::Metrics;
use crate::store::Store;

#[derive(Clone)]
pub struct HttpState {
    pub store: Store,
    pub health: Arc<UpstreamHealth>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    /// Configured upstreams: (name, on hold).
    pub upstreams: Arc<Vec<(String, bool)>>,
    /// Where the upstreams' webhook events go.
    pub webhooks: Webhooks,
    /// The bound SMPP sessions, for the sessions gauge.
    pub registry: Arc<crate::smpp::registry::Registry>,
    /// Every configured account: each has its sessions gauge, 0 when none is bound.
    pub accounts: Arc<Vec<String>>,
    /// http.max_body_size and http.body_read_timeout.
    pub body_limits: BodyLimits,
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

/// Ready to take messages: the database answers and takes writes. Each upstream's state is shown;
/// a paused or held upstream does not make the broker unready, since its messages
/// wait safely in the outbox.
async fn readyz(State(state): State<HttpState>) -> Response {
    let now = state.clock.now_ms();
    let upstreams: serde_json::Map<String, serde_json::Value> = state
        .upstreams
        .iter()
        .map(|(name, hold)| {
            let status = match (hold, state.health.paused(name, now)) {
                (true, _) => json!({"state": "hold"}),
                (false, Some((until, reason))) => {
                    json!({"state": "paused", "until_ms": until, "reason": reason})
                }
                (false, None) => json!({"state": "sending"}),
            };
            (name.clone(), status)
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
    (code, Json(json!({"store": store, "upstreams": upstreams}))).into_response()
}

async fn metrics(State(state): State<HttpState>) -> Response {
    state
        .metrics
        .refresh(&state.store, &state.registry, &state.accounts)
        .await;
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
            state.webhooks.handle(&upstream, &headers, &body, now).await
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
