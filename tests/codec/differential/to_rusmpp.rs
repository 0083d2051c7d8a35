//! Building rusmpp values from ours, with rusmpp's own constructors.

use rusmpp::pdus as r;
use rusmpp::tlvs::{
    MessageDeliveryRequestTlvValue as DeliveryReqTlv,
    MessageDeliveryResponseTlvValue as DeliveryRespTlv,
    MessageSubmissionRequestTlvValue as SubmissionReqTlv, TlvTag,
};
use rusmpp::types::{AnyOctetString, COctetString, EmptyOrFullCOctetString, OctetString};
use rusmpp::values::{
    DataCoding, DestAddress, DistributionListName, ErrorCodeNetworkType, EsmClass,
    InterfaceVersion, MessagePayload, MessageState, MsAvailabilityStatus, NetworkErrorCode, Npi,
    PriorityFlag, RegisteredDelivery, ReplaceIfPresentFlag, ServiceType, SmeAddress, Ton,
    UnsuccessSme as RUnsuccessSme, UserMessageReference,
};
use rusmpp::{Command, CommandStatus as RStatus, Pdu as RPdu};
use smpp_broker::smpp::pdu::tlv::tag;
use smpp_broker::smpp::pdu::*;

fn c<const MIN: usize, const MAX: usize>(s: &str) -> COctetString<MIN, MAX> {
    COctetString::from_string(s.to_string()).expect("valid C-Octet String for rusmpp")
}

fn t17(s: &str) -> EmptyOrFullCOctetString<17> {
    EmptyOrFullCOctetString::from_string(s.to_string()).expect("valid time for rusmpp")
}

fn octets(b: &[u8]) -> OctetString<0, 255> {
    OctetString::from_slice(b).expect("short_message within rusmpp limits")
}

fn any_octets(b: &[u8]) -> AnyOctetString {
    AnyOctetString::from_slice(b)
}

fn u16_of(v: &[u8]) -> u16 {
    u16::from_be_bytes([v[0], v[1]])
}

fn other_tag(t: &Tlv) -> (TlvTag, AnyOctetString) {
    (TlvTag::from(t.tag), any_octets(&t.value))
}

/// submit_sm, submit_multi, data_sm TLVs: typed where rusmpp's enum has the tag.
fn submission_tlv(t: &Tlv) -> SubmissionReqTlv {
    let v = &t.value[..];
    match t.tag {
        tag::SAR_MSG_REF_NUM => SubmissionReqTlv::SarMsgRefNum(u16_of(v)),
        tag::SAR_TOTAL_SEGMENTS => SubmissionReqTlv::SarTotalSegments(v[0]),
        tag::SAR_SEGMENT_SEQNUM => SubmissionReqTlv::SarSegmentSeqnum(v[0]),
        tag::SOURCE_PORT => SubmissionReqTlv::SourcePort(u16_of(v)),
        tag::DESTINATION_PORT => SubmissionReqTlv::DestPort(u16_of(v)),
        tag::USER_MESSAGE_REFERENCE => {
            SubmissionReqTlv::UserMessageReference(UserMessageReference::new(u16_of(v)))
        }
        tag::MESSAGE_PAYLOAD => {
            SubmissionReqTlv::MessagePayload(MessagePayload::new(any_octets(v)))
        }
        _ => {
            let (tag, value) = other_tag(t);
            SubmissionReqTlv::Other { tag, value }
        }
    }
}

/// deliver_sm TLVs.
fn delivery_tlv(t: &Tlv) -> DeliveryReqTlv {
    let v = &t.value[..];
    match t.tag {
        tag::SAR_MSG_REF_NUM => DeliveryReqTlv::SarMsgRefNum(u16_of(v)),
        tag::SAR_TOTAL_SEGMENTS => DeliveryReqTlv::SarTotalSegments(v[0]),
        tag::SAR_SEGMENT_SEQNUM => DeliveryReqTlv::SarSegmentSeqnum(v[0]),
        tag::SOURCE_PORT => DeliveryReqTlv::SourcePort(u16_of(v)),
        tag::DESTINATION_PORT => DeliveryReqTlv::DestPort(u16_of(v)),
        tag::USER_MESSAGE_REFERENCE => {
            DeliveryReqTlv::UserMessageReference(UserMessageReference::new(u16_of(v)))
        }
        tag::MESSAGE_PAYLOAD => DeliveryReqTlv::MessagePayload(MessagePayload::new(any_octets(v))),
        tag::MESSAGE_STATE => DeliveryReqTlv::MessageState(MessageState::from(v[0])),
        tag::NETWORK_ERROR_CODE => DeliveryReqTlv::NetworkErrorCode(NetworkErrorCode::new(
            ErrorCodeNetworkType::from(v[0]),
            u16_of(&v[1..]),
        )),
        tag::RECEIPTED_MESSAGE_ID => {
            DeliveryReqTlv::ReceiptedMessageId(COctetString::from_slice(v).expect("cstring"))
        }
        _ => {
            let (tag, value) = other_tag(t);
            DeliveryReqTlv::Other { tag, value }
        }
    }
}

/// data_sm_resp TLVs.
fn delivery_resp_tlv(t: &Tlv) -> DeliveryRespTlv {
    let v = &t.value[..];
    match t.tag {
        tag::NETWORK_ERROR_CODE => DeliveryRespTlv::NetworkErrorCode(NetworkErrorCode::new(
            ErrorCodeNetworkType::from(v[0]),
            u16_of(&v[1..]),
        )),
        tag::ADDITIONAL_STATUS_INFO_TEXT => {
            DeliveryRespTlv::AdditionalStatusInfoText(COctetString::from_slice(v).expect("cstring"))
        }
        _ => {
            let (tag, value) = other_tag(t);
            DeliveryRespTlv::Other { tag, value }
        }
    }
}

fn sme(a: &Address) -> SmeAddress {
    SmeAddress::new(Ton::from(a.ton), Npi::from(a.npi), c(&a.addr))
}

macro_rules! fill_sm {
    ($t:expr, $sm:expr) => {{
        let sm: &Sm = $sm;
        $t.service_type = ServiceType::new(c(&sm.service_type));
        $t.source_addr_ton = Ton::from(sm.source.ton);
        $t.source_addr_npi = Npi::from(sm.source.npi);
        $t.source_addr = c(&sm.source.addr);
        $t.esm_class = EsmClass::from(sm.esm_class);
        $t.protocol_id = sm.protocol_id;
        $t.priority_flag = PriorityFlag::from(sm.priority_flag);
        $t.schedule_delivery_time = t17(&sm.schedule_delivery_time);
        $t.validity_period = t17(&sm.validity_period);
        $t.registered_delivery = RegisteredDelivery::from(sm.registered_delivery);
        $t.replace_if_present_flag = ReplaceIfPresentFlag::from(sm.replace_if_present_flag);
        $t.data_coding = DataCoding::from(sm.data_coding);
        $t.sm_default_msg_id = sm.sm_default_msg_id;
        $t.set_short_message(octets(&sm.short_message));
    }};
}

macro_rules! bind_to_rusmpp {
    ($ty:ty, $b:expr) => {{
        let b: &Bind = $b;
        <$ty>::builder()
            .system_id(c(&b.system_id))
            .password(c(&b.password))
            .system_type(c(&b.system_type))
            .interface_version(InterfaceVersion::from(b.interface_version))
            .addr_ton(Ton::from(b.addr_ton))
            .addr_npi(Npi::from(b.addr_npi))
            .address_range(c(&b.address_range))
            .build()
    }};
}

pub(super) fn to_rusmpp(pdu: &Pdu) -> Command {
    let status = RStatus::from(pdu.command_status.0);
    let body: RPdu = match &pdu.body {
        Body::GenericNack => RPdu::GenericNack,
        Body::Unbind => RPdu::Unbind,
        Body::UnbindResp => RPdu::UnbindResp,
        Body::EnquireLink => RPdu::EnquireLink,
        Body::EnquireLinkResp => RPdu::EnquireLinkResp,
        Body::CancelSmResp => RPdu::CancelSmResp,
        Body::ReplaceSmResp => RPdu::ReplaceSmResp,
        Body::Bind(BindKind::Transmitter, b) => bind_to_rusmpp!(r::BindTransmitter, b).into(),
        Body::Bind(BindKind::Receiver, b) => bind_to_rusmpp!(r::BindReceiver, b).into(),
        Body::Bind(BindKind::Transceiver, b) => bind_to_rusmpp!(r::BindTransceiver, b).into(),
        Body::BindResp(kind, b) => {
            let iv = b
                .tlvs
                .get_u8(tag::SC_INTERFACE_VERSION)
                .map(InterfaceVersion::from);
            let id = c(&b.system_id);
            match kind {
                BindKind::Transmitter => r::BindTransmitterResp::new(id, iv).into(),
                BindKind::Receiver => r::BindReceiverResp::new(id, iv).into(),
                BindKind::Transceiver => r::BindTransceiverResp::new(id, iv).into(),
            }
        }
        Body::Outbind(o) => r::Outbind::new(c(&o.system_id), c(&o.password)).into(),
        Body::SubmitSm(sm) => {
            let mut t = r::SubmitSm::default();
            fill_sm!(t, sm);
            t.dest_addr_ton = Ton::from(sm.dest.ton);
            t.dest_addr_npi = Npi::from(sm.dest.npi);
            t.destination_addr = c(&sm.dest.addr);
            t.set_tlvs(sm.tlvs.0.iter().map(submission_tlv).collect());
            t.into()
        }
        Body::DeliverSm(sm) => {
            let mut t = r::DeliverSm::default();
            fill_sm!(t, sm);
            t.dest_addr_ton = Ton::from(sm.dest.ton);
            t.dest_addr_npi = Npi::from(sm.dest.npi);
            t.destination_addr = c(&sm.dest.addr);
            t.set_tlvs(sm.tlvs.0.iter().map(delivery_tlv).collect());
            t.into()
        }
        Body::SubmitSmResp(m) => r::SubmitSmResp::new(c(&m.message_id), Vec::new()).into(),
        Body::DeliverSmResp(m) => r::DeliverSmResp::new(c(&m.message_id), Vec::new()).into(),
        Body::SubmitMulti(m) => {
            let mut t = r::SubmitMulti::default();
            fill_sm!(t, &m.sm);
            t.set_dest_address(
                m.dests
                    .iter()
                    .map(|d| match d {
                        MultiDest::Sme(a) => DestAddress::SmeAddress(sme(a)),
                        MultiDest::DistributionList(n) => {
                            DestAddress::DistributionListName(DistributionListName::new(c(n)))
                        }
                    })
                    .collect(),
            );
            t.set_tlvs(m.sm.tlvs.0.iter().map(submission_tlv).collect());
            t.into()
        }
        Body::SubmitMultiResp(m) => r::SubmitMultiResp::new(
            c(&m.message_id),
            m.unsuccess
                .iter()
                .map(|u| {
                    RUnsuccessSme::new(
                        Ton::from(u.dest.ton),
                        Npi::from(u.dest.npi),
                        c(&u.dest.addr),
                        RStatus::from(u.error_status_code),
                    )
                })
                .collect(),
            Vec::new(),
        )
        .into(),
        Body::DataSm(d) => {
            let mut t = r::DataSm::default();
            t.service_type = ServiceType::new(c(&d.service_type));
            t.source_addr_ton = Ton::from(d.source.ton);
            t.source_addr_npi = Npi::from(d.source.npi);
            t.source_addr = c(&d.source.addr);
            t.dest_addr_ton = Ton::from(d.dest.ton);
            t.dest_addr_npi = Npi::from(d.dest.npi);
            t.destination_addr = c(&d.dest.addr);
            t.esm_class = EsmClass::from(d.esm_class);
            t.registered_delivery = RegisteredDelivery::from(d.registered_delivery);
            t.data_coding = DataCoding::from(d.data_coding);
            t.set_tlvs(d.tlvs.0.iter().map(submission_tlv).collect());
            t.into()
        }
        Body::DataSmResp(d) => r::DataSmResp::new(
            c(&d.message_id),
            d.tlvs.0.iter().map(delivery_resp_tlv).collect(),
        )
        .into(),
        Body::QuerySm(q) => r::QuerySm::new(
            c(&q.message_id),
            Ton::from(q.source.ton),
            Npi::from(q.source.npi),
            c(&q.source.addr),
        )
        .into(),
        Body::QuerySmResp(q) => r::QuerySmResp::new(
            c(&q.message_id),
            t17(&q.final_date),
            MessageState::from(q.message_state),
            q.error_code,
        )
        .into(),
        Body::CancelSm(q) => r::CancelSm::new(
            ServiceType::new(c(&q.service_type)),
            c(&q.message_id),
            Ton::from(q.source.ton),
            Npi::from(q.source.npi),
            c(&q.source.addr),
            Ton::from(q.dest.ton),
            Npi::from(q.dest.npi),
            c(&q.dest.addr),
        )
        .into(),
        Body::ReplaceSm(q) => {
            let mut t = r::ReplaceSm::default();
            t.message_id = c(&q.message_id);
            t.source_addr_ton = Ton::from(q.source.ton);
            t.source_addr_npi = Npi::from(q.source.npi);
            t.source_addr = c(&q.source.addr);
            t.schedule_delivery_time = t17(&q.schedule_delivery_time);
            t.validity_period = t17(&q.validity_period);
            t.registered_delivery = RegisteredDelivery::from(q.registered_delivery);
            t.sm_default_msg_id = q.sm_default_msg_id;
            t.set_short_message(octets(&q.short_message));
            t.into()
        }
        Body::AlertNotification(a) => r::AlertNotification::new(
            Ton::from(a.source.ton),
            Npi::from(a.source.npi),
            c(&a.source.addr),
            Ton::from(a.esme.ton),
            Npi::from(a.esme.npi),
            c(&a.esme.addr),
            a.tlvs
                .get_u8(tag::MS_AVAILABILITY_STATUS)
                .map(MsAvailabilityStatus::from),
        )
        .into(),
    };
    Command::new(status, pdu.sequence_number, body)
}
