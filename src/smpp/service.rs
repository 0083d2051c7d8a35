//! The boundary between SMPP sessions and the rest of the broker: what a session
//! asks for when an ESME sends a message request (submit_sm, data_sm, submit_multi,
//! query_sm, cancel_sm, replace_sm), and the record of its bind that the
//! messages it submits name.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::pdu::Pdu;
use crate::store::SessionBind;

/// Who sent a request: the bound account and the session it came on.
#[derive(Debug, Clone)]
pub struct Requester {
    pub system_id: Arc<str>,
    pub session_id: u64,
    /// The session's recorded bind (`session_binds`), which its messages name.
    pub bind: Option<i64>,
}

/// Answers message requests. The session has already checked the bind state, the
/// in-flight window and the account's throughput; the service owns everything about
/// the message itself and returns the complete response PDU (same sequence number).
pub trait MessageService: Send + Sync + 'static {
    fn handle(&self, requester: Requester, request: Pdu) -> BoxFuture<'static, Pdu>;

    /// Records a successful bind; its number, or None when it could not be
    /// recorded (the session binds all the same, its messages name no bind).
    fn record_bind(&self, _bind: SessionBind) -> BoxFuture<'static, Option<i64>> {
        Box::pin(async { None })
    }
}
