//! Session states and the v3.4 table of which requests each state accepts
//! (docs/smpp34-checklist.md A4). The rules live here, beside the state, not in the I/O loop.

use super::pdu::{BindKind, CommandId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Connected, not bound.
    Open,
    Bound(BindKind),
    /// unbind was exchanged (either side); only the close is left.
    Unbinding,
}

/// What a session does with a request it received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Process,
    /// A request this state does not allow: `*_resp` ESME_RINVBNDSTS.
    WrongState,
    /// bind while bound: `bind_*_resp` ESME_RALYBND.
    AlreadyBound,
    /// A request only an SMSC sends (deliver_sm, outbind): generic_nack ESME_RINVCMDID.
    SmscOnly,
    /// alert_notification has no response; log it and go on.
    Ignore,
}

impl SessionState {
    pub fn is_bound(self) -> bool {
        matches!(self, SessionState::Bound(_))
    }

    /// Whether deliver_sm (receipts, MO) may be sent to this session.
    pub fn receives_deliveries(self) -> bool {
        matches!(
            self,
            SessionState::Bound(BindKind::Receiver | BindKind::Transceiver)
        )
    }

    /// The v3.4 operation matrix for requests from the ESME. `data_sm_in_rx` is the
    /// operator's choice for data_sm on a receiver bind (the spec tables disagree).
    pub fn admit(self, request: CommandId, data_sm_in_rx: bool) -> Admission {
        use BindKind::*;
        use CommandId::*;
        match (request, self) {
            (EnquireLink, _) => Admission::Process,
            (DeliverSm | Outbind, _) => Admission::SmscOnly,
            (AlertNotification, _) => Admission::Ignore,
            (BindTransmitter | BindReceiver | BindTransceiver, SessionState::Open) => {
                Admission::Process
            }
            (BindTransmitter | BindReceiver | BindTransceiver, _) => Admission::AlreadyBound,
            // Unbinding too: when both sides unbind at once, each answers the other.
            (Unbind, SessionState::Bound(_) | SessionState::Unbinding) => Admission::Process,
            (
                SubmitSm | SubmitMulti | QuerySm | CancelSm | ReplaceSm | DataSm,
                SessionState::Bound(Transmitter | Transceiver),
            ) => Admission::Process,
            (DataSm, SessionState::Bound(Receiver)) if data_sm_in_rx => Admission::Process,
            _ => Admission::WrongState,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BindKind::*;
    use CommandId::*;

    const TX: SessionState = SessionState::Bound(Transmitter);
    const RX: SessionState = SessionState::Bound(Receiver);
    const TRX: SessionState = SessionState::Bound(Transceiver);
    const OPEN: SessionState = SessionState::Open;

    #[test]
    fn the_a4_matrix() {
        use Admission::*;
        // request, OPEN, TX, RX, TRX
        let table = [
            (
                BindTransmitter,
                Process,
                AlreadyBound,
                AlreadyBound,
                AlreadyBound,
            ),
            (
                BindReceiver,
                Process,
                AlreadyBound,
                AlreadyBound,
                AlreadyBound,
            ),
            (
                BindTransceiver,
                Process,
                AlreadyBound,
                AlreadyBound,
                AlreadyBound,
            ),
            (Unbind, WrongState, Process, Process, Process),
            (SubmitSm, WrongState, Process, WrongState, Process),
            (SubmitMulti, WrongState, Process, WrongState, Process),
            (QuerySm, WrongState, Process, WrongState, Process),
            (CancelSm, WrongState, Process, WrongState, Process),
            (ReplaceSm, WrongState, Process, WrongState, Process),
            (DataSm, WrongState, Process, WrongState, Process),
            (EnquireLink, Process, Process, Process, Process),
            (DeliverSm, SmscOnly, SmscOnly, SmscOnly, SmscOnly),
            (Outbind, SmscOnly, SmscOnly, SmscOnly, SmscOnly),
            (AlertNotification, Ignore, Ignore, Ignore, Ignore),
        ];
        for (id, open, tx, rx, trx) in table {
            assert_eq!(OPEN.admit(id, false), open, "{id} in OPEN");
            assert_eq!(TX.admit(id, false), tx, "{id} in TX");
            assert_eq!(RX.admit(id, false), rx, "{id} in RX");
            assert_eq!(TRX.admit(id, false), trx, "{id} in TRX");
        }
    }

    #[test]
    fn crossing_unbinds_are_answered() {
        assert_eq!(
            SessionState::Unbinding.admit(Unbind, false),
            Admission::Process
        );
        assert_eq!(
            SessionState::Unbinding.admit(SubmitSm, false),
            Admission::WrongState
        );
    }

    #[test]
    fn data_sm_on_a_receiver_is_the_operators_choice() {
        assert_eq!(RX.admit(DataSm, true), Admission::Process);
        assert_eq!(RX.admit(DataSm, false), Admission::WrongState);
    }

    #[test]
    fn only_receivers_and_transceivers_get_deliveries() {
        assert!(!OPEN.receives_deliveries());
        assert!(!TX.receives_deliveries());
        assert!(RX.receives_deliveries());
        assert!(TRX.receives_deliveries());
        assert!(!SessionState::Unbinding.receives_deliveries());
    }
}
