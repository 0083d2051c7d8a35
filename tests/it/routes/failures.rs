//! Members that refuse, fail or time out: a definite refusal moves the
//! message, an unknown outcome keeps it with its member, and /readyz says why
//! a member takes nothing.

use super::*;

#[tokio::test]
async fn a_member_that_answers_401_is_paused_and_its_share_moves() {
    let phones = Phones::start().await;
    phones.a.fail_every(1, Fault::Unauthorized);
    let routes = "[[routes]]\nname = \"all\"\nupstreams = [\"a\", \"b\", \"c\"]\n";
    let broker = phones.broker(["", "", ""], routes).await;
    let mut esme = bound(&broker, "acme", "acme1234").await;

    // The round robin starts at a: the first message meets the 401, and goes
    // on to another member at once.
    let first = submit_ok(&mut esme, to("4917600001", "first")).await;
    phones.until_accepted(&broker, 1).await;
    assert_eq!(
        phones.a.post_count(),
        1,
        "the first message went to a first"
    );
    let paused = until_state(&broker, "a", "paused").await;
    let reason = paused["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("401"), "{paused}");
    assert!(paused["until_ms"].is_i64(), "{paused}");
    let row = broker.db().outbox_row(&first).await;
    assert_eq!(
        (row.state, row.attempts),
        (OutboxState::Enroute, 1),
        "the 401 cost no attempt"
    );

    let more = (0..59).map(|n| to(&format!("49176{n:05}"), &format!("after the pause {n}")));
    let mut ids = vec![first];
    ids.extend(submit_all(&mut esme, more).await);
    let holders = phones.until_accepted(&broker, ids.len()).await;
    each_at_one(&holders, &ids);
    let [a, b, c] = phones.counts();
    assert_eq!(a, 0, "a accepted nothing");
    assert_eq!(
        phones.a.post_count(),
        1,
        "a was sent nothing after its refusal"
    );
    assert!(
        b.abs_diff(c) <= 1,
        "b and c share a's part evenly: {b} and {c}"
    );
    assert_eq!(readyz(&broker).await["upstreams"]["b"]["state"], "sending");
    let metrics = broker.metrics_text().await;
    assert_metric(&metrics, "smpp_broker_upstream_paused{upstream=\"a\"} 1");
    assert_metric(&metrics, "smpp_broker_upstream_paused{upstream=\"b\"} 0");
}

#[tokio::test]
async fn a_timeout_at_one_member_never_sends_the_message_to_another() {
    let phones = Phones::start().await;
    // a's first three requests are answered after the request timed out.
    phones
        .a
        .push_faults(vec![Fault::Slow(Duration::from_millis(1500)); 3]);
    let routes = "[[routes]]\nname = \"all\"\nupstreams = [\"a\", \"b\", \"c\"]\n";
    let timeout = "request_timeout = \"300ms\"\n";
    let broker = phones.broker([timeout, timeout, timeout], routes).await;
    let mut esme = bound(&broker, "acme", "acme1234").await;
    let messages = (0..30).map(|n| to(&format!("49176{n:05}"), &format!("patient {n}")));
    let ids = submit_all(&mut esme, messages).await;

    phones.until_accepted(&broker, ids.len()).await;
    // A slow answer may still store its message when it ends: look once the
    // last request to a can no longer be sleeping.
    let last_at_a = *phones.a.arrivals().last().expect("a was sent something");
    tokio::time::sleep_until(last_at_a + Duration::from_millis(1600)).await;
    let at = each_at_one(&phones.holders(), &ids);

    // The messages whose first request timed out (two attempts): each went
    // back to a, and only to a.
    let rows = broker.db().outbox().await;
    let timed_out: Vec<_> = rows.iter().filter(|r| r.attempts > 1).collect();
    assert_eq!(timed_out.len(), 3, "{rows:?}");
    for row in &timed_out {
        let id = row.id.to_string();
        assert_eq!(
            (row.upstream.as_deref(), at[&id]),
            (Some("a"), "a"),
            "{row:?}"
        );
    }
    for row in &rows {
        assert_eq!(
            row.upstream.as_deref(),
            Some(at[&row.id.to_string()]),
            "{row:?}"
        );
    }
    assert!(phones.a.post_count() >= phones.a.accepted_count() + 3);
    assert_metric(
        &broker.metrics_text().await,
        "smpp_broker_upstream_responses_total{upstream=\"a\",class=\"transport_error\"} 3",
    );
}

/// A member that may hold a message (its answer was lost) and then refuses
/// the same message outright: the refusal is about that request, not the
/// earlier one, so the message must stay with the member, which knows its id.
/// The refusal keeps a away for a second (a 429's Retry-After, a 401's
/// pause): then a is asked again, answers 409, and the message is accepted
/// there; b and c are never to see it.
async fn refused_after_an_unknown_outcome(refusal: Fault) {
    let phones = Phones::start().await;
    // a stores the message but its answer is lost; the resend is refused.
    phones
        .a
        .push_faults([Fault::AcceptThenReset, refusal.clone()]);
    let routes = "[[routes]]\nname = \"all\"\nupstreams = [\"a\", \"b\", \"c\"]\n";
    let broker = phones
        .broker(["pause_cooldown = \"1s\"\n", "", ""], routes)
        .await;
    let mut esme = bound(&broker, "acme", "acme1234").await;
    // The round robin starts at a.
    let id = submit_ok(&mut esme, to("4917600003", "taken, answer lost")).await;
    phones.until_accepted(&broker, 1).await;
    eventually(PATIENCE, "a is sent the message again", || async {
        (phones.a.pending_faults() == 0).then_some(())
    })
    .await;
    let row = eventually(PATIENCE, "the broker records an acceptance", || async {
        let row = broker.db().outbox_row(&id).await;
        if row.state == OutboxState::Enroute {
            Ok(row)
        } else {
            Err(row)
        }
    })
    .await;
    assert_eq!(
        phones.holders()[&id],
        ["a"],
        "{refusal:?} after a lost answer: message {id} must stay with a, which has it; \
         outbox row {row:?}"
    );
    assert_eq!(row.upstream.as_deref(), Some("a"), "{row:?}");
}

#[tokio::test]
async fn a_429_after_a_lost_answer_keeps_the_message_at_its_member() {
    refused_after_an_unknown_outcome(Fault::TooManyRequests {
        retry_after_secs: 1,
    })
    .await;
}

#[tokio::test]
async fn a_401_after_a_lost_answer_keeps_the_message_at_its_member() {
    refused_after_an_unknown_outcome(Fault::Unauthorized).await;
}

#[tokio::test]
async fn readyz_tells_why_a_member_takes_nothing() {
    let phones = Phones::start().await;
    phones.a.fail_every(1, Fault::Unauthorized);
    let routes = "[[routes]]\nname = \"all\"\nupstreams = [\"a\", \"b\", \"c\"]\n";
    let broker = phones.broker(["", "daily_limit = 1\n", ""], routes).await;
    let ready = readyz(&broker).await;
    for name in ["a", "b", "c"] {
        assert_eq!(ready["upstreams"][name]["state"], "sending", "{ready}");
    }
    let mut esme = bound(&broker, "acme", "acme1234").await;
    // a refuses the first (and is paused), b takes the second, then c.
    let messages = (0..4).map(|n| to(&format!("49176{n:05}"), &format!("ready {n}")));
    let ids = submit_all(&mut esme, messages).await;
    let holders = phones.until_accepted(&broker, ids.len()).await;
    each_at_one(&holders, &ids);
    assert_eq!(phones.counts(), [0, 1, 3]);

    let ready = readyz(&broker).await;
    let a = &ready["upstreams"]["a"];
    assert_eq!(a["state"], "paused", "{ready}");
    assert!(
        a["reason"].as_str().unwrap_or_default().contains("401"),
        "{ready}"
    );
    let b = &ready["upstreams"]["b"];
    assert_eq!(b["state"], "over_limit", "{ready}");
    assert!(
        b["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("daily_limit 1 reached"),
        "{ready}"
    );
    assert_eq!(ready["upstreams"]["c"]["state"], "sending", "{ready}");
    assert_eq!(ready["store"], "ok");
}

/// A broker with the pool [a, b, c] (the round robin starts at a), a's own
/// `a_keys`, and one message submitted; returns its id.
async fn one_message_through_the_pool(phones: &Phones, a_keys: &str) -> (TestBroker, String) {
    let routes = "[[routes]]\nname = \"all\"\nupstreams = [\"a\", \"b\", \"c\"]\n";
    let broker = phones.broker([a_keys, "", ""], routes).await;
    let mut esme = bound(&broker, "acme", "acme1234").await;
    let id = submit_ok(&mut esme, to("4917600004", "one message")).await;
    (broker, id)
}

#[tokio::test]
async fn a_503_moves_the_message_at_once_while_the_member_cools_down() {
    let phones = Phones::start().await;
    phones.a.push_faults([Fault::QueueLimits]);
    // a's cool-down outlasts the test.
    let (broker, id) = one_message_through_the_pool(&phones, "retry_schedule = [\"60s\"]\n").await;
    let holders = phones.until_accepted(&broker, 1).await;
    let at = each_at_one(&holders, std::slice::from_ref(&id))[&id];
    assert_ne!(at, "a");
    assert_eq!(phones.a.post_count(), 1);
    let row = broker.db().outbox_row(&id).await;
    assert_eq!(row.upstream.as_deref(), Some(at), "{row:?}");
    let cooling = until_state(&broker, "a", "cooling_down").await;
    let reason = cooling["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("HTTP 503"), "{cooling}");
    assert!(cooling["until_ms"].is_i64(), "{cooling}");
}

#[tokio::test]
async fn a_server_error_sends_the_message_back_to_the_same_member_only() {
    let phones = Phones::start().await;
    // A 500 may come after the message was stored: only a may be asked again.
    phones
        .a
        .push_faults([Fault::ServerError, Fault::ServerError]);
    let (broker, id) = one_message_through_the_pool(&phones, "").await;
    let holders = phones.until_accepted(&broker, 1).await;
    assert_eq!(each_at_one(&holders, std::slice::from_ref(&id))[&id], "a");
    assert_eq!(phones.a.post_count(), 3);
    assert_eq!(phones.b.post_count() + phones.c.post_count(), 0);
    let row = broker.db().outbox_row(&id).await;
    assert_eq!(
        (row.upstream.as_deref(), row.attempts),
        (Some("a"), 3),
        "{row:?}"
    );
}

#[tokio::test]
async fn a_final_rejection_is_not_tried_at_another_member() {
    let phones = Phones::start().await;
    phones
        .a
        .push_faults([Fault::BadRequest("invalid phone number".into())]);
    let (broker, id) = one_message_through_the_pool(&phones, "").await;
    let row = eventually(PATIENCE, "the message is rejected", || async {
        let row = broker.db().outbox_row(&id).await;
        if row.state == OutboxState::Done {
            Ok(row)
        } else {
            Err(row)
        }
    })
    .await;
    assert_eq!(
        row.last_error.as_deref(),
        Some("HTTP 400: invalid phone number")
    );
    assert_eq!(row.upstream.as_deref(), Some("a"), "{row:?}");
    let messages = broker.db().messages().await;
    assert_eq!(
        messages[0].state,
        smpp_broker::store::MessageState::Rejected
    );
    assert_eq!(phones.a.post_count(), 1);
    assert_eq!(phones.b.post_count() + phones.c.post_count(), 0);
    assert!(phones.holders().is_empty());
}

#[tokio::test]
async fn the_parts_of_a_message_with_an_unknown_outcome_stay_counted_at_its_member() {
    let phones = Phones::start().await;
    // a takes one part a day; it stores the first message, but the answer is
    // lost, and it stays unavailable a while (the retry waits 50 ms).
    phones.a.push_faults([Fault::AcceptThenReset]);
    let routes = "[[routes]]\nname = \"limited\"\nupstreams = [\"a\"]\nfallback = [\"b\"]\n";
    let broker = phones.broker(["daily_limit = 1\n", "", ""], routes).await;
    let mut esme = bound(&broker, "acme", "acme1234").await;
    let first = submit_ok(&mut esme, to("4917600001", "at a, answer lost")).await;
    eventually(PATIENCE, "a's answer lost", || async {
        (phones.a.pending_faults() == 0).then_some(())
    })
    .await;
    // The phone may have sent the first: its part still counts, so a has no
    // room for the second, which goes to the fallback.
    let second = submit_ok(&mut esme, to("4917600002", "no room at a")).await;
    let holders = phones.until_accepted(&broker, 2).await;
    assert_eq!(holders[&first], ["a"]);
    assert_eq!(holders[&second], ["b"], "a would be over its daily_limit");
}
