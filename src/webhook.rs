//! SMSGate webhooks: signature check and event parsing, pure (the route is in
//! `http.rs`). docs/smsgate-api.md §3.

use ring::hmac;
use serde::Deserialize;

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
