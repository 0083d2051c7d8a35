//! /metrics: the families an operator's dashboard reads, with their stable names,
//! following what the broker does.

mod common;

use std::time::Duration;

use common::messages::sm;
use common::{metrics_text, start_broker, Esme, PATIENCE};
use smpp_broker::smpp::pdu::{Address, BindKind, Body, CommandStatus};

/// Waits until the metrics text has `line`.
async fn until_metric(broker: &common::TestBroker, line: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let text = metrics_text(broker).await;
        if text.contains(line) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {line:?} in\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sessions_submits_and_queue_depth_follow_the_traffic() {
    let broker = start_broker("").await;
    let mut esme = Esme::connect(broker.addr()).await;
    // Before any bind: refused, counted without an account.
    let early = esme.request(Body::SubmitSm(sm(0, 0, b"too early"))).await;
    assert_eq!(early.command_status, CommandStatus::ESME_RINVBNDSTS);
    esme.bind_ok(BindKind::Transceiver, "demo", "demo1234")
        .await;
    let mut receiver = Esme::connect(broker.addr()).await;
    receiver.bind_ok(BindKind::Receiver, "rxonly", "rx").await;
    for text in ["one", "two"] {
        let ok = esme
            .request(Body::SubmitSm(sm(0, 0, text.as_bytes())))
            .await;
        assert_eq!(ok.command_status, CommandStatus::ESME_ROK);
    }
    let mut nowhere = sm(0, 0, b"nowhere");
    nowhere.dest = Address::new(1, 1, "");
    let refused = esme.request(Body::SubmitSm(nowhere)).await;
    assert_eq!(refused.command_status, CommandStatus::ESME_RINVDSTADR);

    let text = metrics_text(&broker).await;
    for line in [
        "smpp_broker_sessions{system_id=\"demo\",bind_type=\"transceiver\"} 1",
        "smpp_broker_sessions{system_id=\"demo\",bind_type=\"transmitter\"} 0",
        "smpp_broker_sessions{system_id=\"rxonly\",bind_type=\"receiver\"} 1",
        "smpp_broker_submits_total{system_id=\"demo\",command=\"submit_sm\",command_status=\"ESME_ROK\"} 2",
        "smpp_broker_submits_total{system_id=\"demo\",command=\"submit_sm\",command_status=\"ESME_RINVDSTADR\"} 1",
        "smpp_broker_submits_total{system_id=\"\",command=\"submit_sm\",command_status=\"ESME_RINVBNDSTS\"} 1",
        // The test sandbox is on hold: both wait in the queue.
        "smpp_broker_queue_depth{upstream=\"sandbox\",state=\"queued\"} 2",
    ] {
        assert!(text.contains(line), "no {line:?} in\n{text}");
    }
    assert!(text.contains("# TYPE smpp_broker_queue_depth gauge"));

    // The receiver leaves; the gauge follows.
    receiver.request(Body::Unbind).await;
    until_metric(
        &broker,
        "smpp_broker_sessions{system_id=\"rxonly\",bind_type=\"receiver\"} 0",
    )
    .await;
}
