//! `POST /messages`, a message's state and its cancellation.

use std::time::SystemTime;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use base64::Engine as _;

use super::formats::{nanoid, parse_rfc3339, rfc3339, sha256_hex, unix_millis};
use super::{bad_request, Accepted, ApiError, MessageIn, Mode, Recipient, Shared, StoredMessage};

impl Shared {
    pub(super) fn post_message(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        body: &[u8],
    ) -> Response {
        match self.try_post_message(headers, query, body) {
            Ok(resp) => resp,
            Err(e) => self.error(e),
        }
    }

    fn try_post_message(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        body: &[u8],
    ) -> Result<Response, ApiError> {
        self.authorize(headers)?;
        let skip_phone_validation = parse_skip_phone_validation(query)?;
        let raw: Value = serde_json::from_slice(body)
            .map_err(|e| bad_request(format!("failed to parse request: {e}")))?;
        let req: MessageIn = serde_json::from_value(raw.clone())
            .map_err(|e| bad_request(format!("failed to parse request: {e}")))?;

        // Content: exactly one of textMessage / dataMessage / message.
        let legacy = req.message.as_deref().filter(|m| !m.is_empty());
        let kinds = usize::from(req.text_message.is_some())
            + usize::from(req.data_message.is_some())
            + usize::from(legacy.is_some());
        if kinds != 1 {
            return Err(bad_request(
                "must specify exactly one of: textMessage or dataMessage",
            ));
        }
        let text = req
            .text_message
            .as_ref()
            .map(|t| t.text.clone())
            .or_else(|| legacy.map(str::to_owned));
        if let Some(t) = &text {
            let n = t.chars().count();
            if !(1..=65535).contains(&n) {
                return Err(bad_request(
                    "textMessage.text must be 1..65535 characters long",
                ));
            }
        }
        if let Some(d) = &req.data_message {
            let decodes = base64::engine::general_purpose::STANDARD
                .decode(&d.data)
                .is_ok();
            if !decodes || !(4..=65535).contains(&d.data.len()) {
                return Err(bad_request(
                    "dataMessage.data must be base64, 4..65535 characters long",
                ));
            }
        }

        // Recipients.
        let phones = req.phone_numbers.clone().unwrap_or_default();
        if !(1..=100).contains(&phones.len()) {
            return Err(bad_request("phoneNumbers must contain 1..100 items"));
        }
        if phones.iter().any(|p| !(1..=128).contains(&p.len())) {
            return Err(bad_request(
                "phoneNumbers items must be 1..128 characters long",
            ));
        }
        for (i, p) in phones.iter().enumerate() {
            if phones[..i].contains(p) {
                return Err(bad_request("phone numbers must be unique"));
            }
        }

        // Ids and scalars.
        let client_id = req.id.clone().filter(|s| !s.is_empty());
        if client_id.as_ref().is_some_and(|id| id.chars().count() > 36) {
            return Err(bad_request("id must be at most 36 characters long"));
        }
        let device_filter = req.device_id.clone().filter(|s| !s.is_empty());
        if device_filter
            .as_ref()
            .is_some_and(|d| d.chars().count() > 21)
        {
            return Err(bad_request("deviceId must be at most 21 characters long"));
        }
        if req.sim_number.is_some_and(|s| !(1..=3).contains(&s)) {
            return Err(bad_request("simNumber must be 1..3"));
        }

        // Validity and schedule.
        if req.ttl.is_some() && req.valid_until.is_some() {
            return Err(bad_request("ttl and validUntil are mutually exclusive"));
        }
        if req.ttl.is_some_and(|t| t < 5) {
            return Err(bad_request("ttl must be at least 5 seconds"));
        }
        let now_ms = unix_millis(SystemTime::now());
        let mut valid_until_ms = req.ttl.map(|t| now_ms + (t as i64) * 1000);
        if let Some(v) = &req.valid_until {
            let ms = parse_rfc3339(v)
                .ok_or_else(|| bad_request(format!("validUntil: invalid RFC3339 time {v:?}")))?;
            if self.mode == Mode::Local && ms <= now_ms {
                return Err(bad_request("message already expired"));
            }
            valid_until_ms = Some(ms);
        }
        if let Some(s) = &req.schedule_at {
            let ms = parse_rfc3339(s)
                .ok_or_else(|| bad_request(format!("scheduleAt: invalid RFC3339 time {s:?}")))?;
            if ms <= now_ms {
                return Err(bad_request("scheduleAt must be in the future"));
            }
            if valid_until_ms.is_some_and(|v| ms > v) {
                return Err(bad_request("scheduleAt must not be after validUntil"));
            }
        }

        // Phone validation (simplified: E.164 regex instead of libphonenumber).
        // The phone (Local mode) does not reject at POST time: it accepts the
        // message and fails the recipient when it tries to send it.
        let is_encrypted = req.is_encrypted.unwrap_or(false);
        let validate_phones = !skip_phone_validation && !is_encrypted;
        if validate_phones && self.mode != Mode::Local && phones.iter().any(|p| !looks_like_e164(p))
        {
            return Err(bad_request("invalid phone number"));
        }

        // Device selection: one account, one device.
        if device_filter.as_ref().is_some_and(|d| *d != self.device_id) {
            return Err(bad_request("failed to select device: record not found"));
        }

        let mut st = self.lock();
        let id = match &client_id {
            Some(id) => {
                if st.messages.iter().any(|m| m.id == *id) {
                    return Err(ApiError {
                        status: StatusCode::CONFLICT,
                        message: "message with the same ID already exists".to_owned(),
                    });
                }
                id.clone()
            }
            None => loop {
                let id = nanoid();
                if !st.messages.iter().any(|m| m.id == id) {
                    break id;
                }
            },
        };

        let mut states = Map::new();
        states.insert(
            "Pending".to_owned(),
            Value::String(rfc3339(SystemTime::now())),
        );
        let data = req.data_message.as_ref().map(|d| (d.data.clone(), d.port));
        let stored = StoredMessage {
            id: id.clone(),
            state: "Pending".to_owned(),
            recipients: phones
                .iter()
                .map(|p| Recipient {
                    phone: p.clone(),
                    state: "Pending".to_owned(),
                    error: None,
                })
                .collect(),
            states,
            text: text.clone(),
            data: data.clone(),
            is_encrypted,
        };
        let answer = self.state_json(&stored, false);
        st.messages.push(stored);
        if self.mode == Mode::Local && validate_phones {
            local_fail_invalid_recipients(st.messages.last_mut().expect("just pushed"));
        }
        st.accepted.push(Accepted {
            id: id.clone(),
            id_generated: client_id.is_none(),
            device_id: self.device_id.clone(),
            text,
            data: data.as_ref().map(|d| d.0.clone()),
            port: data.as_ref().map(|d| d.1),
            phone_numbers: phones,
            with_delivery_report: req.with_delivery_report,
            priority: req.priority,
            ttl: req.ttl,
            valid_until: req.valid_until.clone(),
            schedule_at: req.schedule_at.clone(),
            sim_number: req.sim_number,
            is_encrypted,
            skip_phone_validation,
            body: raw,
            received_at: Instant::now(),
        });
        drop(st);

        let mut resp = self.json(StatusCode::ACCEPTED, answer);
        let location = format!("{}/messages/{id}", self.mode.prefix());
        if let Ok(v) = HeaderValue::from_str(&location) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        Ok(resp)
    }

    /// The `MessageState` JSON. `for_get`: cloud/private `GET`s show hashed
    /// recipients once the message left Pending/Cancelling.
    fn state_json(&self, m: &StoredMessage, for_get: bool) -> Value {
        let hashed = for_get
            && self.mode != Mode::Local
            && !m.is_encrypted
            && !matches!(m.state.as_str(), "Pending" | "Cancelling");
        let recipients: Vec<Value> = m
            .recipients
            .iter()
            .map(|r| {
                let phone = if hashed {
                    sha256_hex(r.phone.as_bytes())[..16].to_owned()
                } else {
                    r.phone.clone()
                };
                let mut o = json!({ "phoneNumber": phone, "state": r.state });
                if let Some(e) = &r.error {
                    o["error"] = Value::String(e.clone());
                }
                o
            })
            .collect();
        let mut o = json!({
            "id": m.id,
            "deviceId": self.device_id,
            "state": m.state,
            "isHashed": hashed,
            "isEncrypted": m.is_encrypted,
            "recipients": recipients,
            "states": m.states,
        });
        if !hashed {
            if let Some(t) = &m.text {
                o["textMessage"] = json!({ "text": t });
            }
            if let Some((data, port)) = &m.data {
                o["dataMessage"] = json!({ "data": data, "port": port });
            }
        }
        o
    }

    pub(super) fn get_message(&self, headers: &HeaderMap, id: &str) -> Result<Response, ApiError> {
        self.authorize(headers)?;
        let st = self.lock();
        let m = st
            .messages
            .iter()
            .find(|m| m.id == id)
            .ok_or_else(message_not_found)?;
        Ok(self.json(StatusCode::OK, self.state_json(m, true)))
    }

    pub(super) fn cancel_message(
        &self,
        headers: &HeaderMap,
        id: &str,
    ) -> Result<Response, ApiError> {
        self.authorize(headers)?;
        let mut st = self.lock();
        let m = st
            .messages
            .iter_mut()
            .find(|m| m.id == id)
            .ok_or_else(message_not_found)?;
        if m.state != "Pending" {
            return Err(ApiError {
                status: if self.mode == Mode::Local {
                    StatusCode::BAD_REQUEST
                } else {
                    StatusCode::CONFLICT
                },
                message: "message is not pending".to_owned(),
            });
        }
        m.state = "Cancelled".to_owned();
        for r in &mut m.recipients {
            r.state = "Cancelled".to_owned();
        }
        m.states.insert(
            "Cancelled".to_owned(),
            Value::String(rfc3339(SystemTime::now())),
        );
        Ok(self.json(StatusCode::OK, self.state_json(m, false)))
    }
}

fn message_not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: "message not found".to_owned(),
    }
}

/// Local mode: what the phone does when it tries to send to a bad number.
fn local_fail_invalid_recipients(m: &mut StoredMessage) {
    let mut any_failed = false;
    for r in &mut m.recipients {
        if !looks_like_e164(&r.phone) {
            r.state = "Failed".to_owned();
            r.error = Some("sendSMS: Invalid phone number".to_owned());
            any_failed = true;
        }
    }
    if any_failed && m.recipients.iter().all(|r| r.state == "Failed") {
        m.state = "Failed".to_owned();
        m.states.insert(
            "Failed".to_owned(),
            Value::String(rfc3339(SystemTime::now())),
        );
    }
}

/// `skipPhoneValidation` as Go's `strconv.ParseBool` reads it.
fn parse_skip_phone_validation(query: Option<&str>) -> Result<bool, ApiError> {
    let mut skip = false;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k != "skipPhoneValidation" {
            continue;
        }
        skip = match v {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
            "" | "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
            other => {
                return Err(bad_request(format!(
                    "failed to parse query: skipPhoneValidation: invalid bool {other:?}"
                )))
            }
        };
    }
    Ok(skip)
}

/// `^\+[1-9][0-9]{6,14}$`
fn looks_like_e164(s: &str) -> bool {
    let b = s.as_bytes();
    (8..=16).contains(&b.len())
        && b[0] == b'+'
        && (b'1'..=b'9').contains(&b[1])
        && b[2..].iter().all(u8::is_ascii_digit)
}
