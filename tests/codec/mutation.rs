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

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use smpp_broker::smpp::codec::{Frame, SmppCodec};
use smpp_broker::smpp::pdu::tlv::tag;
use smpp_broker::smpp::pdu::{CommandStatus as S, *};
use tokio_util::codec::Decoder;

use crate::oracle::empty_body;

const MAX_PDU: u32 = 65_536;
const TRUNCATED: usize = 40_000;
const BIT_FLIPPED: usize = 150_000;
const OVERSIZED: usize = 20_000;
const HEADER: usize = 20_000;
const EXTENDED: usize = 10_000;

// ---------------------------------------------------------------------------
// A deterministic RNG (xorshift64*), so the test needs no new dependency
// ---------------------------------------------------------------------------

struct Rng(u64);

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

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
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
// Seeds and their layouts
// ---------------------------------------------------------------------------

/// What a body octet range holds, which decides the status of a cut inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seg {
    /// Any mandatory field (integers, C-Octet Strings, times, counts, dest_flag).
    Field,
    SmLength,
    ShortMessage,
    Tlv,
}

/// The body layout of a PDU, computed from its fields independently of the encoder.
#[derive(Default)]
struct Layout {
    pos: usize,
    segs: Vec<(usize, usize, Seg)>,
}

impl Layout {
    fn put(&mut self, len: usize, seg: Seg) {
        self.segs.push((self.pos, self.pos + len, seg));
        self.pos += len;
    }

    fn int(&mut self, len: usize) {
        self.put(len, Seg::Field);
    }

    fn cstr(&mut self, s: &str) {
        self.put(s.chars().count() + 1, Seg::Field);
    }

    fn addr(&mut self, a: &Address) {
        self.int(1);
        self.int(1);
        self.cstr(&a.addr);
    }

    fn short_message(&mut self, m: &[u8]) {
        self.put(1, Seg::SmLength);
        if !m.is_empty() {
            self.put(m.len(), Seg::ShortMessage);
        }
    }

    fn tlvs(&mut self, t: &Tlvs) {
        for tlv in &t.0 {
            self.put(4 + tlv.value.len(), Seg::Tlv);
        }
    }

    fn sm_tail(&mut self, sm: &Sm) {
        self.int(1); // esm_class
        self.int(1); // protocol_id
        self.int(1); // priority_flag
        self.cstr(&sm.schedule_delivery_time);
        self.cstr(&sm.validity_period);
        self.int(1); // registered_delivery
        self.int(1); // replace_if_present_flag
        self.int(1); // data_coding
        self.int(1); // sm_default_msg_id
        self.short_message(&sm.short_message);
        self.tlvs(&sm.tlvs);
    }

    fn of(body: &Body) -> Layout {
        let mut l = Layout::default();
        match body {
            Body::GenericNack
            | Body::Unbind
            | Body::UnbindResp
            | Body::EnquireLink
            | Body::EnquireLinkResp
            | Body::CancelSmResp
            | Body::ReplaceSmResp => {}
            Body::Bind(_, b) => {
                l.cstr(&b.system_id);
                l.cstr(&b.password);
                l.cstr(&b.system_type);
                l.int(1);
                l.int(1);
                l.int(1);
                l.cstr(&b.address_range);
            }
            Body::BindResp(_, b) => {
                l.cstr(&b.system_id);
                l.tlvs(&b.tlvs);
            }
            Body::Outbind(o) => {
                l.cstr(&o.system_id);
                l.cstr(&o.password);
            }
            Body::SubmitSm(sm) | Body::DeliverSm(sm) => {
                l.cstr(&sm.service_type);
                l.addr(&sm.source);
                l.addr(&sm.dest);
                l.sm_tail(sm);
            }
            Body::SubmitSmResp(r) | Body::DeliverSmResp(r) => l.cstr(&r.message_id),
            Body::SubmitMulti(m) => {
                l.cstr(&m.sm.service_type);
                l.addr(&m.sm.source);
                l.int(1); // number_of_dests
                for d in &m.dests {
                    l.int(1); // dest_flag
                    match d {
                        MultiDest::Sme(a) => l.addr(a),
                        MultiDest::DistributionList(n) => l.cstr(n),
                    }
                }
                l.sm_tail(&m.sm);
            }
            Body::SubmitMultiResp(r) => {
                l.cstr(&r.message_id);
                l.int(1);
                for u in &r.unsuccess {
                    l.addr(&u.dest);
                    l.int(4);
                }
            }
            Body::DataSm(d) => {
                l.cstr(&d.service_type);
                l.addr(&d.source);
                l.addr(&d.dest);
                l.int(1);
                l.int(1);
                l.int(1);
                l.tlvs(&d.tlvs);
            }
            Body::DataSmResp(r) => {
                l.cstr(&r.message_id);
                l.tlvs(&r.tlvs);
            }
            Body::QuerySm(q) => {
                l.cstr(&q.message_id);
                l.addr(&q.source);
            }
            Body::QuerySmResp(q) => {
                l.cstr(&q.message_id);
                l.cstr(&q.final_date);
                l.int(1);
                l.int(1);
            }
            Body::CancelSm(c) => {
                l.cstr(&c.service_type);
                l.cstr(&c.message_id);
                l.addr(&c.source);
                l.addr(&c.dest);
            }
            Body::ReplaceSm(r) => {
                l.cstr(&r.message_id);
                l.addr(&r.source);
                l.cstr(&r.schedule_delivery_time);
                l.cstr(&r.validity_period);
                l.int(1);
                l.int(1);
                l.short_message(&r.short_message);
            }
            Body::AlertNotification(a) => {
                l.addr(&a.source);
                l.addr(&a.esme);
                l.tlvs(&a.tlvs);
            }
        }
        l
    }
}

struct Seed {
    name: &'static str,
    body: Body,
    /// The encoded PDU (status 0, sequence number 1); mutations patch the sequence.
    bytes: Vec<u8>,
    layout: Layout,
}

impl Seed {
    fn new(name: &'static str, body: Body) -> Seed {
        let pdu = Pdu::new(1, body.clone());
        let bytes = pdu.to_bytes().to_vec();
        let layout = Layout::of(&body);
        // The layout model agrees with the encoder (A6) and the seed is valid.
        assert_eq!(layout.pos, bytes.len() - HEADER_LEN, "layout of {name}");
        assert_eq!(Pdu::decode(&bytes), Ok(pdu), "seed {name} round-trips");
        Seed {
            name,
            body,
            bytes,
            layout,
        }
    }

    fn id(&self) -> CommandId {
        self.body.command_id()
    }

    fn body_len(&self) -> usize {
        self.bytes.len() - HEADER_LEN
    }

    fn takes_tlvs(&self) -> bool {
        matches!(
            self.body,
            Body::SubmitSm(_)
                | Body::DeliverSm(_)
                | Body::SubmitMulti(_)
                | Body::DataSm(_)
                | Body::DataSmResp(_)
                | Body::BindResp(..)
                | Body::AlertNotification(_)
        )
    }
}

fn tlvs(list: &[(u16, &[u8])]) -> Tlvs {
    Tlvs(
        list.iter()
            .map(|(t, v)| Tlv {
                tag: *t,
                value: Bytes::copy_from_slice(v),
            })
            .collect(),
    )
}

fn seeds() -> Vec<Seed> {
    let bind = Bind {
        system_id: "smppclient1".into(),
        password: "password".into(),
        system_type: "VMA".into(),
        interface_version: 0x34,
        addr_ton: 1,
        addr_npi: 1,
        address_range: "^447".into(),
    };
    let bind_max = Bind {
        system_id: "A".repeat(15),
        password: "p".repeat(8),
        system_type: "T".repeat(12),
        interface_version: 0x33,
        addr_ton: 0,
        addr_npi: 0,
        address_range: "9".repeat(40),
    };
    let submit = Sm {
        service_type: "CMT".into(),
        source: Address::new(5, 0, "Broker"),
        dest: Address::new(1, 1, "447700900001"),
        esm_class: 0x40,
        registered_delivery: 1,
        schedule_delivery_time: "000001000000000R".into(),
        data_coding: 0,
        short_message: Bytes::from_static(b"\x05\x00\x03\x2A\x02\x01Hello\x00@ world\x00"),
        tlvs: tlvs(&[
            (tag::SAR_MSG_REF_NUM, &[0x12, 0x34]),
            (tag::SAR_TOTAL_SEGMENTS, &[2]),
            (tag::SAR_SEGMENT_SEQNUM, &[1]),
            (tag::USER_MESSAGE_REFERENCE, &[0, 7]),
            (0x1401, b"vendor"),
            (tag::CALLBACK_NUM, &[]),
        ]),
        ..Sm::default()
    };
    let submit_payload = Sm {
        source: Address::new(1, 1, "447700900002"),
        dest: Address::new(1, 1, "447700900003"),
        validity_period: "261122150000000+".into(),
        data_coding: 8,
        tlvs: tlvs(&[(
            tag::MESSAGE_PAYLOAD,
            &[0x00, 0x41, 0x00, 0x42, 0x00, 0x00, 0xD8, 0x3D],
        )]),
        ..Sm::default()
    };
    let submit_long = Sm {
        source: Address::new(1, 1, "12345"),
        dest: Address::new(1, 1, "447700900001"),
        short_message: Bytes::from((0..160u8).collect::<Vec<_>>()),
        ..Sm::default()
    };
    let receipt = Sm {
        source: Address::new(1, 1, "447700900001"),
        dest: Address::new(1, 1, "12345"),
        esm_class: 0x04,
        short_message: Bytes::from_static(
            b"id:1000000001 sub:001 dlvrd:001 submit date:2611221500 done date:2611221501 stat:DELIVRD err:000 text:Hello",
        ),
        tlvs: tlvs(&[
            (tag::RECEIPTED_MESSAGE_ID, b"1000000001\0"),
            (tag::MESSAGE_STATE, &[2]),
            (tag::NETWORK_ERROR_CODE, &[3, 0, 0]),
        ]),
        ..Sm::default()
    };
    let multi = SubmitMulti {
        dests: vec![
            MultiDest::Sme(Address::new(1, 1, "447700900001")),
            MultiDest::DistributionList("friends".into()),
            MultiDest::Sme(Address::new(2, 8, "0700900002")),
        ],
        sm: Sm {
            service_type: "WAP".into(),
            source: Address::new(1, 1, "12345"),
            short_message: Bytes::from_static(b"to many\x00"),
            tlvs: tlvs(&[
                (tag::SOURCE_PORT, &[0x0B, 0x84]),
                (tag::DESTINATION_PORT, &[0x23, 0xF0]),
            ]),
            ..Sm::default()
        },
    };
    let data_sm = DataSm {
        service_type: "USSD".into(),
        source: Address::new(1, 1, "4477009000014477009000014477009000014477"),
        dest: Address::new(1, 1, "447700900009"),
        esm_class: 0,
        registered_delivery: 1,
        data_coding: 4,
        tlvs: tlvs(&[
            (tag::MESSAGE_PAYLOAD, b"\x00\x01payload\x00bytes"),
            (tag::PAYLOAD_TYPE, &[0]),
            (tag::MORE_MESSAGES_TO_SEND, &[1]),
        ]),
    };
    let mut bind_resp_tlvs = Tlvs::new();
    bind_resp_tlvs.push_u8(tag::SC_INTERFACE_VERSION, 0x34);
    vec![
        Seed::new(
            "bind_transmitter",
            Body::Bind(BindKind::Transmitter, bind.clone()),
        ),
        Seed::new("bind_receiver", Body::Bind(BindKind::Receiver, bind)),
        Seed::new(
            "bind_transceiver",
            Body::Bind(BindKind::Transceiver, bind_max),
        ),
        Seed::new("submit_sm+tlvs", Body::SubmitSm(submit)),
        Seed::new("submit_sm+payload", Body::SubmitSm(submit_payload)),
        Seed::new("submit_sm 160", Body::SubmitSm(submit_long)),
        Seed::new("submit_multi", Body::SubmitMulti(multi)),
        Seed::new("data_sm", Body::DataSm(data_sm)),
        Seed::new(
            "query_sm",
            Body::QuerySm(QuerySm {
                message_id: "1000000001".into(),
                source: Address::new(1, 1, "12345"),
            }),
        ),
        Seed::new(
            "cancel_sm",
            Body::CancelSm(CancelSm {
                service_type: String::new(),
                message_id: "1000000001".into(),
                source: Address::new(1, 1, "12345"),
                dest: Address::new(1, 1, "447700900001"),
            }),
        ),
        Seed::new(
            "replace_sm",
            Body::ReplaceSm(ReplaceSm {
                message_id: "1000000001".into(),
                source: Address::new(1, 1, "12345"),
                schedule_delivery_time: String::new(),
                validity_period: "000002000000000R".into(),
                registered_delivery: 1,
                sm_default_msg_id: 0,
                short_message: Bytes::from_static(b"replaced\x00text"),
            }),
        ),
        Seed::new("enquire_link", Body::EnquireLink),
        Seed::new("unbind", Body::Unbind),
        Seed::new("deliver_sm receipt", Body::DeliverSm(receipt)),
        Seed::new(
            "outbind",
            Body::Outbind(Outbind {
                system_id: "SMSC".into(),
                password: "secret".into(),
            }),
        ),
        Seed::new(
            "alert_notification",
            Body::AlertNotification(AlertNotification {
                source: Address::new(1, 1, "447700900001"),
                esme: Address::new(0, 0, "12345"),
                tlvs: tlvs(&[(tag::MS_AVAILABILITY_STATUS, &[0])]),
            }),
        ),
        // Responses: decoded leniently and never answered.
        Seed::new(
            "bind_transceiver_resp",
            Body::BindResp(
                BindKind::Transceiver,
                BindResp {
                    system_id: "SMSC".into(),
                    tlvs: bind_resp_tlvs,
                },
            ),
        ),
        Seed::new(
            "submit_sm_resp",
            Body::SubmitSmResp(MessageIdResp {
                message_id: "1000000001".into(),
            }),
        ),
        Seed::new(
            "deliver_sm_resp",
            Body::DeliverSmResp(MessageIdResp::default()),
        ),
        Seed::new(
            "submit_multi_resp",
            Body::SubmitMultiResp(SubmitMultiResp {
                message_id: "1000000002".into(),
                unsuccess: vec![
                    UnsuccessSme {
                        dest: Address::new(1, 1, "447700900009"),
                        error_status_code: 0x0B,
                    },
                    UnsuccessSme {
                        dest: Address::new(1, 1, "4477"),
                        error_status_code: 0x45,
                    },
                ],
            }),
        ),
        Seed::new(
            "data_sm_resp",
            Body::DataSmResp(DataSmResp {
                message_id: "1000000003".into(),
                tlvs: tlvs(&[
                    (tag::DELIVERY_FAILURE_REASON, &[1]),
                    (tag::ADDITIONAL_STATUS_INFO_TEXT, b"absent\0"),
                ]),
            }),
        ),
        Seed::new(
            "query_sm_resp",
            Body::QuerySmResp(QuerySmResp {
                message_id: "1000000001".into(),
                final_date: "261122150100000+".into(),
                message_state: 2,
                error_code: 0,
            }),
        ),
    ]
}

// ---------------------------------------------------------------------------
// Expected outcomes
// ---------------------------------------------------------------------------

/// The statuses the fields of a PDU kind can produce (a subset of checklist A5).
fn field_statuses(id: CommandId) -> &'static [S] {
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

fn tlvs_mut(body: &mut Body) -> Option<&mut Tlvs> {
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

fn with_tlvs_kept(body: &Body, keep: usize) -> Body {
    let mut body = body.clone();
    if let Some(t) = tlvs_mut(&mut body) {
        t.0.truncate(keep);
    }
    body
}

#[derive(Debug, PartialEq)]
enum Expect {
    Decodes(Box<Body>),
    Fails(S),
}

/// The exact outcome of cutting the seed's body to `cut` octets (cut < body length).
fn expect_cut(seed: &Seed, cut: usize) -> Expect {
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

fn put_u32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

fn word(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// The framer hands a well-framed PDU over whole, and leaves nothing behind.
fn frame(bytes: &[u8]) -> Result<Bytes, String> {
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
fn check_failure(err: &DecodeError, id: CommandId, seq: u32, allowed: &[S]) -> Result<S, String> {
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
fn check_stable(pdu: &Pdu) -> Result<(), String> {
    match Pdu::decode(&pdu.to_bytes()) {
        Ok(again) if again == *pdu => Ok(()),
        other => Err(format!("unstable: {pdu:?} re-decodes to {other:?}")),
    }
}

/// The seed's bytes with a new sequence number (and the status left at 0).
fn seeded(seed: &Seed, seq: u32) -> Vec<u8> {
    let mut bytes = seed.bytes.clone();
    put_u32(&mut bytes, 12, seq);
    bytes
}

// ---------------------------------------------------------------------------
// The mutation kinds. Each returns Ok(true) when the mutated PDU decoded.
// ---------------------------------------------------------------------------

fn truncated(seed: &Seed, cut: usize, rng: &mut Rng) -> Result<bool, String> {
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

fn bit_flipped(seed: &Seed, rng: &mut Rng) -> Result<bool, String> {
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

fn oversized(seed: &Seed, rng: &mut Rng) -> Result<bool, String> {
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

fn undersized(seed: &Seed, len: u32, rng: &mut Rng) -> Result<bool, String> {
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

fn header(seed: &Seed, rng: &mut Rng) -> Result<bool, String> {
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

fn extended(seed: &Seed, rng: &mut Rng) -> Result<bool, String> {
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
