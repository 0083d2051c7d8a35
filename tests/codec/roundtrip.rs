//! Property tests of our SMPP v3.4 codec (docs/smpp34-checklist.md A1, A2, A5, A6, A8):
//!
//! * every `Body` variant, generated with valid field values, survives
//!   `Pdu::decode(&pdu.to_bytes()) == pdu` and the framing codec;
//! * an error response (non-zero status on a response id) is written header-only and
//!   decodes to the empty body of its id;
//! * arbitrary bytes, with or without a consistent command_length, never make
//!   `Pdu::decode` or `SmppCodec` panic;
//! * every c(N) field accepts N−1 characters and rejects N with its own status, and a
//!   Fixed 1|17 time counts wire octets (regression test for a fix in wire.rs).

use bytes::BytesMut;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use smpp_broker::smpp::codec::{Frame, SmppCodec};
use smpp_broker::smpp::pdu::*;
use tokio_util::codec::Decoder;

use crate::oracle::empty_body;
use crate::strategies::{config, header_only, latin1, sequence_number, Profile};

const CASES: u32 = 512;

/// Our whole value space: Latin-1 strings, any TLV on every PDU that carries TLVs,
/// data_sm addresses of 3.4 size.
const P: Profile = Profile::FULL;

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
    roundtrip_bind => P.bind();
    roundtrip_bind_resp => P.bind_resp();
    roundtrip_outbind => P.outbind();
    roundtrip_header_only => header_only();
    roundtrip_submit_sm => P.submit_sm();
    roundtrip_submit_sm_resp => P.submit_sm_resp();
    roundtrip_deliver_sm => P.deliver_sm();
    roundtrip_deliver_sm_resp => P.deliver_sm_resp();
    roundtrip_submit_multi => P.submit_multi();
    roundtrip_submit_multi_resp => P.submit_multi_resp();
    roundtrip_data_sm => P.data_sm();
    roundtrip_data_sm_resp => P.data_sm_resp();
    roundtrip_query_sm => P.query_sm();
    roundtrip_query_sm_resp => P.query_sm_resp();
    roundtrip_cancel_sm => P.cancel_sm();
    roundtrip_replace_sm => P.replace_sm();
    roundtrip_alert_notification => P.alert_notification();
}

proptest! {
    #![proptest_config(config(CASES * 2))]

    /// A response with a non-zero status is written header-only (16 octets), whatever
    /// its body holds, and decodes to the empty body of its id with status and
    /// sequence number kept.
    #[test]
    fn error_response_is_header_only(
        body in P.any_response(),
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
            Pdu::with_status(CommandStatus(status), seq, empty_body(&body))
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
