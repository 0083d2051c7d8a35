//! The dispatcher against a fake SMSGate: every acknowledged message reaches the
//! upstream exactly once, with the right text, whatever faults are injected.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::time::Duration;

use smpp_broker::store::MessageState;
use smpp_broker::text::gsm7;
use smpp_broker::Settings;
use testkit::db::{OutboxRow, OutboxState};
use testkit::fake_smsgate::{Accepted, FakeSmsGate, Fault, Mode};
use testkit::sms::{bound, message_state, sm, submit_ok, udh8};
use testkit::{eventually, TestBroker, PATIENCE};

/// Waits until every outbox row has left the queue (the upstream took it or it
/// failed), and returns the rows.
async fn settled_outbox(broker: &TestBroker, rows: usize) -> Vec<OutboxRow> {
    eventually(PATIENCE, "the outbox settles", || async {
        let outbox = broker.db().outbox().await;
        let settled = outbox
            .iter()
            .filter(|r| matches!(r.state, OutboxState::Enroute | OutboxState::Done))
            .count();
        if outbox.len() == rows && settled == rows {
            Ok(outbox)
        } else {
            Err(outbox)
        }
    })
    .await
}

/// A broker whose account `acme` sends through `fake`.
fn through(fake: &FakeSmsGate) -> testkit::TestBrokerBuilder {
    TestBroker::builder().upstream(fake)
}

fn ids_of(accepted: &[Accepted]) -> Vec<String> {
    accepted.iter().map(|a| a.id.clone()).collect()
}

#[tokio::test]
async fn every_message_arrives_once_with_its_text_despite_faults() {
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    fake.push_faults([
        Fault::QueueLimits,
        Fault::ServerError,
        Fault::Reset,
        Fault::AcceptThenReset,
        Fault::Slow(Duration::from_millis(300)),
        Fault::QueueLimits,
        Fault::AcceptThenReset,
    ]);
    let broker = through(&fake).start().await;
    let mut esme = bound(&broker, "acme", "acme1234").await;

    let gsm_text = "@£$ {curly} [square] ~tilde^ \\back|pipe €uro";
    let ucs2_text = "Grüße 😀 مرحبا";
    let ucs2: Vec<u8> = ucs2_text
        .encode_utf16()
        .flat_map(u16::to_be_bytes)
        .collect();
    let mut expected = vec![
        (
            submit_ok(&mut esme, sm(0, 0, &gsm7::encode(gsm_text).unwrap())).await,
            gsm_text.to_owned(),
        ),
        (
            submit_ok(&mut esme, sm(8, 0, &ucs2)).await,
            ucs2_text.to_owned(),
        ),
    ];
    let first = submit_ok(&mut esme, sm(0, 0x40, &udh8(9, 2, 1, "The first half, "))).await;
    submit_ok(&mut esme, sm(0, 0x40, &udh8(9, 2, 2, "and the second."))).await;
    expected.push((first, "The first half, and the second.".to_owned()));
    for n in 0..10 {
        let text = format!("message {n}");
        let id = submit_ok(&mut esme, sm(0, 0, &gsm7::encode(&text).unwrap())).await;
        expected.push((id, text));
    }

    let outbox = settled_outbox(&broker, expected.len()).await;
    assert!(
        outbox.iter().all(|row| row.state == OutboxState::Enroute),
        "{outbox:?}"
    );
    let accepted = fake.accepted();
    let ids = ids_of(&accepted);
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "no message arrived twice: {ids:?}");
    assert_eq!(accepted.len(), expected.len(), "every message arrived");
    for (id, text) in &expected {
        let arrived = accepted
            .iter()
            .find(|a| &a.id == id)
            .unwrap_or_else(|| panic!("message {id} never arrived"));
        assert_eq!(arrived.text.as_deref(), Some(text.as_str()), "text of {id}");
        assert_eq!(arrived.phone_numbers, ["+4917600000"]);
        assert_eq!(arrived.device_id, fake.device_id());
        assert_eq!(arrived.with_delivery_report, Some(true));
        assert!(arrived.valid_until.is_some());
    }
    assert!(
        fake.post_count() > expected.len(),
        "the faults were really met: {} requests",
        fake.post_count()
    );
    for (id, _) in &expected {
        assert_eq!(message_state(&mut esme, id).await, 1, "ENROUTE");
    }
}

#[tokio::test]
async fn a_refused_message_is_rejected_and_a_refused_broker_pauses() {
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    fake.push_faults([Fault::BadRequest("invalid phone number".into())]);
    let broker = through(&fake)
        .upstream_keys("max_in_flight = 1")
        .start()
        .await;
    let mut esme = bound(&broker, "acme", "acme1234").await;
    let rejected = submit_ok(&mut esme, sm(0, 0, b"bad number")).await;
    settled_outbox(&broker, 1).await;
    assert_eq!(message_state(&mut esme, &rejected).await, 8, "REJECTED");
    let outbox = broker.db().outbox().await;
    assert_eq!(
        outbox[0].last_error.as_deref(),
        Some("HTTP 400: invalid phone number")
    );

    // 401: the upstream is paused, the message waits uncharged and goes after
    // the cool-down.
    fake.push_faults([Fault::Unauthorized]);
    let waited = submit_ok(&mut esme, sm(0, 0, b"after the pause")).await;
    let outbox = settled_outbox(&broker, 2).await;
    let row = outbox.iter().find(|r| r.id.to_string() == waited).unwrap();
    assert_eq!(
        (row.state, row.attempts),
        (OutboxState::Enroute, 1),
        "the 401 cost no attempt"
    );
    assert_eq!(ids_of(&fake.accepted()), [waited]);
    assert_eq!(fake.post_count(), 3);
}

#[tokio::test]
async fn local_mode_speaks_to_the_phone_itself() {
    let fake = FakeSmsGate::start(Mode::Local).await;
    fake.push_faults([Fault::AcceptThenReset]);
    let broker = through(&fake).start().await;
    let mut esme = bound(&broker, "acme", "acme1234").await;
    let id = submit_ok(&mut esme, sm(0, 0, b"hello phone")).await;
    settled_outbox(&broker, 1).await;
    assert_eq!(ids_of(&fake.accepted()), [id]);
    assert_eq!(
        fake.post_count(),
        2,
        "the retry met the 409 and read the state back"
    );
}

#[tokio::test]
async fn the_default_config_sandbox_takes_a_message_to_its_final_state() {
    let broker = TestBroker::builder()
        .settings_from(|dir| {
            let db = dir.join("broker.db").display().to_string();
            let overrides = [
                ("SMPP_BROKER__SMPP__BIND", "127.0.0.1:0"),
                ("SMPP_BROKER__HTTP__BIND", "127.0.0.1:0"),
                ("SMPP_BROKER__ADMIN__BIND", "127.0.0.1:0"),
                ("SMPP_BROKER__STORE__PATH", db.as_str()),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()));
            Settings::from_toml(
                include_str!("../../config/default.toml"),
                "config/default.toml",
                overrides,
            )
            .expect("the default config is valid")
        })
        .start()
        .await;
    let mut esme = bound(&broker, "demo", "demo1234").await;
    let id = submit_ok(&mut esme, sm(0, 0, &gsm7::encode("sandbox test").unwrap())).await;
    let esme = tokio::sync::Mutex::new(esme);
    let seen = RefCell::new(Vec::new());
    eventually(PATIENCE, "the message is delivered", || async {
        let state = message_state(&mut *esme.lock().await, &id).await;
        let mut seen = seen.borrow_mut();
        if seen.last() != Some(&state) {
            seen.push(state);
        }
        if state == 2 {
            Ok(())
        } else {
            Err(format!("states seen: {seen:?}"))
        }
    })
    .await;
    let outbox: Vec<_> = broker
        .db()
        .outbox()
        .await
        .into_iter()
        .map(|r| (r.state, r.upstream_state))
        .collect();
    assert_eq!(outbox, [(OutboxState::Done, Some("Delivered".to_owned()))]);
    let messages = broker.db().messages().await;
    let [message] = messages.as_slice() else {
        panic!("one message: {messages:?}")
    };
    assert_eq!(message.state, MessageState::Delivered);
    assert!(
        message.final_at > Some(message.submitted_at),
        "final after submitted: {message:?}"
    );
}

#[tokio::test]
async fn messages_without_a_report_are_polled_until_final() {
    let fake = FakeSmsGate::start(Mode::Private).await;
    let broker = through(&fake)
        .upstream_keys("check_after = \"100ms\"\ncheck_interval = \"100ms\"")
        .start()
        .await;
    let mut esme = bound(&broker, "acme", "acme1234").await;
    let delivered = submit_ok(&mut esme, sm(0, 0, b"will be delivered")).await;
    let failed = submit_ok(&mut esme, sm(0, 0, b"will fail")).await;
    let sent = submit_ok(&mut esme, sm(0, 0, b"stays sent")).await;
    fake.wait_for_accepted(3, PATIENCE).await;
    fake.set_state(&delivered, "Delivered", None);
    fake.set_state(
        &failed,
        "Failed",
        Some("Send result: RESULT_ERROR_NO_SERVICE"),
    );
    fake.set_state(&sent, "Sent", None);
    let esme = tokio::sync::Mutex::new(esme);
    eventually(PATIENCE, "delivered and failed are final", || async {
        let mut esme = esme.lock().await;
        let states = (
            message_state(&mut esme, &delivered).await,
            message_state(&mut esme, &failed).await,
        );
        if states == (2, 5) {
            Ok(())
        } else {
            Err(states)
        }
    })
    .await;
    let mut esme = esme.into_inner();
    let rows = broker.db().outbox().await;
    assert_eq!(
        (
            rows[1].state,
            rows[1].upstream_state.as_deref(),
            rows[1].last_error.as_deref()
        ),
        (
            OutboxState::Done,
            Some("Failed"),
            Some("Send result: RESULT_ERROR_NO_SERVICE")
        )
    );
    assert_eq!(
        rows[2].state,
        OutboxState::Enroute,
        "a Sent message is still on its way"
    );
    assert_eq!(message_state(&mut esme, &sent).await, 1);
}

#[tokio::test]
async fn a_request_that_times_out_is_retried_and_arrives_once() {
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    fake.push_faults([Fault::Slow(Duration::from_millis(800))]);
    let broker = through(&fake)
        .upstream_keys("request_timeout = \"200ms\"\nmax_in_flight = 1")
        .start()
        .await;
    let mut esme = bound(&broker, "acme", "acme1234").await;
    let id = submit_ok(&mut esme, sm(0, 0, b"patience")).await;
    let outbox = settled_outbox(&broker, 1).await;
    assert_eq!(outbox[0].state, OutboxState::Enroute);
    // The slow answer may still have been taken after the broker gave up on it;
    // either way the fake holds the message once.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(ids_of(&fake.accepted()), [id]);
    assert!(
        fake.post_count() >= 2,
        "the timed-out request was sent again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_rate_is_held_against_an_instant_upstream() {
    const RATE: f64 = 40.0;
    const MESSAGES: usize = 81;
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    let broker = through(&fake)
        .upstream_keys(&format!("rate = {RATE}\nmax_in_flight = 8\nhold = true"))
        .start()
        .await;
    let mut esme = bound(&broker, "acme", "acme1234").await;
    for n in 0..MESSAGES {
        submit_ok(&mut esme, sm(0, 0, format!("rate {n}").as_bytes())).await;
    }
    // Queued while held; a restart without the hold lets them all go at once.
    drop(esme);
    let dir = broker.stop().await;
    let released = through(&fake)
        .upstream_keys(&format!("rate = {RATE}\nmax_in_flight = 8"))
        .dir(dir)
        .start()
        .await;
    let arrived = fake.wait_for_accepted(MESSAGES, PATIENCE).await;
    let span = arrived.last().unwrap().received_at - arrived[0].received_at;
    let rate = (MESSAGES - 1) as f64 / span.as_secs_f64();
    println!("configured {RATE}/s, measured {rate:.2}/s over {MESSAGES} messages");
    // Never faster than configured, which is what protects the phone. How close
    // to the rate it comes is not asserted here: on this shared machine a loaded
    // run met 29 and 37/s, and a timed assertion would only measure the load.
    // tests/it/dispatch_time.rs holds the rate exact, within 5 %, on tokio's
    // paused clock.
    assert!(rate <= RATE * 1.05, "faster than configured: {rate:.2}/s");
    released.stop().await;
}

#[tokio::test]
async fn health_readiness_and_metrics_show_a_paused_upstream() {
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    fake.push_faults([Fault::Unauthorized]);
    let broker = through(&fake)
        .upstream_keys("pause_cooldown = \"1h\"")
        .start()
        .await;
    let base = format!("http://{}", broker.http_addr());
    let http = reqwest::Client::new();
    let healthz = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(healthz.status(), 200);

    let mut esme = bound(&broker, "acme", "acme1234").await;
    let waiting = submit_ok(&mut esme, sm(0, 0, b"waits for the pause")).await;
    let ready = eventually(PATIENCE, "/readyz shows phone paused", || async {
        let ready: serde_json::Value = http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if ready["upstreams"]["phone"]["state"] == "paused" {
            Ok(ready)
        } else {
            Err(ready)
        }
    })
    .await;
    assert_eq!(ready["store"], "ok");
    assert_eq!(
        ready["upstreams"]["phone"]["reason"],
        "HTTP 401: Unauthorized"
    );
    let metrics = broker.metrics_text().await;
    assert!(
        metrics.contains(
            "smpp_broker_upstream_responses_total{upstream=\"phone\",class=\"refused\"} 1"
        ),
        "{metrics}"
    );
    // The gauge follows on the dispatcher's next turn.
    broker
        .until_metric("smpp_broker_upstream_paused{upstream=\"phone\"} 1")
        .await;
    // The refusal's outcome is stored while the dispatcher goes on (route.rs,
    // record_next): the row is back in the queue once that commits.
    eventually(PATIENCE, "the message waits, uncharged", || async {
        let outbox: Vec<_> = broker
            .db()
            .outbox()
            .await
            .into_iter()
            .map(|r| (r.state, r.attempts))
            .collect();
        if outbox == [(OutboxState::Queued, 0)] {
            Ok(())
        } else {
            Err(format!("{waiting}: {outbox:?}"))
        }
    })
    .await;
}

#[tokio::test]
async fn shutdown_does_not_wait_for_the_sandbox_to_report() {
    let broker = TestBroker::builder()
        .smpp("shutdown_timeout = \"60s\"")
        .accounts(
            r#"
[[upstreams]]
name = "sandbox"
kind = "sandbox"
sent_after = "1ms"
delivered_after = "1h"
[[accounts]]
system_id = "acme"
password = "acme1234"
upstream = "sandbox"
"#,
        )
        .start()
        .await;
    let mut esme = bound(&broker, "acme", "acme1234").await;
    submit_ok(&mut esme, sm(0, 0, &gsm7::encode("pending").unwrap())).await;
    eventually(PATIENCE, "the sandbox reports it sent", || async {
        let outbox = broker.db().outbox().await;
        match outbox.as_slice() {
            [row] if row.upstream_state.as_deref() == Some("Sent") => Ok(()),
            _ => Err(outbox),
        }
    })
    .await;
    drop(esme);
    // The delivery report is an hour away; the broker stops without it, and a
    // poll after the next start gets it.
    tokio::time::timeout(Duration::from_secs(20), broker.stop())
        .await
        .expect("shutdown ended well before its 60 s timeout");
}
