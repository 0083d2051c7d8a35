//! SMSGate (android-sms-gateway) over its 3rd-party REST API: what a request
//! looks like and what each answer means (docs/smsgate-api.md §1, §2, §6).
//! Pure functions; the HTTP client is in `client.rs`.

use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use crate::config::{SmsGateMode, UpstreamSettings};
use crate::dispatch::upstream::{SendOutcome, StatusOutcome};
use crate::store::Dispatch;
use crate::text::Content;
use crate::time::{format_rfc3339, parse_rfc3339};

/// What the dispatcher needs to know of an smsgate upstream.
#[derive(Debug, Clone)]
pub struct SmsGateTarget {
    pub base_url: String,
    pub mode: SmsGateMode,
    pub device_id: Option<String>,
    pub sim_number: Option<u8>,
    pub skip_phone_validation: bool,
    pub data_port: u16,
}

impl SmsGateTarget {
    pub fn from_settings(upstream: &UpstreamSettings) -> SmsGateTarget {
        SmsGateTarget {
            base_url: upstream.base_url(),
            mode: upstream.mode(),
            device_id: upstream.device_id.clone(),
            sim_number: upstream.sim_number,
            skip_phone_validation: upstream.skip_phone_validation(),
            data_port: upstream.data_port(),
        }
    }

    /// `POST` here to send.
    pub fn send_url(&self) -> String {
        let query = if self.skip_phone_validation {
            "?skipPhoneValidation=true"
        } else {
            ""
        };
        format!("{}/messages{query}", self.base_url)
    }

    /// `GET` here for a message's state. The id is ours: digits only.
    pub fn status_url(&self, upstream_id: &str) -> String {
        format!("{}/messages/{upstream_id}", self.base_url)
    }

    /// The JSON body of `POST /messages` for one claimed message: one recipient,
    /// our message_id as the idempotency key, the validity as an absolute time (a
    /// retry must not extend it).
    pub fn message_body(&self, message: &Dispatch) -> Value {
        let mut body = json!({
            "id": message.upstream_key(),
            "phoneNumbers": [e164(message.dest_ton, &message.dest_addr)],
            "withDeliveryReport": message.registered_delivery & 0x03 != 0,
            "priority": upstream_priority(message.priority),
            "validUntil": format_rfc3339(message.expires_at),
        });
        match &message.content {
            Content::Text(text) => body["textMessage"] = json!({ "text": text }),
            Content::Binary(data) => {
                body["dataMessage"] = json!({
                    "data": base64::engine::general_purpose::STANDARD.encode(data),
                    "port": self.data_port,
                })
            }
        }
        // Pinned, so that a retry cannot land on another device and be sent twice.
        if let Some(device) = &self.device_id {
            body["deviceId"] = json!(device);
        }
        if let Some(sim) = self.sim_number {
            body["simNumber"] = json!(sim);
        }
        body
    }
}

/// A destination as SMSGate wants it: E.164 with `+` for international numbers
/// (TON 1); other numbers go as given, for the phone to read in its own country.
pub fn e164(ton: u8, addr: &str) -> String {
    if ton == 1 && !addr.starts_with('+') {
        format!("+{addr}")
    } else {
        addr.to_owned()
    }
}

/// SMPP priority_flag 0–3 on SMSGate's −128…127 scale, where 100 and above skip
/// the phone's own delays and limits: only the two urgent levels do.
pub fn upstream_priority(priority_flag: u8) -> i8 {
    match priority_flag {
        0 => 0,
        1 => 50,
        2 => 100,
        _ => 127,
    }
}

/// Classifies the answer to `POST /messages`. A 409 is a duplicate: a message
/// with our id exists already, from an earlier attempt whose answer was lost.
/// Only answers that say the message was not stored (429, 503, other 4xx) let
/// it go to another upstream.
pub fn classify_send(status: u16, retry_after: Option<&str>, body: &str, key: &str) -> SendOutcome {
    match status {
        200..=299 => {
            let parsed: Option<Value> = serde_json::from_str(body).ok();
            let field = |name: &str| {
                parsed
                    .as_ref()
                    .and_then(|v| v.get(name))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            SendOutcome::Accepted {
                upstream_id: field("id").unwrap_or_else(|| key.to_owned()),
                state: field("state").unwrap_or_else(|| "Pending".to_owned()),
            }
        }
        409 => SendOutcome::Duplicate,
        400 | 413 | 422 => SendOutcome::Rejected {
            reason: error_text(status, body),
        },
        401 | 403 | 404 | 405 => SendOutcome::Refused {
            status,
            reason: error_text(status, body),
        },
        // Not taken: too many requests, or the server's queue is full.
        429 | 503 => SendOutcome::Retry {
            after: retry_after.and_then(parse_retry_after),
            reason: error_text(status, body),
        },
        // A server error may come after the message was stored.
        500..=599 => SendOutcome::Unknown {
            reason: error_text(status, body),
        },
        _ => SendOutcome::Retry {
            after: None,
            reason: error_text(status, body),
        },
    }
}

/// Classifies the answer to `GET /messages/{id}`.
pub fn classify_status(status: u16, body: &str) -> StatusOutcome {
    match status {
        200 => {
            let parsed: Value = match serde_json::from_str(body) {
                Ok(v) => v,
                Err(err) => {
                    return StatusOutcome::Retry {
                        reason: format!("unreadable message state: {err}"),
                    }
                }
            };
            let Some(state) = parsed.get("state").and_then(Value::as_str) else {
                return StatusOutcome::Retry {
                    reason: "message state without a state".into(),
                };
            };
            let error = parsed
                .get("recipients")
                .and_then(Value::as_array)
                .and_then(|r| r.iter().find_map(|r| r.get("error")?.as_str()))
                .map(str::to_owned);
            StatusOutcome::Found {
                state: state.to_owned(),
                error,
            }
        }
        404 => StatusOutcome::NotFound,
        401 | 403 => StatusOutcome::Refused {
            status,
            reason: error_text(status, body),
        },
        _ => StatusOutcome::Retry {
            reason: error_text(status, body),
        },
    }
}

/// The dedupe key of an incoming message: the same whether a webhook reported it
/// (`messageId` = the phone's hash of it in hex, `receivedAt`) or the inbox listed
/// it (`id` = `text:` and the same hash in decimal, `createdAt`), so a message
/// that comes both ways is stored once. Ids of other forms are kept as they are.
pub fn incoming_key(upstream: &str, message_id: &str, sender: &str, received_at: &str) -> String {
    let id = match message_id
        .strip_prefix("text:")
        .and_then(|hash| hash.parse::<i32>().ok())
    {
        Some(hash) => format!("{:x}", hash as u32),
        None => message_id.to_ascii_lowercase(),
    };
    let at = parse_rfc3339(received_at).map_or_else(|| received_at.to_owned(), |ms| ms.to_string());
    format!("mo:{upstream}:{id}:{sender}:{at}")
}

/// Seconds only; an HTTP date is ignored (the schedule applies instead).
fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// `HTTP 503: <the upstream's message>`, kept short for logs and the database.
fn error_text(status: u16, body: &str) -> String {
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| body.trim().to_owned());
    let message: String = message.chars().take(300).collect();
    if message.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {message}")
    }
}

/// Whether an incoming SMS reported with SIM slot `received_on` is for another
/// upstream than one pinned to `own_sim`: two upstreams on the two SIMs of one
/// phone both hear of every SMS the phone receives (both register webhooks
/// there, both read its inbox), and each keeps only its own SIM's.
pub fn for_another_sim(own_sim: Option<u8>, received_on: Option<i64>) -> bool {
    matches!((own_sim, received_on), (Some(own), Some(on)) if i64::from(own) != on)
}
