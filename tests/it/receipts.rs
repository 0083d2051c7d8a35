//! Receipts reach the ESME as deliver_sm: on any receiving session of the account,
//! held while none is bound, delivered again when a session drops them.

use std::time::Duration;

use serde_json::json;
use smpp_broker::smpp::pdu::tlv::tag;
use smpp_broker::smpp::pdu::{BindKind, Body, CommandStatus, MessageIdResp, Pdu};
use smpp_broker::text::gsm7;
use testkit::db::OutboxState;
use testkit::fake_smsgate::{FakeSmsGate, Mode};
use testkit::sms::{bound, sar, sm, submit_ok, udh8};
use testkit::{eventually, Esme, TestBroker, PATIENCE};
use tokio::net::TcpStream;

/// Waits for the message's outbox row to be enroute (the phone has it).
async fn enroute(broker: &TestBroker, fake: &FakeSmsGate, count: usize) {
    fake.wait_for_accepted(count, PATIENCE).await;
    eventually(PATIENCE, "enroute", || async {
        let outbox = broker.db().outbox().await;
        let enroute = outbox
            .iter()
            .filter(|row| row.state == OutboxState::Enroute)
            .count();
        (enroute == count).then_some(())
    })
    .await
}

/// The next deliver_sm, unanswered; with its sequence number.
async fn next_receipt(esme: &mut Esme<TcpStream>) -> (u32, smpp_broker::smpp::pdu::Sm) {
    loop {
        let pdu = esme.recv_within(PATIENCE).await.expect("a deliver_sm");
        match pdu.body {
            Body::DeliverSm(sm) => return (pdu.sequence_number, sm),
            Body::EnquireLink => {
                esme.send(&Pdu::new(pdu.sequence_number, Body::EnquireLinkResp))
                    .await
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

async fn acknowledge(esme: &mut Esme<TcpStream>, sequence: u32) {
    esme.send(&Pdu::new(
        sequence,
        Body::DeliverSmResp(MessageIdResp::default()),
    ))
    .await;
}

async fn waiting_deliveries(broker: &TestBroker) -> i64 {
    broker.db().deliveries_waiting().await
}

/// Waits until every delivery was acknowledged and removed.
async fn all_removed(broker: &TestBroker) {
    eventually(PATIENCE, "every delivery removed", || async {
        match waiting_deliveries(broker).await {
            0 => Ok(()),
            waiting => Err(waiting),
        }
    })
    .await
}

#[tokio::test]
async fn a_receipt_reaches_the_transceiver_and_is_removed_once_acknowledged() {
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    let broker = TestBroker::builder().upstream(&fake).start().await;
    let mut esme = bound(&broker, "acme", "acme1234").await;
    let id = submit_ok(
        &mut esme,
        sm(0, 0, &gsm7::encode("Your code is 1234").unwrap()),
    )
    .await;
    enroute(&broker, &fake, 1).await;
    broker.report_delivered(&id).await;

    let (sequence, receipt) = next_receipt(&mut esme).await;
    let text = gsm7::decode(&receipt.short_message).unwrap();
    assert!(
        text.starts_with(&format!("id:{id} sub:001 dlvrd:001 submit date:")),
        "{text}"
    );
    assert!(
        text.contains(" done date:2611221510 stat:DELIVRD err:000 text:Your code is 1234"),
        "{text}"
    );
    assert_eq!(receipt.esm_class, 0x04);
    assert_eq!(receipt.source.addr, "4917600000", "addresses swapped");
    assert_eq!(receipt.dest.addr, "4915100000");
    assert_eq!(
        receipt.tlvs.get_cstring(tag::RECEIPTED_MESSAGE_ID),
        Some(id.clone())
    );
    assert_eq!(receipt.tlvs.get_u8(tag::MESSAGE_STATE), Some(2));
    assert_eq!(
        waiting_deliveries(&broker).await,
        1,
        "kept until acknowledged"
    );
    let metrics = broker.metrics_text().await;
    let line = "smpp_broker_deliveries_waiting{system_id=\"acme\"} 1";
    assert!(metrics.contains(line), "{metrics}");
    acknowledge(&mut esme, sequence).await;
    all_removed(&broker).await;
    let metrics = broker.metrics_text().await;
    let line = "smpp_broker_deliveries_total{system_id=\"acme\",kind=\"receipt\",outcome=\"acknowledged\"} 1";
    assert!(metrics.contains(line), "{metrics}");
}

#[tokio::test]
async fn receipts_wait_for_a_receiver_and_come_again_after_a_dropped_session() {
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    let broker = TestBroker::builder().upstream(&fake).start().await;
    let mut transmitter = Esme::connect(broker.addr()).await;
    transmitter
        .bind_ok(BindKind::Transmitter, "acme", "acme1234")
        .await;
    let id = submit_ok(&mut transmitter, sm(0, 0, b"held")).await;
    enroute(&broker, &fake, 1).await;
    broker.report_delivered(&id).await;
    // Nobody receives: the transmitter gets nothing, the receipt waits.
    let nothing = tokio::time::timeout(Duration::from_millis(300), transmitter.recv()).await;
    assert!(
        nothing.is_err(),
        "a transmitter gets no receipt: {nothing:?}"
    );
    assert_eq!(waiting_deliveries(&broker).await, 1);

    // A receiver binds and gets it, but drops the connection without answering.
    let mut receiver = Esme::connect(broker.addr()).await;
    receiver
        .bind_ok(BindKind::Receiver, "acme", "acme1234")
        .await;
    let (_, first) = next_receipt(&mut receiver).await;
    assert_eq!(
        first.tlvs.get_cstring(tag::RECEIPTED_MESSAGE_ID),
        Some(id.clone())
    );
    drop(receiver);

    // Delivered again to the next receiver.
    let mut again = Esme::connect(broker.addr()).await;
    again.bind_ok(BindKind::Receiver, "acme", "acme1234").await;
    let (sequence, second) = next_receipt(&mut again).await;
    assert_eq!(second.tlvs.get_cstring(tag::RECEIPTED_MESSAGE_ID), Some(id));
    acknowledge(&mut again, sequence).await;
    all_removed(&broker).await;
}

#[tokio::test]
async fn beyond_the_account_limit_the_oldest_receipts_go_and_are_counted() {
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    let broker = TestBroker::builder()
        .upstream(&fake)
        .edit(|s| s.accounts[0].max_undelivered = 3)
        .start()
        .await;
    let mut transmitter = Esme::connect(broker.addr()).await;
    transmitter
        .bind_ok(BindKind::Transmitter, "acme", "acme1234")
        .await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(submit_ok(&mut transmitter, sm(0, 0, format!("m{n}").as_bytes())).await);
    }
    enroute(&broker, &fake, 5).await;
    for id in &ids {
        broker.report_delivered(id).await;
    }
    assert_eq!(waiting_deliveries(&broker).await, 3);
    let metrics = broker.metrics_text().await;
    let line = "smpp_broker_deliveries_dropped_total{system_id=\"acme\",reason=\"over_limit\"} 2";
    assert!(metrics.contains(line), "{metrics}");

    // A receiver gets the three newest, oldest first.
    let mut receiver = Esme::connect(broker.addr()).await;
    receiver
        .bind_ok(BindKind::Receiver, "acme", "acme1234")
        .await;
    for id in &ids[2..] {
        let (sequence, receipt) = next_receipt(&mut receiver).await;
        assert_eq!(
            receipt.tlvs.get_cstring(tag::RECEIPTED_MESSAGE_ID).as_ref(),
            Some(id)
        );
        acknowledge(&mut receiver, sequence).await;
    }
}

/// Submits a long message's parts, one submit_sm each, with these
/// registered_delivery values; returns their message_ids.
async fn submit_parts(
    esme: &mut Esme<TcpStream>,
    parts: Vec<smpp_broker::smpp::pdu::Sm>,
    asked: &[u8],
) -> Vec<String> {
    let mut ids = Vec::new();
    for (mut part, &registered_delivery) in parts.into_iter().zip(asked) {
        part.registered_delivery = registered_delivery;
        ids.push(submit_ok(esme, part).await);
    }
    ids
}

#[tokio::test]
async fn a_long_message_asks_the_phone_when_any_part_asks_and_each_part_gets_its_own_receipt() {
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    let broker = TestBroker::builder().upstream(&fake).start().await;
    let mut esme = bound(&broker, "acme", "acme1234").await;
    // Jasmin asks on the last part only (UDH); another client on the first only (SAR).
    let udh_parts = (1..=3)
        .map(|seq| sm(0, 0x40, &udh8(7, 3, seq, &format!("udh {seq} "))))
        .collect();
    let last_asks = submit_parts(&mut esme, udh_parts, &[0, 0, 1]).await;
    let sar_parts = (1..=3)
        .map(|seq| sar(700, 3, seq, &format!("sar {seq} ")))
        .collect();
    let first_asks = submit_parts(&mut esme, sar_parts, &[1, 0, 0]).await;
    enroute(&broker, &fake, 2).await;

    for (ids, text) in [
        (&last_asks, "udh 1 udh 2 udh 3 "),
        (&first_asks, "sar 1 sar 2 sar 3 "),
    ] {
        let accepted = fake.accepted();
        let arrived = accepted
            .iter()
            .find(|a| a.id == ids[0])
            .expect("the set arrived under its first part's id");
        assert_eq!(arrived.text.as_deref(), Some(text));
        assert_eq!(
            arrived.with_delivery_report,
            Some(true),
            "a phone not asked never reports DELIVRD"
        );
        broker.report_delivered(&ids[0]).await;
    }

    // Receipts of one report are stored in one transaction, so once both have come
    // the table holds every receipt there is: one per asking part.
    let mut receipted = Vec::new();
    for _ in 0..2 {
        let (_, receipt) = next_receipt(&mut esme).await;
        assert!(gsm7::decode(&receipt.short_message)
            .unwrap()
            .contains("stat:DELIVRD"));
        receipted.push(receipt.tlvs.get_cstring(tag::RECEIPTED_MESSAGE_ID).unwrap());
    }
    receipted.sort();
    let mut expected = vec![last_asks[2].clone(), first_asks[0].clone()];
    expected.sort();
    assert_eq!(receipted, expected, "only the parts that asked");
    assert_eq!(
        waiting_deliveries(&broker).await,
        2,
        "no receipt for the others"
    );
}

/// The phone reports an incoming message (unsigned webhooks).
async fn received(broker: &TestBroker, message_id: &str, sender: &str, text: &str) {
    let body = json!({"event": "sms:received", "payload": {"messageId": message_id,
        "message": text, "sender": sender, "recipient": "+4915100000", "simNumber": 1,
        "receivedAt": "2026-11-22T18:00:00.000+03:00"}});
    assert_eq!(broker.post_event("phone", &body).await, 200);
}

#[tokio::test]
async fn incoming_messages_arrive_whole_and_once() {
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    let broker = TestBroker::builder().upstream(&fake).start().await;
    let mut receiver = Esme::connect(broker.addr()).await;
    receiver
        .bind_ok(BindKind::Receiver, "acme", "acme1234")
        .await;

    received(&broker, "a80532bb", "6505551212", "Hello {world} €").await;
    received(&broker, "a80532bb", "6505551212", "Hello {world} €").await;
    let (sequence, mo) = next_receipt(&mut receiver).await;
    assert_eq!(mo.esm_class, 0);
    assert_eq!(mo.data_coding, 0);
    assert_eq!(gsm7::decode(&mo.short_message).unwrap(), "Hello {world} €");
    assert_eq!(mo.source.addr, "6505551212");
    assert_eq!(mo.dest.addr, "4915100000");
    acknowledge(&mut receiver, sequence).await;

    // 186 characters of UCS-2: three segments of one SMS each, with a UDH.
    let long: String = "Привет, это длинное сообщение. ".repeat(6);
    received(&broker, "b1", "+4917611111111", &long).await;
    // The ESME refuses the second segment: the whole message comes again.
    for number in 1..=3u8 {
        let (sequence, mo) = next_receipt(&mut receiver).await;
        assert_eq!(mo.short_message[5], number);
        if number == 2 {
            let refusal = Pdu::with_status(
                CommandStatus::ESME_RX_T_APPN,
                sequence,
                Body::DeliverSmResp(MessageIdResp::default()),
            );
            receiver.send(&refusal).await;
        } else {
            acknowledge(&mut receiver, sequence).await;
        }
    }
    let mut octets = Vec::new();
    let mut reference = None;
    for number in 1..=3u8 {
        let (sequence, mo) = next_receipt(&mut receiver).await;
        assert_eq!(mo.data_coding, 8, "not GSM: UCS-2");
        assert_eq!(mo.esm_class, 0x40, "UDH indicator");
        assert!(mo.short_message.len() <= 140);
        let udh = &mo.short_message[..6];
        assert_eq!(
            (udh[..3].to_vec(), udh[4], udh[5]),
            (vec![5, 0, 3], 3, number)
        );
        assert_eq!(*reference.get_or_insert(udh[3]), udh[3], "one reference");
        octets.extend_from_slice(&mo.short_message[6..]);
        assert_eq!(mo.source.ton, 1);
        acknowledge(&mut receiver, sequence).await;
    }
    let units: Vec<u16> = octets
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    assert_eq!(String::from_utf16(&units).unwrap(), long);

    all_removed(&broker).await;
    // The duplicate of the first was stored once: nothing else arrives, not even
    // when the phone repeats the webhook after the ESME acknowledged it.
    received(&broker, "a80532bb", "6505551212", "Hello {world} €").await;
    let nothing = tokio::time::timeout(Duration::from_millis(300), receiver.recv()).await;
    assert!(nothing.is_err(), "{nothing:?}");
}

#[tokio::test]
async fn an_account_may_take_long_incoming_messages_in_message_payload() {
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    let broker = TestBroker::builder()
        .upstream(&fake)
        .edit(|s| s.accounts[0].long_incoming = smpp_broker::text::LongIncoming::MessagePayload)
        .start()
        .await;
    let mut receiver = Esme::connect(broker.addr()).await;
    receiver
        .bind_ok(BindKind::Receiver, "acme", "acme1234")
        .await;
    let long = "A long reply, in GSM 7-bit. ".repeat(10);
    received(&broker, "c1", "6505551212", &long).await;
    let (sequence, mo) = next_receipt(&mut receiver).await;
    assert_eq!((mo.esm_class, mo.data_coding), (0, 0));
    assert!(mo.short_message.is_empty());
    let payload = mo.tlvs.get(tag::MESSAGE_PAYLOAD).expect("message_payload");
    assert_eq!(gsm7::decode(payload).unwrap(), long);
    acknowledge(&mut receiver, sequence).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_receipts_reach_a_transceiver_even_when_a_session_drops() {
    const MESSAGES: usize = 1000;
    let broker = TestBroker::builder()
        .smpp("deliver_window = 50")
        .accounts(
            r#"
[[upstreams]]
name = "sandbox"
kind = "sandbox"
sent_after = "1ms"
delivered_after = "10ms"
rate = 100000
max_in_flight = 256
[[accounts]]
system_id = "acme"
password = "acme1234"
upstream = "sandbox"
throughput = 100000
"#,
        )
        .start()
        .await;
    let mut transmitter = Esme::connect(broker.addr()).await;
    transmitter
        .bind_ok(BindKind::Transmitter, "acme", "acme1234")
        .await;
    // Pipelined: all submits go out, then the responses are read.
    for n in 0..MESSAGES {
        let seq = transmitter.next_sequence();
        let body = Body::SubmitSm(sm(0, 0, format!("m{n}").as_bytes()));
        transmitter.send(&Pdu::new(seq, body)).await;
    }
    let mut ids = std::collections::BTreeSet::new();
    while ids.len() < MESSAGES {
        let resp = transmitter.recv_some().await;
        assert!(resp.command_status.is_ok(), "{resp:?}");
        let Body::SubmitSmResp(r) = resp.body else {
            panic!("{resp:?}")
        };
        ids.insert(r.message_id);
    }
    let started = std::time::Instant::now();

    // The first receiver acknowledges 50, then takes a window of 50 more (the
    // deliver_window) and drops without answering them.
    let mut receipted = std::collections::BTreeSet::new();
    let mut first = Esme::connect(broker.addr()).await;
    first
        .bind_ok(BindKind::Transceiver, "acme", "acme1234")
        .await;
    for n in 0..100 {
        let (sequence, receipt) = next_receipt(&mut first).await;
        if n < 50 {
            acknowledge(&mut first, sequence).await;
            receipted.insert(receipt.tlvs.get_cstring(tag::RECEIPTED_MESSAGE_ID).unwrap());
        }
    }
    drop(first);

    // The next receives everything else, the unacknowledged ones again.
    let mut second = Esme::connect(broker.addr()).await;
    second
        .bind_ok(BindKind::Transceiver, "acme", "acme1234")
        .await;
    while receipted.len() < MESSAGES {
        let (sequence, receipt) = next_receipt(&mut second).await;
        acknowledge(&mut second, sequence).await;
        assert_eq!(receipt.tlvs.get_u8(tag::MESSAGE_STATE), Some(2));
        receipted.insert(receipt.tlvs.get_cstring(tag::RECEIPTED_MESSAGE_ID).unwrap());
    }
    assert_eq!(receipted, ids, "one receipt for every message");
    println!("{MESSAGES} receipts received in {:?}", started.elapsed());
    all_removed(&broker).await;
}
