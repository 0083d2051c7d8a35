//! The HTTP side: health, readiness and metrics (and, with the receipts issue,
//! the upstreams' webhooks).

mod body;
mod connection;
mod serve;

pub use body::BodyLimits;
pub use connection::ConnectionTimeouts;
pub use serve::{serve, ServeLimits};

use std::sync::Arc;

use std::collections::HashMap;

use axum::body::Body;
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
use crate::smpp::pdu::BindKind;
use crate::store::{Incoming, Store};
use crate::text::Content;
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
    pub incoming_routes: Arc<IncomingRoutes>,
    /// The bound SMPP sessions, for the sessions gauge.
    pub registry: Arc<crate::smpp::registry::Registry>,
    /// Every configured account: each has its sessions gauge, 0 when none is bound.
    pub accounts: Arc<Vec<String>>,
    /// http.max_body_size and http.body_read_timeout.
    pub body_limits: BodyLimits,
}

/// Per upstream, its accounts in configuration order with their receive_numbers.
pub type IncomingRoutes = HashMap<String, Vec<(String, Vec<String>)>>;

/// The account an incoming message to `recipient` through `upstream` belongs to.
pub fn route_incoming<'a>(
    routes: &'a IncomingRoutes,
    upstream: &str,
    recipient: Option<&str>,
) -> Option<&'a str> {
    let accounts = routes.get(upstream)?;
    let digits = |n: &str| n.trim_start_matches('+').to_owned();
    recipient
        .and_then(|to| {
            accounts
                .iter()
                .find(|(_, numbers)| numbers.iter().any(|n| digits(n) == digits(to)))
        })
        .or_else(|| accounts.first())
        .map(|(system_id, _)| system_id.as_str())
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
    // Read at scrape time: the table is small (bounded per account).
    if let Ok(waiting) = state.store.waiting_deliveries().await {
        state.metrics.deliveries_waiting.clear();
        for (system_id, count) in waiting {
            state
                .metrics
                .deliveries_waiting
                .get_or_create(&crate::metrics::AccountLabels { system_id })
                .set(count);
        }
    }
    state.metrics.dropped(state.store.dropped_deliveries());
    let bound = state.registry.counts();
    for system_id in state.accounts.iter() {
        for kind in BindKind::ALL {
            let count = bound.get(&(system_id.clone(), kind)).copied().unwrap_or(0);
            let labels = crate::metrics::SessionLabels {
                system_id: system_id.clone(),
                bind_type: kind.name().to_owned(),
            };
            state
                .metrics
                .sessions
                .get_or_create(&labels)
                .set(count as i64);
        }
    }
    if let Ok(open) = state.store.open_outbox().await {
        state.metrics.queue_depth.clear();
        for (upstream, queue_state, count) in open {
            let labels = crate::metrics::QueueLabels {
                upstream,
                state: queue_state,
            };
            state.metrics.queue_depth.get_or_create(&labels).set(count);
        }
    }
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
    body: Body,
) -> Response {
    let body = match body::read_body(body, &headers, state.body_limits).await {
        Ok(body) => body,
        Err(err) => {
            let (code, outcome) = match err {
                body::BodyError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
                body::BodyError::TimedOut(_) => (StatusCode::REQUEST_TIMEOUT, "timed_out"),
                body::BodyError::Broken(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            };
            warn!(%upstream, error = %err, "webhook refused");
            state.metrics.webhook(&upstream, "unreadable", outcome);
            return answer(code, err.to_string());
        }
    };
    // The event's name, for the metrics of requests refused before it was read.
    let peek = || {
        serde_json::from_slice::<Envelope>(&body)
            .map(|e| e.event)
            .unwrap_or_else(|_| "unreadable".to_owned())
    };
    let Some(key) = state.webhook_keys.get(&upstream) else {
        state
            .metrics
            .webhook(&upstream, &peek(), "unknown_upstream");
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
            state.metrics.webhook(&upstream, &peek(), "refused");
            return answer(StatusCode::UNAUTHORIZED, err.to_string());
        }
    }
    let envelope: Envelope = match serde_json::from_slice(&body) {
        Ok(envelope) => envelope,
        Err(err) => {
            warn!(%upstream, error = %err, "webhook refused: not an SMSGate event");
            state
                .metrics
                .webhook(&upstream, "unreadable", "bad_request");
            return answer(
                StatusCode::BAD_REQUEST,
                format!("not an SMSGate event: {err}"),
            );
        }
    };
    let response = act_on(&state, &upstream, &envelope, now).await;
    let outcome = match response.status() {
        s if s.is_success() => "accepted",
        StatusCode::BAD_REQUEST => "bad_request",
        _ => "failed",
    };
    state.metrics.webhook(&upstream, &envelope.event, outcome);
    response
}

/// What a verified, readable event does.
async fn act_on(state: &HttpState, upstream: &str, envelope: &Envelope, now: i64) -> Response {
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
            let Some(report) =
                report_for_event(event, outbox_id, at, reason, &state.store.upstream_states())
            else {
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
        "sms:received" | "sms:data-received" => incoming(state, upstream, envelope).await,
        _ => answer(StatusCode::OK, "ignored"),
    }
}

/// An incoming message: stored for the account's receivers before the 2xx.
async fn incoming(state: &HttpState, upstream: &str, envelope: &Envelope) -> Response {
    let payload = &envelope.payload;
    let recipient = payload.recipient.as_deref();
    let Some(system_id) = route_incoming(&state.incoming_routes, upstream, recipient) else {
        warn!(%upstream, "incoming message, but no account uses this upstream: dropped");
        return answer(
            StatusCode::OK,
            "ignored: no account receives from this upstream",
        );
    };
    let content = if envelope.event == "sms:data-received" {
        use base64::Engine;
        let data = payload.data.as_deref().unwrap_or_default();
        match base64::engine::general_purpose::STANDARD.decode(data) {
            Ok(octets) => Content::Binary(octets),
            Err(err) => {
                return answer(
                    StatusCode::BAD_REQUEST,
                    format!("data is not base64: {err}"),
                )
            }
        }
    } else {
        Content::Text(payload.message.clone().unwrap_or_default())
    };
    let sender = payload.sender.clone().unwrap_or_default();
    let dedupe_key = crate::dispatch::smsgate::incoming_key(
        upstream,
        payload.message_id.as_deref().unwrap_or_default(),
        &sender,
        payload.received_at.as_deref().unwrap_or_default(),
    );
    let message = Incoming {
        system_id: system_id.to_owned(),
        source_addr: sender,
        dest_addr: recipient.unwrap_or_default().to_owned(),
        content,
        dedupe_key,
    };
    match state.store.record_incoming(message).await {
        Ok(news) => {
            debug!(%upstream, %system_id, news, "incoming message stored");
            answer(StatusCode::OK, "stored")
        }
        Err(err) => {
            warn!(%upstream, error = %err, "incoming message not stored; the phone will retry");
            answer(StatusCode::SERVICE_UNAVAILABLE, "not stored, try again")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incoming_messages_go_by_receiving_number_else_to_the_first_account() {
        let mut routes = HashMap::new();
        routes.insert(
            "phone".to_owned(),
            vec![
                ("first".to_owned(), vec![]),
                ("shop".to_owned(), vec!["+4915100000".to_owned()]),
            ],
        );
        assert_eq!(
            route_incoming(&routes, "phone", Some("4915100000")),
            Some("shop")
        );
        assert_eq!(
            route_incoming(&routes, "phone", Some("+4915100000")),
            Some("shop")
        );
        assert_eq!(
            route_incoming(&routes, "phone", Some("+4930000000")),
            Some("first")
        );
        assert_eq!(route_incoming(&routes, "phone", None), Some("first"));
        assert_eq!(route_incoming(&routes, "other", None), None);
    }
}
