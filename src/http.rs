//! The HTTP side: health, readiness and metrics (and, with the receipts issue,
//! the upstreams' webhooks).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::clock::Clock;
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
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// The process is up and serving HTTP.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready to take messages: the database answers. Each upstream's state is shown;
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
    let (code, store) = match state.store.queue_depth().await {
        Ok(_) => (StatusCode::OK, json!("ok")),
        Err(err) => (StatusCode::SERVICE_UNAVAILABLE, json!(err.to_string())),
    };
    (code, Json(json!({"store": store, "upstreams": upstreams}))).into_response()
}

async fn metrics(State(state): State<HttpState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
