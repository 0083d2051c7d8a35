//! rusmppc 0.4, an independent Rust ESME (its own codec, rusmpp), against the
//! in-process broker on 127.0.0.1:0.
//!
//! rusmppc matches responses to requests by sequence number and hands an error
//! status back as `Error::UnexpectedResponse` carrying the response, so refusals are
//! asserted on that response's command_id and command_status. It answers the broker's
//! enquire_link by itself, passes every other request from the broker (unbind) to the
//! application as `Event::Incoming`, and reports the broker closing the connection as
//! `Event::Error(Error::ConnectionClosedByPeer)`.
//!
//! rusmppc refuses binds whose interface_version is not 5.0 unless its check is
//! disabled; we bind as 3.4 with the check off, and once with its defaults (5.0).
//!
//! Texts are encoded and long texts cut into UDH parts by rusmpp's own `extra`
//! encoders (enabled through rusmppc), except UCS-2 beyond the BMP: rusmpp 0.4's
//! `Ucs2` encoder is strict UCS-2 and refuses an emoji, so that text is encoded
//! here (UTF-16BE, a surrogate pair). rusmppc 0.4's client sends no query_sm,
//! cancel_sm, replace_sm, data_sm or submit_multi; those go over a plain TCP
//! stream with rusmpp's `CommandCodec` (the codec rusmppc is built on).
//!
//! rusmpp 0.4's `EsmClass::default()` is 0x08, not 0x00: its ANSI-41 sub-field
//! defaults to "delivery acknowledgement". A submit_sm built without an explicit
//! esm_class therefore says "ESME delivery acknowledgement", which the broker
//! refuses (ESME_RINVESMCLASS, pinned below); every PDU here sets esm_class 0.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, SinkExt, Stream, StreamExt};
use rusmpp::extra::concatenation::SubmitSmMultipartExt;
use rusmpp::extra::encoding::gsm7bit::Gsm7BitUnpacked;
use rusmpp::extra::encoding::EncodedSubmitSmExt;
use rusmpp::pdus::{
    BindReceiver, BindTransceiver, BindTransmitter, CancelSm, DataSm, QuerySm, ReplaceSm,
    SubmitMulti, SubmitSm, SubmitSmResp,
};
use rusmpp::tlvs::MessageSubmissionRequestTlvValue;
use rusmpp::tokio_codec::CommandCodec;
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{
    DataCoding, DestAddress, DistributionListName, EsmClass, InterfaceVersion, MessagePayload,
    MessageState, Npi, ServiceType, SmeAddress, Ton,
};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use rusmppc::error::Error;
use rusmppc::{Client, ConnectionBuilder, Event};
use testkit::db::OutboxState;
use testkit::{TestBroker, PATIENCE};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::codec::Framed;

/// query_sm's message_state values (SMPP 3.4 5.2.28), as the store reports them.
const ENROUTE: u8 = 1;
const DELETED: u8 = 4;

const SOURCE: &str = "4915112345";
const DESTINATION: &str = "4917612345";

/// GSM 03.38 with every extension character, @ (0x00) and § (0x5F).
const GSM_TEXT: &str = "Price: 5€ {x} [y] ~ ^ \\ | @ £$¥ èé ΔΩ ¤¡¿ _ Äö §";
/// data_sm's message_payload in GSM 03.38 (data_coding 0), where _ is not 0x5F.
const DATA_SM_TEXT: &str = "data_sm from rusmpp: 5€ {ok}";
/// Not GSM: UCS-2 (data_coding 8), the emoji a surrogate pair.
const UCS2_TEXT: &str = "Grüße 😀 Привет 你好 €";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Transmitter,
    Receiver,
    Transceiver,
}

/// What a successful bind returned.
#[derive(Debug)]
struct Bound {
    system_id: String,
    sc_interface_version: Option<InterfaceVersion>,
}

/// A rusmppc connection that stays quiet unless the test speaks: no enquire_links
/// of its own, 3.4 binds allowed.
fn builder() -> ConnectionBuilder {
    ConnectionBuilder::new()
        .disable_interface_version_check()
        .no_enquire_link_interval()
        .response_timeout(PATIENCE)
}

async fn connect(addr: SocketAddr) -> (Client, impl Stream<Item = Event> + Unpin + 'static) {
    builder()
        .connect(format!("smpp://{addr}"))
        .await
        .expect("rusmppc connects")
}

fn c_string<const N: usize>(text: &str) -> COctetString<1, N> {
    COctetString::from_str(text).expect("a valid C-octet string")
}

async fn bind(
    client: &Client,
    kind: Kind,
    system_id: &str,
    password: &str,
) -> Result<Bound, Error> {
    let (system_id, password) = (c_string(system_id), c_string(password));
    let version = InterfaceVersion::Smpp3_4;
    match kind {
        Kind::Transmitter => client
            .bind_transmitter(
                BindTransmitter::builder()
                    .system_id(system_id)
                    .password(password)
                    .interface_version(version)
                    .build(),
            )
            .await
            .map(|r| Bound {
                system_id: r.system_id.to_string(),
                sc_interface_version: r.sc_interface_version(),
            }),
        Kind::Receiver => client
            .bind_receiver(
                BindReceiver::builder()
                    .system_id(system_id)
                    .password(password)
                    .interface_version(version)
                    .build(),
            )
            .await
            .map(|r| Bound {
                system_id: r.system_id.to_string(),
                sc_interface_version: r.sc_interface_version(),
            }),
        Kind::Transceiver => client
            .bind_transceiver(
                BindTransceiver::builder()
                    .system_id(system_id)
                    .password(password)
                    .interface_version(version)
                    .build(),
            )
            .await
            .map(|r| Bound {
                system_id: r.system_id.to_string(),
                sc_interface_version: r.sc_interface_version(),
            }),
    }
}

async fn bind_ok(client: &Client, kind: Kind, system_id: &str, password: &str) {
    let bound = bind(client, kind, system_id, password)
        .await
        .unwrap_or_else(|err| panic!("{kind:?} bind as {system_id}: {err}"));
    assert_eq!(bound.system_id, "smpp-broker", "{bound:?}");
    assert_eq!(
        bound.sc_interface_version,
        Some(InterfaceVersion::Smpp3_4),
        "{bound:?}"
    );
}

fn bind_response_id(kind: Kind) -> CommandId {
    match kind {
        Kind::Transmitter => CommandId::BindTransmitterResp,
        Kind::Receiver => CommandId::BindReceiverResp,
        Kind::Transceiver => CommandId::BindTransceiverResp,
    }
}

/// The error response inside rusmppc's `UnexpectedResponse`.
fn error_response<T: std::fmt::Debug>(result: Result<T, Error>) -> Command {
    match result {
        Err(Error::UnexpectedResponse { response }) => *response,
        other => panic!("expected an error response from the broker, got {other:?}"),
    }
}

fn submit() -> SubmitSm {
    submit_to(DESTINATION)
}

fn submit_to(destination: &str) -> SubmitSm {
    SubmitSm::builder()
        .source_addr_ton(Ton::International)
        .source_addr_npi(Npi::Isdn)
        .source_addr(c_string(SOURCE))
        .dest_addr_ton(Ton::International)
        .dest_addr_npi(Npi::Isdn)
        .destination_addr(c_string(destination))
        .esm_class(normal())
        .short_message(OctetString::from_str("hello from rusmppc").unwrap())
        .build()
}

/// esm_class 0x00: default mode, a normal message (rusmpp's default is 0x08).
fn normal() -> EsmClass {
    EsmClass::from(0x00)
}

/// A message_id as issue 3 promises it: 1 to 20 decimal digits.
fn assert_message_id(id: &str) {
    assert!(
        !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit()),
        "a decimal message_id of at most 20 digits: {id:?}"
    );
}

/// The message_id of an accepted submit_sm.
fn accepted(response: Result<SubmitSmResp, Error>) -> String {
    let response = response.unwrap_or_else(|err| panic!("submit_sm accepted: {err:?}"));
    let id = response.message_id().to_string();
    assert_message_id(&id);
    id
}

/// The message_id in a submit_sm_resp read from the event stream.
fn accepted_command(response: &Command) -> String {
    assert_eq!(response.status(), CommandStatus::EsmeRok, "{response:?}");
    match response.pdu() {
        Some(Pdu::SubmitSmResp(resp)) => {
            let id = resp.message_id().to_string();
            assert_message_id(&id);
            id
        }
        other => panic!("a submit_sm_resp with a message_id, got {other:?}"),
    }
}

/// The next event, failing after PATIENCE; None when the stream ended.
async fn next_event<S: Stream<Item = Event> + Unpin>(events: &mut S) -> Option<Event> {
    tokio::time::timeout(PATIENCE, events.next())
        .await
        .expect("a rusmppc event in time")
}

/// Waits until rusmppc reports that the broker closed the connection.
async fn expect_closed_by_peer<S: Stream<Item = Event> + Unpin>(client: &Client, events: &mut S) {
    match next_event(events).await {
        Some(Event::Error(Error::ConnectionClosedByPeer)) => {}
        Some(other) => panic!("expected the broker to close the connection, got {other:?}"),
        None => panic!("the event stream ended without ConnectionClosedByPeer"),
    }
    tokio::time::timeout(PATIENCE, client.closed())
        .await
        .expect("the rusmppc connection ends");
    assert!(client.is_closed());
}

/// Nothing arrived from the broker unasked.
fn assert_no_event<S: Stream<Item = Event> + Unpin>(events: &mut S) {
    if let Some(event) = events.next().now_or_never() {
        panic!("unexpected rusmppc event: {event:?}");
    }
}

/// Submits without waiting (rusmppc returns the sequence number it used) and reads
/// the response from the event stream, so the echoed sequence number is visible.
async fn submit_no_wait<S: Stream<Item = Event> + Unpin>(
    client: &Client,
    events: &mut S,
) -> Command {
    let sequence = client.no_wait().submit_sm(submit()).await.expect("sent");
    match next_event(events).await {
        Some(Event::Incoming(response)) => {
            assert_eq!(response.id(), CommandId::SubmitSmResp, "{response:?}");
            assert_eq!(
                response.sequence_number(),
                sequence,
                "the response echoes the sequence"
            );
            response
        }
        other => panic!("expected the submit_sm_resp, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------

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

/// rusmpp 0.4's default esm_class is 0x08 (ESME delivery acknowledgement, SMPP 3.4
/// 5.2.12): a submit_sm that keeps it is not a normal message, and the broker
/// refuses it with ESME_RINVESMCLASS. Applications on rusmppc must set esm_class.
#[tokio::test]
async fn rusmppc_default_esm_class_is_a_delivery_ack_and_refused() {
    assert_eq!(u8::from(EsmClass::default()), 0x08, "rusmpp's default");
    let broker = TestBroker::builder().start().await;
    let (client, _events) = connect(broker.addr()).await;
    bind_ok(&client, Kind::Transmitter, "demo", "demo1234").await;
    let mut sm = submit();
    sm.esm_class = EsmClass::default();
    let refused = error_response(client.submit_sm(sm).await);
    assert_eq!(refused.id(), CommandId::SubmitSmResp);
    assert_eq!(refused.status(), CommandStatus::EsmeRinvesmclass);
    accepted(client.submit_sm(submit()).await);
}

// ---------------------------------------------------------------------------------
// What the broker stored
// ---------------------------------------------------------------------------------

/// For each message_id, the outbox row it leads to: (outbox id, state, text), read
/// from the broker's database as an operator would.
async fn outbox_texts(broker: &TestBroker) -> HashMap<String, (i64, OutboxState, String)> {
    let sql = "SELECT m.message_id, o.id, o.state, o.text \
               FROM messages m JOIN outbox o ON o.id = m.outbox_id";
    let rows: Vec<(i64, i64, OutboxState, Option<String>)> = broker.db().rows(sql).await;
    rows.into_iter()
        .map(|(message_id, id, state, text)| {
            (
                message_id.to_string(),
                (id, state, text.unwrap_or_default()),
            )
        })
        .collect()
}

/// The one outbox row (id, state, text) every id in `ids` leads to.
fn the_row_of(
    rows: &HashMap<String, (i64, OutboxState, String)>,
    ids: &[&str],
) -> (i64, OutboxState, String) {
    let found: Vec<_> = ids
        .iter()
        .map(|id| {
            rows.get(*id)
                .unwrap_or_else(|| panic!("message {id} leads to an outbox row"))
        })
        .collect();
    assert!(
        found.iter().all(|row| *row == found[0]),
        "{ids:?} all lead to one outbox row: {found:?}"
    );
    found[0].clone()
}

// ---------------------------------------------------------------------------------
// Issue 3 through rusmppc
// ---------------------------------------------------------------------------------

/// About 400 GSM characters, extension characters among them.
fn long_gsm_text() -> String {
    let fox = "The quick brown fox jumps over the lazy dog 0123456789. ";
    format!("{} {{5€}} [x] ~^ \\|{}", fox.repeat(3), fox.repeat(4))
        .chars()
        .take(400)
        .collect()
}

/// About 200 UCS-2 characters, all in the BMP (rusmpp's `Ucs2` refuses others).
fn long_ucs2_text() -> String {
    "Привет, мир! Grüße aus Köln 你好 € "
        .repeat(8)
        .chars()
        .take(200)
        .collect()
}

/// UTF-16BE, as data_coding 8 carries it in practice: beyond the BMP a surrogate pair.
fn utf16be(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

/// GSM-7 with extension characters and UCS-2 with an emoji in one submit_sm each,
/// then ~400 GSM and ~200 UCS-2 characters cut into UDH parts by rusmpp's splitter
/// (8-bit and 16-bit references). Every part gets its own message_id; once the
/// client is gone, the store knows each id as ENROUTE and the outbox holds one row
/// per message with the whole text.
#[tokio::test]
async fn rusmppc_texts_and_long_messages_are_stored_whole() {
    let broker = TestBroker::builder().start().await;
    let (client, mut events) = connect(broker.addr()).await;
    bind_ok(&client, Kind::Transceiver, "demo", "demo1234").await;

    let gsm = submit()
        .encode(GSM_TEXT)
        .gsm7bit_unpacked()
        .build()
        .expect("rusmpp encodes GSM 03.38");
    assert!(
        gsm.short_message().as_ref().contains(&0x1B),
        "escapes in the GSM octets"
    );
    let mut ucs2 = submit();
    ucs2.data_coding = DataCoding::Ucs2;
    ucs2.set_short_message(OctetString::from_vec(utf16be(UCS2_TEXT)).unwrap());
    let (long_gsm, long_ucs2) = (long_gsm_text(), long_ucs2_text());
    let gsm_parts = submit_to("4917600001")
        .multipart(&long_gsm)
        .gsm7bit_unpacked()
        .reference_u8(7)
        .build()
        .expect("rusmpp cuts the GSM text");
    let ucs2_parts = submit_to("4917600002")
        .multipart(&long_ucs2)
        .ucs2()
        .reference_u16(0x1234)
        .build()
        .expect("rusmpp cuts the UCS-2 text");
    assert!(gsm_parts.len() >= 3, "{} GSM parts", gsm_parts.len());
    assert!(ucs2_parts.len() >= 3, "{} UCS-2 parts", ucs2_parts.len());
    for part in gsm_parts.iter().chain(&ucs2_parts) {
        assert_eq!(u8::from(part.esm_class), 0x40, "UDHI and nothing else");
    }
    assert_eq!(
        &ucs2_parts[0].short_message().as_ref()[..5],
        &[0x06, 0x08, 0x04, 0x12, 0x34],
        "a 16-bit reference concatenation element"
    );

    let messages = [
        ("gsm7", GSM_TEXT.to_owned(), vec![gsm]),
        ("ucs2", UCS2_TEXT.to_owned(), vec![ucs2]),
        ("long_gsm", long_gsm, gsm_parts),
        ("long_ucs2", long_ucs2, ucs2_parts),
    ];
    let mut sent = Vec::new();
    for (label, text, parts) in &messages {
        let mut ids = Vec::new();
        for part in parts {
            ids.push(accepted(client.submit_sm(part.clone()).await));
        }
        sent.push((*label, text, ids));
    }
    client.unbind().await.unwrap();
    expect_closed_by_peer(&client, &mut events).await;
    broker.wait_until_no_sessions("demo").await;

    let all: Vec<&str> = sent
        .iter()
        .flat_map(|(_, _, ids)| ids.iter().map(String::as_str))
        .collect();
    let distinct: std::collections::HashSet<&str> = all.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        all.len(),
        "every part has its own id: {all:?}"
    );
    broker.assert_stored(&all, ENROUTE).await;
    let rows = outbox_texts(&broker).await;
    let mut outbox_ids = std::collections::HashSet::new();
    for (label, text, ids) in &sent {
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let (outbox_id, state, stored) = the_row_of(&rows, &ids);
        assert_eq!(&&stored, text, "{label}: the outbox holds the whole text");
        assert_eq!(state, OutboxState::Queued, "{label}");
        outbox_ids.insert(outbox_id);
    }
    assert_eq!(outbox_ids.len(), sent.len(), "one outbox row per message");
}

/// A plain TCP ESME speaking rusmpp's `CommandCodec`, for the PDUs rusmppc's
/// client cannot send.
struct CodecEsme {
    framed: Framed<TcpStream, CommandCodec>,
    sequence: u32,
}

impl CodecEsme {
    async fn connect(addr: SocketAddr) -> CodecEsme {
        let stream = TcpStream::connect(addr).await.expect("connect");
        CodecEsme {
            framed: Framed::new(stream, CommandCodec::new()),
            sequence: 0,
        }
    }

    /// Sends `pdu` and returns the response, answering enquire_links in between.
    async fn request(&mut self, pdu: impl Into<Pdu>) -> Command {
        self.sequence += 1;
        let sequence = self.sequence;
        self.framed
            .send(Command::new(CommandStatus::EsmeRok, sequence, pdu))
            .await
            .expect("send");
        loop {
            let command = tokio::time::timeout(PATIENCE, self.framed.next())
                .await
                .expect("the broker answers in time")
                .expect("the connection stays open")
                .expect("rusmpp decodes what the broker sent");
            if command.id() == CommandId::EnquireLink {
                let resp = Command::new(
                    CommandStatus::EsmeRok,
                    command.sequence_number(),
                    Pdu::EnquireLinkResp,
                );
                self.framed.send(resp).await.expect("send");
                continue;
            }
            assert_eq!(command.sequence_number(), sequence, "{command:?}");
            return command;
        }
    }

    /// A response with status 0 whose PDU `extract` accepts.
    async fn ok<T>(&mut self, pdu: impl Into<Pdu>, extract: fn(Pdu) -> Option<T>) -> T {
        let response = self.request(pdu).await;
        assert_eq!(response.status(), CommandStatus::EsmeRok, "{response:?}");
        let body = response.pdu().cloned();
        extract(body.expect("a body")).unwrap_or_else(|| panic!("unexpected {response:?}"))
    }

    async fn status(&mut self, pdu: impl Into<Pdu>) -> CommandStatus {
        self.request(pdu).await.status()
    }

    async fn query(&mut self, message_id: &str) -> Command {
        self.request(QuerySm::new(
            c_string(message_id),
            Ton::International,
            Npi::Isdn,
            c_string(SOURCE),
        ))
        .await
    }

    /// query_sm that must answer `state` with error_code 0; returns final_date.
    async fn query_state(&mut self, message_id: &str, state: MessageState) -> String {
        let response = self.query(message_id).await;
        let Some(Pdu::QuerySmResp(resp)) = response.pdu() else {
            panic!("a query_sm_resp with a body: {response:?}");
        };
        assert_eq!(response.status(), CommandStatus::EsmeRok);
        assert_eq!(resp.message_id.to_string(), message_id);
        assert_eq!(resp.message_state, state, "{resp:?}");
        assert_eq!(resp.error_code, 0, "{resp:?}");
        resp.final_date.to_string()
    }
}

fn cancel_sm(message_id: &str, destination: &str) -> CancelSm {
    CancelSm::new(
        ServiceType::default(),
        c_string(message_id),
        Ton::International,
        Npi::Isdn,
        c_string(SOURCE),
        Ton::International,
        Npi::Isdn,
        c_string(destination),
    )
}

fn replace_sm(message_id: &str, text: &str) -> ReplaceSm {
    let mut replace = ReplaceSm::default();
    replace.message_id = c_string(message_id);
    replace.source_addr_ton = Ton::International;
    replace.source_addr_npi = Npi::Isdn;
    replace.source_addr = c_string(SOURCE);
    replace.set_short_message(OctetString::from_str(text).unwrap());
    replace
}

fn submit_id(pdu: Pdu) -> Option<String> {
    match pdu {
        Pdu::SubmitSmResp(r) => Some(r.message_id().to_string()),
        _ => None,
    }
}

/// query_sm, replace_sm, cancel_sm (by message_id and by addresses), data_sm and
/// submit_multi, encoded and decoded by rusmpp, against waiting messages.
#[tokio::test]
async fn rusmpp_codec_queries_replaces_and_cancels_waiting_messages() {
    let broker = TestBroker::builder().start().await;
    let mut esme = CodecEsme::connect(broker.addr()).await;
    let bound = esme
        .request(
            BindTransceiver::builder()
                .system_id(c_string("demo"))
                .password(c_string("demo1234"))
                .interface_version(InterfaceVersion::Smpp3_4)
                .build(),
        )
        .await;
    assert_eq!(bound.status(), CommandStatus::EsmeRok, "{bound:?}");

    // query_sm and replace_sm of a waiting message; an unknown id.
    let kept = esme.ok(submit(), submit_id).await;
    assert_message_id(&kept);
    let waiting = esme.query_state(&kept, MessageState::Enroute).await;
    assert_eq!(waiting, "", "no final_date while the message waits");
    let unknown = esme.query("1234567890123456789").await;
    assert_eq!(unknown.id(), CommandId::QuerySmResp);
    assert_eq!(unknown.status(), CommandStatus::EsmeRinvmsgid);
    let replaced = esme.request(replace_sm(&kept, "replaced by rusmpp")).await;
    assert_eq!(replaced.id(), CommandId::ReplaceSmResp);
    assert_eq!(replaced.status(), CommandStatus::EsmeRok);
    esme.query_state(&kept, MessageState::Enroute).await;

    // cancel_sm by message_id, then again.
    let doomed = esme.ok(submit(), submit_id).await;
    let cancelled = esme.request(cancel_sm(&doomed, DESTINATION)).await;
    assert_eq!(cancelled.id(), CommandId::CancelSmResp);
    assert_eq!(cancelled.status(), CommandStatus::EsmeRok);
    let final_date = esme.query_state(&doomed, MessageState::Deleted).await;
    assert!(
        final_date.len() == 16 && final_date.ends_with("00+"),
        "an absolute final_date: {final_date:?}"
    );
    assert_eq!(
        esme.status(cancel_sm(&doomed, DESTINATION)).await,
        CommandStatus::EsmeRcancelfail
    );
    assert_eq!(
        esme.status(replace_sm(&doomed, "too late")).await,
        CommandStatus::EsmeRreplacefail
    );
    assert_eq!(
        esme.status(cancel_sm("1234567890123456789", DESTINATION))
            .await,
        CommandStatus::EsmeRinvmsgid
    );

    // data_sm with the text in message_payload.
    let mut data_sm = DataSm::default();
    data_sm.source_addr_ton = Ton::International;
    data_sm.source_addr_npi = Npi::Isdn;
    data_sm.source_addr = c_string(SOURCE);
    data_sm.dest_addr_ton = Ton::International;
    data_sm.dest_addr_npi = Npi::Isdn;
    data_sm.destination_addr = c_string(DESTINATION);
    data_sm.esm_class = normal();
    data_sm.set_tlvs(vec![MessageSubmissionRequestTlvValue::MessagePayload(
        MessagePayload::new(rusmpp::types::AnyOctetString::from_vec(
            Gsm7BitUnpacked::new()
                .encode_to_vec(DATA_SM_TEXT)
                .expect("rusmpp encodes GSM 03.38"),
        )),
    )]);
    let data_id = esme
        .ok(data_sm, |pdu| match pdu {
            Pdu::DataSmResp(r) => Some(r.message_id().to_string()),
            _ => None,
        })
        .await;
    assert_message_id(&data_id);
    esme.query_state(&data_id, MessageState::Enroute).await;

    // submit_multi: two numbers and a distribution list, which the broker has not.
    let mut multi = SubmitMulti::default();
    multi.source_addr_ton = Ton::International;
    multi.source_addr_npi = Npi::Isdn;
    multi.source_addr = c_string(SOURCE);
    multi.esm_class = normal();
    let sme = |addr: &str| {
        DestAddress::SmeAddress(SmeAddress::new(
            Ton::International,
            Npi::Isdn,
            c_string(addr),
        ))
    };
    multi.set_dest_address(vec![
        sme("4917600011"),
        sme("4917600012"),
        DestAddress::DistributionListName(DistributionListName::new(c_string("friends"))),
    ]);
    multi.set_short_message(OctetString::from_str("to many").unwrap());
    let response = esme.request(multi).await;
    assert_eq!(response.status(), CommandStatus::EsmeRok, "{response:?}");
    let Some(Pdu::SubmitMultiResp(resp)) = response.pdu() else {
        panic!("a submit_multi_resp: {response:?}");
    };
    let first = resp.message_id.to_string();
    assert_message_id(&first);
    let refused = resp.unsuccess_sme();
    assert_eq!(refused.len(), 1, "{resp:?}");
    assert_eq!(refused[0].destination_addr.to_string(), "friends");
    assert_eq!(refused[0].error_status_code, CommandStatus::EsmeRcntsubdl);
    // The second destination's id follows the first (src/smpp/outbox.rs).
    let second = (first.parse::<u64>().unwrap() + 1).to_string();
    esme.query_state(&first, MessageState::Enroute).await;
    esme.query_state(&second, MessageState::Enroute).await;

    // cancel_sm without a message_id: every waiting message from SOURCE to one number.
    let by_address = esme.request(cancel_sm("", "4917600011")).await;
    assert_eq!(
        by_address.status(),
        CommandStatus::EsmeRok,
        "{by_address:?}"
    );
    esme.query_state(&first, MessageState::Deleted).await;
    esme.query_state(&second, MessageState::Enroute).await;

    let unbound = esme.request(Pdu::Unbind).await;
    assert_eq!(unbound.status(), CommandStatus::EsmeRok, "{unbound:?}");
    broker.wait_until_no_sessions("demo").await;

    broker
        .assert_stored(&[&kept, &data_id, &second], ENROUTE)
        .await;
    broker.assert_stored(&[&doomed, &first], DELETED).await;
    let rows = outbox_texts(&broker).await;
    let (_, state, text) = the_row_of(&rows, &[&kept]);
    assert_eq!(
        (state, text.as_str()),
        (OutboxState::Queued, "replaced by rusmpp")
    );
    let (_, state, text) = the_row_of(&rows, &[&data_id]);
    assert_eq!((state, text.as_str()), (OutboxState::Queued, DATA_SM_TEXT));
    let (_, state, _) = the_row_of(&rows, &[&doomed]);
    assert_eq!(state, OutboxState::Done);
    let (_, state, text) = the_row_of(&rows, &[&second]);
    assert_eq!((state, text.as_str()), (OutboxState::Queued, "to many"));
}
