//! Taking messages in: submits, the queue limit, schedules, cancel and replace,
//! long messages assembled from their parts.

use super::*;

async fn submit_returns_unique_increasing_ids_and_query_finds_them(backend: Backend) {
    let dir = Place::new(backend);
    let clock = ManualClock::new(T0);
    let store = open(&dir, &clock, None).await;
    let ids = store
        .submit(vec![message("one"), message("two")])
        .await
        .unwrap();
    assert_eq!(ids.len(), 2);
    assert!(ids[0].parse::<u64>().unwrap() < ids[1].parse::<u64>().unwrap());
    assert!(ids
        .iter()
        .all(|id| id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit())));
    let status = store
        .query("acme", &ids[0], "4915100000")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.state, MessageState::Queued);
    assert_eq!(status.smpp_state, 1, "a waiting message is ENROUTE");
    assert_eq!(status.final_at, None);
    assert_eq!(
        store.query("acme", &ids[0], "999").await.unwrap(),
        None,
        "source must match"
    );
    assert_eq!(
        store.query("other", &ids[0], "").await.unwrap(),
        None,
        "another account's id"
    );
    assert_eq!(
        outbox_texts(&store).await,
        vec![
            ("queued".into(), Some("one".into())),
            ("queued".into(), Some("two".into()))
        ]
    );

    // Ids stay unique after a restart even if the clock went back.
    store.close().await.unwrap();
    clock.advance_ms(-60_000);
    let store = open(&dir, &clock, None).await;
    let later = store.submit(vec![message("three")]).await.unwrap();
    assert!(later[0].parse::<u64>().unwrap() > ids[1].parse::<u64>().unwrap());
}

async fn queue_limit_refuses_beyond_the_waiting_count(backend: Backend) {
    let dir = Place::new(backend);
    let store = open(&dir, &ManualClock::new(T0), Some(3)).await;
    store
        .submit(vec![message("a"), message("b")])
        .await
        .unwrap();
    let ids = store.submit(vec![message("c")]).await.unwrap();
    assert!(matches!(
        store.submit(vec![message("d")]).await,
        Err(SubmitError::QueueFull(3))
    ));
    // Cancelling frees a place; the count survives a restart.
    assert_eq!(
        store
            .cancel(
                "acme",
                CancelTarget::MessageId {
                    message_id: ids[0].clone(),
                    source_addr: String::new()
                }
            )
            .await
            .unwrap(),
        CancelOutcome::Cancelled(1)
    );
    store.close().await.unwrap();
    let store = open(&dir, &ManualClock::new(T0), Some(3)).await;
    store.submit(vec![message("e")]).await.unwrap();
    assert!(matches!(
        store.submit(vec![message("f")]).await,
        Err(SubmitError::QueueFull(3))
    ));
}

async fn scheduled_messages_wait_until_due(backend: Backend) {
    let dir = Place::new(backend);
    let clock = ManualClock::new(T0);
    let store = open(&dir, &clock, None).await;
    let later = NewMessage {
        scheduled_at: Some(T0 + 60_000),
        ..message("later")
    };
    let id = store.submit(vec![later]).await.unwrap().remove(0);
    assert_eq!(state_of(&store, &id).await, MessageState::Scheduled);
    clock.advance_ms(59_000);
    store.maintain().await.unwrap();
    assert_eq!(state_of(&store, &id).await, MessageState::Scheduled);
    clock.advance_ms(1_000);
    store.maintain().await.unwrap();
    assert_eq!(state_of(&store, &id).await, MessageState::Queued);
    assert_eq!(
        outbox_texts(&store).await,
        vec![("queued".into(), Some("later".into()))]
    );
}

async fn cancel_by_id_and_by_addresses(backend: Backend) {
    let dir = Place::new(backend);
    let store = open(&dir, &ManualClock::new(T0), None).await;
    let ids = store
        .submit(vec![message("a"), message("b"), message("c")])
        .await
        .unwrap();
    let by_id = CancelTarget::MessageId {
        message_id: ids[0].clone(),
        source_addr: "4915100000".into(),
    };
    assert_eq!(
        store.cancel("acme", by_id.clone()).await.unwrap(),
        CancelOutcome::Cancelled(1)
    );
    assert_eq!(state_of(&store, &ids[0]).await, MessageState::Deleted);
    assert_eq!(
        store.cancel("acme", by_id).await.unwrap(),
        CancelOutcome::TooLate,
        "already final"
    );
    let unknown = CancelTarget::MessageId {
        message_id: "42".into(),
        source_addr: String::new(),
    };
    assert_eq!(
        store.cancel("acme", unknown).await.unwrap(),
        CancelOutcome::NotFound
    );
    let by_addr = CancelTarget::Addresses {
        service_type: String::new(),
        source_addr: "4915100000".into(),
        dest_addr: "4917600000".into(),
    };
    assert_eq!(
        store.cancel("acme", by_addr).await.unwrap(),
        CancelOutcome::Cancelled(2)
    );
    let status = store.query("acme", &ids[2], "").await.unwrap().unwrap();
    assert_eq!(
        (status.state, status.smpp_state),
        (MessageState::Deleted, 4)
    );
    assert!(status.final_at.is_some());
    let states: Vec<String> = peek::outbox(&store)
        .await
        .into_iter()
        .map(|(state, _)| state)
        .collect();
    assert_eq!(states, vec!["done"; 3]);
}

async fn replace_changes_a_waiting_message(backend: Backend) {
    let dir = Place::new(backend);
    let store = open(&dir, &ManualClock::new(T0), None).await;
    let id = store
        .submit(vec![message("old text")])
        .await
        .unwrap()
        .remove(0);
    let replacement = replacement(&id, "new text");
    assert_eq!(
        store.replace("acme", replacement.clone()).await.unwrap(),
        ReplaceOutcome::Replaced
    );
    assert_eq!(
        outbox_texts(&store).await,
        vec![("queued".into(), Some("new text".into()))]
    );
    let missing = Replacement {
        message_id: "1".into(),
        ..replacement.clone()
    };
    assert_eq!(
        store.replace("acme", missing).await.unwrap(),
        ReplaceOutcome::NotFound
    );
    store
        .cancel(
            "acme",
            CancelTarget::MessageId {
                message_id: id,
                source_addr: String::new(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        store.replace("acme", replacement).await.unwrap(),
        ReplaceOutcome::NotReplaceable
    );
}

async fn long_message_parts_out_of_order_with_a_duplicate(backend: Backend) {
    let dir = Place::new(backend);
    let store = open(&dir, &ManualClock::new(T0), None).await;
    let third = store
        .submit(vec![part("k1", 3, 3, " world")])
        .await
        .unwrap()
        .remove(0);
    let first = store
        .submit(vec![part("k1", 3, 1, "Hello")])
        .await
        .unwrap()
        .remove(0);
    let duplicate = store
        .submit(vec![part("k1", 3, 1, "Hello")])
        .await
        .unwrap()
        .remove(0);
    assert_eq!(state_of(&store, &first).await, MessageState::Assembling);
    assert!(outbox_texts(&store).await.is_empty());
    let second = store
        .submit(vec![part("k1", 3, 2, ",")])
        .await
        .unwrap()
        .remove(0);
    for id in [&first, &second, &third, &duplicate] {
        assert_eq!(
            state_of(&store, id).await,
            MessageState::Queued,
            "part {id}"
        );
    }
    assert_eq!(
        outbox_texts(&store).await,
        vec![("queued".into(), Some("Hello, world".into()))]
    );
}

async fn a_set_survives_a_restart_and_a_missing_part_times_out(backend: Backend) {
    let dir = Place::new(backend);
    let clock = ManualClock::new(T0);
    let store = open(&dir, &clock, None).await;
    let a1 = store
        .submit(vec![part("set-a", 2, 1, "first ")])
        .await
        .unwrap()
        .remove(0);
    let b1 = store
        .submit(vec![part("set-b", 2, 1, "never ")])
        .await
        .unwrap()
        .remove(0);
    store.close().await.unwrap();
    let store = open(&dir, &clock, None).await;
    store
        .submit(vec![part("set-a", 2, 2, "half")])
        .await
        .unwrap();
    assert_eq!(state_of(&store, &a1).await, MessageState::Queued);
    assert_eq!(
        outbox_texts(&store).await,
        vec![("queued".into(), Some("first half".into()))]
    );

    clock.advance_ms(59_000);
    store.maintain().await.unwrap();
    assert_eq!(state_of(&store, &b1).await, MessageState::Assembling);
    clock.advance_ms(1_000);
    store.maintain().await.unwrap();
    let status = store.query("acme", &b1, "").await.unwrap().unwrap();
    assert_eq!(status.state, MessageState::Undeliverable);
    assert_eq!(status.error_code, ErrorCode::AssemblyTimeout.code());
}

async fn ucs2_parts_split_inside_a_surrogate_pair_join_correctly(backend: Backend) {
    let dir = Place::new(backend);
    let store = open(&dir, &ManualClock::new(T0), None).await;
    // "a😀" in UTF-16BE: 0061 D83D DE00, cut between the two surrogates.
    let ucs2 = |body: &[u8], seq| NewMessage {
        body: body.to_vec(),
        charset: Charset::Ucs2,
        data_coding: 8,
        ..part("u", 2, seq, "")
    };
    store
        .submit(vec![ucs2(&[0x00, 0x61, 0xD8, 0x3D], 1)])
        .await
        .unwrap();
    store.submit(vec![ucs2(&[0xDE, 0x00], 2)]).await.unwrap();
    assert_eq!(
        outbox_texts(&store).await,
        vec![("queued".into(), Some("a😀".into()))]
    );
}

async fn queue_depth_view_counts_by_account_and_state(backend: Backend) {
    let dir = Place::new(backend);
    let store = open(&dir, &ManualClock::new(T0), None).await;
    store
        .submit(vec![message("a"), message("b"), part("x", 2, 1, "c")])
        .await
        .unwrap();
    assert_eq!(
        store.queue_depth().await.unwrap(),
        vec![
            ("acme".into(), "assembling".into(), 1),
            ("acme".into(), "queued".into(), 2)
        ]
    );
}

#[test]
fn only_the_exact_decimal_form_names_a_message() {
    assert_eq!(parse_message_id("1234"), Some(1234));
    assert_eq!(parse_message_id("0"), Some(0));
    for other in ["", "007", "+7", "-7", "7a", " 7", "99999999999999999999"] {
        assert_eq!(parse_message_id(other), None, "{other:?}");
    }
}

async fn an_operator_finds_messages_by_id_and_by_destination(backend: Backend) {
    let dir = Place::new(backend);
    let store = open(&dir, &ManualClock::new(T0), None).await;
    let to = |addr: &str, text: &str| NewMessage {
        dest: Party {
            ton: 1,
            npi: 1,
            addr: addr.into(),
        },
        ..message(text)
    };
    let ids = store
        .submit(vec![
            to("4917611111", "one"),
            to("4917622222", "two"),
            to("4917611111", "three"),
        ])
        .await
        .unwrap();
    let found = store.find_messages(&ids[1], T0).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].message_id.to_string(), ids[1]);
    assert_eq!(
        (found[0].state.as_str(), found[0].dest_addr.as_str()),
        ("queued", "4917622222")
    );
    assert_eq!(found[0].outbox_state.as_deref(), Some("queued"));
    let to_one: Vec<String> = store
        .find_messages(" 4917611111 ", T0)
        .await
        .unwrap()
        .iter()
        .map(|m| m.message_id.to_string())
        .collect();
    assert_eq!(to_one, [ids[2].clone(), ids[0].clone()], "newest first");
    assert!(store
        .find_messages("4917699999", T0)
        .await
        .unwrap()
        .is_empty());
    assert!(store.find_messages("", T0).await.unwrap().is_empty());
    // By destination a day back: a later look no longer finds them, by id it does.
    let two_days_on = T0 + 2 * crate::store::DESTINATION_SEARCH_MS;
    assert!(store
        .find_messages("4917611111", two_days_on)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .find_messages(&ids[0], two_days_on)
            .await
            .unwrap()
            .len(),
        1
    );

    // Handed to an upstream: which, its id there and its state.
    let claimed = claim_all(&store).await;
    let outcomes = claimed
        .iter()
        .map(|d| {
            let outcome = DispatchOutcome::Accepted {
                upstream_id: format!("up-{}", d.outbox_id),
                upstream_state: "Pending".into(),
                check_at: T0 + 60_000,
                charge: None,
            };
            (d.outbox_id, outcome)
        })
        .collect();
    store.record_dispatch(outcomes).await.unwrap();
    let sent = &store.find_messages(&ids[0], T0).await.unwrap()[0];
    assert_eq!(sent.state, "enroute");
    assert_eq!(sent.upstream.as_deref(), Some("sandbox"));
    assert_eq!(sent.upstream_id, Some(format!("up-{}", ids[0])));
    assert_eq!(sent.upstream_state.as_deref(), Some("Pending"));
    assert_eq!(sent.attempts, Some(1));
}

on_both_backends!(
    an_operator_finds_messages_by_id_and_by_destination,
    submit_returns_unique_increasing_ids_and_query_finds_them,
    queue_limit_refuses_beyond_the_waiting_count,
    scheduled_messages_wait_until_due,
    cancel_by_id_and_by_addresses,
    replace_changes_a_waiting_message,
    long_message_parts_out_of_order_with_a_duplicate,
    a_set_survives_a_restart_and_a_missing_part_times_out,
    ucs2_parts_split_inside_a_surrogate_pair_join_correctly,
    queue_depth_view_counts_by_account_and_state,
);
