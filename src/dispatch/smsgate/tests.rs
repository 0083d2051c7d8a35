use std::time::Duration;

use serde_json::json;

use super::api::*;
use crate::config::SmsGateMode;
use crate::dispatch::upstream::{SendOutcome, StatusOutcome};
use crate::store::Dispatch;
use crate::text::Content;

fn target(mode: SmsGateMode) -> SmsGateTarget {
    SmsGateTarget {
        base_url: "https://api.sms-gate.app/3rdparty/v1".into(),
        mode,
        device_id: Some("yVULogr4Y1ksRfnos1Dsw".into()),
        sim_number: Some(2),
        skip_phone_validation: false,
        data_port: 53739,
    }
}

fn dispatch(content: Content) -> Dispatch {
    Dispatch {
        outbox_id: 7_340_032_000_001,
        system_id: "demo".into(),
        route: "phone".into(),
        upstream: Some("phone".into()),
        lease_until: 0,
        dest_ton: 1,
        dest_addr: "4917612345678".into(),
        source_addr: "Shop".into(),
        content,
        data_coding: 0,
        registered_delivery: 1,
        priority: 0,
        // 2026-11-24T16:30:05Z
        expires_at: 1_795_537_805_000,
        attempts: 0,
        created_at: 1_795_537_000_000,
    }
}

#[test]
fn a_text_message_becomes_one_pinned_request_with_our_id() {
    let body = target(SmsGateMode::Cloud).message_body(&dispatch(Content::Text("Grüße €".into())));
    assert_eq!(
        body,
        json!({
            "id": "7340032000001",
            "deviceId": "yVULogr4Y1ksRfnos1Dsw",
            "simNumber": 2,
            "phoneNumbers": ["+4917612345678"],
            "textMessage": {"text": "Grüße €"},
            "withDeliveryReport": true,
            "priority": 0,
            "validUntil": "2026-11-24T16:30:05Z",
        })
    );
}

#[test]
fn binary_messages_go_as_data_with_the_configured_port() {
    let mut target = target(SmsGateMode::Local);
    target.device_id = None;
    target.sim_number = None;
    let mut message = dispatch(Content::Binary(vec![0x00, 0xFF, 0x10]));
    message.registered_delivery = 0;
    message.priority = 3;
    let body = target.message_body(&message);
    assert_eq!(body["dataMessage"], json!({"data": "AP8Q", "port": 53739}));
    assert!(body.get("textMessage").is_none());
    assert!(body.get("deviceId").is_none());
    assert!(body.get("simNumber").is_none());
    assert_eq!(body["withDeliveryReport"], json!(false));
    assert_eq!(body["priority"], json!(127));
}

#[test]
fn registered_delivery_failure_only_still_asks_for_reports() {
    let mut message = dispatch(Content::Text("x".into()));
    message.registered_delivery = 0x02;
    let body = target(SmsGateMode::Cloud).message_body(&message);
    assert_eq!(body["withDeliveryReport"], json!(true));
    message.registered_delivery = 0x10;
    let body = target(SmsGateMode::Cloud).message_body(&message);
    assert_eq!(body["withDeliveryReport"], json!(false));
}

#[test]
fn numbers_get_a_plus_only_when_international() {
    assert_eq!(e164(1, "4917612345678"), "+4917612345678");
    assert_eq!(e164(1, "+4917612345678"), "+4917612345678");
    assert_eq!(e164(0, "017612345678"), "017612345678");
    assert_eq!(e164(2, "017612345678"), "017612345678");
}

#[test]
fn urls_follow_the_base_and_the_validation_choice() {
    let mut t = target(SmsGateMode::Private);
    t.base_url = "https://sms.example.com/api/3rdparty/v1".into();
    assert_eq!(
        t.send_url(),
        "https://sms.example.com/api/3rdparty/v1/messages"
    );
    t.skip_phone_validation = true;
    assert_eq!(
        t.send_url(),
        "https://sms.example.com/api/3rdparty/v1/messages?skipPhoneValidation=true"
    );
    assert_eq!(
        t.status_url("42"),
        "https://sms.example.com/api/3rdparty/v1/messages/42"
    );
}

#[test]
fn send_answers_are_classified_as_the_contract_says() {
    let accepted = r#"{"id":"7340032000001","deviceId":"d","state":"Pending","recipients":[]}"#;
    assert_eq!(
        classify_send(202, None, accepted, "k"),
        SendOutcome::Accepted {
            upstream_id: "7340032000001".into(),
            state: "Pending".into()
        }
    );
    assert_eq!(
        classify_send(202, None, "", "k"),
        SendOutcome::Accepted {
            upstream_id: "k".into(),
            state: "Pending".into()
        },
        "a 202 stands even when its body is unreadable"
    );
    assert_eq!(
        classify_send(
            409,
            None,
            r#"{"message":"message with the same ID already exists"}"#,
            "k"
        ),
        SendOutcome::Duplicate
    );
    assert_eq!(
        classify_send(400, None, r#"{"message":"invalid phone number"}"#, "k"),
        SendOutcome::Rejected {
            reason: "HTTP 400: invalid phone number".into()
        }
    );
    for status in [401, 403] {
        assert!(matches!(
            classify_send(status, None, r#"{"message":"Unauthorized"}"#, "k"),
            SendOutcome::Refused { status: s, .. } if s == status
        ));
    }
    assert_eq!(
        classify_send(429, Some("7"), "", "k"),
        SendOutcome::Retry {
            after: Some(Duration::from_secs(7)),
            reason: "HTTP 429".into()
        }
    );
    assert_eq!(
        classify_send(429, Some("Wed, 21 Oct 2026 07:28:00 GMT"), "", "k"),
        SendOutcome::Retry {
            after: None,
            reason: "HTTP 429".into()
        }
    );
    let queue_full = r#"{"message":"failed to enqueue message: queue limits exceeded: too many pending messages: 100 / 100"}"#;
    assert_eq!(
        classify_send(503, None, queue_full, "k"),
        SendOutcome::Retry {
            after: None,
            reason: "HTTP 503: failed to enqueue message: queue limits exceeded: too many pending messages: 100 / 100".into()
        }
    );
    assert!(matches!(
        classify_send(500, None, "<html>oops</html>", "k"),
        SendOutcome::Unknown { reason } if reason == "HTTP 500: <html>oops</html>"
    ));
}

#[test]
fn status_answers_are_classified_including_the_local_empty_404() {
    let failed = r#"{"id":"1","state":"Failed","isHashed":true,
        "recipients":[{"phoneNumber":"3f2a9c0d1e4b5a6f","state":"Failed",
        "error":"Send result: RESULT_ERROR_GENERIC_FAILURE (Generic failure cause)"}]}"#;
    assert_eq!(
        classify_status(200, failed),
        StatusOutcome::Found {
            state: "Failed".into(),
            error: Some("Send result: RESULT_ERROR_GENERIC_FAILURE (Generic failure cause)".into())
        }
    );
    assert_eq!(classify_status(404, ""), StatusOutcome::NotFound);
    assert_eq!(
        classify_status(404, r#"{"message":"message not found"}"#),
        StatusOutcome::NotFound
    );
    assert!(matches!(
        classify_status(200, "nope"),
        StatusOutcome::Retry { .. }
    ));
    assert!(matches!(
        classify_status(401, ""),
        StatusOutcome::Refused { .. }
    ));
    assert!(matches!(
        classify_status(502, ""),
        StatusOutcome::Retry { .. }
    ));
}

#[test]
fn an_incoming_message_has_one_key_from_the_webhook_and_from_the_inbox() {
    // The app's hash -1000003 is `fff0bdbd` in the webhook's messageId
    // (python3 -c 'print(hex(-1000003 & 0xffffffff))'), `text:-1000003` in the inbox.
    let from_webhook = incoming_key(
        "phone",
        "fff0bdbd",
        "+491761",
        "2026-11-22T21:00:00.000+03:00",
    );
    let from_inbox = incoming_key("phone", "text:-1000003", "+491761", "2026-11-22T18:00:00Z");
    assert_eq!(from_webhook, from_inbox);
    assert_ne!(
        from_webhook,
        incoming_key("phone", "fff0bdbd", "+491761", "2026-11-22T18:00:01Z")
    );
    assert_ne!(
        from_webhook,
        incoming_key("other", "fff0bdbd", "+491761", "2026-11-22T18:00:00Z")
    );
}
