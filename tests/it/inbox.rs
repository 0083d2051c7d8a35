//! Without http.public_url no webhook reaches the broker: incoming messages are
//! read from the upstream's inbox (GET /inbox), each delivered once, and none that
//! arrived while the broker was down is lost.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use smpp_broker::smpp::pdu::{BindKind, Body, MessageIdResp, Pdu};
use smpp_broker::text::gsm7;
use testkit::fake_smsgate::{FakeSmsGate, Mode};
use testkit::{eventually, Esme, TestBroker, TestBrokerBuilder, PATIENCE};
use tokio::net::TcpStream;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A broker reading `fake`'s inbox every 100 ms: without a public_url.
fn reading_inbox(fake: &FakeSmsGate) -> TestBrokerBuilder {
    TestBroker::builder()
        .upstream(fake)
        .upstream_keys("inbox_interval = \"100ms\"")
        .edit(|settings| assert!(settings.http.public_url.is_none()))
}

/// Waits until the broker has read the inbox `reads` more times.
async fn reads_after(fake: &FakeSmsGate, reads: usize) {
    let seen = fake.inbox_reads().len();
    eventually(PATIENCE, "the inbox is read", || async {
        (fake.inbox_reads().len() >= seen + reads).then_some(())
    })
    .await
}

/// The next incoming message's text, acknowledged.
async fn next_text(esme: &mut Esme<TcpStream>) -> String {
    let pdu = esme.recv_within(PATIENCE).await.expect("a deliver_sm");
    let Body::DeliverSm(sm) = pdu.body else {
        panic!("unexpected {pdu:?}")
    };
    assert_eq!(sm.esm_class, 0);
    assert_eq!(sm.source.addr, "4917611111111");
    esme.send(&Pdu::new(
        pdu.sequence_number,
        Body::DeliverSmResp(MessageIdResp::default()),
    ))
    .await;
    gsm7::decode(&sm.short_message).unwrap()
}

async fn stored_incoming(broker: &TestBroker) -> i64 {
    broker.db().deliveries_waiting().await
}

#[tokio::test]
async fn incoming_messages_are_read_from_the_inbox_once_and_across_a_restart() {
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    // What the phone received before the broker ever read its inbox is history.
    fake.receive_sms(
        "+4917611111111",
        "+4915100000",
        "old news",
        now_ms() - 5_000,
    );
    let broker = reading_inbox(&fake).start().await;
    reads_after(&fake, 1).await;
    let mut receiver = Esme::connect(broker.addr()).await;
    receiver
        .bind_ok(BindKind::Receiver, "acme", "acme1234")
        .await;

    fake.receive_sms("+4917611111111", "+4915100000", "Hello broker", now_ms());
    assert_eq!(next_text(&mut receiver).await, "Hello broker");
    // Later reads overlap the earlier ones: the message is not stored again.
    reads_after(&fake, 3).await;
    let nothing = tokio::time::timeout(Duration::from_millis(300), receiver.recv()).await;
    assert!(nothing.is_err(), "delivered once: {nothing:?}");
    assert_eq!(stored_incoming(&broker).await, 0);
    let read = fake.inbox_reads().pop().unwrap();
    assert!(
        read.contains("type=SMS") && read.contains("limit=500") && read.contains("deviceId="),
        "{read}"
    );

    // Down for a while: what arrives meanwhile is read after the restart.
    drop(receiver);
    let dir = broker.stop().await;
    fake.receive_sms(
        "+4917611111111",
        "+4915100000",
        "while you were out",
        now_ms(),
    );
    let broker = reading_inbox(&fake).dir(dir).start().await;
    let mut receiver = Esme::connect(broker.addr()).await;
    receiver
        .bind_ok(BindKind::Receiver, "acme", "acme1234")
        .await;
    assert_eq!(next_text(&mut receiver).await, "while you were out");
    reads_after(&fake, 2).await;
    let nothing = tokio::time::timeout(Duration::from_millis(300), receiver.recv()).await;
    assert!(
        nothing.is_err(),
        "nothing else, old news included: {nothing:?}"
    );
}
