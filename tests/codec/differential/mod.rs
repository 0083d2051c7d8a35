//! Differential tests of our SMPP v3.4 codec against rusmpp 0.4, an independent
//! (v5.0) implementation (docs/smpp34-checklist.md A6, B2, B3).
//!
//! For every PDU both codecs know:
//!
//! * (a) `ours_to_rusmpp_*`: a random valid PDU is encoded with ours, decoded with
//!   rusmpp's `CommandCodec`, and compared field by field; rusmpp must consume every
//!   octet.
//! * (b) `rusmpp_to_ours_*`: a rusmpp command is built from random values (with its
//!   own constructors, typed TLVs where rusmpp has them), encoded with rusmpp, decoded
//!   with ours and compared field by field; ours must decode exactly the values it was
//!   built from and re-encode the very same octets.
//!
//! Generated values stay inside what both accept. Known differences worked around
//! (v5 versus 3.4, strict versus lenient):
//!
//! * data_sm addresses: 65 octets in 3.4 (ours), 21 in rusmpp (v5) → at most 20 chars.
//! * C-Octet Strings: rusmpp rejects non-ASCII octets; ours keeps them as Latin-1 →
//!   printable ASCII only.
//! * TLVs: rusmpp decodes every tag it knows with a fixed type and fails the whole PDU
//!   on another length (B2); ours only fixes the lengths of the tags in tlv.rs → known
//!   tags are generated with their spec length, unknown tags only from ranges unknown
//!   to both (0x1400..=0xFFFF).
//! * ms_msg_wait_facilities: rusmpp keeps only bits 0x83 of the octet → those bits only.
//! * bind_*_resp and alert_notification: rusmpp reads a single optional TLV
//!   (sc_interface_version / ms_availability_status) → at most that one.
//! * submit_sm_resp, deliver_sm_resp, submit_multi_resp carry TLVs in v5 only, and
//!   replace_sm a message_payload TLV in v5 only → none generated.
//! * short_message: ours caps sm_length at 254 (3.4), rusmpp at 255 → 0..=254.
//! * submit_multi: number_of_dests 1..=254 (ours rejects 0, as 3.4 requires).

mod compare;
mod to_rusmpp;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use rusmpp::tokio_codec::CommandCodec;
use rusmpp::{Command, CommandStatus as RStatus, Pdu as RPdu};
use smpp_broker::smpp::pdu::*;
use tokio_util::codec::{Decoder, Encoder};

use crate::strategies::{config, header_only, sequence_number, Profile};

use compare::same;
use to_rusmpp::to_rusmpp;

const CASES: u32 = 256;

/// Valid values both codecs accept (see the module comment).
const P: Profile = Profile::RUSMPP;

// ---------------------------------------------------------------------------
// The two directions
// ---------------------------------------------------------------------------

fn rusmpp_decode(bytes: &[u8]) -> Result<Command, TestCaseError> {
    let mut codec = CommandCodec::new().without_max_length();
    let mut buf = BytesMut::from(bytes);
    match codec.decode(&mut buf) {
        Ok(Some(cmd)) => {
            prop_assert!(buf.is_empty(), "rusmpp left {} octets unread", buf.len());
            Ok(cmd)
        }
        Ok(None) => Err(TestCaseError::fail("rusmpp wants more octets")),
        Err(e) => Err(TestCaseError::fail(format!("rusmpp cannot decode: {e}"))),
    }
}

fn rusmpp_encode(cmd: &Command) -> Bytes {
    let mut buf = BytesMut::new();
    CommandCodec::new()
        .encode(cmd, &mut buf)
        .expect("rusmpp encodes");
    buf.freeze()
}

/// (a) ours → rusmpp.
fn ours_to_rusmpp(pdu: Pdu) -> Result<(), TestCaseError> {
    let bytes = pdu.to_bytes();
    let theirs = rusmpp_decode(&bytes)
        .map_err(|e| TestCaseError::fail(format!("{e} for {pdu:?} = {}", hex::encode(&bytes))))?;
    same(&pdu, &theirs)?;
    // rusmpp re-encodes what it decoded to the same octets: nothing was lost on the way.
    prop_assert_eq!(hex::encode(rusmpp_encode(&theirs)), hex::encode(&bytes));
    Ok(())
}

/// (b) rusmpp → ours.
fn rusmpp_to_ours(pdu: Pdu) -> Result<(), TestCaseError> {
    let theirs = to_rusmpp(&pdu);
    let bytes = rusmpp_encode(&theirs);
    let decoded = Pdu::decode(&bytes).map_err(|e| {
        TestCaseError::fail(format!(
            "ours cannot decode: {e} for {theirs:?} = {}",
            hex::encode(&bytes)
        ))
    })?;
    same(&decoded, &theirs)?;
    prop_assert_eq!(&decoded, &pdu);
    prop_assert_eq!(hex::encode(decoded.to_bytes()), hex::encode(&bytes));
    Ok(())
}

macro_rules! differential {
    ($($kind:ident => $strategy:expr;)*) => {
        $(
            mod $kind {
                use super::*;

                proptest! {
                    #![proptest_config(config(CASES))]

                    #[test]
                    fn ours_to_rusmpp(seq in sequence_number(), body in $strategy) {
                        super::ours_to_rusmpp(Pdu::new(seq, body))?;
                    }

                    #[test]
                    fn rusmpp_to_ours(seq in sequence_number(), body in $strategy) {
                        super::rusmpp_to_ours(Pdu::new(seq, body))?;
                    }
                }
            }
        )*
    };
}

differential! {
    bind => P.bind();
    bind_resp => P.bind_resp();
    outbind => P.outbind();
    header_only => header_only();
    submit_sm => P.submit_sm();
    deliver_sm => P.deliver_sm();
    sm_resp => prop_oneof![P.submit_sm_resp(), P.deliver_sm_resp()];
    submit_multi => P.submit_multi();
    submit_multi_resp => P.submit_multi_resp();
    data_sm => P.data_sm();
    data_sm_resp => P.data_sm_resp();
    query_sm => P.query_sm();
    query_sm_resp => P.query_sm_resp();
    cancel_sm => P.cancel_sm();
    replace_sm => P.replace_sm();
    alert_notification => P.alert_notification();
}

proptest! {
    #![proptest_config(config(CASES))]

    /// Error responses: ours writes them header-only; rusmpp reads them as a command
    /// with the same id, status and sequence number and no body.
    #[test]
    fn error_responses_are_header_only_for_rusmpp_too(
        body in P.any_response(),
        status in 1u32..=u32::MAX,
        seq in sequence_number(),
    ) {
        let pdu = Pdu::with_status(CommandStatus(status), seq, body);
        let bytes = pdu.to_bytes();
        prop_assert_eq!(bytes.len(), HEADER_LEN);
        let theirs = rusmpp_decode(&bytes)?;
        prop_assert_eq!(u32::from(theirs.id()), pdu.command_id().as_u32());
        prop_assert_eq!(u32::from(theirs.status()), status);
        prop_assert_eq!(theirs.sequence_number(), seq);
        let header_only_body = matches!(
            theirs.pdu(),
            None | Some(RPdu::GenericNack)
                | Some(RPdu::UnbindResp)
                | Some(RPdu::EnquireLinkResp)
                | Some(RPdu::CancelSmResp)
                | Some(RPdu::ReplaceSmResp)
        );
        prop_assert!(header_only_body, "{:?}", theirs.pdu());

        // And a header-only error response built by rusmpp decodes with ours.
        let mut cmd = Command::new(RStatus::from(status), seq, RPdu::GenericNack);
        let mut raw = rusmpp_encode(&cmd).to_vec();
        raw[4..8].copy_from_slice(&pdu.command_id().as_u32().to_be_bytes());
        cmd = rusmpp_decode(&raw)?;
        let ours = Pdu::decode(&raw).expect("header-only response decodes");
        prop_assert_eq!(ours.command_status, CommandStatus(status));
        prop_assert_eq!(ours.sequence_number, cmd.sequence_number());
        prop_assert_eq!(ours.command_id().as_u32(), u32::from(cmd.id()));
    }
}
