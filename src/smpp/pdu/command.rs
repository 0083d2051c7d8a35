//! Command ids and command status values of SMPP v3.4.

use std::fmt;

/// The command ids a v3.4 server knows. Anything else (reserved ranges, the v5-only
/// broadcast PDUs) is unknown and answered with generic_nack ESME_RINVCMDID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum CommandId {
    GenericNack = 0x8000_0000,
    BindReceiver = 0x0000_0001,
    BindReceiverResp = 0x8000_0001,
    BindTransmitter = 0x0000_0002,
    BindTransmitterResp = 0x8000_0002,
    QuerySm = 0x0000_0003,
    QuerySmResp = 0x8000_0003,
    SubmitSm = 0x0000_0004,
    SubmitSmResp = 0x8000_0004,
    DeliverSm = 0x0000_0005,
    DeliverSmResp = 0x8000_0005,
    Unbind = 0x0000_0006,
    UnbindResp = 0x8000_0006,
    ReplaceSm = 0x0000_0007,
    ReplaceSmResp = 0x8000_0007,
    CancelSm = 0x0000_0008,
    CancelSmResp = 0x8000_0008,
    BindTransceiver = 0x0000_0009,
    BindTransceiverResp = 0x8000_0009,
    Outbind = 0x0000_000B,
    EnquireLink = 0x0000_0015,
    EnquireLinkResp = 0x8000_0015,
    SubmitMulti = 0x0000_0021,
    SubmitMultiResp = 0x8000_0021,
    AlertNotification = 0x0000_0102,
    DataSm = 0x0000_0103,
    DataSmResp = 0x8000_0103,
}

/// Bit 31 marks a response.
pub const RESPONSE_BIT: u32 = 0x8000_0000;

impl CommandId {
    pub const ALL: [CommandId; 27] = [
        CommandId::GenericNack,
        CommandId::BindReceiver,
        CommandId::BindReceiverResp,
        CommandId::BindTransmitter,
        CommandId::BindTransmitterResp,
        CommandId::QuerySm,
        CommandId::QuerySmResp,
        CommandId::SubmitSm,
        CommandId::SubmitSmResp,
        CommandId::DeliverSm,
        CommandId::DeliverSmResp,
        CommandId::Unbind,
        CommandId::UnbindResp,
        CommandId::ReplaceSm,
        CommandId::ReplaceSmResp,
        CommandId::CancelSm,
        CommandId::CancelSmResp,
        CommandId::BindTransceiver,
        CommandId::BindTransceiverResp,
        CommandId::Outbind,
        CommandId::EnquireLink,
        CommandId::EnquireLinkResp,
        CommandId::SubmitMulti,
        CommandId::SubmitMultiResp,
        CommandId::AlertNotification,
        CommandId::DataSm,
        CommandId::DataSmResp,
    ];

    pub fn from_u32(raw: u32) -> Option<CommandId> {
        CommandId::ALL.into_iter().find(|id| *id as u32 == raw)
    }

    pub fn as_u32(self) -> u32 {
        self as u32
    }

    pub fn is_response(self) -> bool {
        self as u32 & RESPONSE_BIT != 0
    }

    /// The response id of a request that has one. outbind and alert_notification have none.
    pub fn response(self) -> Option<CommandId> {
        match self {
            CommandId::Outbind | CommandId::AlertNotification => None,
            id if id.is_response() => None,
            id => CommandId::from_u32(id as u32 | RESPONSE_BIT),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CommandId::GenericNack => "generic_nack",
            CommandId::BindReceiver => "bind_receiver",
            CommandId::BindReceiverResp => "bind_receiver_resp",
            CommandId::BindTransmitter => "bind_transmitter",
            CommandId::BindTransmitterResp => "bind_transmitter_resp",
            CommandId::QuerySm => "query_sm",
            CommandId::QuerySmResp => "query_sm_resp",
            CommandId::SubmitSm => "submit_sm",
            CommandId::SubmitSmResp => "submit_sm_resp",
            CommandId::DeliverSm => "deliver_sm",
            CommandId::DeliverSmResp => "deliver_sm_resp",
            CommandId::Unbind => "unbind",
            CommandId::UnbindResp => "unbind_resp",
            CommandId::ReplaceSm => "replace_sm",
            CommandId::ReplaceSmResp => "replace_sm_resp",
            CommandId::CancelSm => "cancel_sm",
            CommandId::CancelSmResp => "cancel_sm_resp",
            CommandId::BindTransceiver => "bind_transceiver",
            CommandId::BindTransceiverResp => "bind_transceiver_resp",
            CommandId::Outbind => "outbind",
            CommandId::EnquireLink => "enquire_link",
            CommandId::EnquireLinkResp => "enquire_link_resp",
            CommandId::SubmitMulti => "submit_multi",
            CommandId::SubmitMultiResp => "submit_multi_resp",
            CommandId::AlertNotification => "alert_notification",
            CommandId::DataSm => "data_sm",
            CommandId::DataSmResp => "data_sm_resp",
        }
    }
}

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A command_status value. Unknown values (vendor range 0x400–0x4FF included) are kept as they are.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandStatus(pub u32);

macro_rules! statuses {
    ($($name:ident = $value:expr),* $(,)?) => {
        impl CommandStatus {
            $(pub const $name: CommandStatus = CommandStatus($value);)*

            /// The v3.4 name, or None for reserved and vendor values.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }
    };
}

statuses! {
    ESME_ROK = 0x00,
    ESME_RINVMSGLEN = 0x01,
    ESME_RINVCMDLEN = 0x02,
    ESME_RINVCMDID = 0x03,
    ESME_RINVBNDSTS = 0x04,
    ESME_RALYBND = 0x05,
    ESME_RINVPRTFLG = 0x06,
    ESME_RINVREGDLVFLG = 0x07,
    ESME_RSYSERR = 0x08,
    ESME_RINVSRCADR = 0x0A,
    ESME_RINVDSTADR = 0x0B,
    ESME_RINVMSGID = 0x0C,
    ESME_RBINDFAIL = 0x0D,
    ESME_RINVPASWD = 0x0E,
    ESME_RINVSYSID = 0x0F,
    ESME_RCANCELFAIL = 0x11,
    ESME_RREPLACEFAIL = 0x13,
    ESME_RMSGQFUL = 0x14,
    ESME_RINVSERTYP = 0x15,
    ESME_RINVNUMDESTS = 0x33,
    ESME_RINVDLNAME = 0x34,
    ESME_RINVDESTFLAG = 0x40,
    ESME_RINVSUBREP = 0x42,
    ESME_RINVESMCLASS = 0x43,
    ESME_RCNTSUBDL = 0x44,
    ESME_RSUBMITFAIL = 0x45,
    ESME_RINVSRCTON = 0x48,
    ESME_RINVSRCNPI = 0x49,
    ESME_RINVDSTTON = 0x50,
    ESME_RINVDSTNPI = 0x51,
    ESME_RINVSYSTYP = 0x53,
    ESME_RINVREPFLAG = 0x54,
    ESME_RINVNUMMSGS = 0x55,
    ESME_RTHROTTLED = 0x58,
    ESME_RINVSCHED = 0x61,
    ESME_RINVEXPIRY = 0x62,
    ESME_RINVDFTMSGID = 0x63,
    ESME_RX_T_APPN = 0x64,
    ESME_RX_P_APPN = 0x65,
    ESME_RX_R_APPN = 0x66,
    ESME_RQUERYFAIL = 0x67,
    ESME_RINVOPTPARSTREAM = 0xC0,
    ESME_ROPTPARNOTALLWD = 0xC1,
    ESME_RINVPARLEN = 0xC2,
    ESME_RMISSINGOPTPARAM = 0xC3,
    ESME_RINVOPTPARAMVAL = 0xC4,
    ESME_RDELIVERYFAILURE = 0xFE,
    ESME_RUNKNOWNERR = 0xFF,
}

impl CommandStatus {
    pub fn is_ok(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Debug for CommandStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl CommandStatus {
    /// Its name, or its value in hexadecimal when it has none: for labels.
    pub fn label(self) -> String {
        self.name()
            .map_or_else(|| format!("0x{:08X}", self.0), str::to_owned)
    }
}

impl fmt::Display for CommandStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}(0x{:08X})", self.0),
            None => write!(f, "0x{:08X}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_with_a_response_maps_to_it() {
        assert_eq!(
            CommandId::SubmitSm.response(),
            Some(CommandId::SubmitSmResp)
        );
        assert_eq!(
            CommandId::BindTransceiver.response(),
            Some(CommandId::BindTransceiverResp)
        );
        assert_eq!(CommandId::DataSm.response(), Some(CommandId::DataSmResp));
        assert_eq!(CommandId::Outbind.response(), None);
        assert_eq!(CommandId::AlertNotification.response(), None);
        assert_eq!(CommandId::SubmitSmResp.response(), None);
        assert_eq!(CommandId::GenericNack.response(), None);
    }

    #[test]
    fn ids_round_trip_and_v5_ids_are_unknown() {
        for id in CommandId::ALL {
            assert_eq!(CommandId::from_u32(id.as_u32()), Some(id));
        }
        for v5_only in [0x111, 0x112, 0x113, 0x8000_0111] {
            assert_eq!(CommandId::from_u32(v5_only), None);
        }
    }

    #[test]
    fn status_display_names_known_values_and_keeps_vendor_ones() {
        assert_eq!(
            CommandStatus::ESME_RTHROTTLED.to_string(),
            "ESME_RTHROTTLED(0x00000058)"
        );
        assert_eq!(CommandStatus(0x400).to_string(), "0x00000400");
    }
}
