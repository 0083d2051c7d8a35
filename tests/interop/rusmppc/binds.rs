//! rusmppc binds: each kind, with its SMPP 5.0 defaults, over TLS, and the refusals
//! (wrong password, disabled bind type, too many sessions, bound twice, submit
//! before bind).

use std::sync::Arc;

use super::*;

async fn bind_submit_unbind(kind: Kind) {
    let broker = TestBroker::builder().start().await;
    let (client, mut events) = connect(broker.addr()).await;
    bind_ok(&client, kind, "demo", "demo1234").await;

    if kind == Kind::Receiver {
        let refused = error_response(client.submit_sm(submit()).await);
        assert_eq!(refused.id(), CommandId::SubmitSmResp);
        assert_eq!(refused.status(), CommandStatus::EsmeRinvbndsts);
    } else {
        let first = accepted(client.submit_sm(submit()).await);
        let response = submit_no_wait(&client, &mut events).await;
        let second = accepted_command(&response);
        assert_ne!(first, second, "each submit_sm has its own message_id");
        broker.assert_stored(&[&first, &second], ENROUTE).await;
    }

    client.enquire_link().await.expect("enquire_link answered");
    client
        .unbind()
        .await
        .expect("unbind answered by unbind_resp");
    expect_closed_by_peer(&client, &mut events).await;
    broker.wait_until_no_sessions("demo").await;
}

#[tokio::test]
async fn rusmppc_binds_as_transmitter_submits_and_unbinds() {
    bind_submit_unbind(Kind::Transmitter).await;
}

#[tokio::test]
async fn rusmppc_binds_as_receiver_and_unbinds() {
    bind_submit_unbind(Kind::Receiver).await;
}

#[tokio::test]
async fn rusmppc_binds_as_transceiver_submits_and_unbinds() {
    bind_submit_unbind(Kind::Transceiver).await;
}

#[tokio::test]
async fn rusmppc_binds_with_its_defaults_as_smpp_5() {
    let broker = TestBroker::builder().start().await;
    // rusmppc's defaults: interface_version 0x50 and its own check of it.
    let (client, mut events) = ConnectionBuilder::new()
        .no_enquire_link_interval()
        .connect(format!("smpp://{}", broker.addr()))
        .await
        .unwrap();
    let resp = client
        .bind_transceiver(
            BindTransceiver::builder()
                .system_id(c_string("demo"))
                .password(c_string("demo1234"))
                .build(),
        )
        .await
        .expect("a 0x50 bind is accepted");
    assert_eq!(resp.system_id.to_string(), "smpp-broker");
    assert_eq!(
        resp.sc_interface_version(),
        Some(InterfaceVersion::Smpp3_4),
        "the broker says it speaks 3.4"
    );
    client.unbind().await.unwrap();
    expect_closed_by_peer(&client, &mut events).await;
}

async fn assert_bind_refused(addr: SocketAddr, kind: Kind, system_id: &str, password: &str) {
    let (client, mut events) = connect(addr).await;
    let response = error_response(bind(&client, kind, system_id, password).await);
    assert_eq!(response.id(), bind_response_id(kind), "{response:?}");
    assert_eq!(
        response.status(),
        CommandStatus::EsmeRbindfail,
        "{system_id}/{password} as {kind:?}"
    );
    expect_closed_by_peer(&client, &mut events).await;
}

#[tokio::test]
async fn rusmppc_wrong_password_is_rbindfail() {
    let broker = TestBroker::builder().start().await;
    assert_bind_refused(broker.addr(), Kind::Transceiver, "demo", "wrong").await;
}

#[tokio::test]
async fn rusmppc_disabled_bind_type_is_rbindfail() {
    let broker = TestBroker::builder().start().await;
    assert_bind_refused(broker.addr(), Kind::Transmitter, "rxonly", "rx").await;
    let (client, _events) = connect(broker.addr()).await;
    bind_ok(&client, Kind::Receiver, "rxonly", "rx").await;
}

#[tokio::test]
async fn rusmppc_too_many_sessions_is_rbindfail() {
    let broker = TestBroker::builder().start().await;
    let (first, mut first_events) = connect(broker.addr()).await;
    bind_ok(&first, Kind::Transceiver, "single", "single").await;
    assert_bind_refused(broker.addr(), Kind::Receiver, "single", "single").await;

    first.unbind().await.unwrap();
    expect_closed_by_peer(&first, &mut first_events).await;
    broker.wait_until_no_sessions("single").await;
    let (third, _events) = connect(broker.addr()).await;
    bind_ok(&third, Kind::Receiver, "single", "single").await;
}

#[tokio::test]
async fn rusmppc_bind_twice_is_ralybnd_and_the_session_stays_bound() {
    let broker = TestBroker::builder().start().await;
    let (client, mut events) = connect(broker.addr()).await;
    bind_ok(&client, Kind::Transmitter, "demo", "demo1234").await;
    let response = error_response(bind(&client, Kind::Receiver, "demo", "demo1234").await);
    assert_eq!(response.id(), CommandId::BindReceiverResp);
    assert_eq!(response.status(), CommandStatus::EsmeRalybnd);
    client.enquire_link().await.expect("still answered");
    // Still a transmitter: accepted (ESME_RINVBNDSTS would mean the first bind was
    // lost).
    accepted(client.submit_sm(submit()).await);
    assert_eq!(broker.broker.registry().sessions("demo").len(), 1);
    client.unbind().await.unwrap();
    expect_closed_by_peer(&client, &mut events).await;
}

#[tokio::test]
async fn rusmppc_submit_before_bind_is_rinvbndsts() {
    let broker = TestBroker::builder().start().await;
    let (client, _events) = connect(broker.addr()).await;
    let refused = error_response(client.submit_sm(submit()).await);
    assert_eq!(refused.id(), CommandId::SubmitSmResp);
    assert_eq!(refused.status(), CommandStatus::EsmeRinvbndsts);
    let unbind = error_response(client.unbind().await);
    assert_eq!(unbind.id(), CommandId::UnbindResp);
    assert_eq!(unbind.status(), CommandStatus::EsmeRinvbndsts);
    client
        .enquire_link()
        .await
        .expect("enquire_link is fine unbound");
    bind_ok(&client, Kind::Transmitter, "demo", "demo1234").await;
}

#[tokio::test]
async fn rusmppc_binds_over_tls_trusting_the_broker_certificate() {
    let broker = TestBroker::builder().tls().start().await;
    let cert_der = broker.certificate().der.clone();
    let port = broker.tls_addr().port();
    // The certificate names "localhost"; rusmppc resolves it (RFC 6761: 127.0.0.1
    // first) and uses it as the TLS server name.
    let url = format!("smpps://localhost:{port}");

    // rusmppc's default trust (no native or webpki roots with our features) refuses
    // the self-signed certificate.
    match builder().connect(&url).await {
        Err(Error::Connect(err)) => {
            assert!(err.to_string().contains("certificate"), "{err}")
        }
        Err(other) => panic!("expected a TLS connect error, got {other:?}"),
        Ok(_) => panic!("an untrusted certificate must be refused"),
    }

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
    let (client, mut events) = builder()
        .rustls_config(config)
        .connect(&url)
        .await
        .expect("TLS connect trusting the broker certificate");
    bind_ok(&client, Kind::Transceiver, "demo", "demo1234").await;
    client.enquire_link().await.unwrap();
    let response = submit_no_wait(&client, &mut events).await;
    accepted_command(&response);
    client.unbind().await.unwrap();
    expect_closed_by_peer(&client, &mut events).await;
}
