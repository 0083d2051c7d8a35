//! The HTTP side: health, readiness and metrics (and, with the receipts issue,
//! the upstreams' webhooks).

use std::sync::Arc;

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tracing::{debug, warn};

use crate::clock::Clock;
use crate::config::Secret;
use crate::dispatch::smsgate::report_for_event;
use crate::dispatch::UpstreamHealth;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::webhook::{verify_signature, Envelope};

#[derive(Clone)]
pub struct HttpState {
    pub store: Store,
    pub health: Arc<UpstreamHealth>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    /// Configured upstreams: (name, on hold).
    pub upstreams: Arc<Vec<(String, bool)>>,
    /// The upstreams that send webhooks, with their signing keys (None: unsigned).
    pub webhook_keys: Arc<HashMap<String, Option<Secret>>>,
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

fn answer(code: StatusCode, message: impl Into<String>) -> Response {
    (code, Json(json!({ "message": message.into() }))).into_response()
}

/// `POST /webhooks/{upstream}`: an event from the upstream's phone. A report is
/// committed before the 2xx goes back; anything short of that gets an error
/// status, and the phone sends it again.
async fn webhook(
    State(state): State<HttpState>,
    Path(upstream): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(key) = state.webhook_keys.get(&upstream) else {
        return answer(
            StatusCode::NOT_FOUND,
            format!("no smsgate upstream named {upstream:?}"),
        );
    };
    let now = state.clock.now_ms();
    if let Some(key) = key {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        if let Err(err) = verify_signature(
            key.expose().as_bytes(),
            &body,
            header("x-signature"),
            header("x-timestamp"),
            now,
        ) {
            warn!(%upstream, error = %err, "webhook refused: bad signature");
            return answer(StatusCode::UNAUTHORIZED, err.to_string());
        }
    }
    let envelope: Envelope = match serde_json::from_slice(&body) {
        Ok(envelope) => envelope,
        Err(err) => {
            warn!(%upstream, error = %err, "webhook refused: not an SMSGate event");
            return answer(
                StatusCode::BAD_REQUEST,
                format!("not an SMSGate event: {err}"),
            );
        }
    };
    let event = envelope.event.as_str();
    match event {
        "sms:sent" | "sms:delivered" | "sms:failed" | "sms:cancelled" => {
            // Our message_ids are decimal; anything else was sent by someone else.
            let Some(outbox_id) = envelope
                .payload
                .message_id
                .as_deref()
                .and_then(|id| id.parse::<i64>().ok())
            else {
                debug!(%upstream, event, "webhook about a message this broker did not send");
                return answer(StatusCode::OK, "ignored: not a message of this broker");
            };
            let at = envelope.payload.event_time_ms().unwrap_or(now);
            let reason = envelope.payload.reason.as_deref();
            let Some(report) = report_for_event(event, outbox_id, at, reason) else {
                return answer(StatusCode::OK, "ignored");
            };
            match state.store.record_reports(vec![report]).await {
                Ok(news) => {
                    debug!(%upstream, event, outbox_id, news, "webhook stored");
                    answer(StatusCode::OK, "stored")
                }
                Err(err) => {
                    warn!(%upstream, event, error = %err, "webhook not stored; the phone will retry");
                    answer(StatusCode::SERVICE_UNAVAILABLE, "not stored, try again")
                }
            }
        }
        // Incoming messages need their own store first: until then the phone keeps
        // them and retries, rather than being told they were taken.
        "sms:received" | "sms:data-received" => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "incoming messages are not accepted yet",
        ),
        _ => answer(StatusCode::OK, "ignored"),
    }
}
