//! Proptest strategies for valid PDUs of our codec, shared by the round-trip and
//! the differential tests.
//!
//! A [`Profile`] says which part of the value space to generate. The roundtrip tests
//! cover everything our codec accepts; the differential tests stay inside what rusmpp
//! 0.4 accepts too (why, in the module comment of `differential.rs`). Where the
//! two files used to differ only in weights or small range ends inside the same value
//! space, one strategy now serves both.

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::Union;
use smpp_broker::smpp::pdu::tlv::tag;
use smpp_broker::smpp::pdu::*;

/// Proptest settings of every property in these files: `cases` cases, and never a
/// regression file next to the tests (a failure prints its input).
pub fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Which values to generate.
#[derive(Clone, Copy, Debug)]
pub struct Profile {
    /// Characters of C-Octet Strings and times.
    pub alphabet: Alphabet,
    /// Which TLVs, and on which PDUs.
    pub tlvs: TlvProfile,
    /// Size of a data_sm address field, NUL included (65 in 3.4).
    pub data_sm_address: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alphabet {
    /// Mostly printable ASCII, sometimes any non-NUL octet (kept as Latin-1).
    Latin1,
    /// 0x20..=0x7E only.
    PrintableAscii,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlvProfile {
    /// Any tag (a fixed-length one at its length), 0..=5 of them on every PDU that
    /// carries TLVs.
    Any,
    /// Only TLVs rusmpp 0.4 decodes to the same octets, 0..=4 of them; bind_*_resp and
    /// alert_notification carry at most their one optional TLV.
    RusmppCompatible,
}

/// The known tags whose value length the codec fixes (tlv.rs `fixed_len`,
/// docs/smpp34-checklist.md A8).
pub const FIXED_LEN_TAGS: &[(u16, usize)] = &[
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

/// 3.4 tags our codec does not fix but rusmpp types (with their spec length).
const DEST_TELEMATICS_ID: u16 = 0x0008; // 2 octets
const QOS_TIME_TO_LIVE: u16 = 0x0017; // 4 octets
const USER_RESPONSE_CODE: u16 = 0x0205; // 1 octet

fn fixed_len(t: u16) -> Option<usize> {
    FIXED_LEN_TAGS
        .iter()
        .find(|(k, _)| *k == t)
        .map(|(_, n)| *n)
}

fn fixed_tags_of_len(n: usize) -> impl Iterator<Item = u16> {
    FIXED_LEN_TAGS
        .iter()
        .filter(move |(_, len)| *len == n)
        .map(|(t, _)| *t)
}

/// A TLV; a tag whose length the codec fixes gets that length.
fn fix_len(t: u16, mut value: Vec<u8>) -> Tlv {
    if let Some(n) = fixed_len(t) {
        value.resize(n, 0);
    }
    Tlv {
        tag: t,
        value: Bytes::from(value),
    }
}

fn cstring_tlv(t: u16, s: &str) -> Tlv {
    let mut tlvs = Tlvs::new();
    tlvs.push_cstring(t, s);
    tlvs.0.remove(0)
}

/// Octets as characters U+0000..=U+00FF (how the codec keeps C-Octet Strings).
pub fn latin1(bytes: Vec<u8>) -> String {
    bytes.into_iter().map(char::from).collect()
}

/// 0..=254 arbitrary octets, often with 0x00 (GSM '@') in them.
pub fn short_message() -> BoxedStrategy<Bytes> {
    prop_oneof![
        4 => vec(any::<u8>(), 0..=254),
        2 => vec(prop_oneof![Just(0u8), any::<u8>()], 0..=254),
        1 => Just(vec![0u8; 254]),
        1 => Just(Vec::new()),
    ]
    .prop_map(Bytes::from)
    .boxed()
}

pub fn sequence_number() -> BoxedStrategy<u32> {
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

pub fn bind_kind() -> BoxedStrategy<BindKind> {
    select(vec![
        BindKind::Transmitter,
        BindKind::Receiver,
        BindKind::Transceiver,
    ])
    .boxed()
}

pub fn header_only() -> BoxedStrategy<Body> {
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

impl Profile {
    /// Everything our codec accepts (roundtrip.rs).
    pub const FULL: Profile = Profile {
        alphabet: Alphabet::Latin1,
        tlvs: TlvProfile::Any,
        data_sm_address: 65,
    };

    /// What rusmpp 0.4 (v5.0) accepts too (differential.rs, whose module comment
    /// says why): printable ASCII, rusmpp-compatible TLVs, data_sm addresses of at most
    /// 20 characters (21 octets in v5).
    pub const RUSMPP: Profile = Profile {
        alphabet: Alphabet::PrintableAscii,
        tlvs: TlvProfile::RusmppCompatible,
        data_sm_address: 21,
    };

    fn latin1(self) -> bool {
        self.alphabet == Alphabet::Latin1
    }

    /// A C-Octet String value for a field of max `max` octets, NUL included: 0..=max-1
    /// characters, sometimes exactly at the boundary.
    pub fn cstr(self, max: usize) -> BoxedStrategy<String> {
        let mut arms = vec![(4, vec(0x20u8..=0x7E, 0..max).prop_map(latin1).boxed())];
        if self.latin1() {
            arms.push((1, vec(1u8..=0xFF, 0..max).prop_map(latin1).boxed()));
        }
        arms.push((1, vec(0x20u8..=0x7E, max - 1).prop_map(latin1).boxed()));
        arms.push((1, Just(String::new()).boxed()));
        Union::new_weighted(arms).boxed()
    }

    /// Fixed 1|17: empty, or exactly 16 characters.
    pub fn time(self) -> BoxedStrategy<String> {
        let mut arms = vec![
            Just(String::new()).boxed(),
            (vec(b'0'..=b'9', 15), select(vec![b'R', b'+', b'-']))
                .prop_map(|(mut v, p)| {
                    v.push(p);
                    latin1(v)
                })
                .boxed(),
            vec(0x20u8..=0x7E, 16).prop_map(latin1).boxed(),
        ];
        if self.latin1() {
            // Not a valid time, but the codec only frames it: any 16 non-NUL octets.
            arms.push(vec(1u8..=0xFF, 16).prop_map(latin1).boxed());
        }
        Union::new(arms).boxed()
    }

    pub fn address(self, max: usize) -> BoxedStrategy<Address> {
        (any::<u8>(), any::<u8>(), self.cstr(max))
            .prop_map(|(ton, npi, addr)| Address { ton, npi, addr })
            .boxed()
    }

    pub fn tlv(self) -> BoxedStrategy<Tlv> {
        match self.tlvs {
            TlvProfile::Any => self.any_tlv(),
            TlvProfile::RusmppCompatible => self.rusmpp_tlv(),
        }
    }

    fn any_tlv(self) -> BoxedStrategy<Tlv> {
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
            1 => self.cstr(65).prop_map(|s| cstring_tlv(tag::RECEIPTED_MESSAGE_ID, &s)),
            // Empty values are legal for variable-length tags.
            1 => Just(Tlv { tag: tag::CALLBACK_NUM, value: Bytes::new() }),
        ]
        .boxed()
    }

    /// A TLV both codecs decode to the same thing: known tags with their spec length,
    /// unknown tags only from a range unknown to both (0x1400..=0xFFFF).
    fn rusmpp_tlv(self) -> BoxedStrategy<Tlv> {
        // rusmpp keeps only bits 0x83 of ms_msg_wait_facilities: generated apart.
        let one_octet: Vec<u16> = fixed_tags_of_len(1)
            .filter(|t| *t != tag::MS_MSG_WAIT_FACILITIES)
            .chain([USER_RESPONSE_CODE])
            .collect();
        let two_octets: Vec<u16> = fixed_tags_of_len(2).chain([DEST_TELEMATICS_ID]).collect();
        let mk = |tag: u16, value: Vec<u8>| Tlv {
            tag,
            value: Bytes::from(value),
        };
        prop_oneof![
            3 => (0x1400u16..=0xFFFF, vec(any::<u8>(), 0..40)).prop_map(move |(t, v)| mk(t, v)),
            3 => (select(one_octet), any::<u8>()).prop_map(move |(t, b)| mk(t, vec![b])),
            1 => any::<u8>().prop_map(move |b| mk(tag::MS_MSG_WAIT_FACILITIES, vec![b & 0x83])),
            2 => (select(two_octets), any::<u16>())
                .prop_map(move |(t, v)| mk(t, v.to_be_bytes().to_vec())),
            1 => vec(any::<u8>(), 3).prop_map(move |v| mk(tag::NETWORK_ERROR_CODE, v)),
            1 => any::<u32>().prop_map(move |v| mk(QOS_TIME_TO_LIVE, v.to_be_bytes().to_vec())),
            2 => vec(any::<u8>(), 0..300).prop_map(move |v| mk(tag::MESSAGE_PAYLOAD, v)),
            1 => vec(any::<u8>(), 4..=19).prop_map(move |v| mk(tag::CALLBACK_NUM, v)),
            1 => self.cstr(65).prop_map(|s| cstring_tlv(tag::RECEIPTED_MESSAGE_ID, &s)),
            1 => self.cstr(256).prop_map(|s| cstring_tlv(tag::ADDITIONAL_STATUS_INFO_TEXT, &s)),
        ]
        .boxed()
    }

    pub fn tlvs(self) -> BoxedStrategy<Tlvs> {
        let most = match self.tlvs {
            TlvProfile::Any => 5,
            TlvProfile::RusmppCompatible => 4,
        };
        prop_oneof![
            1 => Just(Tlvs::new()),
            3 => vec(self.tlv(), 1..=most).prop_map(Tlvs),
        ]
        .boxed()
    }

    /// The TLVs of a PDU for which rusmpp reads a single optional u8 TLV, `only`.
    fn tlvs_or_only(self, only: u16) -> BoxedStrategy<Tlvs> {
        match self.tlvs {
            TlvProfile::Any => self.tlvs(),
            TlvProfile::RusmppCompatible => proptest::option::of(any::<u8>())
                .prop_map(move |v| {
                    let mut tlvs = Tlvs::new();
                    if let Some(v) = v {
                        tlvs.push_u8(only, v);
                    }
                    tlvs
                })
                .boxed(),
        }
    }

    // -----------------------------------------------------------------------
    // Body strategies, one per PDU kind
    // -----------------------------------------------------------------------

    pub fn sm(self) -> BoxedStrategy<Sm> {
        (
            (self.cstr(6), self.address(21), self.address(21)),
            (
                any::<u8>(),
                any::<u8>(),
                any::<u8>(),
                self.time(),
                self.time(),
            ),
            (any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>()),
            short_message(),
            self.tlvs(),
        )
            .prop_map(
                |(
                    (service_type, source, dest),
                    (
                        esm_class,
                        protocol_id,
                        priority_flag,
                        schedule_delivery_time,
                        validity_period,
                    ),
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

    pub fn bind(self) -> BoxedStrategy<Body> {
        (
            bind_kind(),
            self.cstr(16),
            self.cstr(9),
            self.cstr(13),
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            self.cstr(41),
        )
            .prop_map(
                |(kind, system_id, password, system_type, iv, addr_ton, addr_npi, range)| {
                    Body::Bind(
                        kind,
                        Bind {
                            system_id,
                            password,
                            system_type,
                            interface_version: iv,
                            addr_ton,
                            addr_npi,
                            address_range: range,
                        },
                    )
                },
            )
            .boxed()
    }

    pub fn bind_resp(self) -> BoxedStrategy<Body> {
        (
            bind_kind(),
            self.cstr(16),
            self.tlvs_or_only(tag::SC_INTERFACE_VERSION),
        )
            .prop_map(|(kind, system_id, tlvs)| Body::BindResp(kind, BindResp { system_id, tlvs }))
            .boxed()
    }

    pub fn outbind(self) -> BoxedStrategy<Body> {
        (self.cstr(16), self.cstr(9))
            .prop_map(|(system_id, password)| {
                Body::Outbind(Outbind {
                    system_id,
                    password,
                })
            })
            .boxed()
    }

    pub fn submit_sm(self) -> BoxedStrategy<Body> {
        self.sm().prop_map(Body::SubmitSm).boxed()
    }

    pub fn deliver_sm(self) -> BoxedStrategy<Body> {
        self.sm().prop_map(Body::DeliverSm).boxed()
    }

    pub fn submit_sm_resp(self) -> BoxedStrategy<Body> {
        self.cstr(65)
            .prop_map(|message_id| Body::SubmitSmResp(MessageIdResp { message_id }))
            .boxed()
    }

    pub fn deliver_sm_resp(self) -> BoxedStrategy<Body> {
        self.cstr(65)
            .prop_map(|message_id| Body::DeliverSmResp(MessageIdResp { message_id }))
            .boxed()
    }

    pub fn submit_multi(self) -> BoxedStrategy<Body> {
        let dest = prop_oneof![
            3 => self.address(21).prop_map(MultiDest::Sme),
            1 => self.cstr(21).prop_map(MultiDest::DistributionList),
        ];
        let dests = prop_oneof![
            4 => vec(dest.clone(), 1..=8),
            1 => vec(dest.clone(), 1..=254),
            1 => vec(dest, 254),
        ];
        (dests, self.sm())
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

    pub fn submit_multi_resp(self) -> BoxedStrategy<Body> {
        let unsuccess =
            (self.address(21), any::<u32>()).prop_map(|(dest, error_status_code)| UnsuccessSme {
                dest,
                error_status_code,
            });
        let list = prop_oneof![4 => vec(unsuccess.clone(), 0..=6), 1 => vec(unsuccess, 0..=254)];
        (self.cstr(65), list)
            .prop_map(|(message_id, unsuccess)| {
                Body::SubmitMultiResp(SubmitMultiResp {
                    message_id,
                    unsuccess,
                })
            })
            .boxed()
    }

    pub fn data_sm(self) -> BoxedStrategy<Body> {
        (
            self.cstr(6),
            self.address(self.data_sm_address),
            self.address(self.data_sm_address),
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            self.tlvs(),
        )
            .prop_map(
                |(service_type, source, dest, esm_class, registered, data_coding, tlvs)| {
                    Body::DataSm(DataSm {
                        service_type,
                        source,
                        dest,
                        esm_class,
                        registered_delivery: registered,
                        data_coding,
                        tlvs,
                    })
                },
            )
            .boxed()
    }

    pub fn data_sm_resp(self) -> BoxedStrategy<Body> {
        (self.cstr(65), self.tlvs())
            .prop_map(|(message_id, tlvs)| Body::DataSmResp(DataSmResp { message_id, tlvs }))
            .boxed()
    }

    pub fn query_sm(self) -> BoxedStrategy<Body> {
        (self.cstr(65), self.address(21))
            .prop_map(|(message_id, source)| Body::QuerySm(QuerySm { message_id, source }))
            .boxed()
    }

    pub fn query_sm_resp(self) -> BoxedStrategy<Body> {
        (self.cstr(65), self.time(), any::<u8>(), any::<u8>())
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

    pub fn cancel_sm(self) -> BoxedStrategy<Body> {
        (
            self.cstr(6),
            self.cstr(65),
            self.address(21),
            self.address(21),
        )
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

    pub fn replace_sm(self) -> BoxedStrategy<Body> {
        (
            self.cstr(65),
            self.address(21),
            self.time(),
            self.time(),
            any::<u8>(),
            any::<u8>(),
            short_message(),
        )
            .prop_map(
                |(message_id, source, sched, validity, registered_delivery, dflt, sm)| {
                    Body::ReplaceSm(ReplaceSm {
                        message_id,
                        source,
                        schedule_delivery_time: sched,
                        validity_period: validity,
                        registered_delivery,
                        sm_default_msg_id: dflt,
                        short_message: sm,
                    })
                },
            )
            .boxed()
    }

    pub fn alert_notification(self) -> BoxedStrategy<Body> {
        (
            self.address(65),
            self.address(65),
            self.tlvs_or_only(tag::MS_AVAILABILITY_STATUS),
        )
            .prop_map(|(source, esme, tlvs)| {
                Body::AlertNotification(AlertNotification { source, esme, tlvs })
            })
            .boxed()
    }

    /// Every response body, with arbitrary (valid) field values.
    pub fn any_response(self) -> BoxedStrategy<Body> {
        prop_oneof![
            self.bind_resp(),
            self.submit_sm_resp(),
            self.deliver_sm_resp(),
            self.submit_multi_resp(),
            self.data_sm_resp(),
            self.query_sm_resp(),
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
}
