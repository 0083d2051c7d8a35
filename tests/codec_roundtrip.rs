//! Property tests of our SMPP v3.4 codec (checklist A1, A2, A5, A6, A8):
//!
//! * every `Body` variant, generated with valid field values, survives
//!   `Pdu::decode(&pdu.to_bytes()) == pdu` and the framing codec;
//! * an error response (non-zero status on a response id) is written header-only and
//!   decodes to the empty body of its id;
//! * arbitrary bytes, with or without a consistent command_length, never make
//!   `Pdu::decode` or `SmppCodec` panic;
//! * every c(N) field accepts N−1 characters and rejects N with its own status, and a
//!   Fixed 1|17 time counts wire octets (regression test for a fix in wire.rs).

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use smpp_broker::smpp::codec::{Frame, SmppCodec};
use smpp_broker::smpp::pdu::tlv::tag;
use smpp_broker::smpp::pdu::*;
use tokio_util::codec::Decoder;

const CASES: u32 = 512;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Never write regression files next to the tests; a failure prints its input.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Field strategies
// ---------------------------------------------------------------------------

/// The known tags whose value length the codec fixes (tlv.rs `fixed_len`, checklist A8).
const FIXED_LEN_TAGS: &[(u16, usize)] = &[
    (tag::DEST_ADDR_SUBUNIT, 1),
    (tag::SOURCE_ADDR_SUBUNIT, 1),
    (tag::PAYLOAD_TYPE, 1),
    (tag::MS_MSG_WAIT_FACILITIES, 1),
    (tag::PRIVACY_INDICATOR, 1),
    (tag::LANGUAGE_INDICATOR, 1),
    (tag::SAR_TOTAL_SEGMENTS, 1),
    (tag::SAR_SEGMENT_SEQNUM, 1),
    (tag::SC_INTERFACE_VERSION, 1),
    (tag::DPF_RESULT, 1),
    (tag::SET_DPF, 1),
    (tag::MS_AVAILABILITY_STATUS, 1),
    (tag::DELIVERY_FAILURE_REASON, 1),
    (tag::MORE_MESSAGES_TO_SEND, 1),
    (tag::MESSAGE_STATE, 1),
    (tag::USSD_SERVICE_OP, 1),
    (tag::USER_MESSAGE_REFERENCE, 2),
    (tag::SOURCE_PORT, 2),
    (tag::DESTINATION_PORT, 2),
    (tag::SAR_MSG_REF_NUM, 2),
    (tag::NETWORK_ERROR_CODE, 3),
];

fn fixed_len(t: u16) -> Option<usize> {
    FIXED_LEN_TAGS
        .iter()
        .find(|(k, _)| *k == t)
        .map(|(_, n)| *n)
}

fn latin1(bytes: Vec<u8>) -> String {
    bytes.into_iter().map(char::from).collect()
}

/// A C-Octet String value for a field of max `max` octets, NUL included: 0..=max-1
/// characters. Mostly printable ASCII, sometimes any non-NUL octet (kept as Latin-1),
/// sometimes exactly at the boundary.
fn cstr(max: usize) -> BoxedStrategy<String> {
    prop_oneof![
        4 => vec(0x20u8..=0x7E, 0..max).prop_map(latin1),
        1 => vec(1u8..=0xFF, 0..max).prop_map(latin1),
        1 => vec(0x20u8..=0x7E, max - 1).prop_map(latin1),
        1 => Just(String::new()),
    ]
    .boxed()
}

/// Fixed 1|17: empty, or exactly 16 characters.
fn time() -> BoxedStrategy<String> {
    prop_oneof![
        Just(String::new()),
        vec(b'0'..=b'9', 15).prop_map(|mut v| {
            v.push(b'R');
            latin1(v)
        }),
        vec(0x20u8..=0x7E, 16).prop_map(latin1),
        // Not a valid time, but the codec only frames it: any 16 non-NUL octets.
        vec(1u8..=0xFF, 16).prop_map(latin1),
    ]
    .boxed()
}

fn address(max: usize) -> BoxedStrategy<Address> {
    (any::<u8>(), any::<u8>(), cstr(max))
        .prop_map(|(ton, npi, addr)| Address { ton, npi, addr })
        .boxed()
}

/// 0..=254 arbitrary octets, often with 0x00 (GSM '@') in them.
fn short_message() -> BoxedStrategy<Bytes> {
    prop_oneof![
        4 => vec(any::<u8>(), 0..=254),
        2 => vec(prop_oneof![Just(0u8), any::<u8>()], 0..=254),
        1 => Just(vec![0u8; 254]),
        1 => Just(Vec::new()),
    ]
    .prop_map(Bytes::from)
    .boxed()
}

fn fix_len(t: u16, mut value: Vec<u8>) -> Tlv {
    if let Some(n) = fixed_len(t) {
        value.resize(n, 0);
    }
    Tlv {
        tag: t,
        value: Bytes::from(value),
    }
}

fn tlv() -> BoxedStrategy<Tlv> {
    let fixed_tags: Vec<u16> = FIXED_LEN_TAGS.iter().map(|(t, _)| *t).collect();
    prop_oneof![
        // Any tag at all; a known fixed-length one gets its right length.
        4 => (any::<u16>(), vec(any::<u8>(), 0..48)).prop_map(|(t, v)| fix_len(t, v)),
        // Known fixed-length tags, explicitly.
        4 => (select(fixed_tags), vec(any::<u8>(), 3)).prop_map(|(t, v)| fix_len(t, v)),
        // Vendor-specific range.
        1 => (0x1400u16..=0x3FFF, vec(any::<u8>(), 0..16)).prop_map(|(t, v)| fix_len(t, v)),
        // message_payload, sometimes large.
        1 => vec(any::<u8>(), 0..1200).prop_map(|v| fix_len(tag::MESSAGE_PAYLOAD, v)),
        // receipted_message_id: a C-Octet String value.
        1 => cstr(65).prop_map(|s| {
            let mut t = Tlvs::new();
            t.push_cstring(tag::RECEIPTED_MESSAGE_ID, &s);
            t.0.remove(0)
        }),
        // Empty values are legal for variable-length tags.
        1 => Just(Tlv { tag: tag::CALLBACK_NUM, value: Bytes::new() }),
    ]
    .boxed()
}

fn tlvs() -> BoxedStrategy<Tlvs> {
    prop_oneof![
        1 => Just(Tlvs::new()),
        3 => vec(tlv(), 1..6).prop_map(Tlvs),
    ]
    .boxed()
}

fn sequence_number() -> BoxedStrategy<u32> {
    prop_oneof![
        Just(0u32),
        Just(1u32),
        Just(0x7FFF_FFFFu32),
        Just(0x8000_0000u32),
        Just(u32::MAX),
        any::<u32>(),
        any::<u32>(),
    ]
    .boxed()
}

fn bind_kind() -> BoxedStrategy<BindKind> {
    select(vec![
        BindKind::Transmitter,
        BindKind::Receiver,
        BindKind::Transceiver,
    ])
    .boxed()
}

// ---------------------------------------------------------------------------
// Body strategies, one per PDU kind
// ---------------------------------------------------------------------------

fn sm() -> BoxedStrategy<Sm> {
    (
        (cstr(6), address(21), address(21)),
        (any::<u8>(), any::<u8>(), any::<u8>(), time(), time()),
        (any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>()),
        short_message(),
        tlvs(),
    )
        .prop_map(
            |(
                (service_type, source, dest),
                (esm_class, protocol_id, priority_flag, schedule_delivery_time, validity_period),
                (registered_delivery, replace_if_present_flag, data_coding, sm_default_msg_id),
                short_message,
                tlvs,
            )| Sm {
                service_type,
                source,
                dest,
                esm_class,
                protocol_id,
                priority_flag,
                schedule_delivery_time,
                validity_period,
                registered_delivery,
                replace_if_present_flag,
                data_coding,
                sm_default_msg_id,
                short_message,
                tlvs,
            },
        )
        .boxed()
}

fn bind() -> BoxedStrategy<Body> {
    (
        bind_kind(),
        cstr(16),
        cstr(9),
        cstr(13),
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        cstr(41),
    )
        .prop_map(
            |(
                kind,
                system_id,
                password,
                system_type,
                interface_version,
                addr_ton,
                addr_npi,
                address_range,
            )| {
                Body::Bind(
                    kind,
                    Bind {
                        system_id,
                        password,
                        system_type,
                        interface_version,
                        addr_ton,
                        addr_npi,
                        address_range,
                    },
                )
            },
        )
        .boxed()
}

fn bind_resp() -> BoxedStrategy<Body> {
    (bind_kind(), cstr(16), tlvs())
        .prop_map(|(kind, system_id, tlvs)| Body::BindResp(kind, BindResp { system_id, tlvs }))
        .boxed()
}

fn outbind() -> BoxedStrategy<Body> {
    (cstr(16), cstr(9))
        .prop_map(|(system_id, password)| {
            Body::Outbind(Outbind {
                system_id,
                password,
            })
        })
        .boxed()
}

fn submit_sm() -> BoxedStrategy<Body> {
    sm().prop_map(Body::SubmitSm).boxed()
}

fn deliver_sm() -> BoxedStrategy<Body> {
    sm().prop_map(Body::DeliverSm).boxed()
}

fn submit_sm_resp() -> BoxedStrategy<Body> {
    cstr(65)
        .prop_map(|message_id| Body::SubmitSmResp(MessageIdResp { message_id }))
        .boxed()
}

fn deliver_sm_resp() -> BoxedStrategy<Body> {
    cstr(65)
        .prop_map(|message_id| Body::DeliverSmResp(MessageIdResp { message_id }))
        .boxed()
}

fn multi_dest() -> BoxedStrategy<MultiDest> {
    prop_oneof![
        3 => address(21).prop_map(MultiDest::Sme),
        1 => cstr(21).prop_map(MultiDest::DistributionList),
    ]
    .boxed()
}

fn submit_multi() -> BoxedStrategy<Body> {
    let dests = prop_oneof![
        4 => vec(multi_dest(), 1..=8),
        1 => vec(multi_dest(), 1..=254),
        1 => vec(multi_dest(), 254),
    ];
    (dests, sm())
        .prop_map(|(dests, sm)| {
            // sm.dest is not on the wire of a submit_multi.
            let sm = Sm {
                dest: Address::default(),
                ..sm
            };
            Body::SubmitMulti(SubmitMulti { dests, sm })
        })
        .boxed()
}

fn submit_multi_resp() -> BoxedStrategy<Body> {
    let unsuccess =
        (address(21), any::<u32>()).prop_map(|(dest, error_status_code)| UnsuccessSme {
            dest,
            error_status_code,
        });
    let list = prop_oneof![4 => vec(unsuccess.clone(), 0..=6), 1 => vec(unsuccess, 0..=254)];
    (cstr(65), list)
        .prop_map(|(message_id, unsuccess)| {
            Body::SubmitMultiResp(SubmitMultiResp {
                message_id,
                unsuccess,
            })
        })
        .boxed()
}

fn data_sm() -> BoxedStrategy<Body> {
    (
        cstr(6),
        address(65),
        address(65),
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        tlvs(),
    )
        .prop_map(
            |(service_type, source, dest, esm_class, registered_delivery, data_coding, tlvs)| {
                Body::DataSm(DataSm {
                    service_type,
                    source,
                    dest,
                    esm_class,
                    registered_delivery,
                    data_coding,
                    tlvs,
                })
            },
        )
        .boxed()
}

fn data_sm_resp() -> BoxedStrategy<Body> {
    (cstr(65), tlvs())
        .prop_map(|(message_id, tlvs)| Body::DataSmResp(DataSmResp { message_id, tlvs }))
        .boxed()
}

fn query_sm() -> BoxedStrategy<Body> {
    (cstr(65), address(21))
        .prop_map(|(message_id, source)| Body::QuerySm(QuerySm { message_id, source }))
        .boxed()
}

fn query_sm_resp() -> BoxedStrategy<Body> {
    (cstr(65), time(), any::<u8>(), any::<u8>())
        .prop_map(|(message_id, final_date, message_state, error_code)| {
            Body::QuerySmResp(QuerySmResp {
                message_id,
                final_date,
                message_state,
                error_code,
            })
        })
        .boxed()
}

fn cancel_sm() -> BoxedStrategy<Body> {
    (cstr(6), cstr(65), address(21), address(21))
        .prop_map(|(service_type, message_id, source, dest)| {
            Body::CancelSm(CancelSm {
                service_type,
                message_id,
                source,
                dest,
            })
        })
        .boxed()
}

fn replace_sm() -> BoxedStrategy<Body> {
    (
        cstr(65),
        address(21),
        time(),
        time(),
        any::<u8>(),
        any::<u8>(),
        short_message(),
    )
        .prop_map(
            |(
                message_id,
                source,
                schedule_delivery_time,
                validity_period,
                registered_delivery,
                sm_default_msg_id,
                short_message,
            )| {
                Body::ReplaceSm(ReplaceSm {
                    message_id,
                    source,
                    schedule_delivery_time,
                    validity_period,
                    registered_delivery,
                    sm_default_msg_id,
                    short_message,
                })
            },
        )
        .boxed()
}

fn alert_notification() -> BoxedStrategy<Body> {
    (address(65), address(65), tlvs())
        .prop_map(|(source, esme, tlvs)| {
            Body::AlertNotification(AlertNotification { source, esme, tlvs })
        })
        .boxed()
}

fn header_only() -> BoxedStrategy<Body> {
    select(vec![
        Body::GenericNack,
        Body::Unbind,
        Body::UnbindResp,
        Body::EnquireLink,
        Body::EnquireLinkResp,
        Body::CancelSmResp,
        Body::ReplaceSmResp,
    ])
    .boxed()
}

/// Every response body, with arbitrary (valid) field values.
fn any_response() -> BoxedStrategy<Body> {
    prop_oneof![
        bind_resp(),
        submit_sm_resp(),
        deliver_sm_resp(),
        submit_multi_resp(),
        data_sm_resp(),
        query_sm_resp(),
        select(vec![
            Body::GenericNack,
            Body::UnbindResp,
            Body::EnquireLinkResp,
            Body::CancelSmResp,
            Body::ReplaceSmResp,
        ]),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

fn word(bytes: &[u8], i: usize) -> u32 {
    u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap())
}

/// encode → decode is the identity, the header is right, and the framer hands the
/// PDU over intact even when it arrives in two pieces.
fn check_roundtrip(sequence_number: u32, body: Body, split: Index) -> Result<(), TestCaseError> {
    let pdu = Pdu::new(sequence_number, body);
    let bytes = pdu.to_bytes();
    prop_assert!(bytes.len() >= HEADER_LEN);
    prop_assert_eq!(word(&bytes, 0) as usize, bytes.len(), "command_length");
    prop_assert_eq!(word(&bytes, 4), pdu.command_id().as_u32(), "command_id");
    prop_assert_eq!(word(&bytes, 8), 0, "command_status");
    prop_assert_eq!(word(&bytes, 12), sequence_number, "sequence_number");

    match Pdu::decode(&bytes) {
        Ok(decoded) => prop_assert_eq!(&decoded, &pdu),
        Err(e) => {
            return Err(TestCaseError::fail(format!(
                "decode failed: {e} for {pdu:?}"
            )))
        }
    }

    let mut codec = SmppCodec::default();
    let cut = split.index(bytes.len());
    let mut buf = BytesMut::from(&bytes[..cut]);
    if cut < bytes.len() {
        prop_assert_eq!(codec.decode(&mut buf).unwrap(), None);
    }
    buf.extend_from_slice(&bytes[cut..]);
    prop_assert_eq!(
        codec.decode(&mut buf).unwrap(),
        Some(Frame::Pdu(bytes.clone()))
    );
    prop_assert!(buf.is_empty());
    Ok(())
}

macro_rules! roundtrip_tests {
    ($($name:ident => $strategy:expr;)*) => {
        proptest! {
            #![proptest_config(config(CASES))]
            $(
                #[test]
                fn $name(seq in sequence_number(), body in $strategy, split in any::<Index>()) {
                    check_roundtrip(seq, body, split)?;
                }
            )*
        }
    };
}

roundtrip_tests! {
    roundtrip_bind => bind();
    roundtrip_bind_resp => bind_resp();
    roundtrip_outbind => outbind();
    roundtrip_header_only => header_only();
    roundtrip_submit_sm => submit_sm();
    roundtrip_submit_sm_resp => submit_sm_resp();
    roundtrip_deliver_sm => deliver_sm();
    roundtrip_deliver_sm_resp => deliver_sm_resp();
    roundtrip_submit_multi => submit_multi();
    roundtrip_submit_multi_resp => submit_multi_resp();
    roundtrip_data_sm => data_sm();
    roundtrip_data_sm_resp => data_sm_resp();
    roundtrip_query_sm => query_sm();
    roundtrip_query_sm_resp => query_sm_resp();
    roundtrip_cancel_sm => cancel_sm();
    roundtrip_replace_sm => replace_sm();
    roundtrip_alert_notification => alert_notification();
}

/// The body a header-only response of this kind decodes to, written out by hand.
fn expected_empty(body: &Body) -> Body {
    match body {
        Body::BindResp(kind, _) => Body::BindResp(*kind, BindResp::default()),
        Body::SubmitSmResp(_) => Body::SubmitSmResp(MessageIdResp::default()),
        Body::DeliverSmResp(_) => Body::DeliverSmResp(MessageIdResp::default()),
        Body::SubmitMultiResp(_) => Body::SubmitMultiResp(SubmitMultiResp::default()),
        Body::DataSmResp(_) => Body::DataSmResp(DataSmResp::default()),
        Body::QuerySmResp(_) => Body::QuerySmResp(QuerySmResp::default()),
        other => other.clone(),
    }
}

proptest! {
    #![proptest_config(config(CASES * 2))]

    /// A response with a non-zero status is written header-only (16 octets), whatever
    /// its body holds, and decodes to the empty body of its id with status and
    /// sequence number kept.
    #[test]
    fn error_response_is_header_only(
        body in any_response(),
        status in 1u32..=u32::MAX,
        seq in sequence_number(),
    ) {
        let id = body.command_id();
        prop_assert!(id.is_response());
        let pdu = Pdu::with_status(CommandStatus(status), seq, body.clone());
        let bytes = pdu.to_bytes();
        prop_assert_eq!(bytes.len(), HEADER_LEN);
        prop_assert_eq!(word(&bytes, 0), 16);
        prop_assert_eq!(word(&bytes, 4), id.as_u32());
        prop_assert_eq!(word(&bytes, 8), status);
        prop_assert_eq!(word(&bytes, 12), seq);
        let decoded = Pdu::decode(&bytes).expect("a header-only response decodes");
        prop_assert_eq!(
            decoded,
            Pdu::with_status(CommandStatus(status), seq, expected_empty(&body))
        );
    }

    /// `Pdu::error_response` for every response id: 16 octets, the right id, status and
    /// sequence number.
    #[test]
    fn error_response_constructor_for_every_id(
        status in 1u32..=u32::MAX,
        seq in sequence_number(),
    ) {
        for id in CommandId::ALL.into_iter().filter(|id| id.is_response()) {
            let pdu = Pdu::error_response(id, CommandStatus(status), seq);
            prop_assert_eq!(pdu.command_id(), id);
            let bytes = pdu.to_bytes();
            prop_assert_eq!(bytes.len(), HEADER_LEN);
            prop_assert_eq!(word(&bytes, 4), id.as_u32());
            prop_assert_eq!(word(&bytes, 8), status);
            prop_assert_eq!(word(&bytes, 12), seq);
            prop_assert_eq!(Pdu::decode(&bytes).unwrap(), pdu);
        }
    }
}

// ---------------------------------------------------------------------------
// Arbitrary bytes never panic
// ---------------------------------------------------------------------------

fn known_id() -> BoxedStrategy<u32> {
    select(
        CommandId::ALL
            .iter()
            .map(|id| id.as_u32())
            .collect::<Vec<_>>(),
    )
    .boxed()
}

/// Random octets, half of them biased (through a cheap per-octet map, so shrinking
/// still works) so that the body decoders see NULs, small counts and TLV headers often
/// enough to get past the first field.
fn noise(max: usize) -> BoxedStrategy<Vec<u8>> {
    (any::<bool>(), vec(any::<u8>(), 0..max))
        .prop_map(|(biased, mut bytes)| {
            if biased {
                for b in bytes.iter_mut() {
                    *b = match *b {
                        0..=63 => 0,
                        64..=95 => *b % 5,
                        96..=103 => 0x34,
                        104..=199 => 0x20 + (*b - 104),
                        _ => *b,
                    };
                }
            }
            bytes
        })
        .boxed()
}

/// A frame with a consistent command_length and a known command_id, so the body
/// decoders run on random octets.
fn patched_frame() -> BoxedStrategy<Vec<u8>> {
    (
        known_id(),
        prop_oneof![Just(0u32), any::<u32>()],
        any::<u32>(),
        noise(400),
    )
        .prop_map(|(id, status, seq, body)| {
            let mut frame = Vec::with_capacity(HEADER_LEN + body.len());
            frame.extend_from_slice(&((HEADER_LEN + body.len()) as u32).to_be_bytes());
            frame.extend_from_slice(&id.to_be_bytes());
            frame.extend_from_slice(&status.to_be_bytes());
            frame.extend_from_slice(&seq.to_be_bytes());
            frame.extend_from_slice(&body);
            frame
        })
        .boxed()
}

fn check_answer(err: &DecodeError) -> Result<(), TestCaseError> {
    match err {
        DecodeError::Body {
            command_id,
            sequence_number,
            ..
        } => match err.answer() {
            None => prop_assert!(command_id.is_response()),
            Some(answer) => {
                prop_assert!(!command_id.is_response());
                prop_assert_eq!(answer.sequence_number, *sequence_number);
                prop_assert!(!answer.command_status.is_ok());
                let expected_id = command_id.response().unwrap_or(CommandId::GenericNack);
                prop_assert_eq!(answer.command_id(), expected_id);
                prop_assert_eq!(answer.to_bytes().len(), HEADER_LEN);
            }
        },
        DecodeError::UnknownCommand {
            sequence_number, ..
        } => {
            let answer = err.answer().expect("unknown command is answered");
            prop_assert_eq!(answer.command_id(), CommandId::GenericNack);
            prop_assert_eq!(answer.command_status, CommandStatus::ESME_RINVCMDID);
            prop_assert_eq!(answer.sequence_number, *sequence_number);
        }
        DecodeError::Length { .. } => {
            let answer = err.answer().expect("a length error is answered");
            prop_assert_eq!(answer.command_status, CommandStatus::ESME_RINVCMDLEN);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(CASES * 8))]

    /// Raw random octets: never a panic, and a length that does not match is an error.
    #[test]
    fn random_bytes_never_panic(bytes in noise(600)) {
        match Pdu::decode(&bytes) {
            Ok(pdu) => prop_assert!(pdu.to_bytes().len() >= HEADER_LEN),
            Err(e) => check_answer(&e)?,
        }
        if bytes.len() >= 4 && word(&bytes, 0) as usize != bytes.len() {
            let is_length_error = matches!(Pdu::decode(&bytes), Err(DecodeError::Length { .. }));
            prop_assert!(is_length_error);
        }
    }

    /// Random bodies behind a consistent header with a known command_id: never a panic,
    /// a failure is answered correctly, and a success with status 0 re-encodes to a PDU
    /// that decodes to the same value.
    #[test]
    fn random_bodies_with_valid_header_never_panic(frame in patched_frame()) {
        match Pdu::decode(&frame) {
            Ok(pdu) => {
                if pdu.command_status.is_ok() {
                    let again = Pdu::decode(&pdu.to_bytes());
                    prop_assert_eq!(again, Ok(pdu));
                }
            }
            Err(e) => {
                let not_length = !matches!(e, DecodeError::Length { .. });
                prop_assert!(not_length, "length was patched: {:?}", e);
                check_answer(&e)?;
            }
        }
    }

    /// A stream of random octets, and a stream of well-framed random PDUs, through the
    /// framer in random chunks: never a panic, never an Err, frames are consistent.
    #[test]
    fn random_streams_through_the_framer_never_panic(
        raw in noise(300),
        frames in vec(patched_frame(), 0..4),
        chunk in 1usize..64,
        max in prop_oneof![Just(64u32), Just(1024u32), Just(65536u32)],
    ) {
        for stream in [raw, frames.concat()] {
            let mut codec = SmppCodec::new(max);
            let mut buf = BytesMut::new();
            let mut poisoned = false;
            for piece in stream.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some(frame) = codec.decode(&mut buf).expect("the framer never errs") {
                    prop_assert!(!poisoned, "a frame after an invalid length");
                    match frame {
                        Frame::Pdu(bytes) => {
                            prop_assert!(bytes.len() >= HEADER_LEN);
                            prop_assert!(bytes.len() as u32 <= max.max(16));
                            prop_assert_eq!(word(&bytes, 0) as usize, bytes.len());
                            if let Err(e) = Pdu::decode(&bytes) {
                                check_answer(&e)?;
                            }
                        }
                        Frame::InvalidLength { command_length, sequence_number } => {
                            prop_assert!(command_length < 16 || command_length > max);
                            prop_assert_eq!(sequence_number.is_some(), command_length >= 16);
                            poisoned = true;
                        }
                    }
                }
            }
            let _ = codec.decode_eof(&mut buf).expect("the framer never errs");
        }
    }
}

/// Fixed 1|17 counts octets on the wire: a 16-character time made of Latin-1 octets
/// round-trips, and a shorter one whose UTF-8 form happens to be 16 bytes long is
/// rejected with the field's status.
#[test]
fn time_fields_count_octets_not_utf8_bytes() {
    let latin = latin1(vec![0xE9; 16]);
    let pdu = Pdu::new(
        7,
        Body::QuerySmResp(QuerySmResp {
            final_date: latin,
            ..QuerySmResp::default()
        }),
    );
    assert_eq!(Pdu::decode(&pdu.to_bytes()), Ok(pdu));

    // query_sm_resp with final_date of 8 octets 0xE9 (16 bytes as UTF-8): invalid.
    let mut body = vec![0u8]; // message_id ""
    body.extend_from_slice(&[0xE9; 8]);
    body.extend_from_slice(&[0, 1, 0]); // NUL, message_state, error_code
    let mut frame = ((HEADER_LEN + body.len()) as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&CommandId::QuerySmResp.as_u32().to_be_bytes());
    frame.extend_from_slice(&0u32.to_be_bytes());
    frame.extend_from_slice(&9u32.to_be_bytes());
    frame.extend_from_slice(&body);
    match Pdu::decode(&frame) {
        Err(DecodeError::Body { error, .. }) => {
            assert_eq!(error.status, CommandStatus::ESME_RINVEXPIRY)
        }
        other => panic!("an 8-octet final_date must be rejected, got {other:?}"),
    }
}

/// A6: for every c(N) field, N−1 characters are accepted and N are rejected with the
/// field's own status (A5); a Fixed 1|17 time of 15 or 17 characters likewise.
#[test]
fn c_octet_string_length_boundaries() {
    fn cs(s: &str) -> Vec<u8> {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        v
    }
    fn frame(id: CommandId, fields: &[Vec<u8>]) -> Vec<u8> {
        let body = fields.concat();
        let mut f = ((HEADER_LEN + body.len()) as u32).to_be_bytes().to_vec();
        f.extend_from_slice(&id.as_u32().to_be_bytes());
        f.extend_from_slice(&0u32.to_be_bytes());
        f.extend_from_slice(&77u32.to_be_bytes());
        f.extend_from_slice(&body);
        f
    }
    let b = |v: u8| vec![v];
    let time = cs("000001000000000R");
    let st = CommandStatus::ESME_RINVSCHED;
    let ex = CommandStatus::ESME_RINVEXPIRY;
    use CommandStatus as S;
    /// (field index, max N or 0 for a Fixed 1|17 time, status when too long)
    type Check = (usize, usize, S);
    let cases: Vec<(CommandId, Vec<Vec<u8>>, Vec<Check>)> = vec![
        (
            CommandId::BindTransceiver,
            vec![cs("id"), cs("pw"), cs("t"), b(0x34), b(1), b(1), cs("")],
            vec![
                (0, 16, S::ESME_RINVSYSID),
                (1, 9, S::ESME_RINVPASWD),
                (2, 13, S::ESME_RINVSYSTYP),
                (6, 41, S::ESME_RINVSRCADR),
            ],
        ),
        (
            CommandId::Outbind,
            vec![cs("id"), cs("pw")],
            vec![(0, 16, S::ESME_RINVSYSID), (1, 9, S::ESME_RINVPASWD)],
        ),
        (
            CommandId::SubmitSm,
            vec![
                cs(""),
                b(1),
                b(1),
                cs("1"),
                b(1),
                b(1),
                cs("2"),
                b(0),
                b(0),
                b(0),
                time.clone(),
                time.clone(),
                b(0),
                b(0),
                b(0),
                b(0),
                vec![2, b'h', b'i'],
            ],
            vec![
                (0, 6, S::ESME_RINVSERTYP),
                (3, 21, S::ESME_RINVSRCADR),
                (6, 21, S::ESME_RINVDSTADR),
                (10, 0, st),
                (11, 0, ex),
            ],
        ),
        (
            CommandId::SubmitMulti,
            vec![
                cs(""),
                b(1),
                b(1),
                cs("1"),
                b(2),
                b(1),
                b(1),
                b(1),
                cs("2"),
                b(2),
                cs("dl"),
                b(0),
                b(0),
                b(0),
                time.clone(),
                time.clone(),
                b(0),
                b(0),
                b(0),
                b(0),
                b(0),
            ],
            vec![
                (3, 21, S::ESME_RINVSRCADR),
                (8, 21, S::ESME_RINVDSTADR),
                (10, 21, S::ESME_RINVDLNAME),
                (14, 0, st),
                (15, 0, ex),
            ],
        ),
        (
            CommandId::DataSm,
            vec![
                cs(""),
                b(1),
                b(1),
                cs("1"),
                b(1),
                b(1),
                cs("2"),
                b(0),
                b(0),
                b(0),
            ],
            vec![
                (0, 6, S::ESME_RINVSERTYP),
                (3, 65, S::ESME_RINVSRCADR),
                (6, 65, S::ESME_RINVDSTADR),
            ],
        ),
        (
            CommandId::QuerySm,
            vec![cs("1"), b(1), b(1), cs("1")],
            vec![(0, 65, S::ESME_RINVMSGID), (3, 21, S::ESME_RINVSRCADR)],
        ),
        (
            CommandId::CancelSm,
            vec![cs(""), cs("1"), b(1), b(1), cs("1"), b(1), b(1), cs("2")],
            vec![
                (0, 6, S::ESME_RINVSERTYP),
                (1, 65, S::ESME_RINVMSGID),
                (4, 21, S::ESME_RINVSRCADR),
                (7, 21, S::ESME_RINVDSTADR),
            ],
        ),
        (
            CommandId::ReplaceSm,
            vec![
                cs("1"),
                b(1),
                b(1),
                cs("1"),
                time.clone(),
                time,
                b(0),
                b(0),
                b(0),
            ],
            vec![
                (0, 65, S::ESME_RINVMSGID),
                (3, 21, S::ESME_RINVSRCADR),
                (4, 0, st),
                (5, 0, ex),
            ],
        ),
        (
            CommandId::AlertNotification,
            vec![b(1), b(1), cs("1"), b(1), b(1), cs("2")],
            vec![(2, 65, S::ESME_RINVSRCADR), (5, 65, S::ESME_RINVDSTADR)],
        ),
    ];
    for (id, fields, checks) in cases {
        assert!(Pdu::decode(&frame(id, &fields)).is_ok(), "{id} base case");
        for (i, max, status) in checks {
            let (ok, too_long): (Vec<usize>, Vec<usize>) = if max == 0 {
                (vec![0, 16], vec![1, 15, 17])
            } else {
                (vec![max - 1], vec![max])
            };
            for n in ok {
                let mut f = fields.clone();
                f[i] = cs(&"7".repeat(n));
                let decoded = Pdu::decode(&frame(id, &f));
                assert!(
                    decoded.is_ok(),
                    "{id} field {i} with {n} chars: {decoded:?}"
                );
            }
            for n in too_long {
                let mut f = fields.clone();
                f[i] = cs(&"7".repeat(n));
                match Pdu::decode(&frame(id, &f)) {
                    Err(e @ DecodeError::Body { .. }) => {
                        let answer = e.answer().expect("answered");
                        assert_eq!(
                            answer.command_status, status,
                            "{id} field {i} with {n} chars"
                        );
                        assert_eq!(answer.sequence_number, 77);
                        let resp = id.response().unwrap_or(CommandId::GenericNack);
                        assert_eq!(answer.command_id(), resp);
                    }
                    other => panic!("{id} field {i} with {n} chars: {other:?}"),
                }
            }
        }
    }
}
