//! Webhooks from the phone: signed, badly signed, stale, duplicated and
//! malformed events, and their effect on the messages they report.

use serde_json::json;
use smpp_broker::dispatch::smsgate::webhook::sign;
use testkit::db::OutboxState;
use testkit::fake_smsgate::{FakeSmsGate, Mode};
use testkit::sms::{bound, message_state, sm, submit_ok};
use testkit::{eventually, TestBroker, PATIENCE};

const KEY: &str = "k3yK3y12";

struct Phone {
    http: reqwest::Client,
    url: String,
}

impl Phone {
    fn of(broker: &TestBroker, upstream: &str) -> Phone {
        Phone {
            http: reqwest::Client::new(),
            url: format!("http://{}/webhooks/{upstream}", broker.http_addr()),
        }
    }

    /// Posts `body` signed with `key` at `timestamp` (Unix seconds); returns the status.
    async fn post(&self, body: &serde_json::Value, key: Option<&str>, timestamp: i64) -> u16 {
        let raw = body.to_string();
        let mut request = self.http.post(&self.url).body(raw.clone());
        if let Some(key) = key {
            let ts = timestamp.to_string();
            request = request
                .header("X-Timestamp", &ts)
                .header("X-Signature", sign(key.as_bytes(), raw.as_bytes(), &ts));
        }
        request.send().await.unwrap().status().as_u16()
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn event(name: &str, message_id: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut payload = json!({
        "messageId": message_id,
        "sender": null,
        "recipient": "+4917600000",
        "phoneNumber": "+4917600000",
        "simNumber": 1,
    });
    for (k, v) in extra.as_object().unwrap() {
        payload[k] = v.clone();
    }
    json!({
        "deviceId": "ffffffffceb0b1db0000018e937c815b",
        "event": name,
        "id": "Ey6ECgOkVVFjz3CL48B8C",
        "webhookId": "smpp-broker-sms-delivered",
        "payload": payload,
    })
}

/// A broker sending through the fake, with webhooks signed by KEY, and one
/// message the phone has taken.
async fn broker_with_a_sent_message() -> (TestBroker, FakeSmsGate, String) {
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    let broker = TestBroker::builder()
        .upstream(&fake)
        .upstream_keys(&format!("signing_key = \"{KEY}\""))
        .start()
        .await;
    let mut esme = bound(&broker, "acme", "acme1234").await;
    let id = submit_ok(&mut esme, sm(0, 0, b"report me")).await;
    fake.wait_for_accepted(1, PATIENCE).await;
    eventually(PATIENCE, "enroute", || async {
        let state = broker.db().outbox().await[0].state;
        (state == OutboxState::Enroute).then_some(())
    })
    .await;
    (broker, fake, id)
}

#[tokio::test]
async fn signed_events_are_stored_and_others_refused() {
    let (broker, _fake, id) = broker_with_a_sent_message().await;
    let phone = Phone::of(&broker, "phone");
    let delivered = event(
        "sms:delivered",
        &id,
        json!({"deliveredAt": "2026-11-22T18:10:00.000+03:00"}),
    );

    // Refused, and nothing changes.
    assert_eq!(
        phone.post(&delivered, None, now_secs()).await,
        401,
        "unsigned"
    );
    assert_eq!(
        phone.post(&delivered, Some("wrong"), now_secs()).await,
        401,
        "wrong key"
    );
    assert_eq!(
        phone.post(&delivered, Some(KEY), now_secs() - 301).await,
        401,
        "stale"
    );
    // A few seconds past the bound: the broker reads its clock after this test
    // does, and a second that turns in between brings +301 back to +300.
    assert_eq!(
        phone.post(&delivered, Some(KEY), now_secs() + 305).await,
        401,
        "from the future"
    );
    let mut esme = bound(&broker, "acme", "acme1234").await;
    assert_eq!(message_state(&mut esme, &id).await, 1, "still ENROUTE");

    // sms:sent is intermediate; sms:delivered is final, and says when.
    let sent = event(
        "sms:sent",
        &id,
        json!({"partsCount": 1, "sentAt": "2026-11-22T18:09:00.000+03:00"}),
    );
    assert_eq!(phone.post(&sent, Some(KEY), now_secs()).await, 200);
    assert_eq!(message_state(&mut esme, &id).await, 1);
    assert_eq!(phone.post(&delivered, Some(KEY), now_secs()).await, 200);
    assert_eq!(message_state(&mut esme, &id).await, 2, "DELIVERED");
    let row: Vec<(Option<i64>, OutboxState, Option<String>)> = broker
        .db()
        .rows(
            "SELECT m.final_at, o.state, o.upstream_state \
             FROM messages m JOIN outbox o ON o.id = m.outbox_id",
        )
        .await;
    // 2026-11-22T15:10:00Z
    assert_eq!(
        row,
        [(
            Some(1_795_360_200_000),
            OutboxState::Done,
            Some("Delivered".to_owned())
        )]
    );

    // The phone sends duplicates, and a late failure changes nothing any more.
    assert_eq!(phone.post(&delivered, Some(KEY), now_secs()).await, 200);
    let failed = event("sms:failed", &id, json!({"reason": "late"}));
    assert_eq!(phone.post(&failed, Some(KEY), now_secs()).await, 200);
    assert_eq!(message_state(&mut esme, &id).await, 2);

    let metrics = broker.metrics_text().await;
    for line in [
        "smpp_broker_webhook_events_total{upstream=\"phone\",event=\"sms:delivered\",outcome=\"refused\"} 4",
        "smpp_broker_webhook_events_total{upstream=\"phone\",event=\"sms:delivered\",outcome=\"accepted\"} 2",
        "smpp_broker_webhook_events_total{upstream=\"phone\",event=\"sms:sent\",outcome=\"accepted\"} 1",
    ] {
        assert!(metrics.contains(line), "{line}\n{metrics}");
    }
}

#[tokio::test]
async fn failures_keep_the_phone_s_reason() {
    let (broker, _fake, id) = broker_with_a_sent_message().await;
    let phone = Phone::of(&broker, "phone");
    let reason = "Send result: RESULT_ERROR_GENERIC_FAILURE (Generic failure cause)";
    let failed = event("sms:failed", &id, json!({"reason": reason}));
    assert_eq!(phone.post(&failed, Some(KEY), now_secs()).await, 200);
    let mut esme = bound(&broker, "acme", "acme1234").await;
    assert_eq!(message_state(&mut esme, &id).await, 5, "UNDELIVERABLE");
    let outbox = broker.db().outbox().await;
    assert_eq!(outbox[0].last_error.as_deref(), Some(reason));
}

#[tokio::test]
async fn malformed_foreign_and_misaddressed_events() {
    let (broker, _fake, _id) = broker_with_a_sent_message().await;
    let phone = Phone::of(&broker, "phone");
    let ts = now_secs();
    // Well signed but not an event.
    assert_eq!(
        phone.post(&json!({"hello": "world"}), Some(KEY), ts).await,
        400
    );
    // A message this broker never sent, and an event it does not act on.
    let foreign = event("sms:delivered", "PyDmBQZZXYmyxMwED8Fzy", json!({}));
    assert_eq!(phone.post(&foreign, Some(KEY), ts).await, 200);
    let ping = json!({"event": "system:ping", "payload": {"health": {}}});
    assert_eq!(phone.post(&ping, Some(KEY), ts).await, 200);
    // Binary incoming data that is not base64.
    let bad = event(
        "sms:data-received",
        "a80532bb",
        json!({"data": "***", "sender": "6505551212"}),
    );
    assert_eq!(phone.post(&bad, Some(KEY), ts).await, 400);
    // No such upstream.
    let nowhere = Phone::of(&broker, "elsewhere");
    assert_eq!(nowhere.post(&foreign, Some(KEY), ts).await, 404);
}

#[tokio::test]
async fn webhooks_are_registered_once_per_upstream_and_stale_ones_removed() {
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    let http = reqwest::Client::new();
    // Ours from an earlier public_url; someone else's; and the broker's for
    // another upstream whose name extends this one's.
    for (id, url) in [
        (
            "smpp-broker-phone-old",
            "https://old.example.com/webhooks/phone",
        ),
        ("someone-else", "https://elsewhere.example/hook"),
        (
            "smpp-broker-phone-b-sent",
            "https://broker.example.com/webhooks/phone-b",
        ),
    ] {
        let status = http
            .post(format!("{}/webhooks", fake.base_url()))
            .basic_auth(fake.username(), Some(fake.password()))
            .json(&json!({"id": id, "url": url, "event": "sms:sent"}))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 201);
    }
    let _broker = TestBroker::builder()
        .upstream(&fake)
        .http("public_url = \"https://broker.example.com/\"")
        .start()
        .await;
    let registered = eventually(PATIENCE, "our six webhooks, the stale one gone", || async {
        let hooks = fake.webhooks();
        let ours: Vec<&serde_json::Value> = hooks
            .iter()
            .filter(|w| w["url"].as_str().unwrap().ends_with("/webhooks/phone"))
            .collect();
        if ours.len() == 6 && !ours.iter().any(|w| w["id"] == "smpp-broker-phone-old") {
            Ok(hooks)
        } else {
            Err(hooks)
        }
    })
    .await;
    let mut events: Vec<&str> = registered
        .iter()
        .filter(|w| w["id"] != "someone-else" && w["id"] != "smpp-broker-phone-b-sent")
        .map(|w| {
            assert_eq!(w["url"], "https://broker.example.com/webhooks/phone");
            assert_eq!(w["deviceId"], fake.device_id());
            w["event"].as_str().unwrap()
        })
        .collect();
    events.sort();
    assert_eq!(
        events,
        [
            "sms:cancelled",
            "sms:data-received",
            "sms:delivered",
            "sms:failed",
            "sms:received",
            "sms:sent"
        ]
    );
    for other in ["someone-else", "smpp-broker-phone-b-sent"] {
        assert!(
            registered.iter().any(|w| w["id"] == other),
            "{other}: registrations of others are left alone"
        );
    }
}
