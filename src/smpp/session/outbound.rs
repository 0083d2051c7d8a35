//! What the broker sends on its own: requests (enquire_link, unbind) and
//! deliver_sm from the delivery hub, within the session's window.

use super::*;

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    /// Sends a request of ours with a fresh sequence number and a response deadline.
    pub(super) async fn send_request(&mut self, body: Body) -> Flow {
        let sequence = self.allocate_sequence();
        let command = body.command_id();
        let deadline = Instant::now() + self.ctx.settings.response_timeout;
        self.outstanding.insert(
            sequence,
            Outstanding {
                command,
                deadline,
                delivery: None,
            },
        );
        self.send(&Pdu::new(sequence, body)).await
    }

    /// Sends a stored receipt or incoming message. Responses already complete
    /// go first, so a receipt never overtakes the submit_sm_resp of its message.
    pub(super) async fn deliver(&mut self, job: DeliveryJob) -> Flow {
        while let Some(Some(response)) = self.in_flight.next().now_or_never() {
            if let Flow::Close(reason) = self.send_responses(response).await {
                return Flow::Close(reason);
            }
        }
        // Every segment is outstanding before the first is written: a session
        // lost half-way releases them all, and the delivery goes out again whole.
        let deadline = Instant::now() + self.ctx.settings.response_timeout;
        let mut pdus = Vec::with_capacity(job.bodies.len());
        for body in job.bodies {
            let sequence = self.allocate_sequence();
            let outstanding = Outstanding {
                command: CommandId::DeliverSm,
                deadline,
                delivery: Some(job.id),
            };
            self.outstanding.insert(sequence, outstanding);
            pdus.push(Pdu::new(sequence, body));
        }
        for pdu in &pdus {
            if let Flow::Close(reason) = self.send(pdu).await {
                return Flow::Close(reason);
            }
        }
        Flow::Continue
    }

    pub(super) fn delivery_done(&self, id: i64, acknowledged: bool) {
        if let (Some(hub), Some(account)) = (&self.ctx.deliveries, &self.account) {
            hub.done(&account.system_id, self.id, id, acknowledged);
        }
    }

    /// The session is over: deliveries it still carried go to another session.
    pub(super) fn release_deliveries(&mut self) {
        let carried: Vec<i64> = self
            .outstanding
            .values()
            .filter_map(|o| o.delivery)
            .collect();
        for id in carried {
            self.delivery_done(id, false);
        }
        self.outstanding.retain(|_, o| o.delivery.is_none());
        if let (Some(hub), Some(account), Some(_)) =
            (&self.ctx.deliveries, &self.account, self.jobs.take())
        {
            hub.unregister(&account.system_id, self.id);
        }
    }

    /// The next server sequence number not awaiting a response (docs/smpp34-checklist.md A2).
    pub(super) fn allocate_sequence(&mut self) -> u32 {
        loop {
            let candidate = self.next_sequence;
            self.next_sequence = if candidate >= MAX_SEQUENCE {
                1
            } else {
                candidate + 1
            };
            if !self.outstanding.contains_key(&candidate) {
                return candidate;
            }
        }
    }
}

pub(super) async fn next_job(
    jobs: &mut Option<mpsc::Receiver<DeliveryJob>>,
) -> Option<DeliveryJob> {
    match jobs {
        Some(jobs) => jobs.recv().await,
        None => None,
    }
}
