//! The message service backed by the durable outbox: every response that carries a
//! message_id goes back only after the store committed the message.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use tracing::error;

use super::pdu::{
    Body, CommandId, CommandStatus as S, DataSmResp, MessageIdResp, Pdu, QuerySmResp,
    SubmitMultiResp, UnsuccessSme,
};
use super::service::{MessageService, Requester};
use super::submit::{self, AccountPolicy, SubmitTime};
use super::time;
use crate::clock::Clock;
use crate::store::{
    CancelOutcome, CancelTarget, NewMessage, ReplaceOutcome, Replacement, Store, StoreError,
    SubmitError,
};

pub struct OutboxService {
    store: Store,
    accounts: HashMap<String, Arc<AccountPolicy>>,
    clock: Arc<dyn Clock>,
    default_validity_ms: i64,
}

impl OutboxService {
    pub fn new(
        store: Store,
        accounts: impl IntoIterator<Item = AccountPolicy>,
        clock: Arc<dyn Clock>,
        default_validity_ms: i64,
    ) -> OutboxService {
        let accounts = accounts
            .into_iter()
            .map(|a| (a.system_id.clone(), Arc::new(a)))
            .collect();
        OutboxService {
            store,
            accounts,
            clock,
            default_validity_ms,
        }
    }

    fn now(&self) -> SubmitTime {
        SubmitTime {
            now_ms: self.clock.now_ms(),
            default_validity_ms: self.default_validity_ms,
        }
    }
}

fn refuse(request: CommandId, status: S, sequence: u32) -> Pdu {
    Pdu::error_response(
        request.response().unwrap_or(CommandId::GenericNack),
        status,
        sequence,
    )
}

fn store_failure(request: CommandId, err: &StoreError) -> S {
    error!(command = %request, error = %err, "database error: answered ESME_RSYSERR");
    S::ESME_RSYSERR
}

/// Stores `messages` and builds the response from their ids, or the status that
/// says why they were not stored.
async fn store_then(
    store: Store,
    request: CommandId,
    messages: Vec<NewMessage>,
    respond: impl FnOnce(Vec<String>) -> Body,
) -> Result<Body, S> {
    match store.submit(messages).await {
        Ok(ids) => Ok(respond(ids)),
        Err(SubmitError::QueueFull(_)) => Err(S::ESME_RMSGQFUL),
        Err(SubmitError::Store(err)) => Err(store_failure(request, &err)),
    }
}

impl MessageService for OutboxService {
    fn handle(&self, requester: Requester, request: Pdu) -> BoxFuture<'static, Pdu> {
        let command = request.command_id();
        let sequence = request.sequence_number;
        let store = self.store.clone();
        let Some(account) = self.accounts.get(&*requester.system_id).cloned() else {
            return Box::pin(async move { refuse(command, S::ESME_RSYSERR, sequence) });
        };
        let at = self.now();
        Box::pin(async move {
            let answer = match request.body {
                Body::SubmitSm(sm) => match submit::from_submit_sm(&sm, &account, at) {
                    Ok(message) => {
                        store_then(store, command, vec![message], |ids| {
                            Body::SubmitSmResp(MessageIdResp {
                                message_id: ids.concat(),
                            })
                        })
                        .await
                    }
                    Err(status) => Err(status),
                },
                Body::DataSm(d) => match submit::from_data_sm(&d, &account, at) {
                    Ok(message) => {
                        store_then(store, command, vec![message], |ids| {
                            Body::DataSmResp(DataSmResp {
                                message_id: ids.concat(),
                                ..DataSmResp::default()
                            })
                        })
                        .await
                    }
                    Err(status) => Err(status),
                },
                Body::SubmitMulti(multi) => {
                    submit_multi(store, &multi.sm, &multi.dests, &account, at).await
                }
                Body::QuerySm(q) => {
                    match store
                        .query(&account.system_id, &q.message_id, &q.source.addr)
                        .await
                    {
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
                        Err(err) => Err(store_failure(command, &err)),
                    }
                }
                Body::CancelSm(c) => {
                    let by_id = !c.message_id.is_empty();
                    let target = if by_id {
                        Some(CancelTarget::MessageId {
                            message_id: c.message_id,
                            source_addr: c.source.addr,
                        })
                    } else if c.source.addr.is_empty() || c.dest.addr.is_empty() {
                        // Without a message_id the spec needs both addresses.
                        None
                    } else {
                        Some(CancelTarget::Addresses {
                            service_type: c.service_type,
                            source_addr: c.source.addr,
                            dest_addr: c.dest.addr,
                        })
                    };
                    match target {
                        None => Err(S::ESME_RCANCELFAIL),
                        Some(target) => match store.cancel(&account.system_id, target).await {
                            Ok(CancelOutcome::Cancelled(_)) => Ok(Body::CancelSmResp),
                            Ok(CancelOutcome::NotFound) if by_id => Err(S::ESME_RINVMSGID),
                            Ok(CancelOutcome::NotFound | CancelOutcome::TooLate) => {
                                Err(S::ESME_RCANCELFAIL)
                            }
                            Err(err) => Err(store_failure(command, &err)),
                        },
                    }
                }
                Body::ReplaceSm(r) => match replacement(r, at) {
                    Ok(replacement) => match store.replace(&account.system_id, replacement).await {
                        Ok(ReplaceOutcome::Replaced) => Ok(Body::ReplaceSmResp),
                        Ok(ReplaceOutcome::NotFound) => Err(S::ESME_RINVMSGID),
                        Ok(ReplaceOutcome::NotReplaceable) => Err(S::ESME_RREPLACEFAIL),
                        Err(err) => Err(store_failure(command, &err)),
                    },
                    Err(status) => Err(status),
                },
                _ => Err(S::ESME_RINVCMDID),
            };
            match answer {
                Ok(body) => Pdu::new(sequence, body),
                Err(status) => refuse(command, status, sequence),
            }
        })
    }
}

/// submit_multi answers OK when at least one destination was stored; its message_id
/// is the first stored destination's, and the others follow it consecutively. When
/// every destination is refused, the first refusal's status is the command_status.
async fn submit_multi(
    store: Store,
    sm: &super::pdu::Sm,
    dests: &[super::pdu::MultiDest],
    account: &AccountPolicy,
    at: SubmitTime,
) -> Result<Body, S> {
    let (accepted, refused) = submit::from_submit_multi(sm, dests, account, at)?;
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
    store_then(store, CommandId::SubmitMulti, accepted, |ids| {
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
