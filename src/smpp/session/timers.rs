//! The session's timers (session_init, enquire_link, response, inactivity) and
//! the ways a session ends: our unbind, a drained shutdown.

use super::*;

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    /// Work that waits for the in-flight requests to be answered: our answer to the
    /// ESME's unbind, and our own unbind at shutdown.
    pub(super) async fn after_in_flight_drained(&mut self) -> Flow {
        if !self.in_flight.is_empty() {
            return Flow::Continue;
        }
        if let Some(sequence) = self.pending_unbind_resp.take() {
            let _ = self.send(&Pdu::new(sequence, Body::UnbindResp)).await;
            return Flow::Close("unbound by the ESME");
        }
        if self.our_unbind == OurUnbind::Wanted {
            self.our_unbind = OurUnbind::Sent;
            return self.send_request(Body::Unbind).await;
        }
        Flow::Continue
    }

    pub(super) fn begin_shutdown(&mut self) -> Flow {
        if !self.state.is_bound() {
            return Flow::Close("broker shutting down");
        }
        info!("broker shutting down or an operator's disconnect: unbinding once in-flight requests are answered");
        self.state = SessionState::Unbinding;
        self.our_unbind = OurUnbind::Wanted;
        Flow::Continue
    }

    /// The earliest moment a timer needs attention.
    pub(super) fn next_deadline(&self) -> Instant {
        let s = &self.ctx.settings;
        // While unbinding, the unbind's own response timer bounds the wait.
        let mut deadline = if self.state == SessionState::Unbinding {
            Instant::now() + s.inactivity_timeout
        } else {
            self.last_received + s.inactivity_timeout
        };
        if self.state == SessionState::Open {
            deadline = deadline.min(self.opened_at + s.session_init_timeout);
        }
        if self.state.is_bound() && !self.has_outstanding(CommandId::EnquireLink) {
            deadline = deadline.min(self.last_activity() + s.enquire_link_interval);
        }
        if let Some(earliest) = self.outstanding.values().map(|o| o.deadline).min() {
            deadline = deadline.min(earliest);
        }
        deadline
    }

    pub(super) fn last_activity(&self) -> Instant {
        self.last_received.max(self.last_sent)
    }

    pub(super) fn has_outstanding(&self, command: CommandId) -> bool {
        self.outstanding.values().any(|o| o.command == command)
    }

    pub(super) async fn on_timer(&mut self) -> Flow {
        let now = Instant::now();
        let s = &self.ctx.settings;
        if self.state == SessionState::Open && now >= self.opened_at + s.session_init_timeout {
            warn!("no bind within the session-init timeout");
            return Flow::Close("session-init timeout");
        }
        if self.state != SessionState::Unbinding && now >= self.last_received + s.inactivity_timeout
        {
            warn!("nothing received within the inactivity timeout");
            return self.unbind_and_close("inactivity timeout");
        }
        let expired: Vec<(u32, CommandId)> = self
            .outstanding
            .iter()
            .filter(|(_, o)| o.deadline <= now)
            .map(|(seq, o)| (*seq, o.command))
            .collect();
        for (sequence, command) in expired {
            if let Some(Outstanding {
                delivery: Some(id), ..
            }) = self.outstanding.remove(&sequence)
            {
                warn!(
                    sequence,
                    delivery = id,
                    "deliver_sm unanswered: it will be delivered again"
                );
                self.delivery_done(id, false);
                continue;
            }
            match command {
                CommandId::EnquireLink => {
                    warn!(sequence, "enquire_link unanswered: the link is dead");
                    return Flow::Close("enquire_link response timeout");
                }
                CommandId::Unbind => return Flow::Close("unbind response timeout"),
                other => warn!(sequence, command = %other, "response timeout"),
            }
        }
        if self.state.is_bound()
            && !self.has_outstanding(CommandId::EnquireLink)
            && now >= self.last_activity() + s.enquire_link_interval
        {
            return self.send_request(Body::EnquireLink).await;
        }
        Flow::Continue
    }

    /// Ends the session: a bound one is marked to send its unbind once in-flight
    /// work is answered (the unbind's response timer closes it if no unbind_resp
    /// comes); an unbound one closes now, for `reason`.
    pub(super) fn unbind_and_close(&mut self, reason: &'static str) -> Flow {
        if self.state.is_bound() {
            self.state = SessionState::Unbinding;
            self.our_unbind = OurUnbind::Wanted;
            return Flow::Continue;
        }
        Flow::Close(reason)
    }
}
