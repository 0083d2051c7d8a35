//! The PDU bodies of SMPP v3.4 (docs/smpp34-checklist.md A6) and their wire layouts.
//!
//! Lengths: "c(N)" below is a C-Octet String whose maximum N counts the NUL.

use bytes::{BufMut, Bytes, BytesMut};

use super::command::{CommandId, CommandStatus as S};
use super::tlv::Tlvs;
use super::wire::{put_cstring, FieldError, Reader};

/// The three ways an ESME binds. Deserialized from an account's `bind_types`,
/// spelled as [`BindKind::name`] gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "lowercase")]
pub enum BindKind {
    Transmitter,
    Receiver,
    Transceiver,
}

impl BindKind {
    pub const ALL: [BindKind; 3] = [
        BindKind::Transmitter,
        BindKind::Receiver,
        BindKind::Transceiver,
    ];

    pub fn request_id(self) -> CommandId {
        match self {
            BindKind::Transmitter => CommandId::BindTransmitter,
            BindKind::Receiver => CommandId::BindReceiver,
            BindKind::Transceiver => CommandId::BindTransceiver,
        }
    }

    pub fn response_id(self) -> CommandId {
        match self {
            BindKind::Transmitter => CommandId::BindTransmitterResp,
            BindKind::Receiver => CommandId::BindReceiverResp,
            BindKind::Transceiver => CommandId::BindTransceiverResp,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BindKind::Transmitter => "transmitter",
            BindKind::Receiver => "receiver",
            BindKind::Transceiver => "transceiver",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bind {
    pub system_id: String,
    pub password: String,
    pub system_type: String,
    pub interface_version: u8,
    pub addr_ton: u8,
    pub addr_npi: u8,
    pub address_range: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BindResp {
    pub system_id: String,
    pub tlvs: Tlvs,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outbind {
    pub system_id: String,
    pub password: String,
}

/// A TON/NPI/address triple.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Address {
    pub ton: u8,
    pub npi: u8,
    pub addr: String,
}

impl Address {
    pub fn new(ton: u8, npi: u8, addr: impl Into<String>) -> Self {
        Address {
            ton,
            npi,
            addr: addr.into(),
        }
    }
}

/// submit_sm and deliver_sm share this layout. In a submit_multi, `dest` is unused:
/// the destinations travel in [`SubmitMulti::dests`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sm {
    pub service_type: String,
    pub source: Address,
    pub dest: Address,
    pub esm_class: u8,
    pub protocol_id: u8,
    pub priority_flag: u8,
    pub schedule_delivery_time: String,
    pub validity_period: String,
    pub registered_delivery: u8,
    pub replace_if_present_flag: u8,
    pub data_coding: u8,
    pub sm_default_msg_id: u8,
    /// Raw octets: may contain 0x00 (GSM '@').
    pub short_message: Bytes,
    pub tlvs: Tlvs,
}

/// submit_sm_resp and deliver_sm_resp.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageIdResp {
    pub message_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiDest {
    Sme(Address),
    DistributionList(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubmitMulti {
    pub dests: Vec<MultiDest>,
    /// Every other field; `sm.dest` is not on the wire.
    pub sm: Sm,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnsuccessSme {
    pub dest: Address,
    pub error_status_code: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubmitMultiResp {
    pub message_id: String,
    pub unsuccess: Vec<UnsuccessSme>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataSm {
    pub service_type: String,
    pub source: Address,
    pub dest: Address,
    pub esm_class: u8,
    pub registered_delivery: u8,
    pub data_coding: u8,
    pub tlvs: Tlvs,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataSmResp {
    pub message_id: String,
    pub tlvs: Tlvs,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuerySm {
    pub message_id: String,
    pub source: Address,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuerySmResp {
    pub message_id: String,
    pub final_date: String,
    pub message_state: u8,
    pub error_code: u8,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CancelSm {
    pub service_type: String,
    pub message_id: String,
    pub source: Address,
    pub dest: Address,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplaceSm {
    pub message_id: String,
    pub source: Address,
    pub schedule_delivery_time: String,
    pub validity_period: String,
    pub registered_delivery: u8,
    pub sm_default_msg_id: u8,
    pub short_message: Bytes,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertNotification {
    pub source: Address,
    pub esme: Address,
    pub tlvs: Tlvs,
}

/// Every PDU of SMPP v3.4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    GenericNack,
    Bind(BindKind, Bind),
    BindResp(BindKind, BindResp),
    Outbind(Outbind),
    Unbind,
    UnbindResp,
    EnquireLink,
    EnquireLinkResp,
    SubmitSm(Sm),
    SubmitSmResp(MessageIdResp),
    DeliverSm(Sm),
    DeliverSmResp(MessageIdResp),
    SubmitMulti(SubmitMulti),
    SubmitMultiResp(SubmitMultiResp),
    DataSm(DataSm),
    DataSmResp(DataSmResp),
    QuerySm(QuerySm),
    QuerySmResp(QuerySmResp),
    CancelSm(CancelSm),
    CancelSmResp,
    ReplaceSm(ReplaceSm),
    ReplaceSmResp,
    AlertNotification(AlertNotification),
}

// Field limits of v3.4 (A6). data_sm and alert_notification addresses are 65 in 3.4.
const SYSTEM_ID: usize = 16;
const PASSWORD: usize = 9;
const SYSTEM_TYPE: usize = 13;
const ADDRESS_RANGE: usize = 41;
const SERVICE_TYPE: usize = 6;
const ADDR: usize = 21;
const LONG_ADDR: usize = 65;
const MESSAGE_ID: usize = 65;
const DL_NAME: usize = 21;
const SM_LENGTH_MAX: usize = 254;

impl Body {
    pub fn command_id(&self) -> CommandId {
        match self {
            Body::GenericNack => CommandId::GenericNack,
            Body::Bind(kind, _) => kind.request_id(),
            Body::BindResp(kind, _) => kind.response_id(),
            Body::Outbind(_) => CommandId::Outbind,
            Body::Unbind => CommandId::Unbind,
            Body::UnbindResp => CommandId::UnbindResp,
            Body::EnquireLink => CommandId::EnquireLink,
            Body::EnquireLinkResp => CommandId::EnquireLinkResp,
            Body::SubmitSm(_) => CommandId::SubmitSm,
            Body::SubmitSmResp(_) => CommandId::SubmitSmResp,
            Body::DeliverSm(_) => CommandId::DeliverSm,
            Body::DeliverSmResp(_) => CommandId::DeliverSmResp,
            Body::SubmitMulti(_) => CommandId::SubmitMulti,
            Body::SubmitMultiResp(_) => CommandId::SubmitMultiResp,
            Body::DataSm(_) => CommandId::DataSm,
            Body::DataSmResp(_) => CommandId::DataSmResp,
            Body::QuerySm(_) => CommandId::QuerySm,
            Body::QuerySmResp(_) => CommandId::QuerySmResp,
            Body::CancelSm(_) => CommandId::CancelSm,
            Body::CancelSmResp => CommandId::CancelSmResp,
            Body::ReplaceSm(_) => CommandId::ReplaceSm,
            Body::ReplaceSmResp => CommandId::ReplaceSmResp,
            Body::AlertNotification(_) => CommandId::AlertNotification,
        }
    }

    /// Decodes the body of `id`. Responses are read leniently: an error response may
    /// come header-only, and then its fields are left empty.
    pub fn decode(id: CommandId, body: &[u8]) -> Result<Body, FieldError> {
        let r = &mut Reader::new(body);
        if id.is_response() && r.is_empty() {
            return Ok(Body::empty_response(id));
        }
        let decoded = match id {
            CommandId::GenericNack => Body::GenericNack,
            CommandId::BindTransmitter => Body::Bind(BindKind::Transmitter, decode_bind(r)?),
            CommandId::BindReceiver => Body::Bind(BindKind::Receiver, decode_bind(r)?),
            CommandId::BindTransceiver => Body::Bind(BindKind::Transceiver, decode_bind(r)?),
            CommandId::BindTransmitterResp => {
                Body::BindResp(BindKind::Transmitter, decode_bind_resp(r)?)
            }
            CommandId::BindReceiverResp => Body::BindResp(BindKind::Receiver, decode_bind_resp(r)?),
            CommandId::BindTransceiverResp => {
                Body::BindResp(BindKind::Transceiver, decode_bind_resp(r)?)
            }
            CommandId::Outbind => Body::Outbind(Outbind {
                system_id: r.cstring("system_id", SYSTEM_ID, S::ESME_RINVSYSID)?,
                password: r.cstring("password", PASSWORD, S::ESME_RINVPASWD)?,
            }),
            CommandId::Unbind => Body::Unbind,
            CommandId::UnbindResp => Body::UnbindResp,
            CommandId::EnquireLink => Body::EnquireLink,
            CommandId::EnquireLinkResp => Body::EnquireLinkResp,
            CommandId::SubmitSm => Body::SubmitSm(decode_sm(r)?),
            CommandId::DeliverSm => Body::DeliverSm(decode_sm(r)?),
            CommandId::SubmitSmResp => Body::SubmitSmResp(decode_message_id_resp(r)?),
            CommandId::DeliverSmResp => Body::DeliverSmResp(decode_message_id_resp(r)?),
            CommandId::SubmitMulti => Body::SubmitMulti(decode_submit_multi(r)?),
            CommandId::SubmitMultiResp => Body::SubmitMultiResp(decode_submit_multi_resp(r)?),
            CommandId::DataSm => Body::DataSm(DataSm {
                service_type: r.cstring("service_type", SERVICE_TYPE, S::ESME_RINVSERTYP)?,
                source: decode_address(r, LONG_ADDR, Side::Source)?,
                dest: decode_address(r, LONG_ADDR, Side::Destination)?,
                esm_class: r.u8("esm_class")?,
                registered_delivery: r.u8("registered_delivery")?,
                data_coding: r.u8("data_coding")?,
                tlvs: Tlvs::decode(r)?,
            }),
            CommandId::DataSmResp => Body::DataSmResp(DataSmResp {
                message_id: r.cstring("message_id", MESSAGE_ID, S::ESME_RINVMSGID)?,
                tlvs: Tlvs::decode(r)?,
            }),
            CommandId::QuerySm => Body::QuerySm(QuerySm {
                message_id: r.cstring("message_id", MESSAGE_ID, S::ESME_RINVMSGID)?,
                source: decode_address(r, ADDR, Side::Source)?,
            }),
            CommandId::QuerySmResp => Body::QuerySmResp(QuerySmResp {
                message_id: r.cstring("message_id", MESSAGE_ID, S::ESME_RINVMSGID)?,
                final_date: r.time("final_date", S::ESME_RINVEXPIRY)?,
                message_state: r.u8("message_state")?,
                error_code: r.u8("error_code")?,
            }),
            CommandId::CancelSm => Body::CancelSm(CancelSm {
                service_type: r.cstring("service_type", SERVICE_TYPE, S::ESME_RINVSERTYP)?,
                message_id: r.cstring("message_id", MESSAGE_ID, S::ESME_RINVMSGID)?,
                source: decode_address(r, ADDR, Side::Source)?,
                dest: decode_address(r, ADDR, Side::Destination)?,
            }),
            CommandId::CancelSmResp => Body::CancelSmResp,
            CommandId::ReplaceSm => Body::ReplaceSm(decode_replace_sm(r)?),
            CommandId::ReplaceSmResp => Body::ReplaceSmResp,
            CommandId::AlertNotification => Body::AlertNotification(AlertNotification {
                source: decode_address(r, LONG_ADDR, Side::Source)?,
                esme: decode_address(r, LONG_ADDR, Side::Esme)?,
                tlvs: Tlvs::decode(r)?,
            }),
        };
        // Octets after the mandatory fields of a PDU without TLVs are ignored (lenient, A2).
        Ok(decoded)
    }

    /// The body of a header-only response: every field empty.
    fn empty_response(id: CommandId) -> Body {
        match id {
            CommandId::BindTransmitterResp => {
                Body::BindResp(BindKind::Transmitter, BindResp::default())
            }
            CommandId::BindReceiverResp => Body::BindResp(BindKind::Receiver, BindResp::default()),
            CommandId::BindTransceiverResp => {
                Body::BindResp(BindKind::Transceiver, BindResp::default())
            }
            CommandId::SubmitSmResp => Body::SubmitSmResp(MessageIdResp::default()),
            CommandId::DeliverSmResp => Body::DeliverSmResp(MessageIdResp::default()),
            CommandId::SubmitMultiResp => Body::SubmitMultiResp(SubmitMultiResp::default()),
            CommandId::DataSmResp => Body::DataSmResp(DataSmResp::default()),
            CommandId::QuerySmResp => Body::QuerySmResp(QuerySmResp::default()),
            CommandId::UnbindResp => Body::UnbindResp,
            CommandId::EnquireLinkResp => Body::EnquireLinkResp,
            CommandId::CancelSmResp => Body::CancelSmResp,
            CommandId::ReplaceSmResp => Body::ReplaceSmResp,
            _ => Body::GenericNack,
        }
    }

    pub fn encode(&self, dst: &mut BytesMut) {
        match self {
            Body::GenericNack
            | Body::Unbind
            | Body::UnbindResp
            | Body::EnquireLink
            | Body::EnquireLinkResp
            | Body::CancelSmResp
            | Body::ReplaceSmResp => {}
            Body::Bind(_, b) => {
                put_cstring(dst, &b.system_id, SYSTEM_ID);
                put_cstring(dst, &b.password, PASSWORD);
                put_cstring(dst, &b.system_type, SYSTEM_TYPE);
                dst.put_u8(b.interface_version);
                dst.put_u8(b.addr_ton);
                dst.put_u8(b.addr_npi);
                put_cstring(dst, &b.address_range, ADDRESS_RANGE);
            }
            Body::BindResp(_, b) => {
                put_cstring(dst, &b.system_id, SYSTEM_ID);
                b.tlvs.encode(dst);
            }
            Body::Outbind(o) => {
                put_cstring(dst, &o.system_id, SYSTEM_ID);
                put_cstring(dst, &o.password, PASSWORD);
            }
            Body::SubmitSm(sm) | Body::DeliverSm(sm) => {
                put_cstring(dst, &sm.service_type, SERVICE_TYPE);
                put_address(dst, &sm.source, ADDR);
                put_address(dst, &sm.dest, ADDR);
                put_sm_tail(dst, sm);
            }
            Body::SubmitSmResp(r) | Body::DeliverSmResp(r) => {
                put_cstring(dst, &r.message_id, MESSAGE_ID)
            }
            Body::SubmitMulti(m) => {
                put_cstring(dst, &m.sm.service_type, SERVICE_TYPE);
                put_address(dst, &m.sm.source, ADDR);
                dst.put_u8(m.dests.len().min(255) as u8);
                for dest in m.dests.iter().take(255) {
                    match dest {
                        MultiDest::Sme(addr) => {
                            dst.put_u8(1);
                            put_address(dst, addr, ADDR);
                        }
                        MultiDest::DistributionList(name) => {
                            dst.put_u8(2);
                            put_cstring(dst, name, DL_NAME);
                        }
                    }
                }
                put_sm_tail(dst, &m.sm);
            }
            Body::SubmitMultiResp(r) => {
                put_cstring(dst, &r.message_id, MESSAGE_ID);
                dst.put_u8(r.unsuccess.len().min(255) as u8);
                for u in r.unsuccess.iter().take(255) {
                    put_address(dst, &u.dest, ADDR);
                    dst.put_u32(u.error_status_code);
                }
            }
            Body::DataSm(d) => {
                put_cstring(dst, &d.service_type, SERVICE_TYPE);
                put_address(dst, &d.source, LONG_ADDR);
                put_address(dst, &d.dest, LONG_ADDR);
                dst.put_u8(d.esm_class);
                dst.put_u8(d.registered_delivery);
                dst.put_u8(d.data_coding);
                d.tlvs.encode(dst);
            }
            Body::DataSmResp(r) => {
                put_cstring(dst, &r.message_id, MESSAGE_ID);
                r.tlvs.encode(dst);
            }
            Body::QuerySm(q) => {
                put_cstring(dst, &q.message_id, MESSAGE_ID);
                put_address(dst, &q.source, ADDR);
            }
            Body::QuerySmResp(q) => {
                put_cstring(dst, &q.message_id, MESSAGE_ID);
                put_cstring(dst, &q.final_date, 17);
                dst.put_u8(q.message_state);
                dst.put_u8(q.error_code);
            }
            Body::CancelSm(c) => {
                put_cstring(dst, &c.service_type, SERVICE_TYPE);
                put_cstring(dst, &c.message_id, MESSAGE_ID);
                put_address(dst, &c.source, ADDR);
                put_address(dst, &c.dest, ADDR);
            }
            Body::ReplaceSm(r) => {
                put_cstring(dst, &r.message_id, MESSAGE_ID);
                put_address(dst, &r.source, ADDR);
                put_cstring(dst, &r.schedule_delivery_time, 17);
                put_cstring(dst, &r.validity_period, 17);
                dst.put_u8(r.registered_delivery);
                dst.put_u8(r.sm_default_msg_id);
                put_short_message(dst, &r.short_message);
            }
            Body::AlertNotification(a) => {
                put_address(dst, &a.source, LONG_ADDR);
                put_address(dst, &a.esme, LONG_ADDR);
                a.tlvs.encode(dst);
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Side {
    Source,
    Destination,
    Esme,
}

fn decode_address(r: &mut Reader<'_>, max: usize, side: Side) -> Result<Address, FieldError> {
    let (ton, npi, addr, status) = match side {
        Side::Source => (
            "source_addr_ton",
            "source_addr_npi",
            "source_addr",
            S::ESME_RINVSRCADR,
        ),
        Side::Destination => (
            "dest_addr_ton",
            "dest_addr_npi",
            "destination_addr",
            S::ESME_RINVDSTADR,
        ),
        Side::Esme => (
            "esme_addr_ton",
            "esme_addr_npi",
            "esme_addr",
            S::ESME_RINVDSTADR,
        ),
    };
    Ok(Address {
        ton: r.u8(ton)?,
        npi: r.u8(npi)?,
        addr: r.cstring(addr, max, status)?,
    })
}

fn put_address(dst: &mut BytesMut, a: &Address, max: usize) {
    dst.put_u8(a.ton);
    dst.put_u8(a.npi);
    put_cstring(dst, &a.addr, max);
}

fn decode_bind(r: &mut Reader<'_>) -> Result<Bind, FieldError> {
    Ok(Bind {
        system_id: r.cstring("system_id", SYSTEM_ID, S::ESME_RINVSYSID)?,
        password: r.cstring("password", PASSWORD, S::ESME_RINVPASWD)?,
        system_type: r.cstring("system_type", SYSTEM_TYPE, S::ESME_RINVSYSTYP)?,
        interface_version: r.u8("interface_version")?,
        addr_ton: r.u8("addr_ton")?,
        addr_npi: r.u8("addr_npi")?,
        address_range: r.cstring("address_range", ADDRESS_RANGE, S::ESME_RINVSRCADR)?,
    })
}

fn decode_bind_resp(r: &mut Reader<'_>) -> Result<BindResp, FieldError> {
    Ok(BindResp {
        system_id: r.cstring("system_id", SYSTEM_ID, S::ESME_RINVSYSID)?,
        tlvs: Tlvs::decode(r)?,
    })
}

fn decode_message_id_resp(r: &mut Reader<'_>) -> Result<MessageIdResp, FieldError> {
    Ok(MessageIdResp {
        message_id: r.cstring("message_id", MESSAGE_ID, S::ESME_RINVMSGID)?,
    })
}

/// Reads sm_length and short_message. sm_length above 254 or beyond the body is
/// ESME_RINVMSGLEN (A5), not a truncated body.
fn decode_short_message(r: &mut Reader<'_>) -> Result<Bytes, FieldError> {
    let len = r.u8("sm_length")? as usize;
    if len > SM_LENGTH_MAX || len > r.remaining() {
        return Err(FieldError::new(
            "sm_length",
            "sm_length above 254 or beyond the end of the PDU",
            S::ESME_RINVMSGLEN,
        ));
    }
    Ok(Bytes::copy_from_slice(r.octets("short_message", len)?))
}

fn put_short_message(dst: &mut BytesMut, sm: &[u8]) {
    let len = sm.len().min(SM_LENGTH_MAX);
    dst.put_u8(len as u8);
    dst.put_slice(&sm[..len]);
}

/// Everything of submit_sm/deliver_sm/submit_multi after the addresses.
fn decode_sm_tail(r: &mut Reader<'_>, sm: &mut Sm) -> Result<(), FieldError> {
    sm.esm_class = r.u8("esm_class")?;
    sm.protocol_id = r.u8("protocol_id")?;
    sm.priority_flag = r.u8("priority_flag")?;
    sm.schedule_delivery_time = r.time("schedule_delivery_time", S::ESME_RINVSCHED)?;
    sm.validity_period = r.time("validity_period", S::ESME_RINVEXPIRY)?;
    sm.registered_delivery = r.u8("registered_delivery")?;
    sm.replace_if_present_flag = r.u8("replace_if_present_flag")?;
    sm.data_coding = r.u8("data_coding")?;
    sm.sm_default_msg_id = r.u8("sm_default_msg_id")?;
    sm.short_message = decode_short_message(r)?;
    sm.tlvs = Tlvs::decode(r)?;
    Ok(())
}

fn put_sm_tail(dst: &mut BytesMut, sm: &Sm) {
    dst.put_u8(sm.esm_class);
    dst.put_u8(sm.protocol_id);
    dst.put_u8(sm.priority_flag);
    put_cstring(dst, &sm.schedule_delivery_time, 17);
    put_cstring(dst, &sm.validity_period, 17);
    dst.put_u8(sm.registered_delivery);
    dst.put_u8(sm.replace_if_present_flag);
    dst.put_u8(sm.data_coding);
    dst.put_u8(sm.sm_default_msg_id);
    put_short_message(dst, &sm.short_message);
    sm.tlvs.encode(dst);
}

fn decode_sm(r: &mut Reader<'_>) -> Result<Sm, FieldError> {
    let mut sm = Sm {
        service_type: r.cstring("service_type", SERVICE_TYPE, S::ESME_RINVSERTYP)?,
        source: decode_address(r, ADDR, Side::Source)?,
        dest: decode_address(r, ADDR, Side::Destination)?,
        ..Sm::default()
    };
    decode_sm_tail(r, &mut sm)?;
    Ok(sm)
}

fn decode_submit_multi(r: &mut Reader<'_>) -> Result<SubmitMulti, FieldError> {
    let mut sm = Sm {
        service_type: r.cstring("service_type", SERVICE_TYPE, S::ESME_RINVSERTYP)?,
        source: decode_address(r, ADDR, Side::Source)?,
        ..Sm::default()
    };
    let count = r.u8("number_of_dests")?;
    if count == 0 || count > 254 {
        return Err(FieldError::new(
            "number_of_dests",
            "must be between 1 and 254",
            S::ESME_RINVNUMDESTS,
        ));
    }
    let mut dests = Vec::with_capacity(count as usize);
    for _ in 0..count {
        dests.push(match r.u8("dest_flag")? {
            1 => MultiDest::Sme(decode_address(r, ADDR, Side::Destination)?),
            2 => MultiDest::DistributionList(r.cstring("dl_name", DL_NAME, S::ESME_RINVDLNAME)?),
            _ => {
                return Err(FieldError::new(
                    "dest_flag",
                    "must be 1 or 2",
                    S::ESME_RINVDESTFLAG,
                ))
            }
        });
    }
    decode_sm_tail(r, &mut sm)?;
    Ok(SubmitMulti { dests, sm })
}

fn decode_submit_multi_resp(r: &mut Reader<'_>) -> Result<SubmitMultiResp, FieldError> {
    let message_id = r.cstring("message_id", MESSAGE_ID, S::ESME_RINVMSGID)?;
    let count = r.u8("no_unsuccess")?;
    let mut unsuccess = Vec::with_capacity(count as usize);
    for _ in 0..count {
        unsuccess.push(UnsuccessSme {
            dest: decode_address(r, ADDR, Side::Destination)?,
            error_status_code: r.u32("error_status_code")?,
        });
    }
    Ok(SubmitMultiResp {
        message_id,
        unsuccess,
    })
}

fn decode_replace_sm(r: &mut Reader<'_>) -> Result<ReplaceSm, FieldError> {
    Ok(ReplaceSm {
        message_id: r.cstring("message_id", MESSAGE_ID, S::ESME_RINVMSGID)?,
        source: decode_address(r, ADDR, Side::Source)?,
        schedule_delivery_time: r.time("schedule_delivery_time", S::ESME_RINVSCHED)?,
        validity_period: r.time("validity_period", S::ESME_RINVEXPIRY)?,
        registered_delivery: r.u8("registered_delivery")?,
        sm_default_msg_id: r.u8("sm_default_msg_id")?,
        short_message: decode_short_message(r)?,
    })
}
