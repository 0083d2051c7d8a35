//! Routes in the store: claims by route, messages bound to the member an
//! attempt went to, and the parts each member took.

use super::*;

fn members(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn routed(text: &str, route: &str) -> NewMessage {
    NewMessage {
        route: route.into(),
        ..message(text)
    }
}

fn retry(stay: bool) -> DispatchOutcome {
    DispatchOutcome::Retry {
        due_at: T0,
        error: "request timed out".into(),
        charged: true,
        stay,
        claim: None,
    }
}

async fn claims_go_by_route_and_a_bound_message_waits_for_its_member(backend: Backend) {
    let dir = Place::new(backend);
    let clock = ManualClock::new(T0);
    let store = open(&dir, &clock, None).await;
    store.submit(vec![routed("de", "germany")]).await.unwrap();
    store.submit(vec![routed("fr", "france")]).await.unwrap();
    let all = members(&["a", "b"]);
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let placer = {
        let seen = Arc::clone(&seen);
        Box::new(move |d: &Dispatch| {
            seen.lock()
                .unwrap()
                .push((d.route.clone(), d.upstream.clone()));
            Placement::Member("a".into())
        })
    };
    let claimed = store
        .claim("germany", 10, 60_000, &all, placer)
        .await
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), [("germany".to_owned(), None)]);
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        claimed[0].upstream.as_deref(),
        Some("a"),
        "bound in the claim"
    );

    // The outcome at a is unknown: the message stays with a.
    let id = claimed[0].outbox_id;
    store
        .record_dispatch(vec![(id, retry(true))])
        .await
        .unwrap();
    let without_a = store
        .claim("germany", 10, 60_000, &members(&["b"]), to("b"))
        .await;
    assert!(
        without_a.unwrap().is_empty(),
        "bound to a, which is unavailable"
    );
    let again = store
        .claim("germany", 10, 60_000, &all, as_is())
        .await
        .unwrap();
    assert_eq!(again[0].upstream.as_deref(), Some("a"));
    assert_eq!(again[0].attempts, 1);

    // a said it did not take it: free for any member.
    store
        .record_dispatch(vec![(id, retry(false))])
        .await
        .unwrap();
    let freed = store
        .claim("germany", 10, 60_000, &[], to("b"))
        .await
        .unwrap();
    assert_eq!((freed.len(), freed[0].upstream.as_deref()), (1, Some("b")));
    let france = store
        .claim("france", 10, 60_000, &[], as_is())
        .await
        .unwrap();
    assert_eq!((france.len(), &france[0].upstream), (1, &None));
}

async fn a_message_no_member_can_take_waits_unclaimed_and_keeps_its_member(backend: Backend) {
    let dir = Place::new(backend);
    let clock = ManualClock::new(T0);
    let store = open(&dir, &clock, None).await;
    let ids = store.submit(vec![message("one")]).await.unwrap();
    let wait = || -> Placer {
        Box::new(|_| Placement::Wait {
            until: T0 + 1_000,
            reason: "no member".into(),
        })
    };
    assert!(store
        .claim("sandbox", 10, 60_000, &[], wait())
        .await
        .unwrap()
        .is_empty());
    assert!(
        store
            .claim("sandbox", 10, 60_000, &[], to("a"))
            .await
            .unwrap()
            .is_empty(),
        "waiting"
    );
    clock.advance_ms(1_000);
    store.maintain().await.unwrap();
    let claimed = store
        .claim("sandbox", 10, 60_000, &[], to("a"))
        .await
        .unwrap();
    assert_eq!(claimed[0].upstream_key(), ids[0]);
    assert_eq!(claimed[0].attempts, 0, "waiting is not an attempt");
    // Bound to a, it waits for a.
    store
        .record_dispatch(vec![(claimed[0].outbox_id, retry(true))])
        .await
        .unwrap();
    let reachable = members(&["a"]);
    assert!(store
        .claim("sandbox", 10, 60_000, &reachable, wait())
        .await
        .unwrap()
        .is_empty());
    clock.advance_ms(1_000);
    store.maintain().await.unwrap();
    let again = store
        .claim("sandbox", 10, 60_000, &reachable, as_is())
        .await
        .unwrap();
    assert_eq!(again[0].upstream.as_deref(), Some("a"));
}

async fn a_claim_cut_off_by_a_crash_goes_back_to_its_member_and_cannot_be_cancelled(
    backend: Backend,
) {
    let dir = Place::new(backend);
    let clock = ManualClock::new(T0);
    let store = open(&dir, &clock, None).await;
    let ids = store
        .submit(vec![message("sent"), message("free")])
        .await
        .unwrap();
    let first = ids[0].clone();
    let placer = Box::new(move |d: &Dispatch| {
        if d.upstream_key() == first {
            Placement::Member("sandbox".into())
        } else {
            Placement::AsIs
        }
    });
    let claimed = store
        .claim("sandbox", 10, 60_000, &[], placer)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    store.close().await.unwrap();

    let store = open(&dir, &clock, None).await;
    let back = store
        .claim("sandbox", 10, 60_000, &[], as_is())
        .await
        .unwrap();
    assert_eq!(back.len(), 1, "the bound one waits for its member");
    assert_eq!(back[0].upstream_key(), ids[1]);
    let bound = store
        .claim("sandbox", 10, 60_000, &members(&["sandbox"]), as_is())
        .await
        .unwrap();
    assert_eq!(bound[0].upstream_key(), ids[0]);
    assert_eq!(bound[0].upstream.as_deref(), Some("sandbox"));
    store
        .record_dispatch(vec![(bound[0].outbox_id, retry(true))])
        .await
        .unwrap();
    // The member may have it: too late to cancel.
    let target = CancelTarget::MessageId {
        message_id: ids[0].clone(),
        source_addr: String::new(),
    };
    assert_eq!(
        store.cancel("acme", target).await.unwrap(),
        CancelOutcome::TooLate
    );
}

fn charge(parts: u32, day: i64, month: i64) -> UsageCharge {
    UsageCharge {
        parts,
        periods: vec![
            UsagePeriod {
                period: "day",
                starts_at: day,
                ends_at: day + 86_400_000,
            },
            UsagePeriod {
                period: "month",
                starts_at: month,
                ends_at: month + 31 * 86_400_000,
            },
        ],
    }
}

async fn parts_count_once_per_message_against_the_member_that_took_it(backend: Backend) {
    let dir = Place::new(backend);
    let clock = ManualClock::new(T0);
    let store = open(&dir, &clock, None).await;
    store
        .submit(vec![message("one"), message("two")])
        .await
        .unwrap();
    let claimed = claim_all(&store).await;
    let (day, month) = (T0 - 3_600_000, T0 - 10 * 86_400_000);
    let accepted = |parts| DispatchOutcome::Accepted {
        upstream_id: "x".into(),
        upstream_state: "Pending".into(),
        check_at: T0 + 600_000,
        charge: Some(charge(parts, day, month)),
    };
    let outcomes = vec![
        (claimed[0].outbox_id, accepted(2)),
        (claimed[1].outbox_id, accepted(1)),
        // A repeated answer changes nothing.
        (claimed[0].outbox_id, accepted(2)),
    ];
    store.record_dispatch(outcomes).await.unwrap();
    assert_eq!(store.usage_parts("sandbox", "day", T0).await.unwrap(), 3);
    assert_eq!(store.usage_parts("sandbox", "month", T0).await.unwrap(), 3);
    assert_eq!(
        store
            .usage_parts("sandbox", "day", day + 86_400_000)
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.usage_parts("other", "day", day).await.unwrap(), 0);
}

async fn waiting_messages_expire_with_their_receipt_free_or_bound(backend: Backend) {
    let dir = Place::new(backend);
    let clock = ManualClock::new(T0);
    let store = open(&dir, &clock, None).await;
    let short = |text: &str| NewMessage {
        expires_at: T0 + 1_000,
        ..message(text)
    };
    let ids = store
        .submit(vec![short("bound"), short("free"), message("valid")])
        .await
        .unwrap();
    let claimed = claim_all(&store).await;
    let retried = claimed
        .iter()
        .map(|d| (d.outbox_id, retry(d.upstream_key() == ids[0])))
        .collect();
    store.record_dispatch(retried).await.unwrap();
    assert_eq!(
        store.expire_waiting("sandbox").await.unwrap().len(),
        0,
        "still valid"
    );
    clock.advance_ms(1_000);
    assert!(store.expire_waiting("other").await.unwrap().is_empty());
    // Free or bound to a member that cannot take it now: both expire.
    let expired = store.expire_waiting("sandbox").await.unwrap();
    let bound: Vec<Option<&str>> = expired.iter().map(|(_, m)| m.as_deref()).collect();
    assert_eq!(bound, [Some("sandbox"), None]);
    assert_eq!(state_of(&store, &ids[0]).await, MessageState::Expired);
    assert_eq!(state_of(&store, &ids[1]).await, MessageState::Expired);
    assert_eq!(state_of(&store, &ids[2]).await, MessageState::Queued);
    let receipts = store.pending_deliveries("acme", 0, 10).await.unwrap();
    assert_eq!(receipts.len(), 2, "the expired ones' receipts");
}

async fn a_late_answer_to_an_expired_claim_leaves_the_new_claim_alone(backend: Backend) {
    let dir = Place::new(backend);
    let clock = ManualClock::new(T0);
    let store = open(&dir, &clock, None).await;
    store.submit(vec![message("one")]).await.unwrap();
    let first = store
        .claim("sandbox", 10, 60_000, &[], to("a"))
        .await
        .unwrap();
    // The request hangs past its lease; the row is claimed again, for a.
    clock.advance_ms(60_000);
    store.maintain().await.unwrap();
    let reachable = members(&["a"]);
    let second = store
        .claim("sandbox", 10, 60_000, &reachable, to("a"))
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    assert_ne!(second[0].lease_until, first[0].lease_until);
    // The first request's 503 comes now: it must not free the message that
    // the second request may be delivering to a.
    let late = DispatchOutcome::Retry {
        due_at: T0,
        error: "HTTP 503".into(),
        charged: true,
        stay: false,
        claim: Some(first[0].lease_until),
    };
    store
        .record_dispatch(vec![(first[0].outbox_id, late)])
        .await
        .unwrap();
    let elsewhere = store
        .claim("sandbox", 10, 60_000, &[], to("b"))
        .await
        .unwrap();
    assert!(elsewhere.is_empty(), "still claimed for a");
    // The second request's own answer counts.
    let own = DispatchOutcome::Retry {
        due_at: T0,
        error: "HTTP 503".into(),
        charged: true,
        stay: false,
        claim: Some(second[0].lease_until),
    };
    store
        .record_dispatch(vec![(second[0].outbox_id, own)])
        .await
        .unwrap();
    let freed = store
        .claim("sandbox", 10, 60_000, &[], to("b"))
        .await
        .unwrap();
    assert_eq!(freed[0].upstream.as_deref(), Some("b"));
}

on_both_backends!(
    claims_go_by_route_and_a_bound_message_waits_for_its_member,
    a_message_no_member_can_take_waits_unclaimed_and_keeps_its_member,
    a_claim_cut_off_by_a_crash_goes_back_to_its_member_and_cannot_be_cancelled,
    parts_count_once_per_message_against_the_member_that_took_it,
    waiting_messages_expire_with_their_receipt_free_or_bound,
    a_late_answer_to_an_expired_claim_leaves_the_new_claim_alone,
);
