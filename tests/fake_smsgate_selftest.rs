//! Self-test of the fake SMSGate server (tests/common/fake_smsgate.rs) with plain
//! reqwest calls, so the broker's upstream tests can trust it.

#[path = "common/fake_smsgate.rs"]
mod fake_smsgate;

use std::time::Duration;

use fake_smsgate::{FakeSmsGate, Fault, Mode, PASSWORD, QUEUE_LIMITS_MESSAGE, USERNAME};
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

#[tokio::test]
async fn answer_faults_then_normal_service() {
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    fake.push_faults([
        Fault::QueueLimits,
        Fault::ServerError,
        Fault::Unauthorized,
        Fault::TooManyRequests {
            retry_after_secs: 7,
        },
        Fault::BadRequest("nope".to_owned()),
    ]);
    assert_eq!(fake.pending_faults(), 5);
    let body = text_msg("f1", "+79990001234");

    let a = send(&fake, &body).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.json(), json!({ "message": QUEUE_LIMITS_MESSAGE }));
    assert_eq!(
        a.message(),
        "failed to enqueue message: queue limits exceeded: too many pending messages: 100 / 100"
    );

    let a = send(&fake, &body).await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(a.message(), "failed to handle request");

    let a = send(&fake, &body).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.message(), "Unauthorized");

    let a = send(&fake, &body).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a.headers["retry-after"].to_str().unwrap(), "7");

    let a = send(&fake, &body).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.message(), "nope");

    assert!(fake.accepted().is_empty());
    let a = send(&fake, &body).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert_eq!(fake.accepted().len(), 1);
    assert_eq!(fake.post_count(), 6);
    let arrivals = fake.arrivals();
    assert_eq!(arrivals.len(), 6);
    assert!(arrivals.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(fake.pending_faults(), 0);
}

#[tokio::test]
async fn slow_fault_delays_a_normal_answer() {
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    fake.push_faults([Fault::Slow(Duration::from_millis(200))]);
    let started = std::time::Instant::now();
    let a = send(&fake, &text_msg("slow", "+79990001234")).await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert_eq!(fake.accepted()[0].id, "slow");
}

#[tokio::test]
async fn reset_aborts_the_connection_and_stores_nothing() {
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    fake.push_faults([Fault::Reset]);
    let body = text_msg("r1", "+79990001234");
    let err = match try_send(&fake, &body).await {
        Ok(a) => panic!("expected a connection error, got {} {}", a.status, a.text),
        Err(e) => e,
    };
    assert!(!err.is_timeout(), "{err:?}");
    assert!(err.status().is_none(), "{err:?}");
    assert_eq!(fake.post_count(), 1);
    assert!(fake.accepted().is_empty());
    let g = call(
        Method::GET,
        &format!("{}/messages/r1", fake.base_url()),
        None,
    )
    .await;
    assert_eq!(g.status, StatusCode::NOT_FOUND);
    assert_eq!(g.message(), "message not found");

    // The retry goes through.
    let a = send(&fake, &body).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert_eq!(fake.accepted().len(), 1);
}

#[tokio::test]
async fn reset_on_a_kept_alive_connection_breaks_only_that_request() {
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    let http = client();
    let url = format!("{}/messages", fake.base_url());
    let post = |id: &str| {
        http.post(&url)
            .basic_auth(USERNAME, Some(PASSWORD))
            .json(&text_msg(id, "+79990001234"))
            .send()
    };
    assert_eq!(post("k1").await.unwrap().status(), StatusCode::ACCEPTED);
    fake.push_faults([Fault::Reset]);
    assert!(post("k2").await.is_err());
    assert_eq!(post("k3").await.unwrap().status(), StatusCode::ACCEPTED);
    let ids: Vec<String> = fake.accepted().into_iter().map(|a| a.id).collect();
    assert_eq!(ids, vec!["k1", "k3"]);
}

#[tokio::test]
async fn accept_then_reset_stores_the_message_but_loses_the_answer() {
    for mode in [Mode::Cloud, Mode::Local] {
        let fake = FakeSmsGate::start(mode).await;
        fake.push_faults([Fault::AcceptThenReset]);
        let body = text_msg("atr-1", "+79990001234");
        if let Ok(a) = try_send(&fake, &body).await {
            panic!(
                "{mode:?}: expected a connection error, got {} {}",
                a.status, a.text
            );
        }
        let acc = fake.accepted();
        assert_eq!(acc.len(), 1);
        assert_eq!(acc[0].id, "atr-1");

        // The retry of the "did it arrive?" case.
        let again = send(&fake, &body).await;
        assert_eq!(again.status, StatusCode::CONFLICT, "{mode:?}");
        assert_eq!(again.message(), "message with the same ID already exists");
        let g = call(
            Method::GET,
            &format!("{}/messages/atr-1", fake.base_url()),
            None,
        )
        .await;
        assert_eq!(g.status, StatusCode::OK);
        assert_eq!(g.json()["state"], "Pending");
        assert_eq!(fake.post_count(), 2);
    }
}

#[tokio::test]
async fn fail_every_nth_post() {
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    fake.fail_every(3, Fault::QueueLimits);
    let mut statuses = Vec::new();
    for i in 0..7 {
        let a = send(&fake, &text_msg(&format!("n{i}"), "+79990001234")).await;
        statuses.push(a.status.as_u16());
    }
    assert_eq!(statuses, vec![202, 202, 503, 202, 202, 503, 202]);

    // A queued fault wins over the repeating one (and still counts for it).
    fake.push_faults([Fault::ServerError]);
    let a = send(&fake, &text_msg("n7", "+79990001234")).await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
    let a = send(&fake, &text_msg("n8", "+79990001234")).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE); // the 9th

    fake.clear_faults();
    for i in 9..12 {
        let a = send(&fake, &text_msg(&format!("n{i}"), "+79990001234")).await;
        assert_eq!(a.status, StatusCode::ACCEPTED);
    }
    assert_eq!(fake.post_count(), 12);
    assert_eq!(fake.accepted().len(), 8);
}

#[tokio::test]
async fn get_and_cancel_follow_the_message_state() {
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    let base = fake.base_url();

    let g = call(Method::GET, &format!("{base}/messages/unknown"), None).await;
    assert_eq!(g.status, StatusCode::NOT_FOUND);
    assert_eq!(g.json(), json!({ "message": "message not found" }));
    let c = call(Method::DELETE, &format!("{base}/messages/unknown"), None).await;
    assert_eq!(c.status, StatusCode::NOT_FOUND);

    // Cancel while pending.
    send(&fake, &text_msg("c1", "+79990001234")).await;
    let c = call(Method::DELETE, &format!("{base}/messages/c1"), None).await;
    assert_eq!(c.status, StatusCode::OK);
    assert_eq!(c.json()["state"], "Cancelled");
    assert!(c.json()["states"]["Cancelled"].is_string());
    assert_eq!(fake.state_of("c1").as_deref(), Some("Cancelled"));
    let c = call(Method::DELETE, &format!("{base}/messages/c1"), None).await;
    assert_eq!(c.status, StatusCode::CONFLICT);
    assert_eq!(c.message(), "message is not pending");

    // Once processed, recipients are hashed on GET.
    send(&fake, &text_msg("h1", "+79990001234")).await;
    fake.set_state(
        "h1",
        "Failed",
        Some("Send result: RESULT_ERROR_GENERIC_FAILURE (Generic failure cause)"),
    );
    let g = call(Method::GET, &format!("{base}/messages/h1"), None).await;
    let v = g.json();
    assert_eq!(v["state"], "Failed");
    assert_eq!(v["isHashed"], true);
    // sha256("+79990001234") = 62d17792b45c5307...
    assert_eq!(v["recipients"][0]["phoneNumber"], "62d17792b45c5307");
    assert_eq!(v["recipients"][0]["state"], "Failed");
    assert_eq!(
        v["recipients"][0]["error"],
        "Send result: RESULT_ERROR_GENERIC_FAILURE (Generic failure cause)"
    );
    assert!(v["states"]["Pending"].is_string());
    assert!(v["states"]["Failed"].is_string());
    assert!(v.get("textMessage").is_none());
    let c = call(Method::DELETE, &format!("{base}/messages/h1"), None).await;
    assert_eq!(c.status, StatusCode::CONFLICT);

    // Encrypted messages are never hashed.
    let enc = json!({ "id": "e1", "isEncrypted": true, "textMessage": {"text": "Zm9v"},
                      "phoneNumbers": ["c2VjcmV0"] });
    send(&fake, &enc).await;
    fake.set_state("e1", "Delivered", None);
    let g = call(Method::GET, &format!("{base}/messages/e1"), None).await;
    assert_eq!(g.json()["isHashed"], false);
    assert_eq!(g.json()["recipients"][0]["phoneNumber"], "c2VjcmV0");
    assert!(g.json()["recipients"][0].get("error").is_none());
}

#[tokio::test]
async fn webhooks_upsert_list_delete() {
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    let url = format!("{}/webhooks", fake.base_url());

    let l = call(Method::GET, &url, None).await;
    assert_eq!(l.status, StatusCode::OK);
    assert_eq!(l.json(), json!([]));

    // Generated id.
    let hook = json!({ "url": "https://broker.example/hooks", "event": "sms:sent" });
    let a = call(Method::POST, &url, Some(&hook)).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let generated = a.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(generated.len(), 21);
    assert_eq!(a.json()["url"], "https://broker.example/hooks");
    assert_eq!(a.json()["event"], "sms:sent");

    // Upsert by id.
    let first = json!({ "id": "broker-sms-delivered", "url": "https://a.example/x",
                        "event": "sms:delivered", "deviceId": fake.device_id() });
    let a = call(Method::POST, &url, Some(&first)).await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.json(), first);
    let second = json!({ "id": "broker-sms-delivered", "url": "https://b.example/y",
                         "event": "sms:delivered" });
    let a = call(Method::POST, &url, Some(&second)).await;
    assert_eq!(a.status, StatusCode::CREATED);
    let l = call(Method::GET, &url, None).await.json();
    assert_eq!(l.as_array().unwrap().len(), 2);
    assert_eq!(l[1], second);
    assert_eq!(fake.webhooks(), l.as_array().unwrap().clone());

    // Validation.
    for bad in [
        json!({ "url": "http://broker.example/hooks", "event": "sms:sent" }),
        json!({ "url": "http://127.0.0.1:9/hooks", "event": "sms:sent" }),
        json!({ "url": "https://broker.example/hooks", "event": "sms:whatever" }),
        json!({ "url": "https://broker.example/hooks" }),
        json!({ "url": "https://broker.example/hooks", "event": "sms:sent", "deviceId": "other" }),
    ] {
        let a = call(Method::POST, &url, Some(&bad)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(!a.message().is_empty());
    }

    // Delete.
    let d = call(Method::DELETE, &format!("{url}/broker-sms-delivered"), None).await;
    assert_eq!(d.status, StatusCode::NO_CONTENT);
    let d = call(Method::DELETE, &format!("{url}/broker-sms-delivered"), None).await;
    assert_eq!(d.status, StatusCode::NOT_FOUND);
    let remaining = fake.webhooks();
    assert_eq!(remaining.len(), 1);
    assert_eq!(remaining[0]["id"], generated.as_str());
}

#[tokio::test]
async fn local_webhooks_accept_loopback_http() {
    let fake = FakeSmsGate::start(Mode::Local).await;
    for (i, path) in ["/webhooks", "/webhook"].iter().enumerate() {
        let url = format!("{}{path}", fake.base_url());
        let hook = json!({ "id": format!("h{i}"), "url": "http://127.0.0.1:8080/cb",
                           "event": "sms:received" });
        let a = call(Method::POST, &url, Some(&hook)).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
        assert_eq!(a.json()["source"], "Local");
        assert!(a.json()["deviceId"].is_null());
        let bad = json!({ "url": "http://192.168.1.2/cb", "event": "sms:received" });
        let a = call(Method::POST, &url, Some(&bad)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
    }
    assert_eq!(fake.webhooks().len(), 2);
    let d = call(
        Method::DELETE,
        &format!("{}/webhook/h0", fake.base_url()),
        None,
    )
    .await;
    assert_eq!(d.status, StatusCode::NO_CONTENT);
    let d = call(
        Method::DELETE,
        &format!("{}/webhooks/h0", fake.base_url()),
        None,
    )
    .await;
    assert_eq!(d.status, StatusCode::NOT_FOUND);
    assert_eq!(d.text, "");
    assert_eq!(fake.webhooks().len(), 1);
}

#[tokio::test]
async fn wait_for_accepted_sees_late_arrivals() {
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    let sender = fake.clone();
    let task = tokio::spawn(async move {
        for i in 0..3 {
            let a = send(&sender, &text_msg(&format!("w{i}"), "+79990001234")).await;
            assert_eq!(a.status, StatusCode::ACCEPTED);
        }
    });
    let got = fake.wait_for_accepted(3, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 3);
    task.await.unwrap();
}

#[tokio::test]
#[should_panic(expected = "expected 1 accepted message(s)")]
async fn wait_for_accepted_panics_on_timeout() {
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    fake.wait_for_accepted(1, Duration::from_millis(50)).await;
}

#[tokio::test]
async fn the_inbox_lists_sms_by_time_with_pages() {
    let fake = FakeSmsGate::start(Mode::Private).await;
    // 2026-11-22T18:00:00Z and the two minutes after it.
    let t0 = 1_795_370_400_000;
    for (n, text) in ["one", "two", "three"].iter().enumerate() {
        fake.receive_sms(
            "+4917611111111",
            "+4915100000",
            text,
            t0 + n as i64 * 60_000,
        );
    }
    let url = |q: &str| format!("{}/inbox?type=SMS{q}", fake.base_url());
    let listed = call(Method::GET, &url("&from=2026-11-22T18:01:00Z"), None).await;
    assert_eq!(listed.status, StatusCode::OK);
    let items = listed.json();
    let texts: Vec<&str> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["contentPreview"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["two", "three"]);
    assert_eq!(items[0]["createdAt"], "2026-11-22T18:01:00.000Z");
    assert!(items[0]["id"].as_str().unwrap().starts_with("text:"));
    let page = call(Method::GET, &url("&limit=1&offset=2"), None)
        .await
        .json();
    assert_eq!(page[0]["contentPreview"], "three");
    let bad = call(Method::GET, &url("&limit=501"), None).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let refused = call_as(Method::GET, &url(""), None, None).await.unwrap();
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(fake.inbox_reads().len(), 2, "refusals are not reads");
}
