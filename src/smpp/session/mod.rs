//! One task per SMPP connection, generic over the stream (TCP, TLS, in-memory pipes).
//!
//! The loop waits on: the next inbound frame, the responses of requests still being
//! handled (pipelining: an ESME may keep many outstanding, answered by sequence
//! number as each completes), the session timers, and the broker's shutdown.

mod bind;
mod outbound;
mod timers;
mod write;

use outbound::next_job;

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

use super::activity::{AccountActivity, Activity};
use super::auth::{Account, Accounts, BindRefusal};
use super::codec::{Frame, SmppCodec};
use super::pdu::{
    tlv, Bind, BindKind, BindResp, Body, CommandId, CommandStatus, Header, Pdu, Tlvs,
};
use super::registry::{BoundSession, Registration, Registry, SharedSessions};
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
    /// Where sessions are counted for every node of a cluster (a shared
    /// store); None with one process.
    pub shared_sessions: Option<SharedSessions>,
    /// Each account's recent submits, for the console.
    pub activity: Arc<Activity>,
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
        shared_sessions: Option<SharedSessions>,
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
            shared_sessions,
            activity: Arc::default(),
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
            bind: None,
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
            stop: ctx.shutdown.child_token(),
            activity: None,
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
    /// Its bind as recorded in the store, which its messages name.
    bind: Option<i64>,
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
    /// Cancelled at the broker's shutdown, or by an operator's disconnect
    /// (the registry holds it while the session is bound).
    stop: CancellationToken,
    /// The bound account's recent submits (the console's rates).
    activity: Option<Arc<AccountActivity>>,
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
        let shutdown = self.stop.clone();
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
            bind: self.bind,
        };
        self.in_flight
            .push(self.ctx.messages.handle(requester, pdu));
        Flow::Continue
    }
}
