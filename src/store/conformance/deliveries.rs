//! The way back: receipts, incoming messages, the inbox cursor, retention.

use super::*;

/// Submits, claims and has the upstream take each message; returns their ids.
async fn taken(store: &Store, messages: Vec<NewMessage>) -> Vec<String> {
    let ids = store.submit(messages).await.unwrap();
    let outcomes = claim_all(store)
        .await
        .into_iter()
        .map(|d| {
            let accepted = DispatchOutcome::Accepted {
                upstream_id: d.upstream_key(),
                upstream_state: "Pending".into(),
                check_at: T0 + 3_600_000,
                charge: None,
            };
            (d.outbox_id, accepted)
        })
        .collect();
    store.record_dispatch(outcomes).await.unwrap();
    ids
}

fn report(outbox_id: &str, upstream_state: &str, state: Option<MessageState>) -> UpstreamReport {
    UpstreamReport {
        outbox_id: outbox_id.parse().unwrap(),
        upstream_state: upstream_state.into(),
        state,
        error_code: if state == Some(MessageState::Undeliverable) {
            4
        } else {
            0
        },
        error: None,
        at: T0 + 5_000,
    }
}

async fn receipts(store: &Store) -> Vec<(String, MessageState)> {
    store
        .pending_deliveries("acme", 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|d| match d.content {
            DeliveryContent::Receipt(r) => (r.message_id, r.state),
            other => panic!("{other:?}"),
        })
        .collect()
}

async fn receipts_follow_registered_delivery_and_are_stored_once(backend: Backend) {
    let dir = Place::new(backend);
    let clock = ManualClock::new(T0);
    let store = open(&dir, &clock, None).await;
    let with = |rd: u8, text: &str| NewMessage {
        registered_delivery: rd,
        user_message_reference: Some(77),
        ..message(text)
    };
    let ids = taken(
        &store,
        vec![
            with(0, "none"),
            with(1, "final"),
            with(2, "failures"),
            with(0x11, "all"),
        ],
    )
    .await;
    for id in &ids {
        store
            .record_reports(vec![report(id, "Sent", None)])
            .await
            .unwrap();
        store
            .record_reports(vec![report(id, "Delivered", Some(MessageState::Delivered))])
            .await
            .unwrap();
        // The phone repeats itself.
        store
            .record_reports(vec![report(id, "Delivered", Some(MessageState::Delivered))])
            .await
            .unwrap();
    }
    assert_eq!(
        receipts(&store).await,
        [
            (ids[1].clone(), MessageState::Delivered),
            (ids[3].clone(), MessageState::Enroute),
            (ids[3].clone(), MessageState::Delivered),
        ]
    );
    let pending = store.pending_deliveries("acme", 0, 100).await.unwrap();
    let DeliveryContent::Receipt(facts) = &pending[0].content else {
        panic!("{pending:?}")
    };
    assert_eq!(facts.text, "final");
    assert_eq!(facts.submitted_at, T0);
    assert_eq!(facts.done_at, Some(T0 + 5_000));
    assert_eq!(facts.user_message_reference, Some(77));
    assert_eq!(facts.source.addr, "4915100000");
    let DeliveryContent::Receipt(intermediate) = &pending[1].content else {
        panic!()
    };
    assert_eq!(intermediate.done_at, None);

    // Failures-only gets its receipt for a failure.
    let failing = taken(&store, vec![with(2, "fails")]).await;
    store
        .record_reports(vec![report(
            &failing[0],
            "Failed",
            Some(MessageState::Undeliverable),
        )])
        .await
        .unwrap();
    assert_eq!(receipts(&store).await.len(), 4);
    assert_eq!(
        receipts(&store).await[3],
        (failing[0].clone(), MessageState::Undeliverable)
    );

    // Acknowledged receipts are gone; the others stay, across a restart.
    let first_two: Vec<Acknowledged> = pending
        .iter()
        .take(2)
        .map(|d| Acknowledged::of(d.id))
        .collect();
    store.acknowledge_deliveries(first_two).await.unwrap();
    store.close().await.unwrap();
    let store = open(&dir, &clock, None).await;
    assert_eq!(receipts(&store).await.len(), 2);
}

async fn query_sm_and_receipts_report_states_as_the_tables_say(backend: Backend) {
    let dir = Place::new(backend);
    let clock = ManualClock::new(T0);
    let store = open(&dir, &clock, None).await;
    let states = store.upstream_states();
    let final_state = |state, error_code| Some(FinalState { state, error_code });
    assert_eq!(
        states.final_state("Delivered"),
        final_state(MessageState::Delivered, 0)
    );
    assert_eq!(
        states.final_state("Failed"),
        final_state(MessageState::Undeliverable, 4)
    );
    assert_eq!(
        states.final_state("Cancelled"),
        final_state(MessageState::Deleted, 0)
    );
    assert_eq!(
        states.final_state("NotFound"),
        final_state(MessageState::Unknown, 0)
    );
    for on_its_way in ["Pending", "Processed", "Sent", "Cancelling", "Martian"] {
        assert_eq!(states.final_state(on_its_way), None, "{on_its_way}");
    }
    // Every state the broker stores has its row.
    for state in [
        MessageState::Assembling,
        MessageState::Scheduled,
        MessageState::Queued,
        MessageState::Enroute,
        MessageState::Delivered,
        MessageState::Expired,
        MessageState::Deleted,
        MessageState::Undeliverable,
        MessageState::Accepted,
        MessageState::Unknown,
        MessageState::Rejected,
    ] {
        let found = peek::message_state_rows(&store, state.as_str()).await;
        assert_eq!(found, 1, "{state:?}");
    }

    let ids = taken(&store, vec![message("hello")]).await;
    let reported = |store: Store, id: String| async move {
        let status = store.query("acme", &id, "").await.unwrap().unwrap();
        let pending = store.pending_deliveries("acme", 0, 10).await.unwrap();
        let DeliveryContent::Receipt(facts) = &pending[0].content else {
            panic!("{pending:?}")
        };
        (status.smpp_state, facts.smpp_state, facts.stat.clone())
    };
    let waiting = store.query("acme", &ids[0], "").await.unwrap().unwrap();
    assert_eq!(waiting.smpp_state, 1, "ENROUTE while the phone has it");
    store
        .record_reports(vec![report(
            &ids[0],
            "Delivered",
            Some(MessageState::Delivered),
        )])
        .await
        .unwrap();
    assert_eq!(
        reported(store.clone(), ids[0].clone()).await,
        (2, 2, "DELIVRD".into())
    );
    // An operator who changes the mapping changes query_sm and receipts alike.
    peek::report_delivered_as_accepted(&store).await;
    assert_eq!(
        reported(store.clone(), ids[0].clone()).await,
        (6, 6, "ACCEPTD".into())
    );
}

async fn every_part_of_a_long_message_gets_its_receipt(backend: Backend) {
    let dir = Place::new(backend);
    let clock = ManualClock::new(T0);
    let store = open(&dir, &clock, None).await;
    let ids = taken(
        &store,
        vec![part("k", 2, 1, "hello "), part("k", 2, 2, "world")],
    )
    .await;
    store
        .record_reports(vec![report(
            &ids[0],
            "Failed",
            Some(MessageState::Undeliverable),
        )])
        .await
        .unwrap();
    let got = receipts(&store).await;
    assert_eq!(
        got,
        [
            (ids[0].clone(), MessageState::Undeliverable),
            (ids[1].clone(), MessageState::Undeliverable)
        ]
    );
}

/// Parts submitted one PDU each, as clients send them, with these
/// registered_delivery values; returns their ids and the set's dispatch.
async fn long_message_asking(store: &Store, key: &str, asked: &[u8]) -> (Vec<String>, Dispatch) {
    let total = asked.len() as u8;
    let mut ids = Vec::new();
    for (seq, &registered_delivery) in (1..=total).zip(asked) {
        let part = NewMessage {
            registered_delivery,
            ..part(key, total, seq, &format!("part {seq} "))
        };
        ids.extend(store.submit(vec![part]).await.unwrap());
    }
    // A part's request is fixed once its set is joined: replace_sm refuses parts.
    assert_eq!(
        store
            .replace("acme", replacement(&ids[ids.len() - 1], "other"))
            .await
            .unwrap(),
        ReplaceOutcome::NotReplaceable
    );
    let mut claimed = claim_all(store).await;
    assert_eq!(claimed.len(), 1, "one dispatch for the set");
    (ids, claimed.remove(0))
}

async fn a_long_message_asks_for_a_report_when_any_part_does_and_each_part_gets_its_own(
    backend: Backend,
) {
    let dir = Place::new(backend);
    let clock = ManualClock::new(T0);
    let store = open(&dir, &clock, None).await;
    // Jasmin asks on the last part only; other clients on the first only.
    let (last_asks, set) = long_message_asking(&store, "jasmin", &[0, 0, 1]).await;
    assert_eq!(set.registered_delivery, 1, "the set asks the upstream");
    assert_eq!(set.content, Content::Text("part 1 part 2 part 3 ".into()));
    let (first_asks, other) = long_message_asking(&store, "first", &[1, 0, 0]).await;
    assert_eq!(other.registered_delivery, 1);
    let (none_asks, silent) = long_message_asking(&store, "none", &[0, 0]).await;
    assert_eq!(silent.registered_delivery, 0);
    let (failures_asks, failing) = long_message_asking(&store, "fail", &[0, 2]).await;
    assert_eq!(failing.registered_delivery, 2, "failures only, as asked");

    for dispatch in [&set, &other, &silent, &failing] {
        let accepted = DispatchOutcome::Accepted {
            upstream_id: dispatch.upstream_key(),
            upstream_state: "Pending".into(),
            check_at: T0 + 3_600_000,
            charge: None,
        };
        store
            .record_dispatch(vec![(dispatch.outbox_id, accepted)])
            .await
            .unwrap();
    }
    for dispatch in [&set, &other, &silent, &failing] {
        let delivered = report(
            &dispatch.upstream_key(),
            "Delivered",
            Some(MessageState::Delivered),
        );
        store.record_reports(vec![delivered]).await.unwrap();
    }
    assert_eq!(
        receipts(&store).await,
        [
            (last_asks[2].clone(), MessageState::Delivered),
            (first_asks[0].clone(), MessageState::Delivered),
        ],
        "only the parts that asked get a receipt; failures-only gets none on delivery"
    );
    for id in last_asks.iter().chain(&first_asks).chain(&none_asks) {
        assert_eq!(state_of(&store, id).await, MessageState::Delivered, "{id}");
    }
    assert_eq!(
        state_of(&store, &failures_asks[1]).await,
        MessageState::Delivered
    );
}

async fn the_oldest_deliveries_go_beyond_the_cap_and_all_after_the_retention(backend: Backend) {
    let dir = Place::new(backend);
    let clock = ManualClock::new(T0);
    let store = open_with(&dir, &clock, None, Some(3)).await;
    let ids = taken(&store, (0..5).map(|n| message(&format!("m{n}"))).collect()).await;
    for id in &ids {
        store
            .record_reports(vec![report(id, "Delivered", Some(MessageState::Delivered))])
            .await
            .unwrap();
    }
    let kept: Vec<String> = receipts(&store)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(kept, ids[2..], "the three newest");
    assert_eq!(
        store.dropped_deliveries(),
        [("acme".to_owned(), DropReason::OverLimit, 2)]
    );

    clock.advance_ms(48 * 3_600_000 - 1);
    store.maintain().await.unwrap();
    assert_eq!(receipts(&store).await.len(), 3);
    clock.advance_ms(1);
    store.maintain().await.unwrap();
    assert!(receipts(&store).await.is_empty(), "48 h is the limit");
    assert_eq!(
        store.dropped_deliveries(),
        [
            ("acme".to_owned(), DropReason::OverLimit, 2),
            ("acme".to_owned(), DropReason::Expired, 3)
        ]
    );
}

async fn an_incoming_message_is_stored_once_even_after_it_was_acknowledged(backend: Backend) {
    let dir = Place::new(backend);
    let clock = ManualClock::new(T0);
    let store = open(&dir, &clock, None).await;
    let hello = || Incoming {
        system_id: "acme".into(),
        source_addr: "+4917611111111".into(),
        dest_addr: "+4915100000".into(),
        content: Content::Text("hello".into()),
        dedupe_key: "mo:phone:a80532bb:+4917611111111:1790000000000".into(),
    };
    assert!(store.record_incoming(hello()).await.unwrap());
    assert!(
        !store.record_incoming(hello()).await.unwrap(),
        "a duplicate"
    );
    let pending = store.pending_deliveries("acme", 0, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    store
        .acknowledge_deliveries(vec![Acknowledged::of(pending[0].id)])
        .await
        .unwrap();
    // The phone tries the webhook again hours later: still a duplicate.
    clock.advance_ms(6 * 24 * 3_600_000);
    store.maintain().await.unwrap();
    assert!(!store.record_incoming(hello()).await.unwrap());
    assert!(store
        .pending_deliveries("acme", 0, 10)
        .await
        .unwrap()
        .is_empty());
    // A week on, the key is forgotten.
    clock.advance_ms(24 * 3_600_000 + 1);
    store.maintain().await.unwrap();
    assert!(store.record_incoming(hello()).await.unwrap());
}

async fn the_inbox_cursor_starts_once_and_only_moves_on(backend: Backend) {
    let dir = Place::new(backend);
    let clock = ManualClock::new(T0);
    let store = open(&dir, &clock, None).await;
    assert_eq!(store.inbox_cursor("phone").await.unwrap(), None);
    store.record_inbox("phone", Vec::new(), T0).await.unwrap();
    store
        .record_inbox("phone", Vec::new(), T0 + 500)
        .await
        .unwrap();
    store
        .record_inbox("phone", Vec::new(), T0 + 100)
        .await
        .unwrap();
    assert_eq!(
        store.inbox_cursor("phone").await.unwrap(),
        Some((T0, T0 + 500))
    );
}

async fn final_messages_and_their_outbox_rows_go_after_the_retention(backend: Backend) {
    let dir = Place::new(backend);
    let clock = ManualClock::new(T0);
    let store = open(&dir, &clock, None).await;
    let single = taken(&store, vec![message("done soon"), message("still out")]).await;
    let parts = taken(
        &store,
        vec![part("k", 2, 1, "first "), part("k", 2, 2, "second")],
    )
    .await;
    for id in [&single[0], &parts[0]] {
        store
            .record_reports(vec![report(id, "Delivered", Some(MessageState::Delivered))])
            .await
            .unwrap();
    }
    let outbox_ids = |store: Store| async move { peek::outbox_ids(&store).await };
    assert_eq!(outbox_ids(store.clone()).await.len(), 3);

    // Final at T0 + 5 s; kept 7 days from then.
    clock.advance_ms(7 * 24 * 3_600_000 + 5_000 - 1);
    store.maintain().await.unwrap();
    assert!(store.query("acme", &single[0], "").await.unwrap().is_some());
    clock.advance_ms(2);
    store.maintain().await.unwrap();
    for gone in [&single[0], &parts[0], &parts[1]] {
        assert_eq!(store.query("acme", gone, "").await.unwrap(), None, "{gone}");
    }
    // The message still on its way stays, with its outbox row.
    assert_eq!(state_of(&store, &single[1]).await, MessageState::Enroute);
    assert_eq!(outbox_ids(store.clone()).await, [single[1].clone()]);
}

/// The delivery hub reads waiting deliveries after the last id it handed out
/// (src/smpp/delivery.rs): a delivery stored after the newest one was
/// acknowledged must not take that one's id again.
async fn delivery_ids_only_grow_even_after_the_newest_was_acknowledged(backend: Backend) {
    let dir = Place::new(backend);
    let clock = ManualClock::new(T0);
    let store = open(&dir, &clock, None).await;
    let incoming = |n: u32| Incoming {
        system_id: "acme".into(),
        source_addr: "+4917611111111".into(),
        dest_addr: "+4915100000".into(),
        content: Content::Text(format!("hello {n}")),
        dedupe_key: format!("mo:phone:{n}"),
    };
    for n in 0..2 {
        assert!(store.record_incoming(incoming(n)).await.unwrap());
    }
    let first: Vec<i64> = store
        .pending_deliveries("acme", 0, 10)
        .await
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    let newest = *first.last().unwrap();
    store
        .acknowledge_deliveries(vec![Acknowledged::of(newest)])
        .await
        .unwrap();
    assert!(store.record_incoming(incoming(2)).await.unwrap());
    let after = store.pending_deliveries("acme", newest, 10).await.unwrap();
    assert_eq!(
        after.len(),
        1,
        "the new delivery comes after the acknowledged one"
    );
    assert!(after[0].id > newest);
}

/// The console's search shows a message's whole life (issue 16): each step
/// is kept, with its time, by the transaction that made it so, and goes with
/// the message.
async fn a_message_keeps_each_step_of_its_life_with_its_time(backend: Backend) {
    let dir = Place::new(backend);
    let clock = ManualClock::new(T0);
    let store = open(&dir, &clock, None).await;
    let bind = SessionBind {
        system_id: "acme".into(),
        bind_type: "transceiver",
        peer: "127.0.0.1:5000".into(),
    };
    let session = store.record_bind(bind.clone()).await.unwrap();
    assert!(
        store.record_bind(bind).await.unwrap() > session,
        "a new number each"
    );
    let id = store
        .submit(vec![NewMessage {
            session: Some(session),
            ..message("life")
        }])
        .await
        .unwrap()
        .remove(0);
    clock.advance_ms(1_000);
    let claimed = store
        .claim("sandbox", 10, 60_000, &[], to("phone"))
        .await
        .unwrap();
    let retry = DispatchOutcome::Retry {
        due_at: T0 + 1_000,
        error: "HTTP 503".into(),
        charged: true,
        stay: false,
        claim: None,
    };
    store
        .record_dispatch(vec![(claimed[0].outbox_id, retry)])
        .await
        .unwrap();
    clock.advance_ms(1_000);
    let claimed = store
        .claim("sandbox", 10, 60_000, &[], to("phone"))
        .await
        .unwrap();
    let accepted = DispatchOutcome::Accepted {
        upstream_id: "up-1".into(),
        upstream_state: "Pending".into(),
        check_at: T0 + 3_600_000,
        charge: None,
    };
    store
        .record_dispatch(vec![(claimed[0].outbox_id, accepted)])
        .await
        .unwrap();
    clock.advance_ms(1_000);
    store
        .record_reports(vec![report(&id, "Sent", None)])
        .await
        .unwrap();
    clock.advance_ms(1_000);
    store
        .record_reports(vec![report(
            &id,
            "Delivered",
            Some(MessageState::Delivered),
        )])
        .await
        .unwrap();
    let receipt = store.pending_deliveries("acme", 0, 10).await.unwrap()[0].id;
    let waiting = &store.find_messages(&id, T0).await.unwrap()[0];
    assert_eq!(
        (waiting.receipts_waiting, waiting.receipts_waiting_since),
        (1, Some(T0 + 4_000)),
        "a receipt stored, not yet delivered"
    );
    clock.advance_ms(1_000);
    store.delivery_attempted(vec![receipt]).await.unwrap();
    clock.advance_ms(1_000);
    let ack = Acknowledged {
        id: receipt,
        session_id: 7,
        sent_at: T0 + 6_000 - 40,
    };
    store.acknowledge_deliveries(vec![ack]).await.unwrap();

    let found = store.find_messages(&id, T0).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].session, Some(session));
    assert_eq!(found[0].session_bind_type.as_deref(), Some("transceiver"));
    assert_eq!(found[0].session_peer.as_deref(), Some("127.0.0.1:5000"));
    assert_eq!(found[0].session_bound_at, Some(T0));
    assert_eq!(found[0].sent_at, Some(T0 + 2_000));
    assert_eq!(found[0].upstream_state.as_deref(), Some("Delivered"));
    assert_eq!(found[0].final_at, Some(T0 + 5_000), "the upstream's time");
    let life: Vec<(i64, &str, &str)> = found[0]
        .events
        .iter()
        .map(|e| (e.at - T0, e.event.as_str(), e.detail.as_str()))
        .collect();
    assert_eq!(
        life,
        [
            (1_000, "retry", "HTTP 503"),
            (3_000, "upstream", "Sent"),
            (
                5_000,
                "receipt_refused",
                "deliver_sm not acknowledged (refused, or the session ended), attempt 1"
            ),
            (
                6_000,
                "receipt_delivered",
                "stored 2000 ms before; deliver_sm to session #7, acknowledged 40 ms after it \
                 was sent"
            ),
        ]
    );

    // A final message's life goes with it after the retention, and so do
    // the binds no message names, unless their sessions are still bound.
    let still_bound = store
        .record_bind(SessionBind {
            system_id: "acme".into(),
            bind_type: "receiver",
            peer: "127.0.0.1:5001".into(),
        })
        .await
        .unwrap();
    for _ in 0..7 * 24 {
        clock.advance_ms(3_600_000);
        store.binds_seen(vec![still_bound]).await.unwrap();
    }
    store.maintain().await.unwrap();
    assert!(store.find_messages(&id, T0).await.unwrap().is_empty());
    assert_eq!(peek::events(&store).await, 0);
    assert_eq!(peek::binds(&store).await, [still_bound]);
}

on_both_backends!(
    a_message_keeps_each_step_of_its_life_with_its_time,
    receipts_follow_registered_delivery_and_are_stored_once,
    query_sm_and_receipts_report_states_as_the_tables_say,
    every_part_of_a_long_message_gets_its_receipt,
    a_long_message_asks_for_a_report_when_any_part_does_and_each_part_gets_its_own,
    the_oldest_deliveries_go_beyond_the_cap_and_all_after_the_retention,
    an_incoming_message_is_stored_once_even_after_it_was_acknowledged,
    the_inbox_cursor_starts_once_and_only_moves_on,
    final_messages_and_their_outbox_rows_go_after_the_retention,
    delivery_ids_only_grow_even_after_the_newest_was_acknowledged,
);
