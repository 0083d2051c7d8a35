//! The boundary between SMPP sessions and the rest of the broker: what a session
//! asks for when an ESME sends a message request (submit_sm, data_sm, submit_multi,
//! query_sm, cancel_sm, replace_sm).

use std::sync::Arc;

use futures::future::BoxFuture;

use super::pdu::{CommandId, CommandStatus, Pdu};

/// Who sent a request: the bound account and the session it came on.
#[derive(Debug, Clone)]
pub struct Requester {
    pub system_id: Arc<str>,
    pub session_id: u64,
}

/// Answers message requests. The session has already checked the bind state, the
/// in-flight window and the account's throughput; the service owns everything about
/// the message itself and returns the complete response PDU (same sequence number).
pub trait MessageService: Send + Sync + 'static {
    fn handle(&self, requester: Requester, request: Pdu) -> BoxFuture<'static, Pdu>;
}

/// The service used until the durable outbox exists: it accepts nothing and says so,
/// rather than handing out message ids for messages that are not stored.
#[derive(Debug, Default)]
pub struct NoOutbox;

impl MessageService for NoOutbox {
    fn handle(&self, requester: Requester, request: Pdu) -> BoxFuture<'static, Pdu> {
        let id = request.command_id();
        let status = match id {
            CommandId::QuerySm => CommandStatus::ESME_RQUERYFAIL,
            CommandId::CancelSm => CommandStatus::ESME_RCANCELFAIL,
            CommandId::ReplaceSm => CommandStatus::ESME_RREPLACEFAIL,
            _ => CommandStatus::ESME_RSUBMITFAIL,
        };
        tracing::warn!(
            system_id = %requester.system_id,
            command = %id,
            "refused: this build has no message outbox yet"
        );
        let response = id.response().unwrap_or(CommandId::GenericNack);
        let answer = Pdu::error_response(response, status, request.sequence_number);
        Box::pin(async move { answer })
    }
}
