//! The valid seeds the mutations start from, each with its body layout: which
//! octet range holds a mandatory field, sm_length, short_message or a TLV.

use bytes::Bytes;
use smpp_broker::smpp::pdu::tlv::tag;
use smpp_broker::smpp::pdu::*;

/// What a body octet range holds, which decides the status of a cut inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seg {
    /// Any mandatory field (integers, C-Octet Strings, times, counts, dest_flag).
    Field,
    SmLength,
    ShortMessage,
    Tlv,
}

/// The body layout of a PDU, computed from its fields independently of the encoder.
#[derive(Default)]
pub(super) struct Layout {
    pos: usize,
    pub(super) segs: Vec<(usize, usize, Seg)>,
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

pub(super) struct Seed {
    pub(super) name: &'static str,
    pub(super) body: Body,
    /// The encoded PDU (status 0, sequence number 1); mutations patch the sequence.
    pub(super) bytes: Vec<u8>,
    pub(super) layout: Layout,
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

    pub(super) fn id(&self) -> CommandId {
        self.body.command_id()
    }

    pub(super) fn body_len(&self) -> usize {
        self.bytes.len() - HEADER_LEN
    }

    pub(super) fn takes_tlvs(&self) -> bool {
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

pub(super) fn seeds() -> Vec<Seed> {
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
