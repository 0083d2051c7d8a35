//! The SMPP front end against the real broker on 127.0.0.1:0, driven by raw PDUs.

use std::sync::Arc;

use smpp_broker::smpp::pdu::{
    tlv, Address, BindKind, Body, CommandId, CommandStatus, MessageIdResp, Pdu, Sm,
};
use testkit::{Esme, TestBroker, PATIENCE};
use tokio::net::TcpStream;

fn enquire_link_ok(pdu: &Pdu) -> bool {
    pdu.body == Body::EnquireLinkResp && pdu.command_status.is_ok()
}

async fn still_usable<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(esme: &mut Esme<S>) {
    let resp = esme.request(Body::EnquireLink).await;
    assert!(enquire_link_ok(&resp), "session still answers: {resp:?}");
}

fn submit(text: &str) -> Body {
    Body::SubmitSm(Sm {
        source: Address::new(1, 1, "4915112345"),
        dest: Address::new(1, 1, "4917612345"),
        short_message: bytes::Bytes::copy_from_slice(text.as_bytes()),
        ..Sm::default()
    })
}

#[tokio::test]
async fn binds_as_transmitter_receiver_and_transceiver() {
    let broker = TestBroker::builder().start().await;
    for kind in [
        BindKind::Transmitter,
        BindKind::Receiver,
        BindKind::Transceiver,
    ] {
        let mut esme = Esme::connect(broker.addr()).await;
        let resp = esme.bind(kind, "demo", "demo1234").await;
        assert_eq!(resp.command_status, CommandStatus::ESME_ROK);
        let Body::BindResp(resp_kind, body) = &resp.body else {
            panic!("{resp:?}")
        };
        assert_eq!(*resp_kind, kind);
        assert_eq!(body.system_id, "smpp-broker");
        assert_eq!(body.tlvs.get_u8(tlv::tag::SC_INTERFACE_VERSION), Some(0x34));
        still_usable(&mut esme).await;
    }
}

#[tokio::test]
async fn interface_versions_33_and_50() {
    let broker = TestBroker::builder().start().await;
    let mut v33 = Esme::connect(broker.addr()).await;
    let resp = v33
        .bind_version(BindKind::Transceiver, "demo", "demo1234", 0x33)
        .await;
    assert_eq!(resp.command_status, CommandStatus::ESME_ROK);
    let Body::BindResp(_, body) = resp.body else {
        panic!()
    };
    assert!(body.tlvs.is_empty(), "a 3.3 ESME gets no TLVs");

    let mut v50 = Esme::connect(broker.addr()).await;
    let resp = v50
        .bind_version(BindKind::Transceiver, "demo", "demo1234", 0x50)
        .await;
    assert_eq!(
        resp.command_status,
        CommandStatus::ESME_ROK,
        "node-smpp's 0x50 is accepted"
    );
    let Body::BindResp(_, body) = resp.body else {
        panic!()
    };
    assert_eq!(body.tlvs.get_u8(tlv::tag::SC_INTERFACE_VERSION), Some(0x34));
}

#[tokio::test]
async fn failed_binds_are_answered_header_only_then_closed() {
    let broker = TestBroker::builder().start().await;
    let cases = [
        (BindKind::Transceiver, "demo", "wrong"),
        (BindKind::Transceiver, "nobody", "demo1234"),
        (BindKind::Transmitter, "rxonly", "rx"),
    ];
    for (kind, system_id, password) in cases {
        let mut esme = Esme::connect(broker.addr()).await;
        let seq = esme.next_sequence();
        let bind = smpp_broker::smpp::pdu::Bind {
            system_id: system_id.into(),
            password: password.into(),
            interface_version: 0x34,
            ..Default::default()
        };
        esme.send(&Pdu::new(seq, Body::Bind(kind, bind))).await;
        let resp = esme.recv_some().await;
        assert_eq!(
            resp.command_status,
            CommandStatus::ESME_RBINDFAIL,
            "{system_id}/{password}"
        );
        assert_eq!(resp.command_id(), kind.response_id());
        assert_eq!(resp.sequence_number, seq);
        assert_eq!(resp.to_bytes().len(), 16, "header only");
        esme.expect_closed().await;
    }
    // The receiver-only account binds as a receiver.
    let mut esme = Esme::connect(broker.addr()).await;
    esme.bind_ok(BindKind::Receiver, "rxonly", "rx").await;
}

#[tokio::test]
async fn detailed_bind_errors_name_the_field() {
    let broker = TestBroker::builder()
        .smpp("detailed_bind_errors = true")
        .start()
        .await;
    let mut esme = Esme::connect(broker.addr()).await;
    let resp = esme.bind(BindKind::Transceiver, "demo", "wrong").await;
    assert_eq!(resp.command_status, CommandStatus::ESME_RINVPASWD);
    let mut esme = Esme::connect(broker.addr()).await;
    let resp = esme.bind(BindKind::Transceiver, "nobody", "x").await;
    assert_eq!(resp.command_status, CommandStatus::ESME_RINVSYSID);
}

#[tokio::test]
async fn max_sessions_per_account() {
    let broker = TestBroker::builder().start().await;
    let mut first = Esme::connect(broker.addr()).await;
    first
        .bind_ok(BindKind::Transceiver, "single", "single")
        .await;
    let mut second = Esme::connect(broker.addr()).await;
    let resp = second.bind(BindKind::Receiver, "single", "single").await;
    assert_eq!(resp.command_status, CommandStatus::ESME_RBINDFAIL);
    second.expect_closed().await;

    // Once the first session is gone, its slot is free again.
    let resp = first.request(Body::Unbind).await;
    assert_eq!(resp.body, Body::UnbindResp);
    first.expect_closed().await;
    let mut third = Esme::connect(broker.addr()).await;
    third.bind_ok(BindKind::Receiver, "single", "single").await;
}

#[tokio::test]
async fn bind_twice_is_ralybnd_and_the_session_stays_bound() {
    let broker = TestBroker::builder().start().await;
    let mut esme = Esme::connect(broker.addr()).await;
    esme.bind_ok(BindKind::Transmitter, "demo", "demo1234")
        .await;
    let resp = esme.bind(BindKind::Receiver, "demo", "demo1234").await;
    assert_eq!(resp.command_status, CommandStatus::ESME_RALYBND);
    assert_eq!(resp.command_id(), CommandId::BindReceiverResp);
    still_usable(&mut esme).await;
    assert_eq!(broker.broker.registry().sessions("demo").len(), 1);
}

#[tokio::test]
async fn requests_before_bind_are_rinvbndsts() {
    let broker = TestBroker::builder().start().await;
    let mut esme = Esme::connect(broker.addr()).await;
    let resp = esme.request(submit("too early")).await;
    assert_eq!(resp.command_id(), CommandId::SubmitSmResp);
    assert_eq!(resp.command_status, CommandStatus::ESME_RINVBNDSTS);
    let resp = esme.request(Body::Unbind).await;
    assert_eq!(resp.command_status, CommandStatus::ESME_RINVBNDSTS);
    still_usable(&mut esme).await;
    esme.bind_ok(BindKind::Transmitter, "demo", "demo1234")
        .await;
}

#[tokio::test]
async fn a_receiver_may_not_submit() {
    let broker = TestBroker::builder().start().await;
    let mut esme = Esme::connect(broker.addr()).await;
    esme.bind_ok(BindKind::Receiver, "demo", "demo1234").await;
    let resp = esme.request(submit("hello")).await;
    assert_eq!(resp.command_status, CommandStatus::ESME_RINVBNDSTS);
}

#[tokio::test]
async fn unknown_command_id_gets_generic_nack_and_the_session_goes_on() {
    let broker = TestBroker::builder().start().await;
    let mut esme = Esme::connect(broker.addr()).await;
    esme.bind_ok(BindKind::Transceiver, "demo", "demo1234")
        .await;
    for command_id in [0x0000_0999u32, 0x0000_0111 /* v5 broadcast_sm */] {
        let mut raw = vec![0, 0, 0, 16];
        raw.extend_from_slice(&command_id.to_be_bytes());
        raw.extend_from_slice(&0u32.to_be_bytes());
        raw.extend_from_slice(&77u32.to_be_bytes());
        esme.send_raw(&raw).await;
        let resp = esme.recv_some().await;
        assert_eq!(resp, Pdu::generic_nack(CommandStatus::ESME_RINVCMDID, 77));
        still_usable(&mut esme).await;
    }
    // deliver_sm is for SMSCs to send.
    let resp = esme.request(Body::DeliverSm(Sm::default())).await;
    assert_eq!(resp.body, Body::GenericNack);
    assert_eq!(resp.command_status, CommandStatus::ESME_RINVCMDID);
    still_usable(&mut esme).await;
}

#[tokio::test]
async fn truncated_body_gets_an_error_response_and_the_session_goes_on() {
    let broker = TestBroker::builder().start().await;
    let mut esme = Esme::connect(broker.addr()).await;
    esme.bind_ok(BindKind::Transmitter, "demo", "demo1234")
        .await;
    let full = Pdu::new(41, submit("hello")).to_bytes();
    let mut cut = full[..24].to_vec();
    cut[..4].copy_from_slice(&24u32.to_be_bytes());
    esme.send_raw(&cut).await;
    let resp = esme.recv_some().await;
    assert_eq!(resp.command_id(), CommandId::SubmitSmResp);
    assert_eq!(resp.command_status, CommandStatus::ESME_RINVCMDLEN);
    assert_eq!(resp.sequence_number, 41);
    still_usable(&mut esme).await;
}

#[tokio::test]
async fn field_errors_get_their_own_status() {
    let broker = TestBroker::builder().start().await;
    let mut esme = Esme::connect(broker.addr()).await;
    esme.bind_ok(BindKind::Transmitter, "demo", "demo1234")
        .await;
    let body = Body::SubmitSm(Sm {
        validity_period: "12345".into(),
        ..Sm::default()
    });
    // Our encoder writes what it is given; the broker must reject the 5-character time.
    let resp = esme.request(body).await;
    assert_eq!(resp.command_status, CommandStatus::ESME_RINVEXPIRY);
    still_usable(&mut esme).await;
}

#[tokio::test]
async fn oversized_command_length_gets_generic_nack_then_close() {
    let broker = TestBroker::builder()
        .smpp("max_pdu_size = 4096")
        .start()
        .await;
    let mut esme = Esme::connect(broker.addr()).await;
    esme.bind_ok(BindKind::Transmitter, "demo", "demo1234")
        .await;
    let mut raw = 100_000u32.to_be_bytes().to_vec();
    raw.extend_from_slice(&4u32.to_be_bytes());
    raw.extend_from_slice(&0u32.to_be_bytes());
    raw.extend_from_slice(&9u32.to_be_bytes());
    esme.send_raw(&raw).await;
    let resp = esme.recv_some().await;
    assert_eq!(resp, Pdu::generic_nack(CommandStatus::ESME_RINVCMDLEN, 9));
    esme.expect_closed().await;
}

#[tokio::test]
async fn command_length_below_16_gets_generic_nack_then_close() {
    let broker = TestBroker::builder().start().await;
    let mut esme = Esme::connect(broker.addr()).await;
    esme.send_raw(&[0, 0, 0, 8, 0, 0, 0, 21]).await;
    let resp = esme.recv_some().await;
    assert_eq!(resp, Pdu::generic_nack(CommandStatus::ESME_RINVCMDLEN, 0));
    esme.expect_closed().await;
}

#[tokio::test]
async fn responses_are_never_answered() {
    let broker = TestBroker::builder().start().await;
    let mut esme = Esme::connect(broker.addr()).await;
    esme.bind_ok(BindKind::Transceiver, "demo", "demo1234")
        .await;
    // A stray response and a stray generic_nack: the broker says nothing back.
    esme.send(&Pdu::new(
        500,
        Body::DeliverSmResp(MessageIdResp::default()),
    ))
    .await;
    esme.send(&Pdu::generic_nack(CommandStatus::ESME_RINVCMDID, 501))
        .await;
    let resp = esme.request(Body::EnquireLink).await;
    assert!(
        enquire_link_ok(&resp),
        "the next PDU is the enquire_link_resp: {resp:?}"
    );
}

#[tokio::test]
async fn sequence_numbers_0_and_max_are_echoed() {
    let broker = TestBroker::builder().start().await;
    let mut esme = Esme::connect(broker.addr()).await;
    for seq in [0u32, 0xFFFF_FFFF] {
        esme.send(&Pdu::new(seq, Body::EnquireLink)).await;
        let resp = esme.recv_some().await;
        assert_eq!(resp.sequence_number, seq);
        assert!(enquire_link_ok(&resp));
    }
}

#[tokio::test]
async fn enquire_link_is_answered_before_bind_and_sent_by_the_broker_when_idle() {
    let broker = TestBroker::builder()
        .smpp("enquire_link_interval = \"200ms\"")
        .start()
        .await;
    let mut esme = Esme::connect(broker.addr()).await;
    still_usable(&mut esme).await;
    esme.bind_ok(BindKind::Transceiver, "demo", "demo1234")
        .await;
    // Idle now: the broker asks whether we are alive.
    let ping = esme.recv_some().await;
    assert_eq!(ping.body, Body::EnquireLink);
    assert!(ping.sequence_number >= 1 && ping.sequence_number <= 0x7FFF_FFFF);
    esme.send(&Pdu::new(ping.sequence_number, Body::EnquireLinkResp))
        .await;
    // Answered, so the session lives on and the broker asks again later.
    let again = esme.recv_some().await;
    assert_eq!(again.body, Body::EnquireLink);
    assert_ne!(again.sequence_number, ping.sequence_number);
}

#[tokio::test]
async fn an_unanswered_enquire_link_closes_the_link() {
    let broker = TestBroker::builder()
        .smpp("enquire_link_interval = \"100ms\"\nresponse_timeout = \"200ms\"")
        .start()
        .await;
    let mut esme = Esme::connect(broker.addr()).await;
    esme.bind_ok(BindKind::Transceiver, "demo", "demo1234")
        .await;
    let ping = esme.recv_some().await;
    assert_eq!(ping.body, Body::EnquireLink);
    esme.expect_closed().await;
    assert!(
        broker.broker.registry().sessions("demo").is_empty(),
        "the slot is freed"
    );
}

#[tokio::test]
async fn inactivity_unbinds_and_closes() {
    let broker = TestBroker::builder().smpp("enquire_link_interval = \"1h\"\ninactivity_timeout = \"200ms\"\nresponse_timeout = \"200ms\"").start()
    .await;
    let mut esme = Esme::connect(broker.addr()).await;
    esme.bind_ok(BindKind::Transceiver, "demo", "demo1234")
        .await;
    let unbind = esme.recv_some().await;
    assert_eq!(unbind.body, Body::Unbind);
    esme.send(&Pdu::new(unbind.sequence_number, Body::UnbindResp))
        .await;
    esme.expect_closed().await;
}

#[tokio::test]
async fn no_bind_within_session_init_timeout_closes() {
    let broker = TestBroker::builder()
        .smpp("session_init_timeout = \"200ms\"")
        .start()
        .await;
    let mut esme = Esme::connect(broker.addr()).await;
    esme.expect_closed().await;
}

#[tokio::test]
async fn unbind_from_the_esme_is_answered_then_closed() {
    let broker = TestBroker::builder().start().await;
    let mut esme = Esme::connect(broker.addr()).await;
    esme.bind_ok(BindKind::Transceiver, "demo", "demo1234")
        .await;
    let resp = esme.request(Body::Unbind).await;
    assert_eq!(resp.body, Body::UnbindResp);
    assert!(resp.command_status.is_ok());
    esme.expect_closed().await;
}

#[tokio::test]
async fn shutdown_unbinds_bound_sessions_and_completes() {
    let broker = TestBroker::builder().start().await;
    let addr = broker.addr();
    let mut bound = Esme::connect(addr).await;
    bound
        .bind_ok(BindKind::Transceiver, "demo", "demo1234")
        .await;
    let mut open = Esme::connect(broker.addr()).await;
    still_usable(&mut open).await;

    let token = broker.broker.shutdown_token();
    let shutdown = tokio::spawn(broker.broker.shutdown());
    let unbind = bound.recv_some().await;
    assert_eq!(unbind.body, Body::Unbind);
    bound
        .send(&Pdu::new(unbind.sequence_number, Body::UnbindResp))
        .await;
    bound.expect_closed().await;
    open.expect_closed().await;
    tokio::time::timeout(PATIENCE, shutdown)
        .await
        .unwrap()
        .unwrap();
    assert!(token.is_cancelled());
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn shutdown_closes_sessions_whose_esme_never_answers_unbind() {
    let broker = TestBroker::builder()
        .smpp("response_timeout = \"200ms\"")
        .start()
        .await;
    let mut esme = Esme::connect(broker.addr()).await;
    esme.bind_ok(BindKind::Transceiver, "demo", "demo1234")
        .await;
    let shutdown = tokio::spawn(broker.broker.shutdown());
    assert_eq!(esme.recv_some().await.body, Body::Unbind);
    esme.expect_closed().await;
    tokio::time::timeout(PATIENCE, shutdown)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn throughput_above_the_account_rate_is_throttled() {
    let broker = TestBroker::builder().start().await;
    let mut esme = Esme::connect(broker.addr()).await;
    esme.bind_ok(BindKind::Transmitter, "slow", "slow").await;
    // The bucket holds one second (5 submits); 20 at once must see throttling.
    let mut throttled = 0;
    let mut admitted = 0;
    for _ in 0..20 {
        let resp = esme.request(submit("hi")).await;
        if resp.command_status == CommandStatus::ESME_RTHROTTLED {
            throttled += 1;
        } else {
            admitted += 1;
        }
    }
    assert!(
        admitted >= 5,
        "the first second's budget is admitted ({admitted})"
    );
    assert!(throttled >= 10, "the excess is throttled ({throttled})");
}

#[tokio::test]
async fn pipelined_requests_are_all_answered_by_sequence() {
    let broker = TestBroker::builder().start().await;
    let mut esme = Esme::connect(broker.addr()).await;
    esme.bind_ok(BindKind::Transceiver, "demo", "demo1234")
        .await;
    let sequences: Vec<u32> = (1000..1064).collect();
    for &seq in &sequences {
        let body = if seq % 2 == 0 {
            Body::EnquireLink
        } else {
            submit("x")
        };
        esme.send(&Pdu::new(seq, body)).await;
    }
    let mut answered = Vec::new();
    while answered.len() < sequences.len() {
        let pdu = esme.recv_some().await;
        let expected = if pdu.sequence_number % 2 == 0 {
            CommandId::EnquireLinkResp
        } else {
            CommandId::SubmitSmResp
        };
        assert_eq!(pdu.command_id(), expected);
        answered.push(pdu.sequence_number);
    }
    answered.sort_unstable();
    assert_eq!(answered, sequences);
}

#[tokio::test]
async fn the_same_bind_over_tls() {
    let broker = TestBroker::builder().tls().start().await;
    let cert_der = broker.certificate().der.clone();
    let tls_addr = broker.tls_addr();

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from(cert_der))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(tls_addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let stream = connector.connect(name, tcp).await.expect("TLS handshake");
    let mut esme = Esme::over(stream);
    esme.bind_ok(BindKind::Transceiver, "demo", "demo1234")
        .await;
    still_usable(&mut esme).await;
    let resp = esme.request(Body::Unbind).await;
    assert_eq!(resp.body, Body::UnbindResp);
    esme.expect_closed().await;
}
