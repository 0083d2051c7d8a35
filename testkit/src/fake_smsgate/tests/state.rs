//! What the fake keeps: message states and cancellation, webhooks, arrivals and
//! the inbox.

use super::*;

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
