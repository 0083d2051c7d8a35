//! The request handler: submit_sm, data_sm, submit_multi, query_sm, cancel_sm and
//! replace_sm against the store, one function each. Every response that carries a
//! message_id goes back only after the store committed the message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::pdu::{
    Body, CommandId, CommandStatus as S, DataSmResp, MessageIdResp, Pdu, QuerySmResp,
    SubmitMultiResp, UnsuccessSme,
};
use super::refusals::{Refusal, RefusalLog};
use super::service::{MessageService, Requester};
use super::submit::{self, AccountPolicy, SubmitTime};
use super::time;
use crate::clock::Clock;
use crate::live::Live;
use crate::store::{
    CancelOutcome, CancelTarget, NewMessage, ReplaceOutcome, Replacement, SessionBind, Store,
    StoreError, SubmitError,
};

/// At most one log line per account this often about refused requests.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

pub struct OutboxService {
    store: Store,
    /// Replaced whole by a reload (`set_policies`).
    accounts: Live<HashMap<String, Arc<AccountPolicy>>>,
    clock: Arc<dyn Clock>,
    default_validity_ms: i64,
    refusals: Arc<Mutex<RefusalLog>>,
}

impl OutboxService {
    pub fn new(
        store: Store,
        accounts: impl IntoIterator<Item = AccountPolicy>,
        clock: Arc<dyn Clock>,
        default_validity_ms: i64,
    ) -> OutboxService {
        let accounts = Live::new(policy_map(accounts));
        let refusals = Arc::new(Mutex::new(RefusalLog::new(REFUSAL_LOG_INTERVAL)));
        OutboxService {
            store,
            accounts,
            clock,
            default_validity_ms,
            refusals,
        }
    }

    /// Writes the refused-request summaries as they fall due, until `shutdown`
    /// or until the service is gone; what is still counted then is written by
    /// whichever ends last.
    pub fn log_refusals(&self, tracker: &TaskTracker, shutdown: CancellationToken) {
        tracker.spawn(log_refusals_when_due(
            Arc::downgrade(&self.refusals),
            Arc::clone(&self.clock),
            shutdown,
        ));
    }

    /// The accounts of a reloaded configuration, for every request from now.
    pub fn set_policies(&self, accounts: impl IntoIterator<Item = AccountPolicy>) {
        self.accounts.store(policy_map(accounts));
    }

    fn policy(&self, system_id: &str) -> Option<Arc<AccountPolicy>> {
        self.accounts.load().get(system_id).cloned()
    }

    fn now(&self) -> SubmitTime {
        SubmitTime {
            now_ms: self.clock.now_ms(),
            default_validity_ms: self.default_validity_ms,
        }
    }
}

fn policy_map(
    accounts: impl IntoIterator<Item = AccountPolicy>,
) -> HashMap<String, Arc<AccountPolicy>> {
    accounts
        .into_iter()
        .map(|a| (a.system_id.clone(), Arc::new(a)))
        .collect()
}

fn refuse(request: CommandId, status: S, sequence: u32) -> Pdu {
    Pdu::error_response(
        request.response().unwrap_or(CommandId::GenericNack),
        status,
        sequence,
    )
}

fn lock(log: &Mutex<RefusalLog>) -> MutexGuard<'_, RefusalLog> {
    // Every update of the log is complete or not made, so a panicked holder harms nothing.
    log.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Logs the refusals that waited an interval, until the service is gone.
async fn log_refusals_when_due(
    log: Weak<Mutex<RefusalLog>>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = shutdown.cancelled() => true,
        };
        let Some(log) = log.upgrade() else { return };
        if stopping {
            lock(&log).drain().iter().for_each(|line| line.log());
            return;
        }
        let lines = lock(&log).due(clock.now_ms());
        lines.iter().for_each(|line| line.log());
    }
}

impl Drop for OutboxService {
    fn drop(&mut self) {
        let lines = lock(&self.refusals).drain();
        lines.iter().for_each(|line| line.log());
    }
}

/// Counts one account's refused requests in the service's [`RefusalLog`].
#[derive(Clone)]
struct Refusals {
    log: Arc<Mutex<RefusalLog>>,
    clock: Arc<dyn Clock>,
    system_id: Arc<str>,
}

impl Refusals {
    fn refuse(&self, reason: Refusal, status: S) -> S {
        let now_ms = self.clock.now_ms();
        let line = lock(&self.log).record(&self.system_id, reason, now_ms);
        if let Some(line) = line {
            line.log();
        }
        status
    }

    fn store_failure(&self, err: &StoreError) -> S {
        self.refuse(Refusal::Database(err.to_string()), S::ESME_RSYSERR)
    }
}

/// Stores `messages` and builds the response from their ids, or the status that
/// says why they were not stored.
async fn store_then(
    ctx: &Context,
    mut messages: Vec<NewMessage>,
    respond: impl FnOnce(Vec<String>) -> Body,
) -> Result<Body, S> {
    for message in &mut messages {
        message.session = ctx.bind;
    }
    match ctx.store.submit(messages).await {
        Ok(ids) => Ok(respond(ids)),
        Err(SubmitError::QueueFull(_)) => {
            Err(ctx.refusals.refuse(Refusal::QueueFull, S::ESME_RMSGQFUL))
        }
        Err(SubmitError::Store(err)) => Err(ctx.refusals.store_failure(&err)),
    }
}

impl MessageService for OutboxService {
    fn record_bind(&self, bind: SessionBind) -> BoxFuture<'static, Option<i64>> {
        let store = self.store.clone();
        Box::pin(async move {
            match store.record_bind(bind).await {
                Ok(session) => Some(session),
                Err(err) => {
                    tracing::warn!(error = %err,
                        "the bind was not recorded: its messages will name no session");
                    None
                }
            }
        })
    }

    fn handle(&self, requester: Requester, request: Pdu) -> BoxFuture<'static, Pdu> {
        let command = request.command_id();
        let sequence = request.sequence_number;
        let Some(account) = self.policy(&requester.system_id) else {
            return Box::pin(async move { refuse(command, S::ESME_RSYSERR, sequence) });
        };
        let ctx = Context {
            store: self.store.clone(),
            at: self.now(),
            refusals: Refusals {
                log: Arc::clone(&self.refusals),
                clock: Arc::clone(&self.clock),
                system_id: Arc::clone(&requester.system_id),
            },
            account,
            bind: requester.bind,
        };
        Box::pin(async move {
            let answer = match request.body {
                Body::SubmitSm(sm) => submit_sm(&ctx, &sm).await,
                Body::DataSm(d) => data_sm(&ctx, &d).await,
                Body::SubmitMulti(multi) => submit_multi(&ctx, &multi.sm, &multi.dests).await,
                Body::QuerySm(q) => query_sm(&ctx, q).await,
                Body::CancelSm(c) => cancel_sm(&ctx, c).await,
                Body::ReplaceSm(r) => replace_sm(&ctx, r).await,
                _ => Err(S::ESME_RINVCMDID),
            };
            match answer {
                Ok(body) => Pdu::new(sequence, body),
                Err(status) => refuse(command, status, sequence),
            }
        })
    }
}

/// What every request of one account's session is handled with.
struct Context {
    store: Store,
    account: Arc<AccountPolicy>,
    /// The requesting session's recorded bind, named by each message it submits.
    bind: Option<i64>,
    /// The request's arrival, against which its times are read.
    at: SubmitTime,
    refusals: Refusals,
}

async fn submit_sm(ctx: &Context, sm: &super::pdu::Sm) -> Result<Body, S> {
    let message = submit::from_submit_sm(sm, &ctx.account, ctx.at)?;
    store_then(ctx, vec![message], |ids| {
        Body::SubmitSmResp(MessageIdResp {
            message_id: ids.concat(),
        })
    })
    .await
}

async fn data_sm(ctx: &Context, d: &super::pdu::DataSm) -> Result<Body, S> {
    let message = submit::from_data_sm(d, &ctx.account, ctx.at)?;
    store_then(ctx, vec![message], |ids| {
        Body::DataSmResp(DataSmResp {
            message_id: ids.concat(),
            ..DataSmResp::default()
        })
    })
    .await
}

async fn query_sm(ctx: &Context, q: super::pdu::QuerySm) -> Result<Body, S> {
    let found = ctx
        .store
        .query(&ctx.account.system_id, &q.message_id, &q.source.addr)
        .await;
    match found {
        Ok(Some(status)) => Ok(Body::QuerySmResp(QuerySmResp {
            message_id: status.message_id,
            final_date: status
                .final_at
                .map(time::format_absolute)
                .unwrap_or_default(),
            message_state: status.smpp_state,
            error_code: status.error_code,
        })),
        Ok(None) => Err(S::ESME_RINVMSGID),
        Err(err) => Err(ctx.refusals.store_failure(&err)),
    }
}

async fn cancel_sm(ctx: &Context, c: super::pdu::CancelSm) -> Result<Body, S> {
    let by_id = !c.message_id.is_empty();
    let target = if by_id {
        CancelTarget::MessageId {
            message_id: c.message_id,
            source_addr: c.source.addr,
        }
    } else if c.source.addr.is_empty() || c.dest.addr.is_empty() {
        // Without a message_id the spec needs both addresses.
        return Err(S::ESME_RCANCELFAIL);
    } else {
        CancelTarget::Addresses {
            service_type: c.service_type,
            source_addr: c.source.addr,
            dest_addr: c.dest.addr,
        }
    };
    match ctx.store.cancel(&ctx.account.system_id, target).await {
        Ok(CancelOutcome::Cancelled(_)) => Ok(Body::CancelSmResp),
        Ok(CancelOutcome::NotFound) if by_id => Err(S::ESME_RINVMSGID),
        Ok(CancelOutcome::NotFound | CancelOutcome::TooLate) => Err(S::ESME_RCANCELFAIL),
        Err(err) => Err(ctx.refusals.store_failure(&err)),
    }
}

async fn replace_sm(ctx: &Context, r: super::pdu::ReplaceSm) -> Result<Body, S> {
    let replacement = replacement(r, ctx.at)?;
    match ctx.store.replace(&ctx.account.system_id, replacement).await {
        Ok(ReplaceOutcome::Replaced) => Ok(Body::ReplaceSmResp),
        Ok(ReplaceOutcome::NotFound) => Err(S::ESME_RINVMSGID),
        Ok(ReplaceOutcome::NotReplaceable) => Err(S::ESME_RREPLACEFAIL),
        Err(err) => Err(ctx.refusals.store_failure(&err)),
    }
}

/// submit_multi answers OK when at least one destination was stored; its message_id
/// is the first stored destination's, and the others follow it consecutively. When
/// every destination is refused, the first refusal's status is the command_status.
async fn submit_multi(
    ctx: &Context,
    sm: &super::pdu::Sm,
    dests: &[super::pdu::MultiDest],
) -> Result<Body, S> {
    let (accepted, refused) = submit::from_submit_multi(sm, dests, &ctx.account, ctx.at)?;
    if accepted.is_empty() {
        return Err(refused
            .first()
            .map_or(S::ESME_RINVNUMDESTS, |(_, status)| *status));
    }
    let unsuccess = refused
        .into_iter()
        .map(|(dest, status)| UnsuccessSme {
            dest,
            error_status_code: status.0,
        })
        .collect();
    store_then(ctx, accepted, |ids| {
        let message_id = ids.into_iter().next().unwrap_or_default();
        Body::SubmitMultiResp(SubmitMultiResp {
            message_id,
            unsuccess,
        })
    })
    .await
}

fn replacement(r: super::pdu::ReplaceSm, at: SubmitTime) -> Result<Replacement, S> {
    if r.registered_delivery & 0xE0 != 0 {
        return Err(S::ESME_RINVREGDLVFLG);
    }
    if r.sm_default_msg_id != 0 {
        return Err(S::ESME_RINVDFTMSGID);
    }
    let scheduled_at =
        time::parse(&r.schedule_delivery_time, at.now_ms).map_err(|_| S::ESME_RINVSCHED)?;
    let expires_at = time::parse(&r.validity_period, at.now_ms).map_err(|_| S::ESME_RINVEXPIRY)?;
    if expires_at.is_some_and(|t| t <= at.now_ms) {
        return Err(S::ESME_RINVEXPIRY);
    }
    Ok(Replacement {
        message_id: r.message_id,
        source_addr: r.source.addr,
        body: r.short_message.to_vec(),
        scheduled_at,
        expires_at,
        registered_delivery: r.registered_delivery,
    })
}
