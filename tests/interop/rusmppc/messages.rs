//! Messages from rusmpp: esm_class, texts and long messages stored whole, and
//! query_sm, replace_sm, cancel_sm, data_sm and submit_multi on waiting messages.

use std::collections::HashMap;

use futures::SinkExt;
use rusmpp::extra::concatenation::SubmitSmMultipartExt;
use rusmpp::extra::encoding::gsm7bit::Gsm7BitUnpacked;
use rusmpp::extra::encoding::EncodedSubmitSmExt;
use rusmpp::pdus::{CancelSm, DataSm, QuerySm, ReplaceSm, SubmitMulti};
use rusmpp::tlvs::MessageSubmissionRequestTlvValue;
use rusmpp::tokio_codec::CommandCodec;
use rusmpp::values::{
    DataCoding, DestAddress, DistributionListName, MessagePayload, MessageState, ServiceType,
    SmeAddress,
};
use testkit::db::OutboxState;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use super::*;

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
    // The second destination's id follows the first (src/smpp/handler.rs).
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
