//! One task per SMPP connection, generic over the stream (TCP, TLS, in-memory pipes).
//!
//! The loop waits on: the next inbound frame, the responses of requests still being
//! handled (pipelining: an ESME may keep many outstanding, answered by sequence
//! number as each completes), the session timers, and the broker's shutdown.

use super::delivery::{DeliveryHub, DeliveryJob};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::time::{sleep_until, Instant};
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

use super::auth::{Account, Accounts, BindRefusal};
use super::codec::{Frame, SmppCodec};
use super::pdu::{
    tlv, Bind, BindKind, BindResp, Body, CommandId, CommandStatus, Header, Pdu, Tlvs,
};
use super::registry::{BoundSession, Registration, Registry};
use super::service::{MessageService, Requester};
use super::state::{Admission, SessionState};
use super::throttle::{BindOutcome, BindThrottle};
use crate::config::SmppSettings;
use crate::metrics::Metrics;
use prometheus_client::metrics::counter::Counter;

/// The first interface_version of SMPP 3.4; below it the ESME speaks 3.3 and gets no TLVs.
const SMPP_34: u8 = 0x34;
/// Server-originated sequence numbers run 1..=0x7FFFFFFF and wrap to 1.
const MAX_SEQUENCE: u32 = 0x7FFF_FFFF;

/// Everything the sessions of one broker share.
pub struct SessionContext {
    pub settings: SmppSettings,
    pub accounts: Accounts,
    pub registry: Arc<Registry>,
    pub messages: Arc<dyn MessageService>,
    pub shutdown: CancellationToken,
    /// Where receiving sessions get their receipts and incoming messages.
    pub deliveries: Option<DeliveryHub>,
    pub metrics: Arc<Metrics>,
    bind_throttle: BindThrottle,
    next_session_id: AtomicU64,
}

impl SessionContext {
    pub fn new(
        settings: SmppSettings,
        accounts: Accounts,
        messages: Arc<dyn MessageService>,
        shutdown: CancellationToken,
        deliveries: Option<DeliveryHub>,
        metrics: Arc<Metrics>,
    ) -> Arc<SessionContext> {
        let bind_throttle =
            BindThrottle::new(settings.failed_bind_delay, settings.failed_bind_delay_max);
        Arc::new(SessionContext {
            settings,
            accounts,
            registry: Registry::new(),
            messages,
            shutdown,
            deliveries,
            metrics,
            bind_throttle,
            next_session_id: AtomicU64::new(1),
        })
    }
}

/// Runs one connection to its end. `transport` names it in logs ("tcp", "tls").
pub async fn run_session<S>(
    stream: S,
    peer: SocketAddr,
    transport: &'static str,
    ctx: Arc<SessionContext>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let session_id = ctx.next_session_id.fetch_add(1, Ordering::Relaxed);
    let span = info_span!(
        "session",
        session_id,
        %peer,
        transport,
        system_id = tracing::field::Empty
    );
    async move {
        debug!("connected");
        let (read_half, write_half) = tokio::io::split(stream);
        let max_pdu = ctx.settings.max_pdu_size;
        let mut session = Session {
            id: session_id,
            peer,
            state: SessionState::Open,
            writer: FramedWrite::new(write_half, SmppCodec::new(max_pdu)),
            account: None,
            registration: None,
            interface_version: SMPP_34,
            in_flight: FuturesUnordered::new(),
            outstanding: HashMap::new(),
            next_sequence: 1,
            opened_at: Instant::now(),
            last_received: Instant::now(),
            last_sent: Instant::now(),
            pending_unbind_resp: None,
            our_unbind: OurUnbind::NotWanted,
            jobs: None,
            submit_counters: HashMap::new(),
            ctx,
        };
        let reader = FramedRead::new(read_half, SmppCodec::new(max_pdu));
        let reason = session.run(reader).await;
        session.release_deliveries();
        session.close().await;
        info!(reason, "session closed");
    }
    .instrument(span)
    .await
}

/// A request we sent and await the response of.
struct Outstanding {
    command: CommandId,
    deadline: Instant,
    /// The stored receipt or incoming message a deliver_sm carries.
    delivery: Option<i64>,
}

enum Flow {
    Continue,
    Close(&'static str),
}

struct Session<S> {
    ctx: Arc<SessionContext>,
    id: u64,
    peer: SocketAddr,
    state: SessionState,
    writer: FramedWrite<WriteHalf<S>, SmppCodec>,
    account: Option<Arc<Account>>,
    /// Keeps the session counted as bound; dropped when the session ends.
    registration: Option<Registration>,
    interface_version: u8,
    in_flight: FuturesUnordered<BoxFuture<'static, Pdu>>,
    outstanding: HashMap<u32, Outstanding>,
    next_sequence: u32,
    opened_at: Instant,
    last_received: Instant,
    last_sent: Instant,
    /// The ESME sent unbind (this sequence number): answer once in-flight work is done.
    pending_unbind_resp: Option<u32>,
    our_unbind: OurUnbind,
    /// Deliveries for this receiving session, once bound as receiver or transceiver.
    jobs: Option<mpsc::Receiver<DeliveryJob>>,
    /// The submits_total counters this session has used, by response and status.
    submit_counters: HashMap<(CommandId, CommandStatus), Counter>,
}

/// Our own unbind (at shutdown or after inactivity): sent once in-flight work is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OurUnbind {
    NotWanted,
    Wanted,
    Sent,
}

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    async fn run(
        &mut self,
        mut reader: FramedRead<tokio::io::ReadHalf<S>, SmppCodec>,
    ) -> &'static str {
        let shutdown = self.ctx.shutdown.clone();
        loop {
            if let Flow::Close(reason) = self.after_in_flight_drained().await {
                return reason;
            }
            let deadline = self.next_deadline();
            let flow = tokio::select! {
                _ = shutdown.cancelled(), if self.state != SessionState::Unbinding => {
                    self.begin_shutdown()
                }
                Some(response) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    self.send_responses(response).await
                }
                Some(job) = next_job(&mut self.jobs), if self.jobs.is_some()
                    && self.state != SessionState::Unbinding => {
                    self.deliver(job).await
                }
                frame = reader.next() => match frame {
                    Some(Ok(frame)) => {
                        self.last_received = Instant::now();
                        self.on_frame(frame).await
                    }
                    Some(Err(err)) => {
                        debug!(error = %err, "read failed");
                        Flow::Close("read error")
                    }
                    None => Flow::Close("peer closed the connection"),
                },
                _ = sleep_until(deadline) => self.on_timer().await,
            };
            if let Flow::Close(reason) = flow {
                return reason;
            }
        }
    }

    /// Work that waits for the in-flight requests to be answered: our answer to the
    /// ESME's unbind, and our own unbind at shutdown.
    async fn after_in_flight_drained(&mut self) -> Flow {
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

    fn begin_shutdown(&mut self) -> Flow {
        if !self.state.is_bound() {
            return Flow::Close("broker shutting down");
        }
        info!("broker shutting down: unbinding once in-flight requests are answered");
        self.state = SessionState::Unbinding;
        self.our_unbind = OurUnbind::Wanted;
        Flow::Continue
    }

    /// The earliest moment a timer needs attention.
    fn next_deadline(&self) -> Instant {
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

    fn last_activity(&self) -> Instant {
        self.last_received.max(self.last_sent)
    }

    fn has_outstanding(&self, command: CommandId) -> bool {
        self.outstanding.values().any(|o| o.command == command)
    }

    async fn on_timer(&mut self) -> Flow {
        let now = Instant::now();
        let s = &self.ctx.settings;
        if self.state == SessionState::Open && now >= self.opened_at + s.session_init_timeout {
            warn!("no bind within the session-init timeout");
            return Flow::Close("session-init timeout");
        }
        if self.state != SessionState::Unbinding && now >= self.last_received + s.inactivity_timeout
        {
            warn!("nothing received within the inactivity timeout");
            return self.unbind_and_close("inactivity timeout").await;
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

    /// Sends unbind (when bound), waits briefly for unbind_resp, then closes.
    async fn unbind_and_close(&mut self, reason: &'static str) -> Flow {
        if self.state.is_bound() {
            // The unbind goes out once in-flight work is answered; its response timer
            // closes the session if no unbind_resp comes.
            self.state = SessionState::Unbinding;
            self.our_unbind = OurUnbind::Wanted;
            return Flow::Continue;
        }
        Flow::Close(reason)
    }

    async fn on_frame(&mut self, frame: Frame) -> Flow {
        let bytes = match frame {
            Frame::Pdu(bytes) => bytes,
            Frame::InvalidLength {
                command_length,
                sequence_number,
            } => {
                warn!(command_length, "invalid command_length: framing lost");
                let nack =
                    Pdu::generic_nack(CommandStatus::ESME_RINVCMDLEN, sequence_number.unwrap_or(0));
                let _ = self.send(&nack).await;
                return Flow::Close("invalid command_length");
            }
        };
        let Some(header) = Header::parse(&bytes) else {
            return Flow::Close("short frame");
        };
        let Some(command) = header.known_command() else {
            warn!(
                command_id = format_args!("0x{:08X}", header.command_id),
                "unknown command_id"
            );
            return self
                .send(&Pdu::generic_nack(
                    CommandStatus::ESME_RINVCMDID,
                    header.sequence_number,
                ))
                .await;
        };
        if command.is_response() {
            return self.on_response(&bytes, command, header.sequence_number);
        }
        if header.command_status != 0 {
            debug!(command = %command, status = header.command_status, "request carries a non-zero command_status (ignored)");
        }
        let sequence = header.sequence_number;
        match self.state.admit(command, self.ctx.settings.data_sm_in_rx) {
            Admission::SmscOnly => {
                warn!(command = %command, "ESME sent a request only an SMSC sends");
                self.send(&Pdu::generic_nack(CommandStatus::ESME_RINVCMDID, sequence))
                    .await
            }
            Admission::Ignore => {
                info!(command = %command, "ignored (no response exists)");
                Flow::Continue
            }
            Admission::WrongState => {
                debug!(command = %command, state = ?self.state, "request not allowed in this state");
                self.answer_error(command, CommandStatus::ESME_RINVBNDSTS, sequence)
                    .await
            }
            Admission::AlreadyBound => {
                warn!(command = %command, "bind on a bound session");
                self.answer_error(command, CommandStatus::ESME_RALYBND, sequence)
                    .await
            }
            Admission::Process => match Pdu::decode(&bytes) {
                Ok(pdu) => self.on_request(pdu).await,
                Err(err) => {
                    warn!(error = %err, "malformed request");
                    match err.answer() {
                        Some(answer) => self.send(&answer).await,
                        None => Flow::Continue,
                    }
                }
            },
        }
    }

    async fn answer_error(
        &mut self,
        request: CommandId,
        status: CommandStatus,
        sequence: u32,
    ) -> Flow {
        let answer = match request.response() {
            Some(response) => Pdu::error_response(response, status, sequence),
            None => Pdu::generic_nack(status, sequence),
        };
        self.send(&answer).await
    }

    fn on_response(&mut self, bytes: &[u8], command: CommandId, sequence: u32) -> Flow {
        let Some(request) = self.outstanding.remove(&sequence) else {
            debug!(command = %command, sequence, "response to no outstanding request (dropped)");
            return Flow::Continue;
        };
        if let Some(id) = request.delivery {
            let acknowledged = command == CommandId::DeliverSmResp
                && Pdu::decode(bytes).is_ok_and(|pdu| pdu.command_status.is_ok());
            if !acknowledged {
                warn!(sequence, delivery = id, command = %command, "deliver_sm not acknowledged: it will be delivered again");
            }
            self.delivery_done(id, acknowledged);
            return Flow::Continue;
        }
        match Pdu::decode(bytes) {
            Ok(pdu) if command == CommandId::GenericNack => {
                warn!(sequence, request = %request.command, status = %pdu.command_status, "ESME answered our request with generic_nack");
            }
            Ok(pdu) => {
                debug!(command = %command, sequence, status = %pdu.command_status, "response");
                if command == CommandId::UnbindResp {
                    return Flow::Close("unbound by the broker");
                }
            }
            Err(err) => warn!(error = %err, "malformed response (dropped)"),
        }
        Flow::Continue
    }

    async fn on_request(&mut self, pdu: Pdu) -> Flow {
        let sequence = pdu.sequence_number;
        match pdu.body {
            Body::EnquireLink => self.send(&Pdu::new(sequence, Body::EnquireLinkResp)).await,
            Body::Bind(kind, bind) => self.on_bind(kind, bind, sequence).await,
            Body::Unbind => {
                info!("unbind from the ESME");
                self.state = SessionState::Unbinding;
                self.pending_unbind_resp = Some(sequence);
                Flow::Continue
            }
            _ => self.on_message_request(pdu).await,
        }
    }

    async fn on_message_request(&mut self, pdu: Pdu) -> Flow {
        let command = pdu.command_id();
        let sequence = pdu.sequence_number;
        let Some(account) = self.account.clone() else {
            return self
                .answer_error(command, CommandStatus::ESME_RINVBNDSTS, sequence)
                .await;
        };
        if self.in_flight.len() >= self.ctx.settings.max_in_flight {
            debug!(command = %command, "in-flight window full");
            return self
                .answer_error(command, CommandStatus::ESME_RTHROTTLED, sequence)
                .await;
        }
        let cost = match &pdu.body {
            Body::SubmitSm(_) | Body::DataSm(_) => Some(1),
            // Every destination is one message to send.
            Body::SubmitMulti(multi) => Some(multi.dests.len().max(1) as u32),
            _ => None,
        };
        if let Some(cost) = cost {
            if !account.try_take_throughput(cost) {
                debug!(command = %command, "account throughput exceeded");
                return self
                    .answer_error(command, CommandStatus::ESME_RTHROTTLED, sequence)
                    .await;
            }
        }
        let requester = Requester {
            system_id: Arc::clone(&account.shared_id),
            session_id: self.id,
        };
        self.in_flight
            .push(self.ctx.messages.handle(requester, pdu));
        Flow::Continue
    }

    async fn on_bind(&mut self, kind: BindKind, bind: Bind, sequence: u32) -> Flow {
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
            };
            self.ctx
                .registry
                .try_register(&account.system_id, session, account.max_sessions)
                .map(|registration| (account, registration))
                .ok_or(BindRefusal::TooManySessions)
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
        tracing::Span::current().record("system_id", account.system_id.as_str());
        self.interface_version = bind.interface_version;
        self.state = SessionState::Bound(kind);
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

    /// Sends a request of ours with a fresh sequence number and a response deadline.
    async fn send_request(&mut self, body: Body) -> Flow {
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
    async fn deliver(&mut self, job: DeliveryJob) -> Flow {
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

    fn delivery_done(&self, id: i64, acknowledged: bool) {
        if let (Some(hub), Some(account)) = (&self.ctx.deliveries, &self.account) {
            hub.done(&account.system_id, self.id, id, acknowledged);
        }
    }

    /// The session is over: deliveries it still carried go to another session.
    fn release_deliveries(&mut self) {
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
    fn allocate_sequence(&mut self) -> u32 {
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

    /// Counts the answer to a submit in `smpp_broker_submits_total`.
    fn count_submit(&mut self, response: &Pdu) {
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
    async fn send_responses(&mut self, first: Pdu) -> Flow {
        let mut next = Some(first);
        while let Some(response) = next {
            if let Flow::Close(reason) = self.feed(&response).await {
                return Flow::Close(reason);
            }
            next = self.in_flight.next().now_or_never().flatten();
        }
        self.flush().await
    }

    async fn send(&mut self, pdu: &Pdu) -> Flow {
        if let Flow::Close(reason) = self.feed(pdu).await {
            return Flow::Close(reason);
        }
        self.flush().await
    }

    /// Buffers one PDU; the codec writes out when its buffer grows full.
    async fn feed(&mut self, pdu: &Pdu) -> Flow {
        self.count_submit(pdu);
        let pdu = self.for_peer(pdu);
        let limit = self.ctx.settings.response_timeout;
        let written = tokio::time::timeout(limit, self.writer.feed(pdu.as_ref())).await;
        self.after_write(written)
    }

    async fn flush(&mut self) -> Flow {
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
    fn after_write(
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
    fn for_peer<'a>(&self, pdu: &'a Pdu) -> std::borrow::Cow<'a, Pdu> {
        if self.interface_version < SMPP_34 && carries_tlvs(&pdu.body) {
            std::borrow::Cow::Owned(without_tlvs(pdu))
        } else {
            std::borrow::Cow::Borrowed(pdu)
        }
    }

    /// Frees the session's max_sessions slot, then closes the transport (a TLS
    /// close_notify to a peer that stopped reading waits at most 5 s).
    async fn close(&mut self) {
        self.registration = None;
        let _ =
            tokio::time::timeout(Duration::from_secs(5), self.writer.get_mut().shutdown()).await;
    }
}

fn carries_tlvs(body: &Body) -> bool {
    match body {
        Body::BindResp(_, b) => !b.tlvs.is_empty(),
        Body::DeliverSm(sm) | Body::SubmitSm(sm) => !sm.tlvs.is_empty(),
        Body::DataSm(d) => !d.tlvs.is_empty(),
        Body::DataSmResp(r) => !r.tlvs.is_empty(),
        _ => false,
    }
}

fn without_tlvs(pdu: &Pdu) -> Pdu {
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

async fn next_job(jobs: &mut Option<mpsc::Receiver<DeliveryJob>>) -> Option<DeliveryJob> {
    match jobs {
        Some(jobs) => jobs.recv().await,
        None => None,
    }
}
