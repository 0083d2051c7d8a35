//! The short messages tests submit: building them, submitting them, and asking
//! about them with query_sm.

use bytes::Bytes;
use smpp_broker::smpp::pdu::tlv::tag;
use smpp_broker::smpp::pdu::{Address, BindKind, Body, CommandStatus, Pdu, QuerySm, Sm};
use smpp_broker::text::gsm7;
use tokio::net::TcpStream;

use crate::{Esme, TestBroker};

pub fn sm(data_coding: u8, esm_class: u8, short_message: &[u8]) -> Sm {
    Sm {
        source: Address::new(1, 1, "4915100000"),
        dest: Address::new(1, 1, "4917600000"),
        esm_class,
        data_coding,
        registered_delivery: 1,
        short_message: Bytes::copy_from_slice(short_message),
        ..Sm::default()
    }
}

/// A part of a long message in GSM 7-bit, numbered by the SAR TLVs.
pub fn sar(reference: u16, total: u8, seq: u8, text: &str) -> Sm {
    let mut part = sm(0, 0, &gsm7::encode(text).unwrap());
    part.tlvs.push_u16(tag::SAR_MSG_REF_NUM, reference);
    part.tlvs.push_u8(tag::SAR_TOTAL_SEGMENTS, total);
    part.tlvs.push_u8(tag::SAR_SEGMENT_SEQNUM, seq);
    part
}

pub async fn bound(broker: &TestBroker, system_id: &str, password: &str) -> Esme<TcpStream> {
    let mut esme = Esme::connect(broker.addr()).await;
    esme.bind_ok(BindKind::Transceiver, system_id, password)
        .await;
    esme
}

/// Submits and returns the message_id, failing on any other answer.
pub async fn submit_ok(esme: &mut Esme<TcpStream>, sm: Sm) -> String {
    let resp = esme.request(Body::SubmitSm(sm)).await;
    assert_eq!(resp.command_status, CommandStatus::ESME_ROK, "{resp:?}");
    let Body::SubmitSmResp(r) = resp.body else {
        panic!("{resp:?}")
    };
    assert!(!r.message_id.is_empty() && r.message_id.len() <= 36);
    r.message_id
}

/// Submits every message at once (pipelined on the session, answers in any
/// order) and returns their message_ids in the order given, failing on any
/// answer but ESME_ROK. Keep `sms` within the session's in-flight window
/// (smpp.max_in_flight).
pub async fn submit_all(
    esme: &mut Esme<TcpStream>,
    sms: impl IntoIterator<Item = Sm>,
) -> Vec<String> {
    let mut order = Vec::new();
    for sm in sms {
        let seq = esme.next_sequence();
        esme.send(&Pdu::new(seq, Body::SubmitSm(sm))).await;
        order.push(seq);
    }
    let mut ids = std::collections::HashMap::new();
    while ids.len() < order.len() {
        let resp = esme.recv_some().await;
        if let Body::EnquireLink = resp.body {
            esme.send(&Pdu::new(resp.sequence_number, Body::EnquireLinkResp))
                .await;
            continue;
        }
        assert_eq!(resp.command_status, CommandStatus::ESME_ROK, "{resp:?}");
        let Body::SubmitSmResp(r) = resp.body else {
            panic!("{resp:?}")
        };
        assert!(order.contains(&resp.sequence_number), "{r:?}");
        ids.insert(resp.sequence_number, r.message_id);
    }
    order.iter().map(|seq| ids[seq].clone()).collect()
}

pub async fn submit_status(esme: &mut Esme<TcpStream>, sm: Sm) -> CommandStatus {
    esme.request(Body::SubmitSm(sm)).await.command_status
}

pub async fn query(esme: &mut Esme<TcpStream>, message_id: &str) -> Pdu {
    let q = QuerySm {
        message_id: message_id.into(),
        source: Address::new(1, 1, "4915100000"),
    };
    esme.request(Body::QuerySm(q)).await
}

pub async fn message_state(esme: &mut Esme<TcpStream>, message_id: &str) -> u8 {
    let resp = query(esme, message_id).await;
    let Body::QuerySmResp(r) = resp.body else {
        panic!("{resp:?}")
    };
    assert_eq!(r.message_id, message_id);
    r.message_state
}

pub fn udh8(reference: u8, total: u8, seq: u8, text: &str) -> Vec<u8> {
    let mut out = vec![0x05, 0x00, 0x03, reference, total, seq];
    out.extend(gsm7::encode(text).unwrap());
    out
}

pub fn udh16(reference: u16, total: u8, seq: u8, text: &[u8]) -> Vec<u8> {
    let [hi, lo] = reference.to_be_bytes();
    let mut out = vec![0x06, 0x08, 0x04, hi, lo, total, seq];
    out.extend_from_slice(text);
    out
}

/// A receiver of `system_id` bound to `addr` that acknowledges every
/// deliver_sm and notes the receipted message_ids in `heard` (repeats too),
/// until the connection ends.
pub fn receive_receipts(
    addr: std::net::SocketAddr,
    system_id: &'static str,
    password: &'static str,
    heard: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) -> tokio::task::JoinHandle<()> {
    use smpp_broker::smpp::pdu::MessageIdResp;
    tokio::spawn(async move {
        let mut receiver = Esme::connect(addr).await;
        receiver
            .bind_ok(BindKind::Receiver, system_id, password)
            .await;
        while let Ok(Some(pdu)) = receiver.try_recv().await {
            if let Body::DeliverSm(receipt) = &pdu.body {
                let id = receipt.tlvs.get_cstring(tag::RECEIPTED_MESSAGE_ID);
                heard
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(id.unwrap_or_default());
                let ack = Body::DeliverSmResp(MessageIdResp::default());
                if receiver
                    .try_send(&Pdu::new(pdu.sequence_number, ack))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
    })
}
