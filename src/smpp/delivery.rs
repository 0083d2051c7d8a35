//! Hands stored receipts and incoming messages to the receiving sessions of
//! their account: round-robin, each delivery on one session, at most a window of
//! unacknowledged deliver_sm per session. A delivery leaves the database only
//! when an ESME acknowledged it; a negative answer, a response timeout or a lost
//! session makes it eligible again (at least once).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::incoming::incoming_sms;
use super::pdu::Body;
use super::receipt::receipt_sm;
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::store::{Acknowledged, DeliveryContent, PendingDelivery, Store};
use crate::text::LongIncoming;

/// The deliver_sm for one session to send, and which delivery they carry: one,
/// or the segments of a long incoming message.
#[derive(Debug)]
pub struct DeliveryJob {
    pub id: i64,
    pub bodies: Vec<Body>,
}

enum HubEvent {
    Register {
        system_id: String,
        session_id: u64,
        window: usize,
        long_incoming: LongIncoming,
        jobs: mpsc::Sender<DeliveryJob>,
    },
    Unregister {
        system_id: String,
        session_id: u64,
    },
    Done {
        system_id: String,
        session_id: u64,
        id: i64,
        acknowledged: bool,
    },
    /// What the ESMEs answered for these deliveries is in the store (or failed
    /// to be: then they go out again, at least once).
    Settled {
        ids: Vec<i64>,
        /// Some are waiting again (refused, or their answer not stored).
        again: bool,
    },
}

/// The sessions' handle on the hub.
#[derive(Clone)]
pub struct DeliveryHub {
    events: mpsc::UnboundedSender<HubEvent>,
}

impl DeliveryHub {
    pub fn start(
        store: Store,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> DeliveryHub {
        let (events, receiver) = mpsc::unbounded_channel();
        let hub = Hub {
            store,
            clock,
            metrics,
            accounts: HashMap::new(),
            settling: HashSet::new(),
            events: events.clone(),
            tracker: tracker.clone(),
        };
        tracker.spawn(hub.run(receiver, shutdown));
        DeliveryHub { events }
    }

    /// A receiving session of `system_id`: deliveries for it arrive on the
    /// returned channel, at most `window` unacknowledged deliver_sm at a time
    /// (a long incoming message in segments may go past it, once the session has
    /// room).
    pub fn register(
        &self,
        system_id: &str,
        session_id: u64,
        window: usize,
        long_incoming: LongIncoming,
    ) -> mpsc::Receiver<DeliveryJob> {
        let (jobs, receiver) = mpsc::channel(window.max(1));
        let _ = self.events.send(HubEvent::Register {
            system_id: system_id.to_owned(),
            session_id,
            window: window.max(1),
            long_incoming,
            jobs,
        });
        receiver
    }

    pub fn unregister(&self, system_id: &str, session_id: u64) {
        let _ = self.events.send(HubEvent::Unregister {
            system_id: system_id.to_owned(),
            session_id,
        });
    }

    /// The ESME answered (or never answered) a deliver_sm of delivery `id`.
    pub fn done(&self, system_id: &str, session_id: u64, id: i64, acknowledged: bool) {
        let _ = self.events.send(HubEvent::Done {
            system_id: system_id.to_owned(),
            session_id,
            id,
            acknowledged,
        });
    }
}

struct Receiver {
    session_id: u64,
    jobs: mpsc::Sender<DeliveryJob>,
    window: usize,
    unacknowledged: usize,
}

#[derive(Default)]
struct AccountState {
    receivers: Vec<Receiver>,
    /// Where the round-robin goes on.
    next: usize,
    /// Deliveries on some session's wire.
    in_flight: HashMap<i64, InFlight>,
    long_incoming: LongIncoming,
    /// Every waiting delivery up to this id is on a wire or being settled: the
    /// next read starts after it, instead of reading those again each time
    /// (hundreds of rows to hand out a few). 0 reads from the start: after a
    /// delivery was refused or its answer not stored, and once a second.
    cursor: i64,
}

/// A delivery whose deliver_sm are out: it is acknowledged once every one of
/// them is, and goes out again (whole) if any is not.
struct InFlight {
    /// The session it was handed to, and when (Unix ms).
    session_id: u64,
    sent_at: i64,
    unanswered: usize,
    refused: bool,
    /// `receipt` or `incoming`, for the deliveries metric.
    kind: &'static str,
}

struct Hub {
    store: Store,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    accounts: HashMap<String, AccountState>,
    /// Deliveries answered whose answer is being stored: not sent again
    /// meanwhile, though their rows are still there.
    settling: HashSet<i64>,
    /// For the Settled events of the tasks that store the answers.
    events: mpsc::UnboundedSender<HubEvent>,
    tracker: TaskTracker,
}

impl Hub {
    async fn run(mut self, mut events: mpsc::UnboundedReceiver<HubEvent>, stop: CancellationToken) {
        let signal = self.store.deliveries_signal();
        loop {
            let notified = signal.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            tokio::select! {
                _ = stop.cancelled() => return,
                event = events.recv() => {
                    let Some(event) = event else { return };
                    let mut acknowledged = Vec::new();
                    let mut attempted = Vec::new();
                    self.handle(event, &mut acknowledged, &mut attempted);
                    while let Ok(event) = events.try_recv() {
                        self.handle(event, &mut acknowledged, &mut attempted);
                    }
                    self.record(acknowledged, attempted);
                }
                _ = &mut notified => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => self.read_from_start(),
            }
            self.fill_all().await;
        }
    }

    fn handle(
        &mut self,
        event: HubEvent,
        acknowledged: &mut Vec<Acknowledged>,
        attempted: &mut Vec<i64>,
    ) {
        match event {
            HubEvent::Register {
                system_id,
                session_id,
                window,
                long_incoming,
                jobs,
            } => {
                let account = self.accounts.entry(system_id).or_default();
                account.long_incoming = long_incoming;
                account.receivers.push(Receiver {
                    session_id,
                    jobs,
                    window,
                    unacknowledged: 0,
                });
            }
            HubEvent::Unregister {
                system_id,
                session_id,
            } => {
                if let Some(account) = self.accounts.get_mut(&system_id) {
                    account.receivers.retain(|r| r.session_id != session_id);
                    // What the session answered or released came before this
                    // event; what is left it never took from its queue: waiting
                    // again, for the other sessions.
                    let before = account.in_flight.len();
                    account.in_flight.retain(|_, f| f.session_id != session_id);
                    if account.in_flight.len() < before {
                        account.cursor = 0;
                    }
                    if account.receivers.is_empty() {
                        // Another node's sessions may take them now, not when
                        // this node's claim runs out (a shared store).
                        let store = self.store.clone();
                        self.tracker.spawn(async move {
                            if let Err(err) = store.release_deliveries(&system_id).await {
                                warn!(%system_id, error = %err, "releasing deliveries failed");
                            }
                        });
                    }
                }
            }
            HubEvent::Settled { ids, again } => {
                for id in ids {
                    self.settling.remove(&id);
                }
                if again {
                    self.read_from_start();
                }
            }
            HubEvent::Done {
                system_id,
                session_id,
                id,
                acknowledged: ok,
            } => {
                let Some(account) = self.accounts.get_mut(&system_id) else {
                    return;
                };
                if let Some(r) = account
                    .receivers
                    .iter_mut()
                    .find(|r| r.session_id == session_id)
                {
                    r.unacknowledged = r.unacknowledged.saturating_sub(1);
                }
                let Some(flight) = account.in_flight.get_mut(&id) else {
                    return;
                };
                flight.unanswered = flight.unanswered.saturating_sub(1);
                flight.refused |= !ok;
                if flight.unanswered > 0 {
                    return;
                }
                let (refused, kind, sent_at) = (flight.refused, flight.kind, flight.sent_at);
                account.in_flight.remove(&id);
                self.metrics.delivery(&system_id, kind, !refused);
                if refused {
                    attempted.push(id);
                } else {
                    acknowledged.push(Acknowledged {
                        id,
                        session_id,
                        sent_at,
                    });
                }
            }
        }
    }

    /// Stores the answers in a task of its own, so that handing out more
    /// deliveries does not wait for the commit; until it is done, the rows
    /// are skipped (`settling`).
    fn record(&mut self, acknowledged: Vec<Acknowledged>, attempted: Vec<i64>) {
        if acknowledged.is_empty() && attempted.is_empty() {
            return;
        }
        let ids: Vec<i64> = acknowledged
            .iter()
            .map(|a| a.id)
            .chain(attempted.iter().copied())
            .collect();
        self.settling.extend(&ids);
        let (store, events) = (self.store.clone(), self.events.clone());
        self.tracker.spawn(async move {
            let mut again = !attempted.is_empty();
            if !acknowledged.is_empty() {
                if let Err(err) = store.acknowledge_deliveries(acknowledged).await {
                    // Not removed: delivered again later, which at-least-once allows.
                    warn!(error = %err, "acknowledged deliveries not recorded");
                    again = true;
                }
            }
            if !attempted.is_empty() {
                if let Err(err) = store.delivery_attempted(attempted).await {
                    warn!(error = %err, "failed delivery attempts not recorded");
                }
            }
            let _ = events.send(HubEvent::Settled { ids, again });
        });
    }

    /// The next reads start from the first waiting delivery again.
    fn read_from_start(&mut self) {
        for account in self.accounts.values_mut() {
            account.cursor = 0;
        }
    }

    async fn fill_all(&mut self) {
        let names: Vec<String> = self
            .accounts
            .iter()
            .filter(|(_, a)| a.receivers.iter().any(|r| r.unacknowledged < r.window))
            .map(|(name, _)| name.clone())
            .collect();
        for system_id in names {
            self.fill(&system_id).await;
        }
    }

    /// Gives each receiver of the account deliveries up to its window.
    async fn fill(&mut self, system_id: &str) {
        let Some(account) = self.accounts.get(system_id) else {
            return;
        };
        let room: usize = account
            .receivers
            .iter()
            .map(|r| r.window.saturating_sub(r.unacknowledged))
            .sum();
        // From the start, the deliveries on a wire or being settled come again.
        let limit = if account.cursor == 0 {
            room + account.in_flight.len() + self.settling.len()
        } else {
            room
        };
        let after = account.cursor;
        let pending = match self.store.pending_deliveries(system_id, after, limit).await {
            Ok(pending) => pending,
            Err(err) => {
                warn!(%system_id, error = %err, "reading waiting deliveries failed");
                return;
            }
        };
        let now = self.clock.now_ms();
        let Some(account) = self.accounts.get_mut(system_id) else {
            return;
        };
        let mut gone = false;
        for delivery in pending {
            if account.in_flight.contains_key(&delivery.id) || self.settling.contains(&delivery.id)
            {
                account.cursor = account.cursor.max(delivery.id);
                continue;
            }
            let count = account.receivers.len();
            let Some(offset) = (0..count).find(|k| {
                let r = &account.receivers[(account.next + k) % count];
                r.unacknowledged < r.window
            }) else {
                break;
            };
            let index = (account.next + offset) % count;
            account.next = index + 1;
            let receiver = &mut account.receivers[index];
            let bodies = deliver_sm(&delivery, now, account.long_incoming);
            let kind = match delivery.content {
                DeliveryContent::Receipt(_) => "receipt",
                DeliveryContent::Incoming { .. } => "incoming",
            };
            let count = bodies.len();
            let job = DeliveryJob {
                id: delivery.id,
                bodies,
            };
            match receiver.jobs.try_send(job) {
                Ok(()) => {
                    receiver.unacknowledged += count;
                    let flight = InFlight {
                        session_id: receiver.session_id,
                        sent_at: now,
                        unanswered: count,
                        refused: false,
                        kind,
                    };
                    account.in_flight.insert(delivery.id, flight);
                    account.cursor = account.cursor.max(delivery.id);
                }
                // The session is closing: it unregisters shortly.
                Err(_) => {
                    debug!(%system_id, session_id = receiver.session_id, "receiver gone");
                    gone = true;
                }
            }
        }
        if gone {
            account.cursor = 0;
        }
    }
}

/// The deliver_sm for a stored receipt or incoming message: one, or the
/// segments of a long incoming message.
pub fn deliver_sm(delivery: &PendingDelivery, now: i64, long: LongIncoming) -> Vec<Body> {
    match &delivery.content {
        DeliveryContent::Receipt(facts) => vec![Body::DeliverSm(receipt_sm(facts, now))],
        DeliveryContent::Incoming {
            source_addr,
            dest_addr,
            content,
        } => {
            // The same delivery keeps its reference when it goes out again.
            let reference = delivery.id as u8;
            incoming_sms(source_addr, dest_addr, content, long, reference)
                .into_iter()
                .map(Body::DeliverSm)
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::config::StoreSettings;
    use crate::store::Incoming;
    use crate::store::WriterLimits;
    use crate::text::Content;

    const PATIENCE: Duration = Duration::from_secs(5);

    async fn store(dir: &std::path::Path) -> Store {
        let settings = StoreSettings::sqlite(dir.join("hub.db"));
        let clock = Arc::new(ManualClock::new(1_790_000_000_000));
        Store::open(&settings, WriterLimits::for_tests(), clock)
            .await
            .unwrap()
    }

    async fn incoming(store: &Store, n: u32) {
        let stored = store
            .record_incoming(Incoming {
                system_id: "acme".into(),
                source_addr: "+4917611111111".into(),
                dest_addr: "+4915100000".into(),
                content: Content::Text(format!("hello {n}")),
                dedupe_key: format!("mo:test:{n}"),
            })
            .await
            .unwrap();
        assert!(stored);
    }

    fn hub(store: &Store) -> (DeliveryHub, CancellationToken) {
        let stop = CancellationToken::new();
        let hub = DeliveryHub::start(
            store.clone(),
            Arc::new(ManualClock::new(1_790_000_000_000)),
            Arc::new(Metrics::default()),
            stop.clone(),
            &TaskTracker::new(),
        );
        (hub, stop)
    }

    async fn next(jobs: &mut mpsc::Receiver<DeliveryJob>) -> DeliveryJob {
        tokio::time::timeout(PATIENCE, jobs.recv())
            .await
            .expect("a delivery in time")
            .expect("the hub is running")
    }

    /// A session closes with deliveries handed to it that it never took from
    /// its queue: they go to the account's other session, without waiting for
    /// a restart.
    #[tokio::test]
    async fn deliveries_a_closed_session_never_took_go_to_another() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let (hub, stop) = hub(&store);
        let untaken = hub.register("acme", 1, 2, LongIncoming::Udh);
        incoming(&store, 1).await;
        incoming(&store, 2).await;
        // Both are handed to session 1, which never reads its queue.
        tokio::time::timeout(PATIENCE, async {
            while untaken.len() < 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("both handed to session 1");
        let mut other = hub.register("acme", 2, 2, LongIncoming::Udh);
        hub.unregister("acme", 1);
        drop(untaken);
        let ids = [next(&mut other).await.id, next(&mut other).await.id];
        assert_ne!(ids[0], ids[1], "both, once each");
        stop.cancel();
    }

    /// A refused delivery goes out again although newer ones were handed out
    /// after it: the hub's cursor has moved past it, and a refusal (or, at the
    /// latest, the sweep once a second) makes it read from the start again.
    #[tokio::test]
    async fn a_refused_delivery_goes_out_again_after_newer_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let (hub, stop) = hub(&store);
        let mut jobs = hub.register("acme", 1, 1, LongIncoming::Udh);
        for n in 1..=3 {
            incoming(&store, n).await;
        }
        let first = next(&mut jobs).await.id;
        hub.done("acme", 1, first, false);
        let second = next(&mut jobs).await.id;
        assert_ne!(second, first, "the window moves on to the next");
        hub.done("acme", 1, second, true);
        let mut seen = vec![];
        for _ in 0..2 {
            let job = next(&mut jobs).await;
            hub.done("acme", 1, job.id, true);
            seen.push(job.id);
        }
        assert!(
            seen.contains(&first),
            "the refused one came again: {seen:?}"
        );
        stop.cancel();
    }
}
