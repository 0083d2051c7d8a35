//! Field-by-field comparison of our PDU with a rusmpp command.

use proptest::prelude::*;
use rusmpp::encode::{Encode as _, Length as _};
use rusmpp::tlvs::Tlv as RTlv;
use rusmpp::values::DestAddress;
use rusmpp::{Command, Pdu as RPdu};
use smpp_broker::smpp::pdu::*;

fn tlv_octets(t: &RTlv) -> (u16, Vec<u8>) {
    let mut buf = vec![0u8; t.length()];
    let n = t.encode(&mut buf);
    assert_eq!(n, buf.len());
    assert_eq!(
        usize::from(t.value_length()),
        buf.len() - 4,
        "value_length of {t:?}"
    );
    (u16::from(t.tag()), buf[4..].to_vec())
}

fn ours_tlvs(t: &Tlvs) -> Vec<(u16, Vec<u8>)> {
    t.0.iter().map(|t| (t.tag, t.value.to_vec())).collect()
}

fn theirs_tlvs<'a>(t: impl IntoIterator<Item = &'a RTlv>) -> Vec<(u16, Vec<u8>)> {
    t.into_iter().map(tlv_octets).collect()
}

macro_rules! eq {
    ($ours:expr, $theirs:expr, $what:expr) => {
        prop_assert_eq!(&$ours, &$theirs, "{}", $what)
    };
}

macro_rules! cmp_addr {
    ($a:expr, $ton:expr, $npi:expr, $addr:expr, $what:expr) => {{
        eq!($a.ton, u8::from($ton), concat!($what, "_ton"));
        eq!($a.npi, u8::from($npi), concat!($what, "_npi"));
        eq!($a.addr.as_str(), $addr.as_str(), $what);
    }};
}

macro_rules! cmp_bind {
    ($b:expr, $t:expr) => {{
        let b: &Bind = $b;
        eq!(b.system_id.as_str(), $t.system_id.as_str(), "system_id");
        eq!(b.password.as_str(), $t.password.as_str(), "password");
        eq!(
            b.system_type.as_str(),
            $t.system_type.as_str(),
            "system_type"
        );
        eq!(
            b.interface_version,
            u8::from($t.interface_version),
            "interface_version"
        );
        eq!(b.addr_ton, u8::from($t.addr_ton), "addr_ton");
        eq!(b.addr_npi, u8::from($t.addr_npi), "addr_npi");
        eq!(
            b.address_range.as_str(),
            $t.address_range.as_str(),
            "address_range"
        );
    }};
}

/// esm_class through short_message, and the TLVs.
macro_rules! cmp_sm_tail {
    ($sm:expr, $t:expr) => {{
        let sm: &Sm = $sm;
        eq!(
            sm.service_type.as_str(),
            $t.service_type.value().as_str(),
            "service_type"
        );
        cmp_addr!(
            sm.source,
            $t.source_addr_ton,
            $t.source_addr_npi,
            $t.source_addr,
            "source_addr"
        );
        eq!(sm.esm_class, u8::from($t.esm_class), "esm_class");
        eq!(sm.protocol_id, $t.protocol_id, "protocol_id");
        eq!(
            sm.priority_flag,
            u8::from($t.priority_flag),
            "priority_flag"
        );
        eq!(
            sm.schedule_delivery_time.as_str(),
            $t.schedule_delivery_time.as_str(),
            "schedule_delivery_time"
        );
        eq!(
            sm.validity_period.as_str(),
            $t.validity_period.as_str(),
            "validity_period"
        );
        eq!(
            sm.registered_delivery,
            u8::from($t.registered_delivery),
            "registered_delivery"
        );
        eq!(
            sm.replace_if_present_flag,
            u8::from($t.replace_if_present_flag),
            "replace_if_present_flag"
        );
        eq!(sm.data_coding, u8::from($t.data_coding), "data_coding");
        eq!(
            sm.sm_default_msg_id,
            $t.sm_default_msg_id,
            "sm_default_msg_id"
        );
        eq!(
            sm.short_message.len(),
            usize::from($t.sm_length()),
            "sm_length"
        );
        eq!(
            &sm.short_message[..],
            $t.short_message().as_ref(),
            "short_message"
        );
        eq!(ours_tlvs(&sm.tlvs), theirs_tlvs($t.tlvs()), "tlvs");
    }};
}

pub(super) fn same(ours: &Pdu, theirs: &Command) -> Result<(), TestCaseError> {
    eq!(
        ours.command_id().as_u32(),
        u32::from(theirs.id()),
        "command_id"
    );
    eq!(
        ours.command_status.0,
        u32::from(theirs.status()),
        "command_status"
    );
    eq!(
        ours.sequence_number,
        theirs.sequence_number(),
        "sequence_number"
    );
    match (&ours.body, theirs.pdu()) {
        // Header-only PDUs: rusmpp may or may not materialise an empty body.
        (Body::GenericNack, None | Some(RPdu::GenericNack))
        | (Body::Unbind, None | Some(RPdu::Unbind))
        | (Body::UnbindResp, None | Some(RPdu::UnbindResp))
        | (Body::EnquireLink, None | Some(RPdu::EnquireLink))
        | (Body::EnquireLinkResp, None | Some(RPdu::EnquireLinkResp))
        | (Body::CancelSmResp, None | Some(RPdu::CancelSmResp))
        | (Body::ReplaceSmResp, None | Some(RPdu::ReplaceSmResp)) => {}
        (Body::Bind(BindKind::Transmitter, b), Some(RPdu::BindTransmitter(t))) => cmp_bind!(b, t),
        (Body::Bind(BindKind::Receiver, b), Some(RPdu::BindReceiver(t))) => cmp_bind!(b, t),
        (Body::Bind(BindKind::Transceiver, b), Some(RPdu::BindTransceiver(t))) => cmp_bind!(b, t),
        (Body::BindResp(kind, b), Some(theirs)) => {
            let (system_id, tlv) = match (kind, theirs) {
                (BindKind::Transmitter, RPdu::BindTransmitterResp(t)) => {
                    (t.system_id.as_str(), t.sc_interface_version_tlv())
                }
                (BindKind::Receiver, RPdu::BindReceiverResp(t)) => {
                    (t.system_id.as_str(), t.sc_interface_version_tlv())
                }
                (BindKind::Transceiver, RPdu::BindTransceiverResp(t)) => {
                    (t.system_id.as_str(), t.sc_interface_version_tlv())
                }
                _ => return Err(TestCaseError::fail(format!("{ours:?} vs {theirs:?}"))),
            };
            eq!(b.system_id.as_str(), system_id, "system_id");
            eq!(ours_tlvs(&b.tlvs), theirs_tlvs(tlv), "tlvs");
        }
        (Body::Outbind(o), Some(RPdu::Outbind(t))) => {
            eq!(o.system_id.as_str(), t.system_id.as_str(), "system_id");
            eq!(o.password.as_str(), t.password.as_str(), "password");
        }
        (Body::SubmitSm(sm), Some(RPdu::SubmitSm(t))) => {
            cmp_addr!(
                sm.dest,
                t.dest_addr_ton,
                t.dest_addr_npi,
                t.destination_addr,
                "dest_addr"
            );
            cmp_sm_tail!(sm, t);
        }
        (Body::DeliverSm(sm), Some(RPdu::DeliverSm(t))) => {
            cmp_addr!(
                sm.dest,
                t.dest_addr_ton,
                t.dest_addr_npi,
                t.destination_addr,
                "dest_addr"
            );
            cmp_sm_tail!(sm, t);
        }
        (Body::SubmitSmResp(m), Some(RPdu::SubmitSmResp(t))) => {
            eq!(m.message_id.as_str(), t.message_id().as_str(), "message_id");
            eq!(t.tlvs().len(), 0, "no TLVs");
        }
        (Body::DeliverSmResp(m), Some(RPdu::DeliverSmResp(t))) => {
            eq!(m.message_id.as_str(), t.message_id().as_str(), "message_id");
            eq!(t.tlvs().len(), 0, "no TLVs");
        }
        (Body::SubmitMulti(m), Some(RPdu::SubmitMulti(t))) => {
            eq!(
                m.dests.len(),
                usize::from(t.number_of_dests()),
                "number_of_dests"
            );
            eq!(m.dests.len(), t.dest_address().len(), "dest_address count");
            for (i, (d, td)) in m.dests.iter().zip(t.dest_address()).enumerate() {
                match (d, td) {
                    (MultiDest::Sme(a), DestAddress::SmeAddress(s)) => {
                        cmp_addr!(
                            a,
                            s.dest_addr_ton,
                            s.dest_addr_npi,
                            s.destination_addr,
                            "dest"
                        );
                    }
                    (MultiDest::DistributionList(n), DestAddress::DistributionListName(l)) => {
                        eq!(n.as_str(), l.dl_name.as_str(), "dl_name");
                    }
                    _ => return Err(TestCaseError::fail(format!("dest {i}: {d:?} vs {td:?}"))),
                }
            }
            cmp_sm_tail!(&m.sm, t);
        }
        (Body::SubmitMultiResp(m), Some(RPdu::SubmitMultiResp(t))) => {
            eq!(m.message_id.as_str(), t.message_id.as_str(), "message_id");
            eq!(
                m.unsuccess.len(),
                usize::from(t.no_unsuccess()),
                "no_unsuccess"
            );
            eq!(
                m.unsuccess.len(),
                t.unsuccess_sme().len(),
                "unsuccess_sme count"
            );
            for (u, tu) in m.unsuccess.iter().zip(t.unsuccess_sme()) {
                cmp_addr!(
                    u.dest,
                    tu.dest_addr_ton,
                    tu.dest_addr_npi,
                    tu.destination_addr,
                    "dest"
                );
                eq!(
                    u.error_status_code,
                    u32::from(tu.error_status_code),
                    "error_status_code"
                );
            }
            eq!(t.tlvs().len(), 0, "no TLVs");
        }
        (Body::DataSm(d), Some(RPdu::DataSm(t))) => {
            eq!(
                d.service_type.as_str(),
                t.service_type.value().as_str(),
                "service_type"
            );
            cmp_addr!(
                d.source,
                t.source_addr_ton,
                t.source_addr_npi,
                t.source_addr,
                "source_addr"
            );
            cmp_addr!(
                d.dest,
                t.dest_addr_ton,
                t.dest_addr_npi,
                t.destination_addr,
                "dest_addr"
            );
            eq!(d.esm_class, u8::from(t.esm_class), "esm_class");
            eq!(
                d.registered_delivery,
                u8::from(t.registered_delivery),
                "registered_delivery"
            );
            eq!(d.data_coding, u8::from(t.data_coding), "data_coding");
            eq!(ours_tlvs(&d.tlvs), theirs_tlvs(t.tlvs()), "tlvs");
        }
        (Body::DataSmResp(d), Some(RPdu::DataSmResp(t))) => {
            eq!(d.message_id.as_str(), t.message_id().as_str(), "message_id");
            eq!(ours_tlvs(&d.tlvs), theirs_tlvs(t.tlvs()), "tlvs");
        }
        (Body::QuerySm(q), Some(RPdu::QuerySm(t))) => {
            eq!(q.message_id.as_str(), t.message_id.as_str(), "message_id");
            cmp_addr!(
                q.source,
                t.source_addr_ton,
                t.source_addr_npi,
                t.source_addr,
                "source_addr"
            );
        }
        (Body::QuerySmResp(q), Some(RPdu::QuerySmResp(t))) => {
            eq!(q.message_id.as_str(), t.message_id.as_str(), "message_id");
            eq!(q.final_date.as_str(), t.final_date.as_str(), "final_date");
            eq!(q.message_state, u8::from(t.message_state), "message_state");
            eq!(q.error_code, t.error_code, "error_code");
        }
        (Body::CancelSm(q), Some(RPdu::CancelSm(t))) => {
            eq!(
                q.service_type.as_str(),
                t.service_type.value().as_str(),
                "service_type"
            );
            eq!(q.message_id.as_str(), t.message_id.as_str(), "message_id");
            cmp_addr!(
                q.source,
                t.source_addr_ton,
                t.source_addr_npi,
                t.source_addr,
                "source_addr"
            );
            cmp_addr!(
                q.dest,
                t.dest_addr_ton,
                t.dest_addr_npi,
                t.destination_addr,
                "dest_addr"
            );
        }
        (Body::ReplaceSm(q), Some(RPdu::ReplaceSm(t))) => {
            eq!(q.message_id.as_str(), t.message_id.as_str(), "message_id");
            cmp_addr!(
                q.source,
                t.source_addr_ton,
                t.source_addr_npi,
                t.source_addr,
                "source_addr"
            );
            eq!(
                q.schedule_delivery_time.as_str(),
                t.schedule_delivery_time.as_str(),
                "schedule_delivery_time"
            );
            eq!(
                q.validity_period.as_str(),
                t.validity_period.as_str(),
                "validity_period"
            );
            eq!(
                q.registered_delivery,
                u8::from(t.registered_delivery),
                "registered_delivery"
            );
            eq!(
                q.sm_default_msg_id,
                t.sm_default_msg_id,
                "sm_default_msg_id"
            );
            eq!(
                q.short_message.len(),
                usize::from(t.sm_length()),
                "sm_length"
            );
            eq!(
                &q.short_message[..],
                t.short_message().as_ref(),
                "short_message"
            );
            prop_assert!(t.message_payload_tlv().is_none());
        }
        (Body::AlertNotification(a), Some(RPdu::AlertNotification(t))) => {
            cmp_addr!(
                a.source,
                t.source_addr_ton,
                t.source_addr_npi,
                t.source_addr,
                "source_addr"
            );
            cmp_addr!(
                a.esme,
                t.esme_addr_ton,
                t.esme_addr_npi,
                t.esme_addr,
                "esme_addr"
            );
            eq!(
                ours_tlvs(&a.tlvs),
                theirs_tlvs(t.ms_availability_status_tlv()),
                "tlvs"
            );
        }
        (o, t) => {
            return Err(TestCaseError::fail(format!(
                "different PDUs: {o:?} vs {t:?}"
            )))
        }
    }
    Ok(())
}
