//! SMSGate webhooks (docs/smsgate-api.md §3): the signature check, the event
//! envelope, and what each event does to the store. A report or an incoming
//! message is committed before the 2xx goes back; anything short of that is a
//! `WebhookRejection`, which the HTTP route (`src/http.rs`) answers with an
//! error status, and the phone sends the event again. The route also reads the
//! body and counts the outcome.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::HeaderMap;
use base64::Engine;
use ring::hmac;
use serde::Deserialize;
use tracing::{debug, warn};

use super::api::{for_another_sim, incoming_key};
use crate::config::Secret;
use crate::dispatch::upstream::upstream_report;
use crate::routing::IncomingRoutes;
use crate::store::{Incoming, Store, UpstreamReport, UpstreamStates};
use crate::text::Content;
use crate::time::parse_rfc3339;

/// How far X-Timestamp may be from our clock.
pub const SIGNATURE_WINDOW_SECS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("X-Signature or X-Timestamp missing")]
    Missing,
    #[error("X-Timestamp is not Unix seconds")]
    BadTimestamp,
    #[error("X-Timestamp is {0} s away from our clock (more than 5 minutes)")]
    Stale(i64),
    #[error("X-Signature does not match the body")]
    Mismatch,
}

/// Checks `X-Signature` = lowercase hex HMAC-SHA256(key, raw body ‖ X-Timestamp)
/// and that the timestamp is within five minutes of `now_ms`.
pub fn verify_signature(
    key: &[u8],
    body: &[u8],
    signature: Option<&str>,
    timestamp: Option<&str>,
    now_ms: i64,
) -> Result<(), SignatureError> {
    let (Some(signature), Some(timestamp)) = (signature, timestamp) else {
        return Err(SignatureError::Missing);
    };
    let seconds: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    let skew = now_ms.div_euclid(1000) - seconds;
    if skew.abs() > SIGNATURE_WINDOW_SECS {
        return Err(SignatureError::Stale(skew));
    }
    let expected = decode_hex(signature.trim()).ok_or(SignatureError::Mismatch)?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut signed = Vec::with_capacity(body.len() + timestamp.len());
    signed.extend_from_slice(body);
    signed.extend_from_slice(timestamp.as_bytes());
    // Constant-time comparison.
    hmac::verify(&key, &signed, &expected).map_err(|_| SignatureError::Mismatch)
}

/// Lowercase hex HMAC-SHA256 of body ‖ timestamp: what the phone sends.
pub fn sign(key: &[u8], body: &[u8], timestamp: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut context = hmac::Context::with_key(&key);
    context.update(body);
    context.update(timestamp.as_bytes());
    context
        .sign()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The envelope every webhook request carries.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// Random per emission; a retry of the same emission keeps it.
    #[serde(default)]
    pub id: Option<String>,
    pub event: String,
    #[serde(default)]
    pub device_id: Option<String>,
    #[serde(default)]
    pub payload: Payload,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payload {
    pub message_id: Option<String>,
    pub sender: Option<String>,
    pub recipient: Option<String>,
    pub sim_number: Option<i64>,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub data: Option<String>,
    pub sent_at: Option<String>,
    pub delivered_at: Option<String>,
    pub failed_at: Option<String>,
    pub cancelled_at: Option<String>,
    pub received_at: Option<String>,
}

impl Payload {
    /// The event's own time, in Unix ms, when it carries a readable one.
    pub fn event_time_ms(&self) -> Option<i64> {
        [
            &self.sent_at,
            &self.delivered_at,
            &self.failed_at,
            &self.cancelled_at,
            &self.received_at,
        ]
        .into_iter()
        .flatten()
        .find_map(|t| parse_rfc3339(t))
    }
}

/// The report an SMSGate webhook event stands for, for the message whose outbox id
/// the event's `messageId` names. Events that say nothing about a sent message
/// (`sms:received`, `system:ping`, …) give None.
pub fn report_for_event(
    event: &str,
    outbox_id: i64,
    at: i64,
    reason: Option<&str>,
    states: &UpstreamStates,
) -> Option<UpstreamReport> {
    let upstream_state = match event {
        "sms:sent" => "Sent",
        "sms:delivered" => "Delivered",
        "sms:failed" => "Failed",
        "sms:cancelled" => "Cancelled",
        _ => return None,
    };
    let error = reason.map(str::to_owned);
    Some(upstream_report(
        outbox_id,
        upstream_state,
        error,
        at,
        states,
    ))
}

/// Why a webhook request gets no 2xx. Its text is the `{"message": …}` body; it
/// carries the `event` and `outcome` labels of smpp_broker_webhook_events_total.
/// `src/http.rs` gives each its status.
#[derive(Debug, thiserror::Error)]
pub enum WebhookRejection {
    /// The body is over http.max_body_size (the text says so).
    #[error("{0}")]
    TooLarge(String),
    /// The body did not arrive within http.body_read_timeout.
    #[error("{0}")]
    TimedOut(String),
    /// The body could not be read.
    #[error("{0}")]
    BodyBroken(String),
    #[error("no smsgate upstream named {upstream:?}")]
    UnknownUpstream { upstream: String, event: String },
    #[error("{error}")]
    BadSignature {
        event: String,
        error: SignatureError,
    },
    #[error("not an SMSGate event: {0}")]
    NotAnEvent(serde_json::Error),
    #[error("data is not base64: {error}")]
    NotBase64 {
        event: String,
        error: base64::DecodeError,
    },
    /// The store did not take it: the phone is to send it again.
    #[error("not stored, try again")]
    NotStored { event: String },
}

impl WebhookRejection {
    /// The `outcome` label.
    pub fn outcome(&self) -> &'static str {
        match self {
            WebhookRejection::TooLarge(_) => "too_large",
            WebhookRejection::TimedOut(_) => "timed_out",
            WebhookRejection::BodyBroken(_)
            | WebhookRejection::NotAnEvent(_)
            | WebhookRejection::NotBase64 { .. } => "bad_request",
            WebhookRejection::UnknownUpstream { .. } => "unknown_upstream",
            WebhookRejection::BadSignature { .. } => "refused",
            WebhookRejection::NotStored { .. } => "failed",
        }
    }

    /// The `event` label: the event's name, or "unreadable" before it was read.
    pub fn event(&self) -> &str {
        match self {
            WebhookRejection::TooLarge(_)
            | WebhookRejection::TimedOut(_)
            | WebhookRejection::BodyBroken(_)
            | WebhookRejection::NotAnEvent(_) => UNREADABLE,
            WebhookRejection::UnknownUpstream { event, .. }
            | WebhookRejection::BadSignature { event, .. }
            | WebhookRejection::NotBase64 { event, .. }
            | WebhookRejection::NotStored { event } => event,
        }
    }
}

/// The `event` label of a request whose event could not be read.
const UNREADABLE: &str = "unreadable";

/// A webhook request answered 200: stored, or nothing for this broker to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The `event` label.
    pub event: String,
    /// The text of the `{"message": …}` body.
    pub note: &'static str,
}

impl Accepted {
    /// The `outcome` label.
    pub const OUTCOME: &'static str = "accepted";
}

/// What the webhook route needs: where events go, and whom to believe.
#[derive(Clone)]
pub struct Webhooks {
    pub store: Store,
    /// The upstreams that send webhooks, with their signing keys (None: unsigned).
    pub keys: Arc<HashMap<String, Option<Secret>>>,
    /// The upstreams pinned to a SIM (`sim_number`), with it.
    pub sims: Arc<HashMap<String, u8>>,
    pub routes: Arc<IncomingRoutes>,
}

impl Webhooks {
    /// An event `upstream`'s phone posted with `headers` and `body`, at `now`
    /// (Unix ms): checked, read and acted on.
    pub async fn handle(
        &self,
        upstream: &str,
        headers: &HeaderMap,
        body: &[u8],
        now: i64,
    ) -> Result<Accepted, WebhookRejection> {
        // The event's name, for the metrics of requests refused before it was read.
        let peek = || {
            serde_json::from_slice::<Envelope>(body)
                .map(|e| e.event)
                .unwrap_or_else(|_| UNREADABLE.to_owned())
        };
        let Some(key) = self.keys.get(upstream) else {
            return Err(WebhookRejection::UnknownUpstream {
                upstream: upstream.to_owned(),
                event: peek(),
            });
        };
        if let Some(key) = key {
            let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
            if let Err(error) = verify_signature(
                key.expose().as_bytes(),
                body,
                header("x-signature"),
                header("x-timestamp"),
                now,
            ) {
                warn!(%upstream, %error, "webhook refused: bad signature");
                return Err(WebhookRejection::BadSignature {
                    event: peek(),
                    error,
                });
            }
        }
        let envelope: Envelope = serde_json::from_slice(body).map_err(|err| {
            warn!(%upstream, error = %err, "webhook refused: not an SMSGate event");
            WebhookRejection::NotAnEvent(err)
        })?;
        let note = self.act_on(upstream, &envelope, now).await?;
        Ok(Accepted {
            event: envelope.event,
            note,
        })
    }

    /// What a verified, readable event does; the note of the 200.
    async fn act_on(
        &self,
        upstream: &str,
        envelope: &Envelope,
        now: i64,
    ) -> Result<&'static str, WebhookRejection> {
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
                    return Ok("ignored: not a message of this broker");
                };
                let at = envelope.payload.event_time_ms().unwrap_or(now);
                let reason = envelope.payload.reason.as_deref();
                let states = self.store.upstream_states();
                let Some(report) = report_for_event(event, outbox_id, at, reason, &states) else {
                    return Ok("ignored");
                };
                match self.store.record_reports(vec![report]).await {
                    Ok(news) => {
                        debug!(%upstream, event, outbox_id, news, "webhook stored");
                        Ok("stored")
                    }
                    Err(err) => {
                        warn!(%upstream, event, error = %err, "webhook not stored; the phone will retry");
                        Err(WebhookRejection::NotStored {
                            event: event.to_owned(),
                        })
                    }
                }
            }
            "sms:received" | "sms:data-received" => self.incoming(upstream, envelope).await,
            _ => Ok("ignored"),
        }
    }

    /// An incoming message: stored for the account's receivers before the 2xx.
    async fn incoming(
        &self,
        upstream: &str,
        envelope: &Envelope,
    ) -> Result<&'static str, WebhookRejection> {
        let payload = &envelope.payload;
        if for_another_sim(self.sims.get(upstream).copied(), payload.sim_number) {
            debug!(%upstream, sim = payload.sim_number, "incoming message on another SIM of the phone");
            return Ok("ignored: received on another SIM");
        }
        let recipient = payload.recipient.as_deref();
        let Some(system_id) = self.routes.route(upstream, recipient) else {
            warn!(%upstream, "incoming message, but no account uses this upstream: dropped");
            return Ok("ignored: no account receives from this upstream");
        };
        let content = if envelope.event == "sms:data-received" {
            let data = payload.data.as_deref().unwrap_or_default();
            match base64::engine::general_purpose::STANDARD.decode(data) {
                Ok(octets) => Content::Binary(octets),
                Err(error) => {
                    return Err(WebhookRejection::NotBase64 {
                        event: envelope.event.clone(),
                        error,
                    })
                }
            }
        } else {
            Content::Text(payload.message.clone().unwrap_or_default())
        };
        let sender = payload.sender.clone().unwrap_or_default();
        let dedupe_key = incoming_key(
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
        match self.store.record_incoming(message).await {
            Ok(news) => {
                debug!(%upstream, %system_id, news, "incoming message stored");
                Ok("stored")
            }
            Err(err) => {
                warn!(%upstream, error = %err, "incoming message not stored; the phone will retry");
                Err(WebhookRejection::NotStored {
                    event: envelope.event.clone(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: i64 = 1_795_359_600_000;

    #[test]
    fn a_signature_made_like_the_phone_does_verifies() {
        let body = br#"{"event":"sms:delivered","payload":{"messageId":"1"}}"#;
        let ts = (NOW_MS / 1000).to_string();
        let signature = sign(b"k3y", body, &ts);
        assert_eq!(signature.len(), 64);
        assert_eq!(
            verify_signature(b"k3y", body, Some(&signature), Some(&ts), NOW_MS),
            Ok(())
        );
        assert_eq!(
            verify_signature(b"other", body, Some(&signature), Some(&ts), NOW_MS),
            Err(SignatureError::Mismatch)
        );
        let mut tampered = body.to_vec();
        tampered[2] = b'X';
        assert_eq!(
            verify_signature(b"k3y", &tampered, Some(&signature), Some(&ts), NOW_MS),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(b"k3y", body, None, Some(&ts), NOW_MS),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_signature(b"k3y", body, Some("zz"), Some(&ts), NOW_MS),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn the_signature_matches_an_independent_hmac() {
        // printf '%s' '{"a":1}1700000000' | openssl dgst -sha256 -hmac key
        assert_eq!(
            sign(b"key", br#"{"a":1}"#, "1700000000"),
            "5cff791334e7fd8344cc05c2398964f60329f4edd6ab1087ed1ba6c34eefeeca"
        );
    }

    #[test]
    fn timestamps_outside_five_minutes_are_refused() {
        let body = b"{}";
        for (offset, ok) in [
            (0, true),
            (300, true),
            (-300, true),
            (301, false),
            (-301, false),
        ] {
            let ts = (NOW_MS / 1000 + offset).to_string();
            let signature = sign(b"k", body, &ts);
            let result = verify_signature(b"k", body, Some(&signature), Some(&ts), NOW_MS);
            assert_eq!(result.is_ok(), ok, "offset {offset}: {result:?}");
        }
        assert_eq!(
            verify_signature(b"k", body, Some("00"), Some("soon"), NOW_MS),
            Err(SignatureError::BadTimestamp)
        );
    }

    #[test]
    fn envelopes_parse_with_the_phone_s_field_names() {
        let text = r#"{"deviceId":"ffff","event":"sms:failed","id":"Ey6E","webhookId":"Lre",
            "payload":{"messageId":"msg-000","sender":"+1234567890","recipient":"+4445556666",
            "phoneNumber":"+4445556666","simNumber":3,"failedAt":"2026-02-18T02:15:00.000+07:00",
            "reason":"Send result: RESULT_ERROR_GENERIC_FAILURE (Generic failure cause)"}}"#;
        let envelope: Envelope = serde_json::from_str(text).unwrap();
        assert_eq!(envelope.event, "sms:failed");
        assert_eq!(envelope.payload.message_id.as_deref(), Some("msg-000"));
        assert_eq!(envelope.payload.sim_number, Some(3));
        // 2026-02-17T19:15:00Z
        assert_eq!(envelope.payload.event_time_ms(), Some(1_771_355_700_000));
    }
}
