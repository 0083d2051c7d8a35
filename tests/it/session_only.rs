//! A session task alone, without the broker around it: its context made from a
//! test broker's settings, its peer an in-memory pipe (tokio::io::duplex).

use std::sync::Arc;

use smpp_broker::smpp::auth::Accounts;
use smpp_broker::smpp::pdu::Pdu;
use smpp_broker::smpp::service::{MessageService, Requester};
use smpp_broker::smpp::session::SessionContext;
use smpp_broker::Settings;
use tokio_util::sync::CancellationToken;

/// These sessions only bind and keep the link: any message request would be a
/// test bug.
struct NoMessages;

impl MessageService for NoMessages {
    fn handle(&self, _: Requester, request: Pdu) -> futures::future::BoxFuture<'static, Pdu> {
        panic!("unexpected message request {request:?}")
    }
}

/// A session context with `settings`' [smpp] and accounts, stopped by `shutdown`.
pub fn context(settings: &Settings, shutdown: CancellationToken) -> Arc<SessionContext> {
    SessionContext::new(
        settings.smpp.clone(),
        Accounts::from_settings(&settings.accounts),
        Arc::new(NoMessages),
        shutdown,
        None,
        Arc::new(smpp_broker::metrics::Metrics::default()),
        None,
    )
}
