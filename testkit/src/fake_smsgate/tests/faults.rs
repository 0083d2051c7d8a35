//! Injected faults: error answers, slow answers, resets, every n-th request.

use super::*;

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
async fn accept_then_stall_stores_the_message_and_answers_late() {
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    let stall = Duration::from_secs(1);
    fake.push_faults([Fault::AcceptThenStall(stall)]);
    let started = tokio::time::Instant::now();
    let answer = tokio::spawn({
        let fake = fake.clone();
        async move { send(&fake, &text_msg("ats-1", "+79990001234")).await }
    });
    while fake.accepted().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!answer.is_finished(), "stored before the answer");
    let answer = answer.await.unwrap();
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    assert!(started.elapsed() >= stall, "answered after the stall");
    assert_eq!(fake.accepted()[0].id, "ats-1");
}
