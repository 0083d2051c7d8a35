//! The mutation test (docs/smpp34-checklist.md A2, A5, A6, A8): more than 100,000
//! PDUs derived from
//! valid seeds of every request kind (and a few responses), mutated with a seeded
//! xorshift RNG, go through the framing decoder `SmppCodec` and then `Pdu::decode` +
//! `DecodeError::answer()`. Every case runs under `catch_unwind`; the test fails on any
//! panic and on any wrong status, and prints the counts of each mutation kind:
//!
//! * truncated: the body is cut (at every position of every seed in turn, with random
//!   sequence numbers) and command_length patched. The
//!   expected outcome is computed exactly from the cut position in the seed's layout:
//!   inside a mandatory field (sm_length included) → ESME_RINVCMDLEN; inside
//!   short_message → ESME_RINVMSGLEN; inside a TLV → ESME_RINVOPTPARSTREAM; on a TLV
//!   boundary → decodes to the seed without the TLVs that were cut. A failing request
//!   is answered header-only by its `*_resp` (generic_nack for outbind and
//!   alert_notification) with the sequence number echoed; a response is never answered.
//! * bit-flipped: 1–4 bits flipped in the body. A failure is answered as above with a
//!   status the PDU kind's fields can produce (A5); a success re-encodes stably.
//! * oversized: command_length above the configured maximum (65536) up to u32::MAX →
//!   `Frame::InvalidLength` with the header's sequence number; lengths 0..=15 →
//!   `Frame::InvalidLength` without one.
//! * header: random command_id values → unknown ones are answered generic_nack
//!   ESME_RINVCMDID with the sequence echoed; random command_status values in a
//!   request are ignored (kept, body decoded).
//! * extended: random octets appended: ignored after a PDU without TLVs, parsed as TLVs
//!   (or ESME_RINVOPTPARSTREAM / ESME_RINVPARLEN) after one with TLVs.

mod expect;
mod kinds;
mod seeds;

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use smpp_broker::smpp::pdu::{CommandStatus as S, *};

use expect::{expect_cut, put_u32, seeded, Expect};
use kinds::{bit_flipped, extended, header, oversized, truncated, undersized, Rng};
use seeds::{seeds, Seed, Seg};

const MAX_PDU: u32 = 65_536;
const TRUNCATED: usize = 40_000;
const BIT_FLIPPED: usize = 150_000;
const OVERSIZED: usize = 20_000;
const HEADER: usize = 20_000;
const EXTENDED: usize = 10_000;

// ---------------------------------------------------------------------------
// The runner
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Stats {
    cases: usize,
    decoded: usize,
    panics: usize,
    wrong: usize,
}

struct Runner {
    failures: Vec<String>,
}

static PANICS_SHOWN: AtomicUsize = AtomicUsize::new(0);

impl Runner {
    fn run(&mut self, stats: &mut Stats, case: impl FnOnce() -> Result<bool, String>) {
        stats.cases += 1;
        match panic::catch_unwind(AssertUnwindSafe(case)) {
            Ok(Ok(decoded)) => stats.decoded += usize::from(decoded),
            Ok(Err(msg)) => {
                stats.wrong += 1;
                if self.failures.len() < 25 {
                    self.failures.push(msg);
                }
            }
            Err(_) => stats.panics += 1,
        }
    }
}

#[test]
fn mutated_pdus_never_panic_and_get_the_right_status() {
    let started = Instant::now();
    let seeds = seeds();
    let with_body: Vec<&Seed> = seeds.iter().filter(|s| s.body_len() > 0).collect();
    let mut rng = Rng(0x5EED_2026_C0DE_C0DE);
    let mut runner = Runner {
        failures: Vec::new(),
    };

    // Show the first few panic messages, then stay quiet (they are counted).
    let default_hook = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if PANICS_SHOWN.fetch_add(1, Ordering::Relaxed) < 5 {
            default_hook(info);
        }
    }));

    let longest = with_body.iter().map(|s| s.body_len()).max().unwrap();
    assert!(
        TRUNCATED / with_body.len() >= longest,
        "every cut position is covered"
    );
    let mut truncated_stats = Stats::default();
    for i in 0..TRUNCATED {
        // Every cut position of every seed, over and over with other sequence numbers.
        let seed = with_body[i % with_body.len()];
        let cut = i / with_body.len();
        runner.run(&mut truncated_stats, || truncated(seed, cut, &mut rng));
    }
    let mut flipped_stats = Stats::default();
    for _ in 0..BIT_FLIPPED {
        let seed = *rng.pick(&with_body);
        runner.run(&mut flipped_stats, || bit_flipped(seed, &mut rng));
    }
    let mut oversized_stats = Stats::default();
    for _ in 0..OVERSIZED {
        let seed = rng.pick(&seeds);
        runner.run(&mut oversized_stats, || oversized(seed, &mut rng));
    }
    let mut undersized_stats = Stats::default();
    for seed in &seeds {
        for len in 0..HEADER_LEN as u32 {
            runner.run(&mut undersized_stats, || undersized(seed, len, &mut rng));
        }
    }
    let mut header_stats = Stats::default();
    for _ in 0..HEADER {
        let seed = rng.pick(&seeds);
        runner.run(&mut header_stats, || header(seed, &mut rng));
    }
    let mut extended_stats = Stats::default();
    for _ in 0..EXTENDED {
        let seed = rng.pick(&seeds);
        runner.run(&mut extended_stats, || extended(seed, &mut rng));
    }

    let _ = panic::take_hook(); // back to the default hook

    let all = [
        &truncated_stats,
        &flipped_stats,
        &oversized_stats,
        &undersized_stats,
        &header_stats,
        &extended_stats,
    ];
    let total: usize = all.iter().map(|s| s.cases).sum();
    let panics: usize = all.iter().map(|s| s.panics).sum();
    let wrong: usize = all.iter().map(|s| s.wrong).sum();
    for failure in &runner.failures {
        println!("wrong: {failure}");
    }
    println!(
        "mutation test: {} truncated ({} decoded at a TLV boundary), {} bit-flipped ({} still decoded), \
         {} oversized, {} under 16, {} header ({} decoded), {} extended ({} decoded); \
         {total} PDUs from {} seeds, {panics} panics, {wrong} wrong, {:.1?}",
        truncated_stats.cases,
        truncated_stats.decoded,
        flipped_stats.cases,
        flipped_stats.decoded,
        oversized_stats.cases,
        undersized_stats.cases,
        header_stats.cases,
        header_stats.decoded,
        extended_stats.cases,
        extended_stats.decoded,
        seeds.len(),
        started.elapsed(),
    );
    assert!(total >= 100_000, "only {total} mutated PDUs");
    assert_eq!(panics, 0, "panics while decoding mutated PDUs");
    assert_eq!(wrong, 0, "wrong outcomes (first ones printed above)");
    // Every mutation kind exercised both outcomes where both are possible.
    assert!(truncated_stats.decoded > 0 && truncated_stats.decoded < truncated_stats.cases);
    assert!(flipped_stats.decoded > 0 && flipped_stats.decoded < flipped_stats.cases);
    assert!(extended_stats.decoded > 0 && extended_stats.decoded < extended_stats.cases);
}

/// The expected-status model itself, on submit_sm (checklist A5): a cut before
/// sm_length is ESME_RINVCMDLEN, inside short_message ESME_RINVMSGLEN, inside a TLV
/// ESME_RINVOPTPARSTREAM, on a TLV boundary a successful decode.
#[test]
fn truncation_model_for_submit_sm() {
    let seeds = seeds();
    let seed = seeds.iter().find(|s| s.name == "submit_sm+tlvs").unwrap();
    let sm_length_at = seed
        .layout
        .segs
        .iter()
        .find(|s| s.2 == Seg::SmLength)
        .unwrap()
        .0;
    let (msg_start, msg_end, _) = *seed
        .layout
        .segs
        .iter()
        .find(|s| s.2 == Seg::ShortMessage)
        .unwrap();
    assert_eq!(
        seed.bytes[HEADER_LEN + sm_length_at] as usize,
        msg_end - msg_start
    );
    for cut in 0..seed.body_len() {
        let expected = expect_cut(seed, cut);
        let want = if cut <= sm_length_at {
            Expect::Fails(S::ESME_RINVCMDLEN)
        } else if cut < msg_end {
            Expect::Fails(S::ESME_RINVMSGLEN)
        } else if seed
            .layout
            .segs
            .iter()
            .any(|s| s.2 == Seg::Tlv && s.0 == cut)
        {
            expected_decodes(&expected)
        } else {
            Expect::Fails(S::ESME_RINVOPTPARSTREAM)
        };
        assert_eq!(expected, want, "cut at {cut}");
        // And the codec agrees, through the same path as the big test.
        let mut bytes = seeded(seed, 42);
        bytes.truncate(HEADER_LEN + cut);
        let len = bytes.len() as u32;
        put_u32(&mut bytes, 0, len);
        match (Pdu::decode(&bytes), &expected) {
            (Ok(pdu), Expect::Decodes(body)) => assert_eq!(pdu.body, **body),
            (Err(DecodeError::Body { error, .. }), Expect::Fails(s)) => {
                assert_eq!(error.status, *s)
            }
            (got, _) => panic!("cut at {cut}: {got:?} vs {expected:?}"),
        }
    }
}

fn expected_decodes(e: &Expect) -> Expect {
    match e {
        Expect::Decodes(b) => Expect::Decodes(b.clone()),
        Expect::Fails(s) => panic!("expected a decode, model says {s}"),
    }
}
