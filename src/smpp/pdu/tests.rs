//! Hex vectors of common PDUs (docs/smpp34-checklist.md A2) and hand-made edge cases.

use super::*;

fn unhex(s: &str) -> Vec<u8> {
    let clean: String = s.split_whitespace().collect();
    (0..clean.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&clean[i..i + 2], 16).unwrap())
        .collect()
}

fn assert_vector(hex: &str, pdu: Pdu) {
    let bytes = unhex(hex);
    assert_eq!(pdu.to_bytes().as_ref(), bytes.as_slice(), "encode {pdu:?}");
    assert_eq!(Pdu::decode(&bytes).unwrap(), pdu, "decode {hex}");
}

#[test]
fn checklist_vectors() {
    assert_vector(
        "00000010 00000015 00000000 00000001",
        Pdu::new(1, Body::EnquireLink),
    );
    assert_vector(
        "00000010 80000015 00000000 00000001",
        Pdu::new(1, Body::EnquireLinkResp),
    );
    assert_vector(
        "00000010 80000000 00000003 00000005",
        Pdu::generic_nack(CommandStatus::ESME_RINVCMDID, 5),
    );
    let bind = Bind {
        system_id: "test".into(),
        password: "test".into(),
        interface_version: 0x34,
        ..Bind::default()
    };
    assert_vector(
        "0000001F 00000009 00000000 00000001 74657374 00746573 74000034 000000",
        Pdu::new(1, Body::Bind(BindKind::Transceiver, bind)),
    );
    let mut tlvs = Tlvs::new();
    tlvs.push_u8(tlv::tag::SC_INTERFACE_VERSION, 0x34);
    assert_vector(
        "0000001A 80000009 00000000 00000001 534D5343 00021000 0134",
        Pdu::new(
            1,
            Body::BindResp(
                BindKind::Transceiver,
                BindResp {
                    system_id: "SMSC".into(),
                    tlvs,
                },
            ),
        ),
    );
    assert_vector(
        "00000010 80000009 0000000E 00000001",
        Pdu::error_response(
            CommandId::BindTransceiverResp,
            CommandStatus::ESME_RINVPASWD,
            1,
        ),
    );
    let submit = Sm {
        source: Address::new(1, 1, "12345"),
        dest: Address::new(1, 1, "447700900001"),
        registered_delivery: 1,
        short_message: Bytes::from_static(b"Hello"),
        ..Sm::default()
    };
    assert_vector(
        "00000037 00000004 00000000 00000002 00010131 32333435 00010134
         34373730 30393030 30303100 00000000 00010000 00054865 6C6C6F",
        Pdu::new(2, Body::SubmitSm(submit)),
    );
    assert_vector(
        "0000001B 80000004 00000000 00000002 31303030 30303030 303100",
        Pdu::new(
            2,
            Body::SubmitSmResp(MessageIdResp {
                message_id: "1000000001".into(),
            }),
        ),
    );
    assert_vector(
        "00000010 80000004 00000058 00000002",
        Pdu::error_response(CommandId::SubmitSmResp, CommandStatus::ESME_RTHROTTLED, 2),
    );
    assert_vector(
        "00000011 80000005 00000000 00000001 00",
        Pdu::new(1, Body::DeliverSmResp(MessageIdResp::default())),
    );
}

#[test]
fn header_only_deliver_sm_resp_is_accepted() {
    let pdu = Pdu::decode(&unhex("00000010 80000005 00000000 00000001")).unwrap();
    assert_eq!(pdu.body, Body::DeliverSmResp(MessageIdResp::default()));
}

#[test]
fn error_response_with_a_body_is_accepted() {
    let pdu = Pdu::decode(&unhex("00000011 80000004 00000045 00000009 00")).unwrap();
    assert_eq!(pdu.command_status, CommandStatus::ESME_RSUBMITFAIL);
}

#[test]
fn short_message_keeps_nul_octets() {
    let sm = Sm {
        short_message: Bytes::from_static(&[0x00, 0x41, 0x00, 0x00]),
        ..Sm::default()
    };
    let pdu = Pdu::new(3, Body::SubmitSm(sm));
    assert_eq!(Pdu::decode(&pdu.to_bytes()).unwrap(), pdu);
}

fn decode_status(pdu_bytes: &[u8]) -> CommandStatus {
    match Pdu::decode(pdu_bytes) {
        Err(DecodeError::Body { error, .. }) => error.status,
        other => panic!("expected a body error, got {other:?}"),
    }
}

fn with_length(mut bytes: Vec<u8>) -> Vec<u8> {
    let len = (bytes.len() as u32).to_be_bytes();
    bytes[..4].copy_from_slice(&len);
    bytes
}

fn bind_bytes(system_id: &[u8], password: &[u8]) -> Vec<u8> {
    let mut b = unhex("00000000 00000002 00000000 00000007");
    b.extend_from_slice(system_id);
    b.push(0);
    b.extend_from_slice(password);
    b.push(0);
    b.extend_from_slice(&[0, 0x34, 0, 0, 0]);
    with_length(b)
}

#[test]
fn c_octet_string_limits_count_the_nul() {
    assert!(Pdu::decode(&bind_bytes(&[b'a'; 15], b"pw")).is_ok());
    assert_eq!(
        decode_status(&bind_bytes(&[b'a'; 16], b"pw")),
        CommandStatus::ESME_RINVSYSID
    );
    assert!(Pdu::decode(&bind_bytes(b"id", &[b'p'; 8])).is_ok());
    assert_eq!(
        decode_status(&bind_bytes(b"id", &[b'p'; 9])),
        CommandStatus::ESME_RINVPASWD
    );
}

#[test]
fn truncated_body_is_rinvcmdlen_and_echoes_the_sequence() {
    let full = bind_bytes(b"id", b"pw");
    let cut = with_length(full[..full.len() - 3].to_vec());
    let err = Pdu::decode(&cut).unwrap_err();
    assert_eq!(decode_status(&cut), CommandStatus::ESME_RINVCMDLEN);
    let answer = err.answer().unwrap();
    assert_eq!(answer.command_id(), CommandId::BindTransmitterResp);
    assert_eq!(answer.sequence_number, 7);
    assert_eq!(answer.to_bytes().len(), HEADER_LEN);
}

#[test]
fn unknown_and_v5_commands_get_generic_nack() {
    for id in ["00000111", "00000999", "00000010"] {
        let bytes = unhex(&format!("00000010 {id} 00000000 0000002A"));
        let answer = Pdu::decode(&bytes).unwrap_err().answer().unwrap();
        assert_eq!(answer, Pdu::generic_nack(CommandStatus::ESME_RINVCMDID, 42));
    }
}

#[test]
fn bad_response_bodies_are_never_answered() {
    let bytes = with_length(unhex("00000000 80000004 00000000 00000001 414243"));
    assert!(Pdu::decode(&bytes).unwrap_err().answer().is_none());
}

fn submit_with_tlvs(tlv_bytes: &[u8]) -> Vec<u8> {
    let mut b = Pdu::new(9, Body::SubmitSm(Sm::default()))
        .to_bytes()
        .to_vec();
    b.extend_from_slice(tlv_bytes);
    with_length(b)
}

#[test]
fn tlvs_in_any_order_and_unknown_ones_are_kept() {
    let bytes = submit_with_tlvs(&unhex("1400 0002 ABCD 0204 0002 0102 020E 0001 03"));
    let Body::SubmitSm(sm) = Pdu::decode(&bytes).unwrap().body else {
        panic!()
    };
    assert_eq!(
        sm.tlvs.get_u16(tlv::tag::USER_MESSAGE_REFERENCE),
        Some(0x0102)
    );
    assert_eq!(sm.tlvs.get_u8(tlv::tag::SAR_TOTAL_SEGMENTS), Some(3));
    assert_eq!(sm.tlvs.get(0x1400).unwrap().as_ref(), &[0xAB, 0xCD]);
}

#[test]
fn tlv_errors_have_their_own_statuses() {
    assert_eq!(
        decode_status(&submit_with_tlvs(&unhex("0424 0010 4142"))),
        CommandStatus::ESME_RINVOPTPARSTREAM
    );
    assert_eq!(
        decode_status(&submit_with_tlvs(&unhex("04"))),
        CommandStatus::ESME_RINVOPTPARSTREAM
    );
    assert_eq!(
        decode_status(&submit_with_tlvs(&unhex("0204 0001 01"))),
        CommandStatus::ESME_RINVPARLEN
    );
}

#[test]
fn sm_length_beyond_the_body_is_rinvmsglen() {
    let mut b = Pdu::new(9, Body::SubmitSm(Sm::default()))
        .to_bytes()
        .to_vec();
    let last = b.len() - 1;
    b[last] = 10; // sm_length 10, but no octets follow
    assert_eq!(decode_status(&b), CommandStatus::ESME_RINVMSGLEN);
}

#[test]
fn bad_time_fields_get_sched_and_expiry_statuses() {
    let sm = Sm {
        schedule_delivery_time: "123".into(),
        ..Sm::default()
    };
    let bytes = Pdu::new(1, Body::SubmitSm(sm)).to_bytes();
    assert_eq!(decode_status(&bytes), CommandStatus::ESME_RINVSCHED);
    let sm = Sm {
        validity_period: "0000010000000".into(),
        ..Sm::default()
    };
    let bytes = Pdu::new(1, Body::SubmitSm(sm)).to_bytes();
    assert_eq!(decode_status(&bytes), CommandStatus::ESME_RINVEXPIRY);
}

#[test]
fn submit_multi_destination_rules() {
    let multi = SubmitMulti {
        dests: vec![
            MultiDest::Sme(Address::new(1, 1, "4477")),
            MultiDest::DistributionList("friends".into()),
        ],
        sm: Sm {
            short_message: Bytes::from_static(b"hi"),
            ..Sm::default()
        },
    };
    let pdu = Pdu::new(4, Body::SubmitMulti(multi));
    let bytes = pdu.to_bytes().to_vec();
    assert_eq!(Pdu::decode(&bytes).unwrap(), pdu);
    // number_of_dests sits after service_type (1) + source ton/npi/addr (3).
    let mut zero = bytes.clone();
    zero[HEADER_LEN + 4] = 0;
    assert_eq!(decode_status(&zero), CommandStatus::ESME_RINVNUMDESTS);
    let mut flag = bytes;
    flag[HEADER_LEN + 5] = 7;
    assert_eq!(decode_status(&flag), CommandStatus::ESME_RINVDESTFLAG);
}

#[test]
fn data_sm_addresses_may_be_64_characters() {
    let long = "1".repeat(64);
    let d = DataSm {
        source: Address::new(1, 1, long.clone()),
        dest: Address::new(1, 1, long),
        ..DataSm::default()
    };
    let pdu = Pdu::new(1, Body::DataSm(d));
    assert_eq!(Pdu::decode(&pdu.to_bytes()).unwrap(), pdu);
}
