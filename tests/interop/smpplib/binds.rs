//! smpplib binds: each kind, over TLS, and the refusals (wrong password, disabled
//! bind type, too many sessions, bound twice, submit before bind).

use super::*;

/// bind_<kind> as demo; a submit (TX/TRX through smpplib's send_message; RX written
/// raw, since smpplib refuses); enquire_link; unbind; the broker closes.
async fn bind_submit_unbind(kind: &str) {
    let broker = TestBroker::builder().start().await;
    let t = run("bind", broker.addr(), &[kind]).await;
    t.assert_completed();
    t.assert_bound("esme", kind);
    if kind == "receiver" {
        t.response("submit_sm", "submit_sm_resp", ESME_RINVBNDSTS);
    } else {
        let id = t.accepted(t.response("submit_sm", "submit_sm_resp", ESME_ROK));
        broker.assert_stored(&[id], ENROUTE as u8).await;
    }
    t.assert_enquire_links_answered();
    t.assert_unbound("esme");
    t.assert_closed("esme");
    broker.wait_until_no_sessions("demo").await;
}

#[tokio::test]
async fn smpplib_binds_as_transmitter_submits_and_unbinds() {
    bind_submit_unbind("transmitter").await;
}

#[tokio::test]
async fn smpplib_binds_as_receiver_and_unbinds() {
    bind_submit_unbind("receiver").await;
}

#[tokio::test]
async fn smpplib_binds_as_transceiver_submits_and_unbinds() {
    bind_submit_unbind("transceiver").await;
}

#[tokio::test]
async fn smpplib_wrong_password_is_rbindfail() {
    let broker = TestBroker::builder().start().await;
    let t = run(
        "bind_error",
        broker.addr(),
        &["transceiver", "demo", "wrong"],
    )
    .await;
    t.assert_completed();
    t.assert_bind_failed("esme", ESME_RBINDFAIL);
    t.assert_closed("esme");
}

#[tokio::test]
async fn smpplib_disabled_bind_type_is_rbindfail() {
    let broker = TestBroker::builder().start().await;
    let t = run(
        "bind_error",
        broker.addr(),
        &["transmitter", "rxonly", "rx"],
    )
    .await;
    t.assert_completed();
    t.assert_bind_failed("esme", ESME_RBINDFAIL);
    t.assert_closed("esme");
}

#[tokio::test]
async fn smpplib_too_many_sessions_is_rbindfail() {
    let broker = TestBroker::builder().start().await;
    let t = run("too_many_sessions", broker.addr(), &[]).await;
    t.assert_completed();
    t.assert_bound("first", "transceiver");
    t.assert_bind_failed("second", ESME_RBINDFAIL);
    t.assert_closed("second");
    t.assert_unbound("first");
    t.assert_closed("first");
    t.assert_bound("third", "receiver");
    t.assert_unbound("third");
}

#[tokio::test]
async fn smpplib_bind_twice_is_ralybnd_and_the_session_stays_bound() {
    let broker = TestBroker::builder().start().await;
    let t = run("bind_twice", broker.addr(), &[]).await;
    t.assert_completed();
    t.assert_bound("esme", "transmitter");
    t.response("bind_receiver", "bind_receiver_resp", ESME_RALYBND);
    t.assert_enquire_links_answered();
    // Still bound as a transmitter: accepted (ESME_RINVBNDSTS would mean the bind
    // was lost).
    t.accepted(t.response("submit_sm", "submit_sm_resp", ESME_ROK));
    t.assert_unbound("esme");
    t.assert_closed("esme");
}

#[tokio::test]
async fn smpplib_submit_before_bind_is_rinvbndsts() {
    let broker = TestBroker::builder().start().await;
    let t = run("submit_before_bind", broker.addr(), &[]).await;
    t.assert_completed();
    t.response("submit_sm", "submit_sm_resp", ESME_RINVBNDSTS);
    t.assert_enquire_links_answered();
    t.assert_bound("esme", "transmitter");
    t.assert_unbound("esme");
    t.assert_closed("esme");
}

#[tokio::test]
async fn smpplib_binds_over_tls_trusting_the_broker_certificate() {
    let broker = TestBroker::builder().tls().start().await;
    let cert = broker.certificate().path.clone();
    let tls_addr = broker.tls_addr();
    let cert_arg = cert.to_str().expect("UTF-8 temp path");
    let t = run("tls", tls_addr, &[cert_arg]).await;
    t.assert_completed();
    t.first_of("connect_failed", "untrusted");
    t.check(
        t.find_of("bound", "untrusted").is_none(),
        "a client not trusting the certificate does not get through",
    );
    let tls_event = t.first_of("tls", "esme");
    t.check(
        tls_event.str("version").starts_with("TLSv1."),
        "a TLS session was negotiated",
    );
    t.assert_bound("esme", "transceiver");
    t.assert_enquire_links_answered();
    let id = t.accepted(t.response("submit_sm", "submit_sm_resp", ESME_ROK));
    broker.assert_stored(&[id], ENROUTE as u8).await;
    t.assert_unbound("esme");
    t.assert_closed("esme");
}
