//! /metrics: the families an operator's dashboard reads, with their stable names,
//! following what the broker does.

use smpp_broker::smpp::pdu::{Address, BindKind, Body, CommandStatus};
use testkit::sms::sm;
use testkit::{Esme, TestBroker};

#[tokio::test]
async fn sessions_submits_and_queue_depth_follow_the_traffic() {
    let broker = TestBroker::builder().start().await;
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

    let text = broker.metrics_text().await;
    for line in [
        "smpp_broker_sessions{system_id=\"demo\",bind_type=\"transceiver\"} 1",
        "smpp_broker_sessions{system_id=\"demo\",bind_type=\"transmitter\"} 0",
        "smpp_broker_sessions{system_id=\"rxonly\",bind_type=\"receiver\"} 1",
        "smpp_broker_submits_total{system_id=\"demo\",command=\"submit_sm\",command_status=\"ESME_ROK\"} 2",
        "smpp_broker_submits_total{system_id=\"demo\",command=\"submit_sm\",command_status=\"ESME_RINVDSTADR\"} 1",
        "smpp_broker_submits_total{system_id=\"\",command=\"submit_sm\",command_status=\"ESME_RINVBNDSTS\"} 1",
        // The test sandbox is on hold: both wait in the queue.
        "smpp_broker_queue_depth{route=\"sandbox\",state=\"queued\"} 2",
    ] {
        assert!(text.contains(line), "no {line:?} in\n{text}");
    }
    assert!(text.contains("# TYPE smpp_broker_queue_depth gauge"));
    // The two messages are in the write-ahead log.
    let wal: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("smpp_broker_store_wal_bytes "))
        .expect("the WAL gauge")
        .parse()
        .expect("a number of bytes");
    assert!(wal > 0, "{text}");
    // The writer accounts for its time: the submits' step has some, and it
    // committed at least the two transactions that stored them.
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in\n{text}"))
            .trim()
            .parse()
            .expect("a number")
    };
    for step in [
        "claim",
        "dispatch",
        "reports",
        "deliveries",
        "commit",
        "other",
    ] {
        value(&format!(
            "smpp_broker_store_writer_seconds_total{{step=\"{step}\"}} "
        ));
    }
    assert!(value("smpp_broker_store_writer_seconds_total{step=\"submit\"} ") > 0.0);
    assert!(value("smpp_broker_store_writer_seconds_total{step=\"commit\"} ") > 0.0);
    assert!(value("smpp_broker_store_transactions_total ") >= 2.0);

    // The receiver leaves; the gauge follows.
    receiver.request(Body::Unbind).await;
    broker
        .until_metric("smpp_broker_sessions{system_id=\"rxonly\",bind_type=\"receiver\"} 0")
        .await;
}

#[tokio::test]
async fn every_route_and_account_has_its_series_at_zero_before_any_traffic() {
    let broker = TestBroker::builder().start().await;
    let text = broker.metrics_text().await;
    for state in ["scheduled", "queued", "retry", "sending", "enroute"] {
        let line = format!("smpp_broker_queue_depth{{route=\"sandbox\",state=\"{state}\"}} 0");
        assert!(text.contains(&line), "no {line:?} in\n{text}");
    }
    for account in ["demo", "rxonly"] {
        let line = format!("smpp_broker_deliveries_waiting{{system_id=\"{account}\"}} 0");
        assert!(text.contains(&line), "no {line:?} in\n{text}");
    }
}
