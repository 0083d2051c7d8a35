//! The seeded RNG and the mutation kinds: truncated, bit-flipped, oversized and
//! undersized lengths, odd headers, extended bodies.

use bytes::BytesMut;
use smpp_broker::smpp::codec::{Frame, SmppCodec};
use smpp_broker::smpp::pdu::{CommandStatus as S, *};
use tokio_util::codec::Decoder;

use super::expect::{
    check_failure, check_stable, expect_cut, field_statuses, frame, put_u32, seeded, tlvs_mut,
    with_tlvs_kept, word, Expect,
};
use super::seeds::Seed;
use super::MAX_PDU;

// ---------------------------------------------------------------------------
// A deterministic RNG (xorshift64*), so the test needs no new dependency
// ---------------------------------------------------------------------------

pub(super) struct Rng(pub(super) u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in 0..n (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn u32(&mut self) -> u32 {
        (self.next() >> 32) as u32
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub(super) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A sequence number, with the edge values often.
    fn seq(&mut self) -> u32 {
        match self.below(8) {
            0 => 0,
            1 => u32::MAX,
            2 => 0x7FFF_FFFF,
            3 => 0x8000_0000,
            _ => self.u32(),
        }
    }
}

// ---------------------------------------------------------------------------
// The mutation kinds. Each returns Ok(true) when the mutated PDU decoded.
// ---------------------------------------------------------------------------

pub(super) fn truncated(seed: &Seed, cut: usize, rng: &mut Rng) -> Result<bool, String> {
    let seq = rng.seq();
    let cut = cut % seed.body_len();
    let mut bytes = seeded(seed, seq);
    bytes.truncate(HEADER_LEN + cut);
    let len = bytes.len() as u32;
    put_u32(&mut bytes, 0, len);
    let ctx = |e: String| format!("{} cut at {cut}: {e} [{}]", seed.name, hex::encode(&bytes));

    let frame = frame(&bytes).map_err(ctx)?;
    let expect = expect_cut(seed, cut);
    match (Pdu::decode(&frame), expect) {
        (Ok(pdu), Expect::Decodes(body)) => {
            if pdu == Pdu::new(seq, (*body).clone()) {
                Ok(true)
            } else {
                Err(ctx(format!("decoded {pdu:?}, expected {body:?}")))
            }
        }
        (Err(err), Expect::Fails(status)) => {
            check_failure(&err, seed.id(), seq, &[status]).map_err(ctx)?;
            Ok(false)
        }
        (got, expect) => Err(ctx(format!("got {got:?}, expected {expect:?}"))),
    }
}

pub(super) fn bit_flipped(seed: &Seed, rng: &mut Rng) -> Result<bool, String> {
    let seq = rng.seq();
    let mut bytes = seeded(seed, seq);
    let flips = 1 + rng.below(4);
    for _ in 0..flips {
        let at = HEADER_LEN + rng.below(seed.body_len());
        bytes[at] ^= 1 << rng.below(8);
    }
    let ctx = |e: String| format!("{} flipped: {e} [{}]", seed.name, hex::encode(&bytes));

    let frame = frame(&bytes).map_err(ctx)?;
    match Pdu::decode(&frame) {
        Ok(pdu) => {
            if pdu.sequence_number != seq || pdu.command_id() != seed.id() {
                return Err(ctx(format!("decoded as {pdu:?}")));
            }
            check_stable(&pdu).map_err(ctx)?;
            Ok(true)
        }
        Err(err) => {
            check_failure(&err, seed.id(), seq, field_statuses(seed.id())).map_err(ctx)?;
            Ok(false)
        }
    }
}

pub(super) fn oversized(seed: &Seed, rng: &mut Rng) -> Result<bool, String> {
    let seq = rng.seq();
    let len = match rng.below(8) {
        0 => MAX_PDU + 1,
        1 => u32::MAX,
        2 => 0x8000_0000,
        _ => MAX_PDU + 1 + (rng.u32() % (u32::MAX - MAX_PDU)),
    };
    let mut bytes = seeded(seed, seq);
    put_u32(&mut bytes, 0, len);
    let ctx = |e: String| format!("{} length {len}: {e}", seed.name);

    // Sometimes the header arrives in two pieces: nothing comes out before all 16 octets.
    let mut codec = SmppCodec::new(MAX_PDU);
    let first = if rng.chance(30) {
        4 + rng.below(HEADER_LEN - 4)
    } else {
        bytes.len()
    };
    let mut buf = BytesMut::from(&bytes[..first]);
    let mut got = codec.decode(&mut buf).map_err(|e| ctx(e.to_string()))?;
    if first < HEADER_LEN {
        if got.is_some() {
            return Err(ctx(format!("a frame from {first} octets: {got:?}")));
        }
        buf.extend_from_slice(&bytes[first..]);
        got = codec.decode(&mut buf).map_err(|e| ctx(e.to_string()))?;
    }
    let expected = Frame::InvalidLength {
        command_length: len,
        sequence_number: Some(seq),
    };
    if got != Some(expected) {
        return Err(ctx(format!("framer gave {got:?}")));
    }
    // Framing is lost: nothing more comes out, even a valid PDU.
    buf.extend_from_slice(&seed.bytes);
    if let Ok(Some(f)) = codec.decode(&mut buf) {
        return Err(ctx(format!("a frame after an invalid length: {f:?}")));
    }
    // The session's answer: generic_nack ESME_RINVCMDLEN echoing the sequence (A5).
    let nack = Pdu::generic_nack(S::ESME_RINVCMDLEN, seq).to_bytes();
    if nack.len() != HEADER_LEN || word(&nack, 4) != 0x8000_0000 || word(&nack, 12) != seq {
        return Err(ctx(format!("bad generic_nack {}", hex::encode(&nack))));
    }
    Ok(false)
}

pub(super) fn undersized(seed: &Seed, len: u32, rng: &mut Rng) -> Result<bool, String> {
    let mut bytes = seeded(seed, rng.seq());
    put_u32(&mut bytes, 0, len);
    let mut codec = SmppCodec::new(MAX_PDU);
    let mut buf = BytesMut::from(&bytes[..]);
    let got = codec.decode(&mut buf).map_err(|e| e.to_string())?;
    let expected = Frame::InvalidLength {
        command_length: len,
        sequence_number: None,
    };
    if got != Some(expected) {
        return Err(format!("{} length {len}: framer gave {got:?}", seed.name));
    }
    Ok(false)
}

const ODD_IDS: &[u32] = &[
    0x0000_0000,
    0x0000_000A, // reserved
    0x0000_000C,
    0x0000_0010,
    0x0000_0111, // v5 broadcast_sm
    0x0000_0112, // v5 query_broadcast_sm
    0x0000_0113, // v5 cancel_broadcast_sm
    0x8000_0111,
    0x8000_0112,
    0x8000_0113,
    0x8000_000B, // outbind has no response
    0x8000_0102, // alert_notification has no response
    0x0000_0104,
    0x0001_0000,
    0x7FFF_FFFF,
    0xFFFF_FFFF,
];

pub(super) fn header(seed: &Seed, rng: &mut Rng) -> Result<bool, String> {
    let seq = rng.seq();
    let mut bytes = seeded(seed, seq);

    if rng.chance(20) {
        // A random command_status in a request (or response) is kept and ignored.
        let status = rng.u32();
        put_u32(&mut bytes, 8, status);
        let pdu = Pdu::decode(&frame(&bytes)?).map_err(|e| format!("{}: {e}", seed.name))?;
        let expected = Pdu::with_status(S(status), seq, seed.body.clone());
        return if pdu == expected {
            Ok(true)
        } else {
            Err(format!("{} status {status:#x}: {pdu:?}", seed.name))
        };
    }

    let id = match rng.below(10) {
        0..=3 => rng.u32(),
        4..=5 => *rng.pick(ODD_IDS),
        6..=7 => rng.pick(&CommandId::ALL).as_u32() ^ (1 << rng.below(32)),
        _ => rng.pick(&CommandId::ALL).as_u32(),
    };
    put_u32(&mut bytes, 4, id);
    let ctx = |e: String| {
        format!(
            "{} as id {id:#010x}: {e} [{}]",
            seed.name,
            hex::encode(&bytes)
        )
    };

    let frame = frame(&bytes).map_err(ctx)?;
    let result = Pdu::decode(&frame);
    match CommandId::from_u32(id) {
        None => {
            let expected = DecodeError::UnknownCommand {
                command_id: id,
                sequence_number: seq,
            };
            if result.as_ref() != Err(&expected) {
                return Err(ctx(format!("got {result:?}")));
            }
            let answer = expected.answer().ok_or_else(|| ctx("no answer".into()))?;
            let b = answer.to_bytes();
            if b.len() != HEADER_LEN
                || word(&b, 0) != 16
                || word(&b, 4) != 0x8000_0000
                || word(&b, 8) != S::ESME_RINVCMDID.0
                || word(&b, 12) != seq
            {
                return Err(ctx(format!("wrong answer {}", hex::encode(&b))));
            }
            Ok(false)
        }
        // A known id over another PDU's body: any outcome but a panic or a wrong answer.
        Some(known) => match result {
            Ok(pdu) if pdu.command_id() == known && pdu.sequence_number == seq => {
                check_stable(&pdu).map_err(ctx)?;
                Ok(true)
            }
            Ok(pdu) => Err(ctx(format!("decoded as {pdu:?}"))),
            Err(err) => {
                check_failure(&err, known, seq, field_statuses(known)).map_err(ctx)?;
                Ok(false)
            }
        },
    }
}

pub(super) fn extended(seed: &Seed, rng: &mut Rng) -> Result<bool, String> {
    let seq = rng.seq();
    let mut bytes = seeded(seed, seq);
    let extra = 1 + rng.below(24);
    for _ in 0..extra {
        // Small octets often, so that junk sometimes forms well-framed TLVs.
        let b = if rng.chance(50) {
            rng.below(4) as u8
        } else {
            rng.next() as u8
        };
        bytes.push(b);
    }
    let len = bytes.len() as u32;
    put_u32(&mut bytes, 0, len);
    let ctx = |e: String| {
        format!(
            "{} + {extra} octets: {e} [{}]",
            seed.name,
            hex::encode(&bytes)
        )
    };

    let frame = frame(&bytes).map_err(ctx)?;
    match Pdu::decode(&frame) {
        Ok(pdu) if !seed.takes_tlvs() => {
            // Octets after the mandatory fields of a PDU without TLVs are ignored (A2).
            if pdu == Pdu::new(seq, seed.body.clone()) {
                Ok(true)
            } else {
                Err(ctx(format!("decoded {pdu:?}")))
            }
        }
        Ok(mut pdu) => {
            // The junk parsed as TLVs: the seed's TLVs come first, the rest follow.
            let n = tlvs_mut(&mut seed.body.clone()).map_or(0, |t| t.0.len());
            let got = tlvs_mut(&mut pdu.body).map(|t| t.0.len()).unwrap_or(0);
            if got <= n || pdu.sequence_number != seq {
                return Err(ctx(format!("decoded {pdu:?}")));
            }
            if with_tlvs_kept(&pdu.body, n) != seed.body {
                return Err(ctx(format!("decoded {pdu:?}")));
            }
            check_stable(&pdu).map_err(ctx)?;
            Ok(true)
        }
        Err(err) => {
            let allowed = [S::ESME_RINVOPTPARSTREAM, S::ESME_RINVPARLEN];
            if !seed.takes_tlvs() {
                return Err(ctx(format!("trailing octets rejected: {err}")));
            }
            check_failure(&err, seed.id(), seq, &allowed).map_err(ctx)?;
            Ok(false)
        }
    }
}
