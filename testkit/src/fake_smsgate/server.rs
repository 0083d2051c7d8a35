//! The fake's answers apart from messages: authorization, errors and injected
//! faults, webhooks, the inbox and the device list.

use std::sync::MutexGuard;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::formats::{nanoid, parse_rfc3339, rfc3339, unix_millis};
use super::{
    bad_request, ApiError, Fault, InboxEntry, Inner, Mode, Shared, WebhookIn, QUEUE_LIMITS_MESSAGE,
    WEBHOOK_EVENTS,
};

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn json(&self, status: StatusCode, body: Value) -> Response {
        (status, Json(body)).into_response()
    }

    pub(super) fn error(&self, e: ApiError) -> Response {
        if e.status == StatusCode::NOT_FOUND && self.mode == Mode::Local {
            return StatusCode::NOT_FOUND.into_response();
        }
        self.json(e.status, json!({ "message": e.message }))
    }

    pub(super) fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let ok = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("basic").then_some(rest.trim())
            })
            .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
            .and_then(|raw| String::from_utf8(raw).ok())
            .is_some_and(|creds| {
                creds.split_once(':') == Some((self.username.as_str(), self.password.as_str()))
            });
        if ok {
            Ok(())
        } else {
            Err(ApiError {
                status: StatusCode::UNAUTHORIZED,
                message: "Unauthorized".to_owned(),
            })
        }
    }

    /// Counts a `POST /messages` request and picks its fault, if any.
    pub(super) fn next_post_fault(&self) -> Option<Fault> {
        let mut st = self.lock();
        st.arrivals.push(Instant::now());
        let repeating = st.every.as_mut().and_then(|e| {
            e.seen += 1;
            (e.seen % e.n == 0).then(|| e.fault.clone())
        });
        st.faults.pop_front().or(repeating)
    }

    pub(super) fn fault_response(&self, fault: &Fault) -> Response {
        let (status, message) = match fault {
            Fault::QueueLimits => (
                StatusCode::SERVICE_UNAVAILABLE,
                QUEUE_LIMITS_MESSAGE.to_owned(),
            ),
            Fault::ServerError => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "failed to handle request".to_owned(),
            ),
            Fault::Unauthorized => (StatusCode::UNAUTHORIZED, "Unauthorized".to_owned()),
            Fault::TooManyRequests { retry_after_secs } => {
                let mut resp = self.json(
                    StatusCode::TOO_MANY_REQUESTS,
                    json!({ "message": "Too Many Requests" }),
                );
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
                return resp;
            }
            Fault::BadRequest(m) => (StatusCode::BAD_REQUEST, m.clone()),
            Fault::Slow(_) | Fault::Reset | Fault::AcceptThenReset | Fault::AcceptThenStall(_) => {
                unreachable!("handled by the caller")
            }
        };
        self.error(ApiError { status, message })
    }

    pub(super) fn list_webhooks(&self, headers: &HeaderMap) -> Result<Response, ApiError> {
        self.authorize(headers)?;
        let list = self.lock().webhooks.clone();
        Ok(self.json(StatusCode::OK, Value::Array(list)))
    }

    pub(super) fn upsert_webhook(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Response, ApiError> {
        self.authorize(headers)?;
        let req: WebhookIn = serde_json::from_slice(body)
            .map_err(|e| bad_request(format!("failed to parse request: {e}")))?;
        let url = req.url.unwrap_or_default();
        let url_ok = url.starts_with("https://")
            || (self.mode == Mode::Local && url.starts_with("http://127.0.0.1"));
        if !url_ok {
            return Err(bad_request("url must start with https://"));
        }
        let event = req.event.unwrap_or_default();
        if !WEBHOOK_EVENTS.contains(&event.as_str()) {
            return Err(bad_request(format!("invalid event {event:?}")));
        }
        let id = req.id.filter(|s| !s.is_empty()).unwrap_or_else(nanoid);
        if id.chars().count() > 36 {
            return Err(bad_request("id must be at most 36 characters long"));
        }
        let device_id = req.device_id.filter(|s| !s.is_empty());
        if self.mode != Mode::Local && device_id.as_ref().is_some_and(|d| *d != self.device_id) {
            return Err(bad_request("device not found"));
        }
        let hook = match self.mode {
            Mode::Local => json!({
                "id": id, "deviceId": null, "url": url, "event": event, "source": "Local",
            }),
            _ => {
                let mut o = json!({ "id": id, "url": url, "event": event });
                if let Some(d) = device_id {
                    o["deviceId"] = Value::String(d);
                }
                o
            }
        };
        let mut st = self.lock();
        match st.webhooks.iter_mut().find(|w| w["id"] == id.as_str()) {
            Some(existing) => *existing = hook.clone(),
            None => st.webhooks.push(hook.clone()),
        }
        Ok(self.json(StatusCode::CREATED, hook))
    }

    pub(super) fn delete_webhook(
        &self,
        headers: &HeaderMap,
        id: &str,
    ) -> Result<Response, ApiError> {
        self.authorize(headers)?;
        let mut st = self.lock();
        let before = st.webhooks.len();
        st.webhooks.retain(|w| w["id"] != id);
        if st.webhooks.len() == before {
            return Err(ApiError {
                status: StatusCode::NOT_FOUND,
                message: "webhook not found".to_owned(),
            });
        }
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    /// `GET /inbox?type&from&to&limit&offset`: received messages in time order.
    pub(super) fn inbox(
        &self,
        headers: &HeaderMap,
        query: &std::collections::HashMap<String, String>,
    ) -> Result<Response, ApiError> {
        self.authorize(headers)?;
        let bad = |message: &str| ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.to_owned(),
        };
        let time = |key: &str, default: i64| match query.get(key) {
            None => Ok(default),
            Some(text) => {
                parse_rfc3339(text).ok_or_else(|| bad(&format!("Invalid {key} datetime")))
            }
        };
        let from = time("from", 0)?;
        let to = time("to", unix_millis(SystemTime::now()))?;
        let number = |key: &str, default: usize| {
            query.get(key).map_or(Ok(default), |v| {
                v.parse().map_err(|_| bad(&format!("bad {key}")))
            })
        };
        let (limit, offset) = (number("limit", 50)?, number("offset", 0)?);
        if !(1..=500).contains(&limit) {
            return Err(bad("limit must be between 1 and 500"));
        }
        let mut st = self.lock();
        let raw: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        st.inbox_reads.push(raw.join("&"));
        let wanted = query.get("type").is_none_or(|t| t == "SMS");
        let mut listed: Vec<&InboxEntry> = st
            .inbox
            .iter()
            .filter(|m| wanted && (from..=to).contains(&m.received_at_ms))
            .collect();
        listed.sort_by_key(|m| m.received_at_ms);
        let page: Vec<Value> = listed
            .iter()
            .skip(offset)
            .take(limit)
            .map(|m| {
                let at = UNIX_EPOCH + Duration::from_millis(m.received_at_ms as u64);
                json!({"id": m.id, "type": "SMS", "sender": m.sender, "recipient": m.recipient,
                    "simNumber": 1, "contentPreview": m.text, "createdAt": rfc3339(at)})
            })
            .collect();
        Ok(self.json(StatusCode::OK, json!(page)))
    }

    pub(super) fn devices(&self, headers: &HeaderMap) -> Result<Response, ApiError> {
        self.authorize(headers)?;
        let device = json!({
            "id": self.device_id,
            "name": "Fake SMSGate phone",
            "createdAt": self.device_created_at,
            "updatedAt": self.device_created_at,
            "lastSeen": rfc3339(SystemTime::now()),
        });
        Ok(self.json(StatusCode::OK, json!([device])))
    }
}
