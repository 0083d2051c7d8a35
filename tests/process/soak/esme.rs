//! The soak's ESME: one session at a time, a steady pace of submits, every receipt
//! acknowledged, and a new bind after each kill.

use std::collections::HashMap;

use smpp_broker::smpp::pdu::tlv::tag;
use smpp_broker::smpp::pdu::{Bind, BindKind, Body, CommandStatus, MessageIdResp, Pdu};
use testkit::sms::sm;
use testkit::Esme;
use tokio::net::TcpStream;

use super::*;

/// The ESME: one transceiver session at a time, submitting at a steady pace with
/// up to WINDOW outstanding, acknowledging every receipt; after a kill it binds
/// to the next instance.
pub(super) async fn esme(mut addrs: watch::Receiver<Addrs>, shared: Arc<Shared>) {
    let (ledger, quit) = (&shared.ledger, &shared.quit);
    let mut ticker = tokio::time::interval(PACE);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut acker = tokio::time::interval(RECEIPT_ACKS_EVERY);
    acker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_n = 0u32;
    loop {
        let mut session = tokio::select! {
            _ = quit.cancelled() => return,
            bound = bind(&mut addrs) => match bound {
                Ok(session) => session,
                Err(problem) => {
                    ledger.lock().unwrap().problem = Some(problem);
                    return;
                }
            },
        };
        let connection = {
            let mut l = ledger.lock().unwrap();
            l.connections += 1;
            l.connections
        };
        // sequence_number → n
        let mut pending: HashMap<u32, u32> = HashMap::new();
        // The sequence_numbers of receipts not yet answered.
        let mut unacknowledged: Vec<u32> = Vec::new();
        loop {
            let room = pending.len() < WINDOW && shared.submitting.load(Ordering::SeqCst);
            tokio::select! {
                _ = quit.cancelled() => return,
                _ = ticker.tick(), if room => {
                    last_n += 1;
                    let seq = session.next_sequence();
                    let text = format!("soak {last_n}");
                    pending.insert(seq, last_n);
                    {
                        let mut l = ledger.lock().unwrap();
                        l.submitted += 1;
                        l.pending = pending.len();
                    }
                    let pdu = Pdu::new(seq, Body::SubmitSm(sm(0, 0, text.as_bytes())));
                    if session.try_send(&pdu).await.is_err() {
                        break;
                    }
                }
                pdu = session.recv_within(Duration::from_secs(3600)) => {
                    let Some(pdu) = pdu else { break };
                    let answer = match pdu.body {
                        Body::SubmitSmResp(resp) => {
                            let mut l = ledger.lock().unwrap();
                            let Some(n) = pending.remove(&pdu.sequence_number) else {
                                l.problem = Some(format!("an answer to no submit: {resp:?}"));
                                return;
                            };
                            l.pending = pending.len();
                            if pdu.command_status == CommandStatus::ESME_ROK {
                                if let Some(other) = l.acknowledged.insert(resp.message_id.clone(), n) {
                                    l.problem = Some(format!(
                                        "message_id {} given to soak {other} and soak {n}",
                                        resp.message_id
                                    ));
                                }
                                shared.events.acknowledged.notify_waiters();
                            } else {
                                l.refused.push((n, pdu.command_status));
                            }
                            None
                        }
                        Body::DeliverSm(receipt) => {
                            let mut l = ledger.lock().unwrap();
                            l.deliver_sms += 1;
                            let id = receipt.tlvs.get_cstring(tag::RECEIPTED_MESSAGE_ID);
                            let state = receipt.tlvs.get_u8(tag::MESSAGE_STATE);
                            match (id, state) {
                                (Some(id), Some(2)) => {
                                    l.receipts.entry(id).or_default().push(connection);
                                }
                                _ => {
                                    l.problem = Some(format!("not a DELIVRD receipt: {receipt:?}"));
                                    return;
                                }
                            }
                            unacknowledged.push(pdu.sequence_number);
                            None
                        }
                        Body::EnquireLink => Some(Body::EnquireLinkResp),
                        other => {
                            ledger.lock().unwrap().problem =
                                Some(format!("unexpected {other:?}"));
                            return;
                        }
                    };
                    if let Some(answer) = answer {
                        if session
                            .try_send(&Pdu::new(pdu.sequence_number, answer))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                }
                _ = acker.tick(), if !unacknowledged.is_empty() => {
                    let mut alive = true;
                    for seq in std::mem::take(&mut unacknowledged) {
                        let ack = Body::DeliverSmResp(MessageIdResp::default());
                        alive = alive && session.try_send(&Pdu::new(seq, ack)).await.is_ok();
                    }
                    if !alive {
                        break;
                    }
                }
            }
        }
        // The instance died: what it had not answered may or may not have been kept.
        let mut l = ledger.lock().unwrap();
        l.unanswered.extend(pending.values());
        l.pending = 0;
        l.unacknowledged_receipts += unacknowledged.len();
    }
}

/// Connects to the current instance and binds as transceiver, retrying until the
/// next instance listens.
async fn bind(addrs: &mut watch::Receiver<Addrs>) -> Result<Esme<TcpStream>, String> {
    let deadline = Instant::now() + RECONNECT_DEADLINE;
    loop {
        let addr = addrs.borrow_and_update().smpp;
        if let Ok(stream) = TcpStream::connect(addr).await {
            let mut session = Esme::over(stream);
            let seq = session.next_sequence();
            let bind = Bind {
                system_id: "acme".into(),
                password: "acme1234".into(),
                interface_version: 0x34,
                ..Bind::default()
            };
            let sent = session
                .try_send(&Pdu::new(seq, Body::Bind(BindKind::Transceiver, bind)))
                .await;
            // A connection to an instance that is just dying ends here; try again.
            if let Some(resp) = if sent.is_ok() {
                session.recv().await
            } else {
                None
            } {
                return match resp.body {
                    Body::BindResp(..) if resp.command_status == CommandStatus::ESME_ROK => {
                        Ok(session)
                    }
                    _ => Err(format!("bind refused: {resp:?}")),
                };
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no broker to bind to within {RECONNECT_DEADLINE:?} (last tried {addr})"
            ));
        }
        // The next instance's address, or another try after a moment.
        let _ = tokio::time::timeout(POLL, addrs.changed()).await;
    }
}
