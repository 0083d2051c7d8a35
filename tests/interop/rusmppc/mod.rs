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
//! refuses (ESME_RINVESMCLASS, pinned in messages.rs); every PDU here sets esm_class 0.

mod binds;
mod messages;
mod session;

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use futures::{FutureExt, Stream, StreamExt};
use rusmpp::pdus::{BindReceiver, BindTransceiver, BindTransmitter, SubmitSm, SubmitSmResp};
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{EsmClass, InterfaceVersion, Npi, Ton};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use rusmppc::error::Error;
use rusmppc::{Client, ConnectionBuilder, Event};
use testkit::{TestBroker, PATIENCE};

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
