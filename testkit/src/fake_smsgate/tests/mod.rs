//! Self-test of the fake SMSGate server with plain reqwest calls, so the broker's
//! upstream tests can trust it.

mod faults;
mod state;

use std::time::Duration;

use super::{FakeSmsGate, Fault, Mode, PASSWORD, QUEUE_LIMITS_MESSAGE, USERNAME};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("reqwest client")
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    fn message(&self) -> String {
        self.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

async fn call_as(
    method: Method,
    url: &str,
    creds: Option<(&str, &str)>,
    body: Option<&Value>,
) -> Result<Answer, reqwest::Error> {
    let mut req = client().request(method, url);
    if let Some((user, pass)) = creds {
        req = req.basic_auth(user, Some(pass));
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await?;
    Ok(Answer {
        status,
        headers,
        text,
    })
}

async fn call(method: Method, url: &str, body: Option<&Value>) -> Answer {
    call_as(method, url, Some((USERNAME, PASSWORD)), body)
        .await
        .expect("HTTP call")
}

async fn send(fake: &FakeSmsGate, body: &Value) -> Answer {
    send_q(fake, "", body).await
}

async fn send_q(fake: &FakeSmsGate, query: &str, body: &Value) -> Answer {
    let url = format!("{}/messages{query}", fake.base_url());
    call(Method::POST, &url, Some(body)).await
}

async fn try_send(fake: &FakeSmsGate, body: &Value) -> Result<Answer, reqwest::Error> {
    let url = format!("{}/messages", fake.base_url());
    call_as(Method::POST, &url, Some((USERNAME, PASSWORD)), Some(body)).await
}

fn text_msg(id: &str, to: &str) -> Value {
    json!({ "id": id, "textMessage": { "text": "hello" }, "phoneNumbers": [to] })
}

fn looks_like_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 20 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && s.ends_with('Z')
}

#[tokio::test]
async fn cloud_accepts_a_message_with_the_documented_answer() {
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    assert!(fake.base_url().starts_with("http://127.0.0.1:"));
    assert!(fake.base_url().ends_with("/3rdparty/v1"));

    let body = json!({
        "textMessage": { "text": "hello world" },
        "phoneNumbers": ["+79990001234", "+15551234567"],
        "withDeliveryReport": false,
        "priority": 100,
        "ttl": 3600,
        "simNumber": 2,
    });
    let a = send(&fake, &body).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let v = a.json();
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 21, "generated id {id:?}");
    assert!(id
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-'));
    assert_eq!(
        a.headers["location"].to_str().unwrap(),
        format!("/3rdparty/v1/messages/{id}")
    );
    assert_eq!(v["deviceId"], fake.device_id());
    assert_eq!(v["state"], "Pending");
    assert_eq!(v["isHashed"], false);
    assert_eq!(v["isEncrypted"], false);
    assert_eq!(
        v["recipients"],
        json!([
            { "phoneNumber": "+79990001234", "state": "Pending" },
            { "phoneNumber": "+15551234567", "state": "Pending" },
        ])
    );
    assert!(looks_like_rfc3339(v["states"]["Pending"].as_str().unwrap()));
    assert_eq!(v["textMessage"]["text"], "hello world");

    let acc = fake.accepted();
    assert_eq!(acc.len(), 1);
    let m = &acc[0];
    assert_eq!(m.id, id);
    assert!(m.id_generated);
    assert_eq!(m.device_id, fake.device_id());
    assert_eq!(m.text.as_deref(), Some("hello world"));
    assert_eq!(m.data, None);
    assert_eq!(m.phone_numbers, vec!["+79990001234", "+15551234567"]);
    assert_eq!(m.with_delivery_report, Some(false));
    assert_eq!(m.priority, Some(100));
    assert_eq!(m.ttl, Some(3600));
    assert_eq!(m.valid_until, None);
    assert_eq!(m.sim_number, Some(2));
    assert!(!m.skip_phone_validation);
    assert_eq!(m.body, body);
    assert_eq!(fake.post_count(), 1);
    assert_eq!(fake.arrivals().len(), 1);

    // GET returns the same state.
    let g = call(
        Method::GET,
        &format!("{}/messages/{id}", fake.base_url()),
        None,
    )
    .await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.json(), v);

    // Device list.
    let d = call(Method::GET, &format!("{}/devices", fake.base_url()), None).await;
    assert_eq!(d.status, StatusCode::OK);
    let list = d.json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], fake.device_id());
    for field in ["name", "createdAt", "updatedAt", "lastSeen"] {
        assert!(list[0][field].is_string(), "device.{field} in {list}");
    }
    assert_eq!(fake.devices_url(), format!("{}/devices", fake.base_url()));
    // The Local-only alias does not exist here.
    let d = call(Method::GET, &format!("{}/device", fake.base_url()), None).await;
    assert_eq!(d.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn data_message_and_client_id_are_kept() {
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    let body = json!({
        "id": "broker-0001",
        "deviceId": fake.device_id(),
        "dataMessage": { "data": "SGVsbG8=", "port": 53739 },
        "phoneNumbers": ["+79990001234"],
        "validUntil": "2999-01-01T00:00:00Z",
        "scheduleAt": "2998-12-31T23:00:00+01:00",
    });
    let a = send(&fake, &body).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    assert_eq!(a.json()["id"], "broker-0001");
    assert_eq!(
        a.json()["dataMessage"],
        json!({ "data": "SGVsbG8=", "port": 53739 })
    );
    let m = &fake.accepted()[0];
    assert!(!m.id_generated);
    assert_eq!(m.data.as_deref(), Some("SGVsbG8="));
    assert_eq!(m.port, Some(53739));
    assert_eq!(m.text, None);
    assert_eq!(m.with_delivery_report, None);
    assert_eq!(m.valid_until.as_deref(), Some("2999-01-01T00:00:00Z"));
    assert_eq!(m.schedule_at.as_deref(), Some("2998-12-31T23:00:00+01:00"));
}

#[tokio::test]
async fn private_mode_lives_under_api() {
    let fake = FakeSmsGate::start(Mode::Private).await;
    assert!(fake.base_url().ends_with("/api/3rdparty/v1"));
    let a = send(&fake, &text_msg("p1", "+79990001234")).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    assert_eq!(
        a.headers["location"].to_str().unwrap(),
        "/api/3rdparty/v1/messages/p1"
    );
    let g = call(
        Method::GET,
        &format!("{}/messages/p1", fake.base_url()),
        None,
    )
    .await;
    assert_eq!(g.status, StatusCode::OK);
    let d = call(Method::GET, &fake.devices_url(), None).await;
    assert_eq!(d.status, StatusCode::OK);
    assert_eq!(d.json()[0]["id"], fake.device_id());
    // The cloud layout is not served.
    let wrong = format!("{}/3rdparty/v1/messages/p1", fake.root_url());
    let g = call(Method::GET, &wrong, None).await;
    assert_eq!(g.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn local_mode_paths_aliases_and_quirks() {
    let fake = FakeSmsGate::start(Mode::Local).await;
    assert_eq!(fake.base_url(), fake.root_url());
    let base = fake.base_url();

    // Device list is singular only.
    let d = call(Method::GET, &format!("{base}/device"), None).await;
    assert_eq!(d.status, StatusCode::OK);
    assert_eq!(d.json()[0]["id"], fake.device_id());
    assert_eq!(fake.devices_url(), format!("{base}/device"));
    let d = call(Method::GET, &format!("{base}/devices"), None).await;
    assert_eq!(d.status, StatusCode::NOT_FOUND);
    assert_eq!(d.text, "");

    // /message and /messages are aliases.
    let body = text_msg("l1", "+79990001234");
    let a = call(Method::POST, &format!("{base}/message"), Some(&body)).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let a = send(&fake, &text_msg("l2", "+79990001234")).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    for url in [format!("{base}/message/l2"), format!("{base}/messages/l1")] {
        let g = call(Method::GET, &url, None).await;
        assert_eq!(g.status, StatusCode::OK, "{url}");
    }
    assert_eq!(fake.post_count(), 2);

    // Unknown id: 404 with an empty body.
    let g = call(Method::GET, &format!("{base}/messages/nope"), None).await;
    assert_eq!(g.status, StatusCode::NOT_FOUND);
    assert_eq!(g.text, "");
    let g = call(Method::DELETE, &format!("{base}/message/nope"), None).await;
    assert_eq!(g.status, StatusCode::NOT_FOUND);
    assert_eq!(g.text, "");

    // Cancelling a non-pending message is a 400 here, and nothing is hashed.
    fake.set_state("l1", "Sent", None);
    let c = call(Method::DELETE, &format!("{base}/messages/l1"), None).await;
    assert_eq!(c.status, StatusCode::BAD_REQUEST);
    assert_eq!(c.message(), "message is not pending");
    let g = call(Method::GET, &format!("{base}/messages/l1"), None).await;
    assert_eq!(g.json()["isHashed"], false);
    assert_eq!(g.json()["recipients"][0]["phoneNumber"], "+79990001234");
    assert_eq!(g.json()["state"], "Sent");
}

#[tokio::test]
async fn local_mode_fails_bad_numbers_at_send_time() {
    let fake = FakeSmsGate::start(Mode::Local).await;
    let a = send(&fake, &text_msg("bad", "12345")).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    assert_eq!(a.json()["state"], "Pending");
    let g = call(
        Method::GET,
        &format!("{}/messages/bad", fake.base_url()),
        None,
    )
    .await;
    let v = g.json();
    assert_eq!(v["state"], "Failed");
    assert_eq!(v["recipients"][0]["state"], "Failed");
    assert_eq!(v["recipients"][0]["error"], "sendSMS: Invalid phone number");
}

#[tokio::test]
async fn wrong_or_missing_credentials_get_401_everywhere() {
    for mode in [Mode::Cloud, Mode::Private, Mode::Local] {
        let fake = FakeSmsGate::start(mode).await;
        let base = fake.base_url();
        let urls = [
            (Method::POST, format!("{base}/messages")),
            (Method::GET, format!("{base}/messages/x")),
            (Method::DELETE, format!("{base}/messages/x")),
            (Method::GET, format!("{base}/webhooks")),
            (Method::POST, format!("{base}/webhooks")),
            (Method::DELETE, format!("{base}/webhooks/x")),
            (Method::GET, fake.devices_url()),
        ];
        let body = text_msg("a", "+79990001234");
        for (method, url) in urls {
            for creds in [None, Some((USERNAME, "wrong")), Some(("someone", PASSWORD))] {
                let a = call_as(method.clone(), &url, creds, Some(&body))
                    .await
                    .unwrap();
                assert_eq!(
                    a.status,
                    StatusCode::UNAUTHORIZED,
                    "{mode:?} {method} {url}"
                );
                assert_eq!(a.json(), json!({ "message": "Unauthorized" }));
            }
        }
        assert!(fake.accepted().is_empty());
        assert_eq!(fake.post_count(), 3);
    }

    let fake = FakeSmsGate::start_with_credentials(Mode::Cloud, "ACME12", "abcdefghijklmn").await;
    assert_eq!(
        (fake.username(), fake.password()),
        ("ACME12", "abcdefghijklmn")
    );
    let url = format!("{}/messages", fake.base_url());
    let body = text_msg("a", "+79990001234");
    let a = call_as(Method::POST, &url, Some((USERNAME, PASSWORD)), Some(&body))
        .await
        .unwrap();
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = call_as(
        Method::POST,
        &url,
        Some(("ACME12", "abcdefghijklmn")),
        Some(&body),
    )
    .await
    .unwrap();
    assert_eq!(a.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn duplicate_id_is_a_409() {
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    let body = text_msg("dup-1", "+79990001234");
    assert_eq!(send(&fake, &body).await.status, StatusCode::ACCEPTED);
    let again = send(&fake, &body).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.message(), "message with the same ID already exists");
    assert_eq!(fake.accepted().len(), 1);
    assert_eq!(fake.post_count(), 2);
}

#[tokio::test]
async fn validation_errors_are_400s() {
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    let dev = fake.device_id().to_owned();
    let many: Vec<String> = (0..101).map(|i| format!("+7999000{i:04}")).collect();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "no content",
            json!({ "phoneNumbers": ["+79990001234"] }),
            "must specify exactly one of: textMessage or dataMessage",
        ),
        (
            "text and data",
            json!({ "textMessage": {"text": "a"}, "dataMessage": {"data": "SGVsbG8=", "port": 1},
                    "phoneNumbers": ["+79990001234"] }),
            "must specify exactly one of: textMessage or dataMessage",
        ),
        (
            "text and legacy message",
            json!({ "textMessage": {"text": "a"}, "message": "b", "phoneNumbers": ["+79990001234"] }),
            "must specify exactly one of: textMessage or dataMessage",
        ),
        (
            "empty text",
            json!({ "textMessage": {"text": ""}, "phoneNumbers": ["+79990001234"] }),
            "",
        ),
        (
            "bad base64",
            json!({ "dataMessage": {"data": "!!!!", "port": 1}, "phoneNumbers": ["+79990001234"] }),
            "",
        ),
        (
            "no phone numbers",
            json!({ "textMessage": {"text": "a"}, "phoneNumbers": [] }),
            "",
        ),
        (
            "missing phone numbers",
            json!({ "textMessage": {"text": "a"} }),
            "",
        ),
        (
            "101 phone numbers",
            json!({ "textMessage": {"text": "a"}, "phoneNumbers": many }),
            "",
        ),
        (
            "duplicate phone numbers",
            json!({ "textMessage": {"text": "a"}, "phoneNumbers": ["+79990001234", "+79990001234"] }),
            "phone numbers must be unique",
        ),
        (
            "ttl and validUntil",
            json!({ "textMessage": {"text": "a"}, "phoneNumbers": ["+79990001234"],
                    "ttl": 60, "validUntil": "2999-01-01T00:00:00Z" }),
            "",
        ),
        (
            "ttl below 5",
            json!({ "textMessage": {"text": "a"}, "phoneNumbers": ["+79990001234"], "ttl": 4 }),
            "",
        ),
        (
            "bad validUntil",
            json!({ "textMessage": {"text": "a"}, "phoneNumbers": ["+79990001234"],
                    "validUntil": "tomorrow" }),
            "",
        ),
        (
            "scheduleAt in the past",
            json!({ "textMessage": {"text": "a"}, "phoneNumbers": ["+79990001234"],
                    "scheduleAt": "2000-01-01T00:00:00Z" }),
            "",
        ),
        (
            "scheduleAt after validUntil",
            json!({ "textMessage": {"text": "a"}, "phoneNumbers": ["+79990001234"],
                    "scheduleAt": "2999-01-02T00:00:00Z", "validUntil": "2999-01-01T00:00:00Z" }),
            "",
        ),
        (
            "id of 37 chars",
            json!({ "id": "x".repeat(37), "textMessage": {"text": "a"}, "phoneNumbers": ["+79990001234"] }),
            "",
        ),
        (
            "simNumber 4",
            json!({ "textMessage": {"text": "a"}, "phoneNumbers": ["+79990001234"], "simNumber": 4 }),
            "",
        ),
        (
            "priority out of int8",
            json!({ "textMessage": {"text": "a"}, "phoneNumbers": ["+79990001234"], "priority": 128 }),
            "",
        ),
        (
            "national number",
            json!({ "textMessage": {"text": "a"}, "phoneNumbers": ["89990001234"] }),
            "invalid phone number",
        ),
        (
            "too short",
            json!({ "textMessage": {"text": "a"}, "phoneNumbers": ["+12345"] }),
            "invalid phone number",
        ),
        (
            "leading zero",
            json!({ "textMessage": {"text": "a"}, "phoneNumbers": ["+0999000123"] }),
            "invalid phone number",
        ),
        (
            "unknown device",
            json!({ "deviceId": "someOtherDevice", "textMessage": {"text": "a"},
                    "phoneNumbers": ["+79990001234"] }),
            "failed to select device: record not found",
        ),
    ];
    for (what, body, message) in &cases {
        let a = send(&fake, body).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{what}: {}", a.text);
        let got = a.message();
        assert!(!got.is_empty(), "{what}: no message in {}", a.text);
        if !message.is_empty() {
            assert_eq!(got, *message, "{what}");
        }
    }

    // Not JSON at all.
    let url = format!("{}/messages", fake.base_url());
    let resp = client()
        .post(&url)
        .basic_auth(USERNAME, Some(PASSWORD))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // A bad boolean in the query.
    let a = send_q(
        &fake,
        "?skipPhoneValidation=maybe",
        &text_msg("q", "+79990001234"),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);

    assert!(fake.accepted().is_empty());
    assert_eq!(fake.post_count(), cases.len() + 2);

    // What passes: skipPhoneValidation, encrypted content, the right deviceId,
    // the deprecated `message` field, 100 numbers.
    let a = send_q(
        &fake,
        "?skipPhoneValidation=true",
        &text_msg("s1", "89990001234"),
    )
    .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let enc = json!({ "id": "e1", "isEncrypted": true, "textMessage": {"text": "Zm9v"},
                      "phoneNumbers": ["c2VjcmV0"] });
    let a = send(&fake, &enc).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    assert_eq!(a.json()["isEncrypted"], true);
    let pinned = json!({ "id": "d1", "deviceId": dev, "message": "legacy",
                         "phoneNumbers": many[..100] });
    let a = send(&fake, &pinned).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let acc = fake.accepted();
    assert_eq!(acc.len(), 3);
    assert!(acc[0].skip_phone_validation);
    assert_eq!(acc[0].phone_numbers, vec!["89990001234"]);
    assert!(acc[1].is_encrypted);
    assert_eq!(acc[2].text.as_deref(), Some("legacy"));
    assert_eq!(acc[2].phone_numbers.len(), 100);
}
