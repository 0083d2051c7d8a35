//! What a mutated PDU must give: the statuses each PDU kind can produce, the exact
//! outcome of a cut, and the checks the mutation kinds share.

use bytes::{Bytes, BytesMut};
use smpp_broker::smpp::codec::{Frame, SmppCodec};
use smpp_broker::smpp::pdu::{CommandStatus as S, *};
use tokio_util::codec::Decoder;

use crate::oracle::empty_body;

use super::seeds::{Seed, Seg};
use super::MAX_PDU;

// ---------------------------------------------------------------------------
// Expected outcomes
// ---------------------------------------------------------------------------

/// The statuses the fields of a PDU kind can produce (a subset of checklist A5).
pub(super) fn field_statuses(id: CommandId) -> &'static [S] {
    use CommandId as C;
    const TLV_SM: &[S] = &[
        S::ESME_RINVCMDLEN,
        S::ESME_RINVSERTYP,
        S::ESME_RINVSRCADR,
        S::ESME_RINVDSTADR,
        S::ESME_RINVSCHED,
        S::ESME_RINVEXPIRY,
        S::ESME_RINVMSGLEN,
        S::ESME_RINVOPTPARSTREAM,
        S::ESME_RINVPARLEN,
    ];
    match id {
        C::BindTransmitter | C::BindReceiver | C::BindTransceiver => &[
            S::ESME_RINVCMDLEN,
            S::ESME_RINVSYSID,
            S::ESME_RINVPASWD,
            S::ESME_RINVSYSTYP,
            S::ESME_RINVSRCADR,
        ],
        C::BindTransmitterResp | C::BindReceiverResp | C::BindTransceiverResp => &[
            S::ESME_RINVCMDLEN,
            S::ESME_RINVSYSID,
            S::ESME_RINVOPTPARSTREAM,
            S::ESME_RINVPARLEN,
        ],
        C::Outbind => &[S::ESME_RINVCMDLEN, S::ESME_RINVSYSID, S::ESME_RINVPASWD],
        C::SubmitSm | C::DeliverSm => TLV_SM,
        C::SubmitMulti => &[
            S::ESME_RINVCMDLEN,
            S::ESME_RINVSERTYP,
            S::ESME_RINVSRCADR,
            S::ESME_RINVDSTADR,
            S::ESME_RINVSCHED,
            S::ESME_RINVEXPIRY,
            S::ESME_RINVMSGLEN,
            S::ESME_RINVOPTPARSTREAM,
            S::ESME_RINVPARLEN,
            S::ESME_RINVNUMDESTS,
            S::ESME_RINVDESTFLAG,
            S::ESME_RINVDLNAME,
        ],
        C::SubmitSmResp | C::DeliverSmResp => &[S::ESME_RINVCMDLEN, S::ESME_RINVMSGID],
        C::SubmitMultiResp => &[S::ESME_RINVCMDLEN, S::ESME_RINVMSGID, S::ESME_RINVDSTADR],
        C::DataSm => &[
            S::ESME_RINVCMDLEN,
            S::ESME_RINVSERTYP,
            S::ESME_RINVSRCADR,
            S::ESME_RINVDSTADR,
            S::ESME_RINVOPTPARSTREAM,
            S::ESME_RINVPARLEN,
        ],
        C::DataSmResp => &[
            S::ESME_RINVCMDLEN,
            S::ESME_RINVMSGID,
            S::ESME_RINVOPTPARSTREAM,
            S::ESME_RINVPARLEN,
        ],
        C::QuerySm => &[S::ESME_RINVCMDLEN, S::ESME_RINVMSGID, S::ESME_RINVSRCADR],
        C::QuerySmResp => &[S::ESME_RINVCMDLEN, S::ESME_RINVMSGID, S::ESME_RINVEXPIRY],
        C::CancelSm => &[
            S::ESME_RINVCMDLEN,
            S::ESME_RINVSERTYP,
            S::ESME_RINVMSGID,
            S::ESME_RINVSRCADR,
            S::ESME_RINVDSTADR,
        ],
        C::ReplaceSm => &[
            S::ESME_RINVCMDLEN,
            S::ESME_RINVMSGID,
            S::ESME_RINVSRCADR,
            S::ESME_RINVSCHED,
            S::ESME_RINVEXPIRY,
            S::ESME_RINVMSGLEN,
        ],
        C::AlertNotification => &[
            S::ESME_RINVCMDLEN,
            S::ESME_RINVSRCADR,
            S::ESME_RINVDSTADR,
            S::ESME_RINVOPTPARSTREAM,
            S::ESME_RINVPARLEN,
        ],
        // Header-only PDUs cannot fail on their body.
        C::GenericNack
        | C::Unbind
        | C::UnbindResp
        | C::EnquireLink
        | C::EnquireLinkResp
        | C::CancelSmResp
        | C::ReplaceSmResp => &[],
    }
}

pub(super) fn tlvs_mut(body: &mut Body) -> Option<&mut Tlvs> {
    match body {
        Body::SubmitSm(sm) | Body::DeliverSm(sm) => Some(&mut sm.tlvs),
        Body::SubmitMulti(m) => Some(&mut m.sm.tlvs),
        Body::DataSm(d) => Some(&mut d.tlvs),
        Body::DataSmResp(d) => Some(&mut d.tlvs),
        Body::BindResp(_, b) => Some(&mut b.tlvs),
        Body::AlertNotification(a) => Some(&mut a.tlvs),
        _ => None,
    }
}

pub(super) fn with_tlvs_kept(body: &Body, keep: usize) -> Body {
    let mut body = body.clone();
    if let Some(t) = tlvs_mut(&mut body) {
        t.0.truncate(keep);
    }
    body
}

#[derive(Debug, PartialEq)]
pub(super) enum Expect {
    Decodes(Box<Body>),
    Fails(S),
}

/// The exact outcome of cutting the seed's body to `cut` octets (cut < body length).
pub(super) fn expect_cut(seed: &Seed, cut: usize) -> Expect {
    if seed.id().is_response() && cut == 0 {
        // A header-only response is accepted (A6: error responses carry no body).
        return Expect::Decodes(Box::new(empty_body(&seed.body)));
    }
    let &(start, _, seg) = seed
        .layout
        .segs
        .iter()
        .find(|(_, end, _)| *end > cut)
        .expect("cut inside the body");
    match seg {
        Seg::Tlv if start == cut => {
            let kept = seed
                .layout
                .segs
                .iter()
                .filter(|s| s.2 == Seg::Tlv && s.1 <= cut)
                .count();
            Expect::Decodes(Box::new(with_tlvs_kept(&seed.body, kept)))
        }
        Seg::Tlv => Expect::Fails(S::ESME_RINVOPTPARSTREAM),
        Seg::ShortMessage => Expect::Fails(S::ESME_RINVMSGLEN),
        Seg::SmLength | Seg::Field => Expect::Fails(S::ESME_RINVCMDLEN),
    }
}

// ---------------------------------------------------------------------------
// Checks shared by the mutation kinds
// ---------------------------------------------------------------------------

pub(super) fn put_u32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

pub(super) fn word(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// The framer hands a well-framed PDU over whole, and leaves nothing behind.
pub(super) fn frame(bytes: &[u8]) -> Result<Bytes, String> {
    let mut codec = SmppCodec::new(MAX_PDU);
    let mut buf = BytesMut::from(bytes);
    match codec.decode(&mut buf) {
        Ok(Some(Frame::Pdu(b))) if b[..] == *bytes && buf.is_empty() => Ok(b),
        other => Err(format!("framer gave {other:?}")),
    }
}

/// A failed decode of a PDU of `id` with sequence number `seq`: the error names the
/// PDU and the sequence, its status is allowed, and the answer is the header-only
/// `*_resp` (generic_nack without one) echoing the sequence; never an answer to a response.
pub(super) fn check_failure(
    err: &DecodeError,
    id: CommandId,
    seq: u32,
    allowed: &[S],
) -> Result<S, String> {
    let DecodeError::Body {
        command_id,
        sequence_number,
        error,
    } = err
    else {
        return Err(format!("expected a body error, got {err:?}"));
    };
    if *command_id != id || *sequence_number != seq {
        return Err(format!(
            "error names {command_id} #{sequence_number}, not {id} #{seq}"
        ));
    }
    if !allowed.contains(&error.status) {
        return Err(format!(
            "status {} not in {allowed:?} ({error})",
            error.status
        ));
    }
    match (id.is_response(), err.answer()) {
        (true, None) => {}
        (true, Some(a)) => return Err(format!("a response was answered with {a:?}")),
        (false, None) => return Err("a request was not answered".into()),
        (false, Some(answer)) => {
            let resp = id.response().unwrap_or(CommandId::GenericNack);
            let bytes = answer.to_bytes();
            let ok = answer.command_id() == resp
                && answer.command_status == error.status
                && answer.sequence_number == seq
                && bytes.len() == HEADER_LEN
                && word(&bytes, 0) == 16
                && word(&bytes, 4) == resp.as_u32()
                && word(&bytes, 8) == error.status.0
                && word(&bytes, 12) == seq;
            if !ok {
                return Err(format!("wrong answer {answer:?} = {}", hex::encode(&bytes)));
            }
        }
    }
    Ok(error.status)
}

/// A successful decode is stable: encoding it again and decoding gives the same PDU.
pub(super) fn check_stable(pdu: &Pdu) -> Result<(), String> {
    match Pdu::decode(&pdu.to_bytes()) {
        Ok(again) if again == *pdu => Ok(()),
        other => Err(format!("unstable: {pdu:?} re-decodes to {other:?}")),
    }
}

/// The seed's bytes with a new sequence number (and the status left at 0).
pub(super) fn seeded(seed: &Seed, seq: u32) -> Vec<u8> {
    let mut bytes = seed.bytes.clone();
    put_u32(&mut bytes, 12, seq);
    bytes
}
