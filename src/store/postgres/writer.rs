//! A node's writer on PostgreSQL: group commit, as on SQLite (sqlite/writer.rs).
//! It takes every command that has gathered, runs them in one transaction on a
//! pooled connection, and answers each caller only after COMMIT returned, which
//! with `synchronous_commit` on (checked at connect) means the WAL is flushed.
//! Other nodes write beside it; row locks and `FOR UPDATE SKIP LOCKED` keep
//! them apart.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnection, PgPool};
use tokio::sync::mpsc;

use super::cluster::{HeldLeases, NodeLock};
use super::messages::WaitingCounts;
use super::wake::Wake;
use super::{amend, deliveries, ids, maintenance, messages, outbox, reports};
use crate::clock::Clock;
pub(super) use crate::store::after_commit::AfterCommit;
use crate::store::after_commit::{DropLogs, Signals};
use crate::store::commands::{finisher, Command, Finisher, Groups, Refusal, ReportBatch, Request};
use crate::store::{WriteHealth, WriterLimits, WriterStep, WriterTime};

/// The lease under which a node runs the periodic maintenance.
pub const MAINTENANCE_LEASE: &str = "maintenance";

/// At most this many commands share one transaction: bounds latency.
const MAX_BATCH: usize = 1024;

pub struct WriterState {
    pub(super) limits: WriterLimits,
    clock: Arc<dyn Clock>,
    pool: PgPool,
    /// For message_id reservations (mod.rs, connect_bookkeeping).
    bookkeeping: PgPool,
    /// Where its commits are made known (store/after_commit.rs).
    signals: Signals,
    drop_logs: DropLogs,
    health: Arc<WriteHealth>,
    time: Arc<WriterTime>,
    /// How long a command may wait for its transaction before it is refused.
    patience: Duration,
    /// This node's name, which its claims carry.
    node_id: String,
    /// Held while the writer runs (cluster::NodeLock).
    node_lock: Option<NodeLock>,
    /// The leases this node holds: its ticks maintain only under "maintenance".
    held: Arc<HeldLeases>,
    pub(super) dead_after_ms: i64,
    /// Waiting messages per account, for `max_queued` (messages.rs).
    waiting: std::sync::Mutex<WaitingCounts>,
}

/// What the writer works with besides its pool.
pub struct Surroundings {
    pub limits: WriterLimits,
    pub clock: Arc<dyn Clock>,
    pub signals: Signals,
    pub health: Arc<WriteHealth>,
    pub time: Arc<WriterTime>,
    pub patience: Duration,
    pub node_id: String,
    pub node_lock: NodeLock,
    pub held: Arc<HeldLeases>,
    pub dead_after_ms: i64,
}

impl WriterState {
    pub fn new(pool: PgPool, bookkeeping: PgPool, around: Surroundings) -> WriterState {
        WriterState {
            bookkeeping,
            limits: around.limits,
            clock: around.clock,
            pool,
            signals: around.signals,
            drop_logs: DropLogs::default(),
            health: around.health,
            time: around.time,
            patience: around.patience,
            node_id: around.node_id,
            node_lock: Some(around.node_lock),
            held: around.held,
            dead_after_ms: around.dead_after_ms,
            waiting: std::sync::Mutex::default(),
        }
    }

    /// Waiting messages per account, for `max_queued` (messages.rs).
    pub(super) fn waiting_counts(&self) -> std::sync::MutexGuard<'_, WaitingCounts> {
        // Each update is a whole insert or addition: consistent after a panic.
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When a receipt or incoming message stored at `now` is dropped unread.
    fn receipt_expiry(&self, now: i64) -> i64 {
        now + self.limits.undelivered_retention.as_millis() as i64
    }
}

pub async fn run(mut requests: mpsc::Receiver<Request>, mut state: WriterState) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let first = tokio::select! {
            request = requests.recv() => match request {
                Some(request) => request,
                None => return,
            },
            _ = tick.tick() => Request {
                command: Command::Tick,
                deadline: Instant::now() + state.patience,
            },
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && !is_close(batch.last()) {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let close = if is_close(batch.last()) {
            batch.pop()
        } else {
            None
        };
        if !batch.is_empty() {
            apply_batch(&mut state, batch).await;
        }
        if let Some(Request {
            command: Command::Close { reply },
            ..
        }) = close
        {
            // Everything answered is committed; the database keeps it. The
            // name goes before the answer: a restart may take it at once.
            if let Some(lock) = state.node_lock.take() {
                lock.release().await;
            }
            state.pool.close().await;
            state.bookkeeping.close().await;
            let _ = reply.send(Ok(()));
            return;
        }
    }
}

fn is_close(request: Option<&Request>) -> bool {
    matches!(
        request,
        Some(Request {
            command: Command::Close { .. },
            ..
        })
    )
}

/// One group commit: refuses what waited too long, reserves the submits'
/// message_ids, begins, applies every command, commits, and only then answers.
async fn apply_batch(state: &mut WriterState, batch: Vec<Request>) {
    let started = Instant::now();
    let (live, expired): (Vec<Request>, Vec<Request>) =
        batch.into_iter().partition(|r| r.deadline > started);
    if !expired.is_empty() {
        // Their callers have given up; an ESME will submit again, so applying
        // them now could send a message twice.
        let refusal = Refusal::Busy(state.patience);
        refuse_all(
            state,
            expired.into_iter().map(|r| r.command).collect(),
            &refusal,
        );
    }
    if live.is_empty() {
        return;
    }
    let batch: Vec<Command> = live.into_iter().map(|r| r.command).collect();
    let requests = batch.iter().filter(|c| !matches!(c, Command::Tick)).count() as u64;
    let now = state.clock.now_ms();
    let submitted: usize = batch
        .iter()
        .map(|c| match c {
            Command::Submit { messages, .. } => messages.len(),
            _ => 0,
        })
        .sum();
    let first_id = match submitted {
        0 => Ok(0),
        n => ids::reserve(&state.bookkeeping, n as u32, now).await,
    };
    let begun = match first_id {
        Ok(first_id) => state
            .pool
            .begin()
            .await
            .map(|tx| (tx, first_id))
            .map_err(|err| err.to_string()),
        Err(err) => Err(err.to_string()),
    };
    let (mut tx, first_id) = match begun {
        Ok(begun) => begun,
        Err(reason) => {
            refuse_all(state, batch, &Refusal::RolledBack(reason));
            return;
        }
    };
    let mut finishers: Vec<Finisher> = Vec::with_capacity(batch.len());
    let mut after = AfterCommit::default();
    let applied = apply_commands(
        &mut tx,
        state,
        now,
        first_id,
        batch,
        &mut after,
        &mut finishers,
    )
    .await;
    let committed = match applied {
        Err(err) => {
            let _ = tx.rollback().await;
            Err(Refusal::RolledBack(err.to_string()))
        }
        Ok(()) => {
            let commit_started = Instant::now();
            let committed = tx.commit().await;
            state.time.add(WriterStep::Commit, commit_started.elapsed());
            committed.map_err(|err| Refusal::RolledBack(err.to_string()))
        }
    };
    if let Err(refusal) = committed {
        // Health first: a caller that hears "no" already finds /readyz saying so.
        state
            .health
            .failed(refusal.error().to_string(), requests, Instant::now())
            .log();
        finishers
            .into_iter()
            .for_each(|finish| finish(Err(&refusal)));
        return;
    }
    state.health.succeeded(Instant::now()).log();
    state.time.committed();
    finishers.into_iter().for_each(|finish| finish(Ok(())));
    if let Some(limits) = after.take_limits(&state.limits) {
        state.limits = limits;
    }
    let waiting = after.publish(&state.signals, &mut state.drop_logs, now);
    state.waiting_counts().committed(&waiting);
}

/// Refuses commands unapplied, after recording why.
fn refuse_all(state: &WriterState, commands: Vec<Command>, refusal: &Refusal) {
    let requests = commands
        .iter()
        .filter(|c| !matches!(c, Command::Tick))
        .count() as u64;
    if requests > 0 {
        state
            .health
            .failed(refusal.error().to_string(), requests, Instant::now())
            .log();
    }
    commands.into_iter().for_each(|c| c.refuse(refusal));
}

/// Every command of a batch inside its transaction: submits first, then the
/// sets (dispatch outcomes, deliveries, reports) and the rest in order; then
/// the accounts' delivery caps.
async fn apply_commands(
    conn: &mut PgConnection,
    state: &WriterState,
    now: i64,
    first_id: i64,
    batch: Vec<Command>,
    after: &mut AfterCommit,
    finishers: &mut Vec<Finisher>,
) -> Result<(), sqlx::Error> {
    let timed = |step: WriterStep, since: Instant| state.time.add(step, since.elapsed());
    let (submits, others): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .partition(|c| matches!(c, Command::Submit { .. }));
    if !submits.is_empty() {
        let since = Instant::now();
        messages::submit_all(conn, state, now, first_id, submits, after, finishers).await?;
        timed(WriterStep::Submit, since);
    }
    let mut groups = Groups::default();
    let mut rest = Vec::new();
    for command in others {
        if let Some(command) = groups.take(command) {
            rest.push(command);
        }
    }
    let keep = state.receipt_expiry(now);
    if !groups.dispatched.is_empty() {
        let since = Instant::now();
        outbox::record_dispatch(conn, now, keep, groups.dispatched, after).await?;
        finishers.extend(
            groups
                .dispatch_replies
                .into_iter()
                .map(|r| finisher(r, Ok(()))),
        );
        timed(WriterStep::Dispatch, since);
    }
    for command in rest {
        let since = Instant::now();
        let claim = matches!(command, Command::Claim { .. });
        if let Some(finish) = apply_command(conn, state, now, command, after).await? {
            finishers.push(finish);
        }
        if claim {
            timed(WriterStep::Claim, since);
        }
    }
    if !groups.delivery_replies.is_empty() {
        let since = Instant::now();
        deliveries::attempted(conn, now, &groups.attempted).await?;
        deliveries::acknowledge(conn, now, &groups.acknowledged).await?;
        finishers.extend(
            groups
                .delivery_replies
                .into_iter()
                .map(|r| finisher(r, Ok(()))),
        );
        timed(WriterStep::Deliveries, since);
    }
    if !groups.reports.is_empty() {
        let since = Instant::now();
        record_all_reports(conn, now, keep, groups.reports, after, finishers).await?;
        timed(WriterStep::Reports, since);
    }
    let since = Instant::now();
    let dropped = deliveries::enforce_caps(conn, &state.limits, &after.deliveries).await?;
    timed(WriterStep::Deliveries, since);
    after.dropped.extend(dropped);
    // The other nodes hear of their work at COMMIT.
    let wake = Wake {
        ready: after.is_ready(),
        deliveries: after.has_deliveries(),
    };
    super::wake::notify(conn, wake, &state.node_id).await?;
    Ok(())
}

/// Every RecordReports of the batch as one set; each caller hears how many of
/// its own reports changed something.
async fn record_all_reports(
    conn: &mut PgConnection,
    now: i64,
    keep: i64,
    commands: Vec<Command>,
    after: &mut AfterCommit,
    finishers: &mut Vec<Finisher>,
) -> Result<(), sqlx::Error> {
    let batch = ReportBatch::gather(commands);
    let changed = reports::record_reports(conn, now, keep, &batch.reports, after).await?;
    batch.answer(&changed, finishers);
    Ok(())
}

/// One command other than a submit or a set; its answer, to send once the
/// batch commits.
async fn apply_command(
    conn: &mut PgConnection,
    state: &WriterState,
    now: i64,
    command: Command,
    after: &mut AfterCommit,
) -> Result<Option<Finisher>, sqlx::Error> {
    let keep = state.receipt_expiry(now);
    let finish = match command {
        Command::Cancel {
            system_id,
            target,
            reply,
        } => {
            let outcome = amend::cancel(conn, now, &system_id, target, after).await?;
            finisher(reply, Ok(outcome))
        }
        Command::Replace {
            system_id,
            replacement,
            reply,
        } => {
            let outcome = amend::replace(conn, now, &system_id, replacement).await?;
            finisher(reply, Ok(outcome))
        }
        Command::Maintain { reply } => {
            maintenance::maintain(conn, state, now, after).await?;
            finisher(reply, Ok(()))
        }
        // One node at a time maintains: the holder of the lease.
        Command::Tick if state.held.holds(MAINTENANCE_LEASE) => {
            maintenance::maintain(conn, state, now, after).await?;
            return Ok(None);
        }
        Command::Tick => return Ok(None),
        Command::Claim {
            route,
            limit,
            lease_ms,
            reachable,
            place,
            reply,
        } => {
            let claim = outbox::Claim {
                node_id: &state.node_id,
                route: &route,
                limit,
                lease_until: now + lease_ms,
                reachable: &reachable,
                place,
            };
            let claimed = outbox::claim(conn, claim).await?;
            finisher(reply, Ok(claimed))
        }
        Command::ExpireWaiting { route, reply } => {
            let expired = outbox::expire_waiting(conn, now, keep, &route, after).await?;
            finisher(reply, Ok(expired))
        }
        Command::CheckLater {
            outbox_ids,
            at,
            reply,
        } => {
            outbox::check_later(conn, &outbox_ids, at).await?;
            finisher(reply, Ok(()))
        }
        Command::RecordBind { bind, reply } => {
            let session = deliveries::record_bind(conn, &bind, now).await?;
            finisher(reply, Ok(session))
        }
        Command::BindsSeen { sessions, reply } => {
            deliveries::binds_seen(conn, &sessions, now).await?;
            finisher(reply, Ok(()))
        }
        Command::Reconfigure { limits, reply } => {
            outbox::write_upstream_limits(conn, &limits.upstream_limits).await?;
            after.reconfigured = Some(limits);
            finisher(reply, Ok(()))
        }
        Command::RecordIncoming { incoming, reply } => {
            let news = deliveries::add_incoming(conn, &incoming, now, keep).await?;
            if news {
                after.delivery_added(&incoming.system_id);
            }
            finisher(reply, Ok(news))
        }
        Command::RecordInbox {
            upstream,
            messages,
            read_until,
            reply,
        } => {
            let mut news = 0;
            for incoming in &messages {
                if deliveries::add_incoming(conn, incoming, now, keep).await? {
                    after.delivery_added(&incoming.system_id);
                    news += 1;
                }
            }
            deliveries::move_inbox_cursor(conn, &upstream, read_until).await?;
            finisher(reply, Ok(news))
        }
        // Applied as sets, or together (apply_commands); Close never reaches a
        // batch (run).
        Command::RecordDispatch { .. }
        | Command::RecordReports { .. }
        | Command::Acknowledge { .. }
        | Command::Attempted { .. }
        | Command::Submit { .. }
        | Command::Close { .. } => return Ok(None),
    };
    Ok(Some(finish))
}
