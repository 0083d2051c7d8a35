//! Writes to the peer: one flush for a run of responses, TLVs dropped for 3.3
//! peers, and every write bounded by response_timeout so a peer that stops reading
//! cannot hold the session (and its max_sessions slot) forever.

use super::*;

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    /// Counts the answer to a submit in `smpp_broker_submits_total`.
    pub(super) fn count_submit(&mut self, response: &Pdu) {
        let submit = matches!(
            response.command_id(),
            CommandId::SubmitSmResp | CommandId::SubmitMultiResp | CommandId::DataSmResp
        );
        if !submit {
            return;
        }
        if let Some(activity) = &self.activity {
            if response.command_status.is_ok() {
                activity.accepted(std::time::Instant::now());
            } else {
                activity.refused(&response.command_status.label());
            }
        }
        let key = (response.command_id(), response.command_status);
        if let Some(counter) = self.submit_counters.get(&key) {
            counter.inc();
            return;
        }
        let system_id = self.account.as_ref().map_or("", |a| a.system_id.as_str());
        if let Some(counter) = self.ctx.metrics.submit_counter(system_id, key.0, key.1) {
            counter.inc();
            self.submit_counters.insert(key, counter);
        }
    }

    /// Writes `first` and every other response that is already complete, then
    /// flushes once: a group commit completes many submits at the same moment, and
    /// one write for all of them saves a system call per response.
    pub(super) async fn send_responses(&mut self, first: Pdu) -> Flow {
        let mut next = Some(first);
        while let Some(response) = next {
            if let Flow::Close(reason) = self.feed(&response).await {
                return Flow::Close(reason);
            }
            next = self.in_flight.next().now_or_never().flatten();
        }
        self.flush().await
    }

    pub(super) async fn send(&mut self, pdu: &Pdu) -> Flow {
        if let Flow::Close(reason) = self.feed(pdu).await {
            return Flow::Close(reason);
        }
        self.flush().await
    }

    /// Buffers one PDU; the codec writes out when its buffer grows full.
    pub(super) async fn feed(&mut self, pdu: &Pdu) -> Flow {
        self.count_submit(pdu);
        let pdu = self.for_peer(pdu);
        let limit = self.ctx.settings.response_timeout;
        let written = tokio::time::timeout(limit, self.writer.feed(pdu.as_ref())).await;
        self.after_write(written)
    }

    pub(super) async fn flush(&mut self) -> Flow {
        let limit = self.ctx.settings.response_timeout;
        let written = tokio::time::timeout(limit, self.writer.flush()).await;
        let flow = self.after_write(written);
        if matches!(flow, Flow::Continue) {
            self.last_sent = Instant::now();
        }
        flow
    }

    /// A peer that takes nothing for response_timeout while we write has stopped
    /// reading: without this bound the session would wait on the full socket
    /// forever, bound and holding its max_sessions slot, with no timer running.
    pub(super) fn after_write(
        &self,
        written: Result<std::io::Result<()>, tokio::time::error::Elapsed>,
    ) -> Flow {
        match written {
            Ok(Ok(())) => Flow::Continue,
            Ok(Err(err)) => {
                debug!(error = %err, "write failed");
                Flow::Close("write error")
            }
            Err(_) => {
                let system_id = self.account.as_ref().map_or("", |a| a.system_id.as_str());
                warn!(
                    system_id,
                    peer = %self.peer,
                    timeout = ?self.ctx.settings.response_timeout,
                    "a write to the peer did not complete within response_timeout (it stopped reading): closing the session"
                );
                Flow::Close("write timeout")
            }
        }
    }

    /// A 3.3 ESME never gets TLVs from us (docs/smpp34-checklist.md A4).
    pub(super) fn for_peer<'a>(&self, pdu: &'a Pdu) -> std::borrow::Cow<'a, Pdu> {
        if self.interface_version < SMPP_34 && carries_tlvs(&pdu.body) {
            std::borrow::Cow::Owned(without_tlvs(pdu))
        } else {
            std::borrow::Cow::Borrowed(pdu)
        }
    }

    /// Frees the session's max_sessions slot, then closes the transport (a TLS
    /// close_notify to a peer that stopped reading waits at most 5 s).
    pub(super) async fn close(&mut self) {
        self.registration = None;
        let _ =
            tokio::time::timeout(Duration::from_secs(5), self.writer.get_mut().shutdown()).await;
    }
}

pub(super) fn carries_tlvs(body: &Body) -> bool {
    match body {
        Body::BindResp(_, b) => !b.tlvs.is_empty(),
        Body::DeliverSm(sm) | Body::SubmitSm(sm) => !sm.tlvs.is_empty(),
        Body::DataSm(d) => !d.tlvs.is_empty(),
        Body::DataSmResp(r) => !r.tlvs.is_empty(),
        _ => false,
    }
}

pub(super) fn without_tlvs(pdu: &Pdu) -> Pdu {
    let mut pdu = pdu.clone();
    match &mut pdu.body {
        Body::BindResp(_, b) => b.tlvs = Tlvs::new(),
        Body::DeliverSm(sm) | Body::SubmitSm(sm) => sm.tlvs = Tlvs::new(),
        Body::DataSm(d) => d.tlvs = Tlvs::new(),
        Body::DataSmResp(r) => r.tlvs = Tlvs::new(),
        _ => {}
    }
    pdu
}
