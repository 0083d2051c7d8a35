//! The single writer: group commit over the only read-write connection.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::sqlite::SqliteConnection;
use sqlx::{Connection, Row};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::lock::{DatabaseFile, DatabaseLock};
use super::StoreError;
use super::{amend, checkpoint, deliveries, maintenance, messages, outbox, reports, sql};
use crate::clock::Clock;
pub(super) use crate::store::after_commit::AfterCommit;
use crate::store::after_commit::{DropLogs, Signals};
pub(super) use crate::store::commands::{finisher, Command, Finisher, Request};
use crate::store::commands::{Groups, Refusal, ReportBatch};
use crate::store::WriterLimits;
use crate::store::{WriteHealth, WriterStep, WriterTime};

/// At most this many commands share one transaction: bounds latency and WAL growth.
const MAX_BATCH: usize = 1024;
pub struct WriterState {
    pub(super) limits: WriterLimits,
    clock: Arc<dyn Clock>,
    /// Waiting messages per account, as committed.
    pub(super) waiting: HashMap<String, usize>,
    /// Where its commits are made known (store/after_commit.rs).
    signals: Signals,
    drop_logs: DropLogs,
    /// The last message_id handed out. The writer is the only writer, so it numbers
    /// messages itself and an outbox row takes its message's id without a lookup.
    pub(super) last_id: i64,
    health: Arc<WriteHealth>,
    time: Arc<WriterTime>,
    file: DatabaseFile,
    /// The connection's busy_timeout as configured, and as set now (a transaction
    /// whose oldest request has waited gets only what remains of it).
    busy_timeout: Duration,
    busy_timeout_now: Duration,
    /// Held while the writer runs: this process owns the database.
    _lock: DatabaseLock,
}

/// What the writer works with besides its connection.
pub struct Surroundings {
    pub limits: WriterLimits,
    pub clock: Arc<dyn Clock>,
    pub signals: Signals,
    pub health: Arc<WriteHealth>,
    pub time: Arc<WriterTime>,
    pub file: DatabaseFile,
    pub busy_timeout: Duration,
    pub lock: DatabaseLock,
}

impl WriterState {
    pub async fn load(
        conn: &mut SqliteConnection,
        around: Surroundings,
    ) -> Result<WriterState, StoreError> {
        let orphaned = maintenance::requeue_orphaned_claims(&mut *conn).await?;
        sql::create_scratch_tables(&mut *conn).await?;
        outbox::write_upstream_limits(&mut *conn, &around.limits.upstream_limits).await?;
        if orphaned > 0 {
            info!(
                messages = orphaned,
                "claims of the previous run returned to the queue"
            );
        }
        let rows = sqlx::query(
            "SELECT system_id, count(*) FROM messages \
             WHERE state IN ('assembling', 'scheduled', 'queued') GROUP BY system_id",
        )
        .fetch_all(&mut *conn)
        .await?;
        let waiting = rows
            .iter()
            .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1) as usize))
            .collect();
        let last_id: Option<i64> = sqlx::query("SELECT max(message_id) FROM messages")
            .fetch_one(&mut *conn)
            .await?
            .get(0);
        Ok(WriterState {
            limits: around.limits,
            clock: around.clock,
            waiting,
            signals: around.signals,
            drop_logs: DropLogs::default(),
            last_id: last_id.unwrap_or(0),
            health: around.health,
            time: around.time,
            file: around.file,
            busy_timeout: around.busy_timeout,
            busy_timeout_now: around.busy_timeout,
            _lock: around.lock,
        })
    }

    /// When a receipt or incoming message stored at `now` is dropped unread.
    fn receipt_expiry(&self, now: i64) -> i64 {
        now + self.limits.undelivered_retention.as_millis() as i64
    }
}

pub async fn run(
    mut conn: SqliteConnection,
    mut requests: mpsc::Receiver<Request>,
    mut state: WriterState,
) {
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
                deadline: Instant::now() + state.busy_timeout,
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
            apply_batch(&mut conn, &mut state, batch).await;
            bound_wal(&mut conn, &state).await;
        }
        if let Some(Request {
            command: Command::Close { reply },
            ..
        }) = close
        {
            let closed = close_database(conn).await;
            // The lock goes with the state, before the answer: whoever hears
            // "closed" may open the database again at once (a restart).
            drop(state);
            let _ = reply.send(closed);
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

/// Keeps the WAL near its limit (`checkpoint::WAL_LIMIT`) under sustained load. The
/// checkpoint task copies frames beside the writer, but while the writer keeps
/// appending it never finds them all copied, and SQLite starts the WAL over
/// only then: at 50,000 submits a second it grew past 1 GB. Past the limit the
/// writer copies the rest itself between two transactions (only the frames
/// since the last background checkpoint, milliseconds of work), so that its next
/// transaction starts the WAL from the beginning.
async fn bound_wal(conn: &mut SqliteConnection, state: &WriterState) {
    if state.file.wal_bytes() <= state.limits.wal_limit {
        return;
    }
    let started = Instant::now();
    match checkpoint::checkpoint(conn, "PASSIVE").await {
        Ok(progress) => debug!(
            wal_pages = progress.wal_pages,
            copied = progress.copied,
            busy = progress.busy,
            "WAL over its limit: checkpointed by the writer"
        ),
        Err(err) => warn!(error = %err, "WAL checkpoint by the writer failed"),
    }
    state.time.add(WriterStep::Checkpoint, started.elapsed());
}

/// Copies the whole WAL into the database file and closes the connection.
async fn close_database(mut conn: SqliteConnection) -> Result<(), StoreError> {
    let progress = checkpoint::checkpoint(&mut conn, "TRUNCATE").await?;
    if progress.busy {
        warn!(
            wal_pages = progress.wal_pages,
            copied = progress.copied,
            "the final WAL checkpoint could not finish: a reader held it back; \
             the WAL file beside the database still holds the rest"
        );
    } else {
        info!(
            wal_pages = progress.wal_pages,
            "WAL checkpointed into the database file"
        );
    }
    conn.close().await?;
    Ok(())
}

/// SQLITE_BUSY, in any of its extended forms: another connection holds the lock.
fn is_busy(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|code| code & 0xff == 5),
        _ => false,
    }
}

/// Gives BEGIN IMMEDIATE only what remains of the oldest request's wait, so that
/// every request is answered within busy_timeout of being sent: one that arrived
/// while an earlier transaction waited for the lock would otherwise wait twice.
async fn bound_lock_wait(
    conn: &mut SqliteConnection,
    state: &mut WriterState,
    remaining: Duration,
) -> Result<(), sqlx::Error> {
    let wanted = remaining
        .min(state.busy_timeout)
        .max(Duration::from_millis(1));
    let differs = wanted.abs_diff(state.busy_timeout_now) > Duration::from_millis(20);
    if differs {
        sqlx::query(&format!("PRAGMA busy_timeout = {}", wanted.as_millis()))
            .execute(&mut *conn)
            .await?;
        state.busy_timeout_now = wanted;
    }
    Ok(())
}

/// One group commit: refuses what waited too long, begins (waiting for the lock at
/// most what remains of the oldest request's busy_timeout), applies every
/// command, commits, and only then answers.
async fn apply_batch(conn: &mut SqliteConnection, state: &mut WriterState, batch: Vec<Request>) {
    let started = Instant::now();
    let (live, expired): (Vec<Request>, Vec<Request>) =
        batch.into_iter().partition(|r| r.deadline > started);
    if !expired.is_empty() {
        // Their callers have waited busy_timeout already; an ESME may have given up
        // and will submit again, so applying them now could send a message twice.
        let refusal = Refusal::Busy(state.busy_timeout);
        let commands = expired.into_iter().map(|r| r.command).collect();
        refuse_all(state, commands, &refusal);
    }
    let Some(earliest) = live.iter().map(|r| r.deadline).min() else {
        return;
    };
    let batch: Vec<Command> = live.into_iter().map(|r| r.command).collect();
    let time = Arc::clone(&state.time);
    let mut steps = Steps::new(&time);
    steps.start();
    let begun = match bound_lock_wait(conn, state, earliest - started).await {
        Ok(()) => sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await,
        Err(err) => Err(err),
    };
    steps.end(WriterStep::Commit);
    if let Err(err) = begun {
        let refusal = if is_busy(&err) {
            Refusal::Busy(state.busy_timeout)
        } else {
            Refusal::RolledBack(err.to_string())
        };
        refuse_all(state, batch, &refusal);
        return;
    }
    let requests = batch.iter().filter(|c| !matches!(c, Command::Tick)).count() as u64;
    let mut finishers: Vec<Finisher> = Vec::with_capacity(batch.len());
    let mut after = AfterCommit::default();
    let result = apply_commands(conn, state, batch, &mut after, &mut finishers, &mut steps).await;
    let committed = match result {
        Err(err) => Err(Refusal::RolledBack(err.to_string())),
        // Checked before COMMIT, so a refused request is not in the file either if
        // it comes back.
        Ok(()) if !state.file.unchanged() => Err(Refusal::Replaced(state.file.path.clone())),
        Ok(()) => {
            steps.start();
            let committed = sqlx::query("COMMIT").execute(&mut *conn).await;
            steps.end(WriterStep::Commit);
            committed
                .map(|_| ())
                .map_err(|err| Refusal::RolledBack(err.to_string()))
        }
    };
    if let Err(refusal) = committed {
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
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
    steps.finish(started.elapsed());
    finishers.into_iter().for_each(|finish| finish(Ok(())));
    if let Some(limits) = after.take_limits(&state.limits) {
        state.limits = limits;
    }
    let now_ms = state.clock.now_ms();
    let waiting = after.publish(&state.signals, &mut state.drop_logs, now_ms);
    for (system_id, delta) in waiting {
        let count = state.waiting.entry(system_id).or_default();
        *count = (*count as i64 + delta).max(0) as usize;
    }
}

/// Times the steps of one transaction; what they do not cover is `Other`.
struct Steps<'a> {
    time: &'a WriterTime,
    covered: Duration,
    since: Instant,
}

impl<'a> Steps<'a> {
    fn new(time: &'a WriterTime) -> Steps<'a> {
        Steps {
            time,
            covered: Duration::ZERO,
            since: Instant::now(),
        }
    }

    /// Starts timing a step.
    fn start(&mut self) {
        self.since = Instant::now();
    }

    /// The step begun with `start` ended.
    fn end(&mut self, step: WriterStep) {
        let spent = self.since.elapsed();
        self.covered += spent;
        self.time.add(step, spent);
    }

    /// The transaction took `total` in all.
    fn finish(self, total: Duration) {
        self.time
            .add(WriterStep::Other, total.saturating_sub(self.covered));
    }
}

/// Refuses commands unapplied, after recording why.
fn refuse_all(state: &WriterState, commands: Vec<Command>, refusal: &Refusal) {
    let requests = commands
        .iter()
        .filter(|c| !matches!(c, Command::Tick))
        .count() as u64;
    state
        .health
        .failed(refusal.error().to_string(), requests, Instant::now())
        .log();
    commands.into_iter().for_each(|c| c.refuse(refusal));
}

/// Every command of a batch inside its transaction: submits first, in one set of
/// multi-row INSERTs, then the rest in order; then the accounts' delivery caps.
async fn apply_commands(
    conn: &mut SqliteConnection,
    state: &mut WriterState,
    batch: Vec<Command>,
    after: &mut AfterCommit,
    finishers: &mut Vec<Finisher>,
    steps: &mut Steps<'_>,
) -> Result<(), sqlx::Error> {
    let now = state.clock.now_ms();
    let (submits, others): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .partition(|c| matches!(c, Command::Submit { .. }));
    if !submits.is_empty() {
        steps.start();
        messages::submit_all(conn, state, now, submits, after, finishers).await?;
        steps.end(WriterStep::Submit);
    }
    // The commands dispatchers, webhooks and sessions send most often are each
    // applied as one set, however many callers sent them: a statement is a round
    // trip to SQLite's thread (sql::Script). Each caller's own commands keep
    // their order: a dispatcher's outcomes come before its next claim.
    let mut groups = Groups::default();
    let mut rest = Vec::new();
    for command in others {
        if let Some(command) = groups.take(command) {
            rest.push(command);
        }
    }
    let keep = state.receipt_expiry(now);
    if !groups.dispatched.is_empty() {
        steps.start();
        outbox::record_dispatch(conn, now, keep, groups.dispatched, after).await?;
        finishers.extend(
            groups
                .dispatch_replies
                .into_iter()
                .map(|r| finisher(r, Ok(()))),
        );
        steps.end(WriterStep::Dispatch);
    }
    for command in rest {
        let claim = matches!(command, Command::Claim { .. });
        steps.start();
        if let Some(finish) = apply_command(conn, state, now, command, after).await? {
            finishers.push(finish);
        }
        if claim {
            steps.end(WriterStep::Claim);
        }
    }
    if !groups.delivery_replies.is_empty() {
        steps.start();
        if !groups.attempted.is_empty() {
            deliveries::attempted(conn, now, &groups.attempted).await?;
        }
        if !groups.acknowledged.is_empty() {
            deliveries::acknowledge(conn, now, &groups.acknowledged).await?;
        }
        finishers.extend(
            groups
                .delivery_replies
                .into_iter()
                .map(|r| finisher(r, Ok(()))),
        );
        steps.end(WriterStep::Deliveries);
    }
    if !groups.reports.is_empty() {
        steps.start();
        record_all_reports(conn, state, now, groups.reports, after, finishers).await?;
        steps.end(WriterStep::Reports);
    }
    steps.start();
    let dropped = deliveries::enforce_caps(conn, &state.limits, &after.deliveries).await?;
    steps.end(WriterStep::Deliveries);
    after.dropped.extend(dropped);
    Ok(())
}

/// Every RecordReports of the batch as one set; each caller hears how many of
/// its own reports changed something.
async fn record_all_reports(
    conn: &mut SqliteConnection,
    state: &WriterState,
    now: i64,
    commands: Vec<Command>,
    after: &mut AfterCommit,
    finishers: &mut Vec<Finisher>,
) -> Result<(), sqlx::Error> {
    if commands.is_empty() {
        return Ok(());
    }
    let batch = ReportBatch::gather(commands);
    let keep = state.receipt_expiry(now);
    let changed = reports::record_reports(conn, now, keep, &batch.reports, after).await?;
    batch.answer(&changed, finishers);
    Ok(())
}

/// One command other than a submit; its answer, to send once the batch commits.
async fn apply_command(
    conn: &mut SqliteConnection,
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
            maintenance::maintain(conn, &state.limits, now, after).await?;
            finisher(reply, Ok(()))
        }
        Command::Tick => {
            maintenance::maintain(conn, &state.limits, now, after).await?;
            return Ok(None);
        }
        Command::Claim {
            route,
            limit,
            lease_ms,
            reachable,
            place,
            reply,
        } => {
            let claim = outbox::Claim {
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
        // Applied as sets (Groups).
        Command::RecordDispatch { .. }
        | Command::RecordReports { .. }
        | Command::Acknowledge { .. }
        | Command::Attempted { .. } => return Ok(None),
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
        // Submits are applied together (apply_commands); Close never reaches a
        // batch (run).
        Command::Submit { .. } | Command::Close { .. } => return Ok(None),
    };
    Ok(Some(finish))
}
