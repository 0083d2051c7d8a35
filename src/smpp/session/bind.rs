//! The bind: credentials, the failed-bind back-off, the account's session limit,
//! and the bind_*_resp.

use super::*;
use crate::store::SessionBind;

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    pub(super) async fn on_bind(&mut self, kind: BindKind, bind: Bind, sequence: u32) -> Flow {
        let ctx = Arc::clone(&self.ctx);
        let attempt = ctx.bind_throttle.admit(self.peer.ip()).await;
        info!(
            system_id = %bind.system_id,
            bind_type = kind.name(),
            interface_version = format_args!("0x{:02X}", bind.interface_version),
            "bind attempt"
        );
        let result = self
            .ctx
            .accounts
            .authenticate(&bind.system_id, &bind.password, kind)
            .await;
        let registered = result.and_then(|account| {
            let session = BoundSession {
                session_id: self.id,
                kind,
                peer: self.peer,
                bound_at: std::time::SystemTime::now(),
                bind: None,
            };
            self.ctx
                .registry
                .try_register(
                    &account.system_id,
                    session,
                    account.max_sessions,
                    self.stop.clone(),
                )
                .map(|registration| (account, registration))
                .ok_or(BindRefusal::TooManySessions)
        });
        let registered = match (registered, &self.ctx.shared_sessions) {
            (Ok((account, mut registration)), Some(shared)) => {
                match registration.share(shared, account.max_sessions).await {
                    Ok(true) => Ok((account, registration)),
                    Ok(false) => Err(BindRefusal::TooManySessions),
                    Err(err) => {
                        warn!(error = %err, "counting the account's sessions failed");
                        Err(BindRefusal::SessionsUncounted)
                    }
                }
            }
            (registered, _) => registered,
        };
        // A reload that changed the account between its check and the
        // registration has already unbound its sessions: this one binds again.
        let registered = registered.and_then(|(account, registration)| {
            if ctx.accounts.is_current(&account) {
                Ok((account, registration))
            } else {
                Err(BindRefusal::AccountChanged)
            }
        });
        let (account, registration) = match registered {
            Ok(ok) => ok,
            Err(refusal) => {
                attempt.end(BindOutcome::Refused);
                warn!(system_id = %bind.system_id, bind_type = kind.name(), reason = refusal.reason(), "bind refused");
                let status = refusal.status(self.ctx.settings.detailed_bind_errors);
                let _ = self
                    .send(&Pdu::error_response(kind.response_id(), status, sequence))
                    .await;
                return Flow::Close("bind refused");
            }
        };
        attempt.end(BindOutcome::Bound);
        let record = SessionBind {
            system_id: account.system_id.clone(),
            bind_type: kind.name(),
            peer: self.peer.to_string(),
        };
        self.bind = self.ctx.messages.record_bind(record).await;
        if let Some(bind) = self.bind {
            self.ctx.registry.set_bind(self.id, bind);
        }
        tracing::Span::current().record("system_id", account.system_id.as_str());
        self.interface_version = bind.interface_version;
        self.state = SessionState::Bound(kind);
        self.activity = Some(self.ctx.activity.account(&account.system_id));
        self.account = Some(account);
        // Counters taken before the bind carry no system_id.
        self.submit_counters.clear();

        self.registration = Some(registration);
        let mut tlvs = Tlvs::new();
        if bind.interface_version >= SMPP_34 {
            tlvs.push_u8(tlv::tag::SC_INTERFACE_VERSION, SMPP_34);
        }
        let resp = BindResp {
            system_id: self.ctx.settings.system_id.clone(),
            tlvs,
        };
        if matches!(kind, BindKind::Receiver | BindKind::Transceiver) {
            if let (Some(hub), Some(account)) = (&self.ctx.deliveries, &self.account) {
                let window = self.ctx.settings.deliver_window;
                let long = account.long_incoming;
                self.jobs = Some(hub.register(&account.system_id, self.id, window, long));
            }
        }
        info!(bind_type = kind.name(), "bound");
        self.send(&Pdu::new(sequence, Body::BindResp(kind, resp)))
            .await
    }
}
