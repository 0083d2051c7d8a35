//! The durable outbox through SMPP: what an ESME submits is stored before it gets
//! a message_id, and query_sm, cancel_sm and replace_sm answer from the database.

use bytes::Bytes;
use smpp_broker::clock::ManualClock;
use smpp_broker::smpp::pdu::{
    tlv::tag, Address, Body, CancelSm, CommandStatus, MultiDest, ReplaceSm, Sm, SubmitMulti,
};
use smpp_broker::store::MessageState;
use smpp_broker::text::gsm7;
use testkit::db::OutboxState;
use testkit::sms::{bound, message_state, query, sar, sm, submit_ok, submit_status, udh16, udh8};
use testkit::TestBroker;

const T0: i64 = 1_795_359_600_000; // 2026-11-22 15:00 UTC

/// The texts of the outbox rows not done, by id ("" for binary content).
async fn outbox_texts(broker: &TestBroker) -> Vec<String> {
    broker
        .db()
        .outbox()
        .await
        .into_iter()
        .filter(|row| row.state != OutboxState::Done)
        .map(|row| row.text.unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn encodings_are_stored_as_text_and_undecodable_input_is_refused() {
    let broker = TestBroker::builder().start().await;
    let mut esme = bound(&broker, "demo", "demo1234").await;
    let gsm_text = "@£$¥ {curly} [square] ~tilde^ \\back|pipe €uro";
    submit_ok(&mut esme, sm(0, 0, &gsm7::encode(gsm_text).unwrap())).await;
    let ucs2: Vec<u8> = "Grüße 😀 مرحبا"
        .encode_utf16()
        .flat_map(u16::to_be_bytes)
        .collect();
    submit_ok(&mut esme, sm(8, 0, &ucs2)).await;
    submit_ok(&mut esme, sm(3, 0, &[0x43, 0x61, 0x66, 0xE9])).await;
    submit_ok(&mut esme, sm(6, 0, &[0xBF, 0xE0, 0xD8, 0xD2, 0xD5, 0xE2])).await;
    assert_eq!(
        outbox_texts(&broker).await,
        [gsm_text, "Grüße 😀 مرحبا", "Café", "Привет"]
    );
    // A high octet is not GSM, a lone surrogate is not UTF-16, 0x05 is not supported.
    for (dc, octets) in [
        (0u8, vec![0x41, 0xC3]),
        (8, vec![0xD8, 0x3D]),
        (5, b"x".to_vec()),
    ] {
        assert_eq!(
            submit_status(&mut esme, sm(dc, 0, &octets)).await,
            CommandStatus::ESME_RSUBMITFAIL
        );
    }
    assert_eq!(
        outbox_texts(&broker).await.len(),
        4,
        "nothing garbled was stored"
    );
}

#[tokio::test]
async fn long_messages_by_udh_and_sar_become_one_message_each() {
    let broker = TestBroker::builder().start().await;
    let mut esme = bound(&broker, "demo", "demo1234").await;
    // 8-bit reference, parts out of order, one part sent twice.
    let a3 = submit_ok(&mut esme, sm(0, 0x40, &udh8(7, 3, 3, " three"))).await;
    let a1 = submit_ok(&mut esme, sm(0, 0x40, &udh8(7, 3, 1, "one"))).await;
    let a1_again = submit_ok(&mut esme, sm(0, 0x40, &udh8(7, 3, 1, "one"))).await;
    assert!(
        outbox_texts(&broker).await.is_empty(),
        "incomplete sets wait"
    );
    let a2 = submit_ok(&mut esme, sm(0, 0x40, &udh8(7, 3, 2, " two"))).await;
    // 16-bit reference, UCS-2 with an emoji cut between its surrogates.
    let emoji: Vec<u8> = "ab😀".encode_utf16().flat_map(u16::to_be_bytes).collect();
    submit_ok(&mut esme, sm(8, 0x40, &udh16(0x1234, 2, 1, &emoji[..6]))).await;
    submit_ok(&mut esme, sm(8, 0x40, &udh16(0x1234, 2, 2, &emoji[6..]))).await;
    // SAR TLVs.
    submit_ok(&mut esme, sar(99, 2, 2, "world")).await;
    submit_ok(&mut esme, sar(99, 2, 1, "hello ")).await;
    assert_eq!(
        outbox_texts(&broker).await,
        ["one two three", "ab😀", "hello world"]
    );

    let ids = [&a1, &a2, &a3, &a1_again];
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 4, "every part has its own message_id");
    for id in ids {
        assert_eq!(message_state(&mut esme, id).await, 1, "ENROUTE");
    }
}

#[tokio::test]
async fn a_set_completes_across_a_restart_and_a_missing_part_times_out() {
    let clock = ManualClock::new(T0);
    let broker = TestBroker::builder().clock(clock.clone()).start().await;
    let mut esme = bound(&broker, "demo", "demo1234").await;
    submit_ok(&mut esme, sm(0, 0x40, &udh8(1, 2, 1, "before "))).await;
    let lonely = submit_ok(&mut esme, sm(0, 0x40, &udh8(2, 2, 1, "never completed"))).await;
    let _ = esme.request(Body::Unbind).await;

    let broker = broker.restart().await;
    let mut esme = bound(&broker, "demo", "demo1234").await;
    submit_ok(&mut esme, sm(0, 0x40, &udh8(1, 2, 2, "and after"))).await;
    assert_eq!(outbox_texts(&broker).await, ["before and after"]);

    // The default assembly timeout is 10 minutes.
    clock.advance_ms(10 * 60 * 1000);
    broker.broker.store().maintain().await.unwrap();
    let resp = query(&mut esme, &lonely).await;
    let Body::QuerySmResp(r) = resp.body else {
        panic!("{resp:?}")
    };
    assert_eq!(r.message_state, 5, "UNDELIVERABLE");
    assert_eq!(r.final_date.len(), 16, "a final message has a final_date");
}

#[tokio::test]
async fn queue_full_is_rmsgqful() {
    let broker = TestBroker::builder().start().await;
    let mut esme = bound(&broker, "tiny", "tiny").await;
    for _ in 0..3 {
        submit_ok(&mut esme, sm(0, 0, b"x")).await;
    }
    assert_eq!(
        submit_status(&mut esme, sm(0, 0, b"x")).await,
        CommandStatus::ESME_RMSGQFUL
    );
    // Other accounts are not affected.
    let mut demo = bound(&broker, "demo", "demo1234").await;
    submit_ok(&mut demo, sm(0, 0, b"x")).await;
}

#[tokio::test]
async fn scheduled_messages_wait_until_due() {
    let clock = ManualClock::new(T0);
    let broker = TestBroker::builder().clock(clock.clone()).start().await;
    let mut esme = bound(&broker, "demo", "demo1234").await;
    let later = Sm {
        schedule_delivery_time: "000000010000000R".into(),
        ..sm(0, 0, b"in an hour")
    };
    let id = submit_ok(&mut esme, later).await;
    let state = || async { broker.db().messages().await[0].state };
    assert_eq!(state().await, MessageState::Scheduled);
    assert_eq!(
        message_state(&mut esme, &id).await,
        1,
        "v3.4 has no SCHEDULED: ENROUTE"
    );
    clock.advance_ms(3_600_000);
    broker.broker.store().maintain().await.unwrap();
    assert_eq!(state().await, MessageState::Queued);
}

#[tokio::test]
async fn query_cancel_and_replace() {
    let broker = TestBroker::builder().start().await;
    let mut esme = bound(&broker, "demo", "demo1234").await;
    let id = submit_ok(&mut esme, sm(0, 0, b"first version")).await;

    let replace = ReplaceSm {
        message_id: id.clone(),
        source: Address::new(1, 1, "4915100000"),
        short_message: Bytes::from(gsm7::encode("second version").unwrap()),
        registered_delivery: 1,
        ..ReplaceSm::default()
    };
    assert!(esme
        .request(Body::ReplaceSm(replace.clone()))
        .await
        .command_status
        .is_ok());
    assert_eq!(outbox_texts(&broker).await, ["second version"]);

    let resp = query(&mut esme, "123").await;
    assert_eq!(resp.command_status, CommandStatus::ESME_RINVMSGID);

    let cancel = CancelSm {
        message_id: id.clone(),
        source: Address::new(1, 1, "4915100000"),
        ..CancelSm::default()
    };
    assert!(esme
        .request(Body::CancelSm(cancel.clone()))
        .await
        .command_status
        .is_ok());
    let resp = query(&mut esme, &id).await;
    let Body::QuerySmResp(r) = resp.body else {
        panic!("{resp:?}")
    };
    assert_eq!(r.message_state, 4, "DELETED");
    assert_eq!(r.final_date.len(), 16);
    assert_eq!(
        esme.request(Body::CancelSm(cancel)).await.command_status,
        CommandStatus::ESME_RCANCELFAIL
    );
    assert_eq!(
        esme.request(Body::ReplaceSm(replace)).await.command_status,
        CommandStatus::ESME_RREPLACEFAIL
    );
    let unknown = CancelSm {
        message_id: "42".into(),
        ..CancelSm::default()
    };
    assert_eq!(
        esme.request(Body::CancelSm(unknown)).await.command_status,
        CommandStatus::ESME_RINVMSGID
    );

    // Without a message_id, every waiting message between the two addresses.
    submit_ok(&mut esme, sm(0, 0, b"a")).await;
    submit_ok(&mut esme, sm(0, 0, b"b")).await;
    let by_addresses = CancelSm {
        source: Address::new(1, 1, "4915100000"),
        dest: Address::new(1, 1, "4917600000"),
        ..CancelSm::default()
    };
    assert!(esme
        .request(Body::CancelSm(by_addresses))
        .await
        .command_status
        .is_ok());
    assert!(outbox_texts(&broker).await.is_empty());
}

#[tokio::test]
async fn submit_multi_with_a_bad_destination() {
    let broker = TestBroker::builder().start().await;
    let mut esme = bound(&broker, "demo", "demo1234").await;
    let multi = SubmitMulti {
        dests: vec![
            MultiDest::Sme(Address::new(1, 1, "4917600001")),
            MultiDest::Sme(Address::new(1, 1, "bad")),
            MultiDest::Sme(Address::new(1, 1, "4917600002")),
        ],
        sm: sm(0, 0, b"to many"),
    };
    let resp = esme.request(Body::SubmitMulti(multi)).await;
    assert!(resp.command_status.is_ok());
    let Body::SubmitMultiResp(r) = resp.body else {
        panic!("{resp:?}")
    };
    assert_eq!(r.unsuccess.len(), 1);
    assert_eq!(r.unsuccess[0].dest.addr, "bad");
    assert_eq!(
        r.unsuccess[0].error_status_code,
        CommandStatus::ESME_RINVDSTADR.0
    );
    let rows = broker.db().messages().await;
    assert_eq!(rows.len(), 2, "one row per accepted destination");
    assert_eq!(rows[0].message_id.to_string(), r.message_id);
    assert_eq!(rows[1].message_id, r.message_id.parse::<i64>().unwrap() + 1);
    assert_eq!(
        (rows[0].dest_addr.as_str(), rows[1].dest_addr.as_str()),
        ("4917600001", "4917600002")
    );
}

#[tokio::test]
async fn data_sm_is_stored_like_submit_sm() {
    let broker = TestBroker::builder().start().await;
    let mut esme = bound(&broker, "demo", "demo1234").await;
    let mut d = smpp_broker::smpp::pdu::DataSm {
        source: Address::new(1, 1, "4915100000"),
        dest: Address::new(1, 1, "4917600000"),
        ..Default::default()
    };
    d.tlvs
        .push(tag::MESSAGE_PAYLOAD, gsm7::encode("via data_sm").unwrap());
    let resp = esme.request(Body::DataSm(d)).await;
    assert!(resp.command_status.is_ok(), "{resp:?}");
    assert_eq!(outbox_texts(&broker).await, ["via data_sm"]);
}

#[tokio::test]
async fn a_database_fault_is_rsyserr_and_the_session_goes_on() {
    // A short busy_timeout, so a lock held elsewhere fails the write quickly.
    let broker = TestBroker::builder()
        .edit(|s| s.store.busy_timeout = std::time::Duration::from_millis(100))
        .start()
        .await;
    let mut esme = bound(&broker, "demo", "demo1234").await;
    let kept = submit_ok(&mut esme, sm(0, 0, b"committed before the fault")).await;

    // An operator's sqlite3 holding a write transaction.
    let intruder = broker.db().hold_write_lock().await;
    assert_eq!(
        submit_status(&mut esme, sm(0, 0, b"refused")).await,
        CommandStatus::ESME_RSYSERR
    );
    // Reads still work, but nothing can be acknowledged: not ready.
    let (code, body) = readyz(&broker).await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("busy_timeout"), "{body}");
    intruder.release().await;

    // The session and the broker go on, and nothing committed was harmed.
    submit_ok(&mut esme, sm(0, 0, b"after the fault")).await;
    assert_eq!(readyz(&broker).await.0, 200);
    assert_eq!(message_state(&mut esme, &kept).await, 1);
    assert_eq!(
        outbox_texts(&broker).await,
        ["committed before the fault", "after the fault"]
    );
}

/// `GET /readyz`: status code and body.
async fn readyz(broker: &TestBroker) -> (u16, String) {
    let url = format!("http://{}/readyz", broker.http_addr());
    let response = reqwest::get(url).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn a_database_deleted_under_the_broker_is_noticed_and_nothing_more_acknowledged() {
    let broker = TestBroker::builder().start().await;
    let mut esme = bound(&broker, "demo", "demo1234").await;
    submit_ok(&mut esme, sm(0, 0, b"kept")).await;
    assert_eq!(readyz(&broker).await.0, 200);

    // `rm` of the file (the broker's descriptor keeps the inode alive).
    let path = broker.dir.path().join("broker.db");
    let aside = broker.dir.path().join("aside.db");
    std::fs::rename(&path, &aside).unwrap();
    for _ in 0..3 {
        assert_eq!(
            submit_status(&mut esme, sm(0, 0, b"would be lost")).await,
            CommandStatus::ESME_RSYSERR
        );
    }
    let (code, body) = readyz(&broker).await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("deleted or replaced"), "{body}");

    // Back where it was: the same file, so writes are acknowledged again.
    std::fs::rename(&aside, &path).unwrap();
    submit_ok(&mut esme, sm(0, 0, b"kept too")).await;
    assert_eq!(readyz(&broker).await.0, 200);
    assert_eq!(outbox_texts(&broker).await, ["kept", "kept too"]);
}
