//! Sending: claims and their leases, outcomes, retries, reports.

use super::*;

async fn claims_go_by_priority_then_age_and_are_leased(backend: Backend) {
    let dir = Place::new(backend);
    let clock = ManualClock::new(T0);
    let store = open(&dir, &clock, None).await;
    let low = store.submit(vec![message("low")]).await.unwrap();
    let high = store
        .submit(vec![NewMessage {
            priority: 2,
            ..message("high")
        }])
        .await
        .unwrap();
    let claimed = claim_all(&store).await;
    let order: Vec<String> = claimed.iter().map(Dispatch::upstream_key).collect();
    assert_eq!(order, [high[0].clone(), low[0].clone()]);
    assert_eq!(claimed[1].content, Content::Text("low".into()));
    assert_eq!(claimed[1].attempts, 0);
    assert!(
        claim_all(&store).await.is_empty(),
        "a leased row is not claimed twice"
    );
    // Octets come back as they went in, every value of a byte among them.
    let octets: Vec<u8> = (0..=255).collect();
    store
        .submit(vec![NewMessage {
            data_coding: 4,
            charset: Charset::Binary,
            body: octets.clone(),
            content: Some(Content::Binary(octets.clone())),
            ..message("binary")
        }])
        .await
        .unwrap();
    let binary = claim_all(&store).await;
    assert_eq!(binary.len(), 1);
    assert_eq!(binary[0].content, Content::Binary(octets));
    assert_eq!(binary[0].data_coding, 4);
    assert!(store
        .claim("other", 100, 60_000, &[], as_is())
        .await
        .unwrap()
        .is_empty());

    // The dispatcher vanished: once the lease runs out the rows are queued again.
    clock.advance_ms(59_000);
    store.maintain().await.unwrap();
    assert!(claim_all(&store).await.is_empty());
    clock.advance_ms(2_000);
    store.maintain().await.unwrap();
    assert_eq!(claim_all(&store).await.len(), 3);
}

async fn accepted_messages_are_enroute_and_leave_the_queue_limit(backend: Backend) {
    let dir = Place::new(backend);
    let clock = ManualClock::new(T0);
    let store = open(&dir, &clock, Some(1)).await;
    let id = store.submit(vec![message("one")]).await.unwrap().remove(0);
    assert!(matches!(
        store.submit(vec![message("two")]).await,
        Err(SubmitError::QueueFull(1))
    ));
    let claimed = claim_all(&store).await;
    assert!(
        matches!(
            store.submit(vec![message("two")]).await,
            Err(SubmitError::QueueFull(1))
        ),
        "a claimed message still counts until the upstream has it"
    );
    let accepted = DispatchOutcome::Accepted {
        upstream_id: id.clone(),
        upstream_state: "Pending".into(),
        check_at: T0 + 600_000,
        charge: None,
    };
    store
        .record_dispatch(vec![(claimed[0].outbox_id, accepted)])
        .await
        .unwrap();
    assert_eq!(state_of(&store, &id).await, MessageState::Enroute);
    store.submit(vec![message("two")]).await.unwrap();
    assert!(matches!(
        store
            .cancel(
                "acme",
                CancelTarget::MessageId {
                    message_id: id.clone(),
                    source_addr: String::new()
                }
            )
            .await
            .unwrap(),
        CancelOutcome::TooLate
    ));
    assert!(store
        .due_checks("sandbox", T0 + 599_999, 10)
        .await
        .unwrap()
        .is_empty());
    let due = store.due_checks("sandbox", T0 + 600_000, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].upstream_id, id);
    store
        .check_later(vec![due[0].outbox_id], T0 + 900_000)
        .await
        .unwrap();
    assert!(store
        .due_checks("sandbox", T0 + 600_000, 10)
        .await
        .unwrap()
        .is_empty());
}

async fn a_claimed_message_cannot_be_cancelled_or_replaced(backend: Backend) {
    let dir = Place::new(backend);
    let clock = ManualClock::new(T0);
    let store = open(&dir, &clock, None).await;
    let id = store.submit(vec![message("one")]).await.unwrap().remove(0);
    claim_all(&store).await;
    let target = CancelTarget::MessageId {
        message_id: id.clone(),
        source_addr: String::new(),
    };
    assert_eq!(
        store.cancel("acme", target).await.unwrap(),
        CancelOutcome::TooLate
    );
    let replacement = replacement(&id, "new");
    assert_eq!(
        store.replace("acme", replacement).await.unwrap(),
        ReplaceOutcome::NotReplaceable
    );
}

async fn retries_wait_until_due_and_count_attempts_when_charged(backend: Backend) {
    let dir = Place::new(backend);
    let clock = ManualClock::new(T0);
    let store = open(&dir, &clock, None).await;
    store.submit(vec![message("one")]).await.unwrap();
    let first = claim_all(&store).await.remove(0);
    let retry = DispatchOutcome::Retry {
        due_at: T0 + 5_000,
        error: "503 queue limits".into(),
        charged: true,
        stay: false,
        claim: None,
    };
    store
        .record_dispatch(vec![(first.outbox_id, retry)])
        .await
        .unwrap();
    store.maintain().await.unwrap();
    assert!(claim_all(&store).await.is_empty(), "not due yet");
    clock.advance_ms(5_000);
    store.maintain().await.unwrap();
    let second = claim_all(&store).await.remove(0);
    assert_eq!(second.attempts, 1);

    // A paused upstream hands its rows back uncharged and at once.
    let paused = DispatchOutcome::Retry {
        due_at: T0 + 5_000,
        error: "401".into(),
        charged: false,
        stay: false,
        claim: None,
    };
    store
        .record_dispatch(vec![(second.outbox_id, paused)])
        .await
        .unwrap();
    assert_eq!(claim_all(&store).await.remove(0).attempts, 1);
}

async fn failures_and_reports_are_final_once(backend: Backend) {
    let dir = Place::new(backend);
    let clock = ManualClock::new(T0);
    let store = open(&dir, &clock, None).await;
    let ids = store
        .submit(vec![message("expired"), message("delivered")])
        .await
        .unwrap();
    let claimed = claim_all(&store).await;
    let expired = DispatchOutcome::Failed {
        state: MessageState::Expired,
        error_code: 0,
        error: "validity period passed".into(),
    };
    store
        .record_dispatch(vec![(claimed[0].outbox_id, expired)])
        .await
        .unwrap();
    let status = store.query("acme", &ids[0], "").await.unwrap().unwrap();
    assert_eq!(status.state, MessageState::Expired);
    assert_eq!(status.final_at, Some(T0));

    // The delivery report overtakes the 202: the later Accepted does not undo it.
    let report = |state: Option<MessageState>, name: &str| UpstreamReport {
        outbox_id: claimed[1].outbox_id,
        upstream_state: name.into(),
        state,
        error_code: 0,
        error: None,
        at: T0 + 1_000,
    };
    assert_eq!(
        store
            .record_reports(vec![report(None, "Sent")])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .record_reports(vec![report(None, "Sent")])
            .await
            .unwrap(),
        0
    );
    let delivered = report(Some(MessageState::Delivered), "Delivered");
    assert_eq!(
        store.record_reports(vec![delivered.clone()]).await.unwrap(),
        1
    );
    assert_eq!(
        store.record_reports(vec![delivered]).await.unwrap(),
        0,
        "duplicate"
    );
    let accepted = DispatchOutcome::Accepted {
        upstream_id: ids[1].clone(),
        upstream_state: "Pending".into(),
        check_at: T0,
        charge: None,
    };
    store
        .record_dispatch(vec![(claimed[1].outbox_id, accepted)])
        .await
        .unwrap();
    let status = store.query("acme", &ids[1], "").await.unwrap().unwrap();
    assert_eq!(status.state, MessageState::Delivered);
    assert_eq!(status.final_at, Some(T0 + 1_000));
    assert!(store
        .due_checks("sandbox", T0 + 1, 10)
        .await
        .unwrap()
        .is_empty());
}

async fn a_report_on_a_long_message_reaches_every_part(backend: Backend) {
    let dir = Place::new(backend);
    let clock = ManualClock::new(T0);
    let store = open(&dir, &clock, None).await;
    let ids = store
        .submit(vec![
            part("set", 2, 2, "world"),
            part("set", 2, 1, "hello "),
        ])
        .await
        .unwrap();
    let claimed = claim_all(&store).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].content, Content::Text("hello world".into()));
    assert_eq!(
        claimed[0].upstream_key(),
        ids[1],
        "the first part names the set"
    );
    let failed = UpstreamReport {
        outbox_id: claimed[0].outbox_id,
        upstream_state: "Failed".into(),
        state: Some(MessageState::Undeliverable),
        error_code: 69,
        error: Some("RESULT_ERROR_GENERIC_FAILURE".into()),
        at: T0 + 2_000,
    };
    store.record_reports(vec![failed]).await.unwrap();
    for id in &ids {
        let status = store.query("acme", id, "").await.unwrap().unwrap();
        assert_eq!(status.state, MessageState::Undeliverable);
        assert_eq!(status.error_code, 69);
    }
}

async fn claims_of_a_previous_run_are_queued_again_at_startup(backend: Backend) {
    let dir = Place::new(backend);
    let clock = ManualClock::new(T0);
    let store = open(&dir, &clock, None).await;
    store.submit(vec![message("one")]).await.unwrap();
    assert_eq!(claim_all(&store).await.len(), 1);
    store.close().await.unwrap();
    let store = open(&dir, &clock, None).await;
    assert_eq!(claim_all(&store).await.len(), 1, "no lease to wait for");
}

async fn reports_from_many_callers_at_once_apply_as_if_one_after_another(backend: Backend) {
    let dir = Place::new(backend);
    let clock = ManualClock::new(T0);
    let store = open(&dir, &clock, None).await;
    // Every final receipt, and the intermediate one (0x10).
    let asks = |text: &str| NewMessage {
        registered_delivery: 0x11,
        ..message(text)
    };
    let ids = store
        .submit(vec![asks("one"), asks("two"), asks("three")])
        .await
        .unwrap();
    let claimed = claim_all(&store).await;
    let accepted = claimed
        .iter()
        .map(|d| {
            let outcome = DispatchOutcome::Accepted {
                upstream_id: d.upstream_key(),
                upstream_state: "Pending".into(),
                check_at: T0 + 600_000,
                charge: None,
            };
            (d.outbox_id, outcome)
        })
        .collect();
    store.record_dispatch(accepted).await.unwrap();
    let report = |i: usize, upstream_state: &str, state: Option<MessageState>| UpstreamReport {
        outbox_id: claimed[i].outbox_id,
        upstream_state: upstream_state.into(),
        state,
        error_code: if state == Some(MessageState::Undeliverable) {
            69
        } else {
            0
        },
        error: None,
        at: T0 + 1_000,
    };
    let (delivered, failed) = (
        Some(MessageState::Delivered),
        Some(MessageState::Undeliverable),
    );
    // Sent then delivered; delivered then a late sent; failed.
    let news = futures::future::join3(
        store.record_reports(vec![
            report(0, "Sent", None),
            report(0, "Delivered", delivered),
        ]),
        store.record_reports(vec![
            report(1, "Delivered", delivered),
            report(1, "Sent", None),
        ]),
        store.record_reports(vec![report(2, "Failed", failed)]),
    )
    .await;
    assert_eq!(
        (news.0.unwrap(), news.1.unwrap(), news.2.unwrap()),
        (2, 1, 1)
    );
    for (id, state) in ids.iter().zip([
        MessageState::Delivered,
        MessageState::Delivered,
        MessageState::Undeliverable,
    ]) {
        assert_eq!(state_of(&store, id).await, state);
    }
    // The console's traffic counts each once: taken in, sent, and final.
    let hour = store.traffic().last_hour(T0 + 1_000);
    let total =
        |count: fn(&crate::store::traffic::Minute) -> u64| hour.iter().map(count).sum::<u64>();
    assert_eq!(
        (
            total(|m| m.submitted),
            total(|m| m.sent),
            total(|m| m.delivered),
            total(|m| m.failed)
        ),
        (3, 3, 2, 1)
    );
    let receipts: Vec<(String, MessageState)> = store
        .pending_deliveries("acme", 0, 10)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|d| match d.content {
            DeliveryContent::Receipt(r) => Some((r.message_id, r.state)),
            DeliveryContent::Incoming { .. } => None,
        })
        .collect();
    assert_eq!(
        receipts,
        [
            (ids[0].clone(), MessageState::Enroute),
            (ids[0].clone(), MessageState::Delivered),
            (ids[1].clone(), MessageState::Delivered),
            (ids[2].clone(), MessageState::Undeliverable),
        ]
    );
    // The same reports again change nothing.
    let again = store
        .record_reports(vec![report(0, "Delivered", delivered)])
        .await;
    assert_eq!(again.unwrap(), 0);
}

on_both_backends!(
    claims_go_by_priority_then_age_and_are_leased,
    accepted_messages_are_enroute_and_leave_the_queue_limit,
    a_claimed_message_cannot_be_cancelled_or_replaced,
    retries_wait_until_due_and_count_attempts_when_charged,
    failures_and_reports_are_final_once,
    a_report_on_a_long_message_reaches_every_part,
    claims_of_a_previous_run_are_queued_again_at_startup,
    reports_from_many_callers_at_once_apply_as_if_one_after_another,
);
