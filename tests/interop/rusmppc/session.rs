//! A bound rusmppc session: enquire_link from either side, the broker's unbind at
//! shutdown, and throttling.

use tokio::time::Instant;

use super::*;

#[tokio::test]
async fn rusmppc_enquire_link_from_the_client() {
    let broker = TestBroker::builder().start().await;
    let (client, mut events) = connect(broker.addr()).await;
    bind_ok(&client, Kind::Transceiver, "demo", "demo1234").await;
    for _ in 0..3 {
        client.enquire_link().await.expect("enquire_link answered");
    }
    // rusmppc's own keepalive, the way applications run it, is answered too.
    let (keepalive, mut keepalive_events) = ConnectionBuilder::new()
        .disable_interface_version_check()
        .enquire_link_interval(Duration::from_millis(100))
        .enquire_link_response_timeout(Duration::from_secs(2))
        .connect(format!("smpp://{}", broker.addr()))
        .await
        .unwrap();
    bind_ok(&keepalive, Kind::Transceiver, "demo", "demo1234").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_no_event(&mut keepalive_events);
    assert!(keepalive.is_active());
    assert_no_event(&mut events);
}

#[tokio::test]
async fn rusmppc_answers_the_broker_enquire_link_by_itself() {
    // The broker pings every 200 ms and drops a link whose ping is unanswered for 300 ms.
    let broker = TestBroker::builder()
        .smpp("enquire_link_interval = \"200ms\"\nresponse_timeout = \"300ms\"")
        .start()
        .await;
    let (client, mut events) = connect(broker.addr()).await;
    bind_ok(&client, Kind::Transceiver, "demo", "demo1234").await;

    // A control that does not answer: it sees the broker's ping and loses the link.
    let (control, mut control_events) = builder()
        .disable_auto_enquire_link_response()
        .connect(format!("smpp://{}", broker.addr()))
        .await
        .unwrap();
    bind_ok(&control, Kind::Transceiver, "demo", "demo1234").await;
    match next_event(&mut control_events).await {
        Some(Event::Incoming(ping)) => assert_eq!(ping.id(), CommandId::EnquireLink, "{ping:?}"),
        other => panic!("the broker pings an idle session: {other:?}"),
    }
    expect_closed_by_peer(&control, &mut control_events).await;

    // Several intervals later the auto-answering session is still alive.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_no_event(&mut events);
    client
        .enquire_link()
        .await
        .expect("the session survived the broker's pings");
    assert_eq!(broker.broker.registry().sessions("demo").len(), 1);
}

#[tokio::test]
async fn rusmppc_sees_the_broker_unbind_at_shutdown() {
    let broker = TestBroker::builder()
        .smpp("response_timeout = \"300ms\"")
        .start()
        .await;
    let (client, mut events) = connect(broker.addr()).await;
    bind_ok(&client, Kind::Transceiver, "demo", "demo1234").await;
    // A second session that does not answer the unbind: closed after response_timeout.
    let (silent, mut silent_events) = connect(broker.addr()).await;
    bind_ok(&silent, Kind::Receiver, "demo", "demo1234").await;

    let started = Instant::now();
    let shutdown = tokio::spawn(broker.broker.shutdown());
    let unbind = match next_event(&mut events).await {
        Some(Event::Incoming(command)) => command,
        other => panic!("expected the broker's unbind, got {other:?}"),
    };
    assert_eq!(unbind.id(), CommandId::Unbind, "{unbind:?}");
    client
        .unbind_resp(unbind.sequence_number())
        .await
        .expect("unbind_resp sent");
    expect_closed_by_peer(&client, &mut events).await;

    match next_event(&mut silent_events).await {
        Some(Event::Incoming(command)) => assert_eq!(command.id(), CommandId::Unbind),
        other => panic!("expected the broker's unbind, got {other:?}"),
    }
    expect_closed_by_peer(&silent, &mut silent_events).await;

    tokio::time::timeout(PATIENCE, shutdown)
        .await
        .expect("shutdown completes")
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by response_timeout, not shutdown_timeout: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn rusmppc_submits_above_the_account_rate_are_throttled() {
    let broker = TestBroker::builder().start().await;
    let (client, _events) = connect(broker.addr()).await;
    bind_ok(&client, Kind::Transmitter, "slow", "slow").await;
    let (mut throttled, mut admitted) = (0, 0);
    for _ in 0..20 {
        match client.submit_sm(submit()).await {
            Err(Error::UnexpectedResponse { response })
                if response.status() == CommandStatus::EsmeRthrottled =>
            {
                throttled += 1
            }
            // Anything not throttled must be accepted with a message_id.
            other => {
                accepted(other);
                admitted += 1;
            }
        }
    }
    assert!(
        admitted >= 5,
        "the first second's budget is admitted ({admitted})"
    );
    assert!(throttled >= 10, "the excess is throttled ({throttled})");
}
