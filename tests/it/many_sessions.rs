//! 1,000 concurrent bound sessions on one broker, each still answering.

use smpp_broker::smpp::pdu::{BindKind, Body};
use testkit::{Esme, TestBroker};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_sessions() {
    const SESSIONS: usize = 1000;
    let broker = TestBroker::builder().start().await;
    let addr = broker.addr();
    let mut binds = tokio::task::JoinSet::new();
    for i in 0..SESSIONS {
        // Every bind kind, so receivers and transmitters are both in the mix.
        let kind = [
            BindKind::Transmitter,
            BindKind::Receiver,
            BindKind::Transceiver,
        ][i % 3];
        binds.spawn(async move {
            let mut esme = Esme::connect(addr).await;
            esme.bind_ok(kind, "demo", "demo1234").await;
            esme
        });
    }
    let mut sessions = Vec::with_capacity(SESSIONS);
    while let Some(esme) = binds.join_next().await {
        sessions.push(esme.unwrap());
    }
    assert_eq!(broker.broker.registry().sessions("demo").len(), SESSIONS);
    for esme in &mut sessions {
        assert_eq!(
            esme.request(Body::EnquireLink).await.body,
            Body::EnquireLinkResp
        );
    }
    drop(sessions);
}
