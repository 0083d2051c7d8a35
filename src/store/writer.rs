//! The single writer: group commit over the only read-write connection.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::sqlite::SqliteConnection;
use sqlx::{Connection, QueryBuilder, Row, Sqlite};
use tokio::sync::{mpsc, oneshot, Notify};
use tracing::{debug, info, warn};

use super::health::WriteHealth;
use super::lock::DatabaseLock;
use super::receipts::{DropReason, DroppedDeliveries};
use super::{checkpoint, dispatch, receipts};
use super::{
    parse_message_id, CancelOutcome, CancelTarget, Dispatch, DispatchOutcome, Incoming,
    MessageState, NewMessage, ReplaceOutcome, Replacement, StoreError, SubmitError, UpstreamReport,
};
use crate::clock::Clock;
use crate::text::{self, Charset, Content};

/// At most this many commands share one transaction: bounds latency and WAL growth.
const MAX_BATCH: usize = 1024;
/// Rows per multi-row INSERT, well inside SQLite's bound-parameter limit; a power
/// of two (see `cacheable_chunks`).
const ROWS_PER_INSERT: usize = 256;
/// message_ids are milliseconds since 2020-01-01 shifted left 20 bits plus a
/// counter: unique, increasing across restarts, at most 19 decimal digits.
const ID_EPOCH_MS: i64 = 1_577_836_800_000;
/// error_code of a long message whose parts did not all arrive in time.
pub const ERR_ASSEMBLY_TIMEOUT: i64 = 1;
/// error_code of a long message whose joined octets do not decode.
pub const ERR_UNDECODABLE: i64 = 2;
/// error_code of a message the upstream refused (HTTP 400).
pub const ERR_UPSTREAM_REJECTED: i64 = 3;
/// error_code of a message the upstream could not deliver (its phone reported a failure).
pub const ERR_UPSTREAM_FAILED: i64 = 4;
/// error_code of a message whose validity ended before it could be handed over.
pub const ERR_EXPIRED: i64 = 5;

/// Limits the writer enforces, since it alone sees every change.
#[derive(Debug, Clone)]
pub struct WriterLimits {
    /// Waiting messages (not yet handed upstream) per account; absent = unlimited.
    pub max_waiting: HashMap<String, usize>,
    pub assembly_timeout: Duration,
    /// Receipts and incoming messages kept per account for its ESMEs, at most;
    /// absent = the default (25,000).
    pub max_undelivered: HashMap<String, usize>,
    /// How long a receipt or incoming message waits for an ESME at most.
    pub undelivered_retention: Duration,
    /// How long a final message is kept before it is deleted.
    pub final_retention: Duration,
}

impl Default for WriterLimits {
    /// No per-account limits; the configuration's default durations.
    fn default() -> Self {
        let messages = crate::config::MessageSettings::default();
        WriterLimits {
            max_waiting: HashMap::new(),
            assembly_timeout: messages.assembly_timeout,
            max_undelivered: HashMap::new(),
            undelivered_retention: messages.undelivered_retention,
            final_retention: messages.final_retention,
        }
    }
}

/// Receipts and incoming messages an account keeps when it names no limit.
pub const DEFAULT_MAX_UNDELIVERED: usize = 25_000;

/// A command and when its caller stops waiting for it.
pub struct Request {
    pub command: Command,
    /// Past it the command is refused unapplied (StoreError::Busy).
    pub deadline: Instant,
}

pub enum Command {
    Submit {
        messages: Vec<NewMessage>,
        reply: oneshot::Sender<Result<Vec<String>, SubmitError>>,
    },
    Cancel {
        system_id: String,
        target: CancelTarget,
        reply: oneshot::Sender<Result<CancelOutcome, StoreError>>,
    },
    Replace {
        system_id: String,
        replacement: Replacement,
        reply: oneshot::Sender<Result<ReplaceOutcome, StoreError>>,
    },
    Maintain {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Claim {
        upstream: String,
        limit: usize,
        lease_ms: i64,
        reply: oneshot::Sender<Result<Vec<Dispatch>, StoreError>>,
    },
    RecordDispatch {
        outcomes: Vec<(i64, DispatchOutcome)>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    RecordReports {
        reports: Vec<UpstreamReport>,
        reply: oneshot::Sender<Result<usize, StoreError>>,
    },
    CheckLater {
        outbox_ids: Vec<i64>,
        at: i64,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    RecordIncoming {
        incoming: Incoming,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    /// Messages read from an upstream's inbox, and how far it has been read.
    RecordInbox {
        upstream: String,
        messages: Vec<Incoming>,
        read_until: i64,
        reply: oneshot::Sender<Result<usize, StoreError>>,
    },
    Acknowledge {
        ids: Vec<i64>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Attempted {
        ids: Vec<i64>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// The writer's own periodic maintenance.
    Tick,
    /// Checkpoint the WAL into the database file and stop (a graceful stop).
    Close {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// Why a command was not applied, or its transaction did not hold.
#[derive(Debug, Clone)]
enum Refusal {
    RolledBack(String),
    Busy(Duration),
    Replaced(PathBuf),
}

impl Refusal {
    fn error(&self) -> StoreError {
        match self {
            Refusal::RolledBack(reason) => StoreError::Commit(reason.clone()),
            Refusal::Busy(waited) => StoreError::Busy(*waited),
            Refusal::Replaced(path) => StoreError::Replaced(path.clone()),
        }
    }
}

impl Command {
    /// Answers the command with `refusal` without applying it.
    fn refuse(self, refusal: &Refusal) {
        fn no<T, E: From<StoreError>>(reply: oneshot::Sender<Result<T, E>>, refusal: &Refusal) {
            let _ = reply.send(Err(E::from(refusal.error())));
        }
        match self {
            Command::Submit { reply, .. } => no(reply, refusal),
            Command::Cancel { reply, .. } => no(reply, refusal),
            Command::Replace { reply, .. } => no(reply, refusal),
            Command::Maintain { reply } => no(reply, refusal),
            Command::Claim { reply, .. } => no(reply, refusal),
            Command::RecordDispatch { reply, .. } => no(reply, refusal),
            Command::RecordReports { reply, .. } => no(reply, refusal),
            Command::CheckLater { reply, .. } => no(reply, refusal),
            Command::RecordIncoming { reply, .. } => no(reply, refusal),
            Command::RecordInbox { reply, .. } => no(reply, refusal),
            Command::Acknowledge { reply, .. } => no(reply, refusal),
            Command::Attempted { reply, .. } => no(reply, refusal),
            Command::Close { reply } => no(reply, refusal),
            Command::Tick => {}
        }
    }
}

/// The database file as it was opened: (device, inode). A file deleted or
/// replaced under the broker keeps taking writes through the open descriptor,
/// and all of them vanish at the next start, so the writer compares the path's
/// identity with this one after every commit.
pub struct DatabaseFile {
    path: PathBuf,
    identity: (u64, u64),
}

impl DatabaseFile {
    pub fn identify(path: &Path) -> std::io::Result<DatabaseFile> {
        Ok(DatabaseFile {
            path: path.to_owned(),
            identity: file_identity(path)?,
        })
    }

    /// Whether the path still names the file that was opened.
    fn unchanged(&self) -> bool {
        file_identity(&self.path).is_ok_and(|id| id == self.identity)
    }
}

#[cfg(unix)]
fn file_identity(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn file_identity(path: &Path) -> std::io::Result<(u64, u64)> {
    std::fs::metadata(path).map(|_| (0, 0))
}

/// Sends a command's answer once the transaction's fate is known.
type Finisher = Box<dyn FnOnce(Result<(), &Refusal>) + Send>;

fn finisher<T: Send + 'static, E: From<StoreError> + Send + 'static>(
    reply: oneshot::Sender<Result<T, E>>,
    outcome: Result<T, E>,
) -> Finisher {
    Box::new(move |committed| {
        let answer = match committed {
            Ok(()) => outcome,
            Err(refusal) => Err(E::from(refusal.error())),
        };
        let _ = reply.send(answer);
    })
}

pub struct WriterState {
    limits: WriterLimits,
    clock: Arc<dyn Clock>,
    /// Waiting messages per account, as committed.
    waiting: HashMap<String, usize>,
    /// Notified after a commit that may have made messages ready to send.
    ready: Arc<Notify>,
    /// Notified after a commit that stored receipts or incoming messages.
    deliveries: Arc<Notify>,
    /// Receipts and incoming messages dropped unread, counted after COMMIT.
    dropped: DroppedDeliveries,
    /// The last message_id handed out. The writer is the only writer, so it numbers
    /// messages itself and an outbox row takes its message's id without a lookup.
    last_id: i64,
    health: Arc<WriteHealth>,
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
    pub ready: Arc<Notify>,
    pub deliveries: Arc<Notify>,
    pub dropped: DroppedDeliveries,
    pub health: Arc<WriteHealth>,
    pub file: DatabaseFile,
    pub busy_timeout: Duration,
    pub lock: DatabaseLock,
}

impl WriterState {
    pub async fn load(
        conn: &mut SqliteConnection,
        around: Surroundings,
    ) -> Result<WriterState, StoreError> {
        // Under the database's lock this process is its only writer, so a claim
        // left from an earlier run belongs to no live dispatcher: send it again now
        // rather than when its lease ends. The upstream recognises the id if it
        // arrived.
        let orphaned = sqlx::query(
            "UPDATE outbox SET state = 'queued', lease_until = NULL WHERE state = 'sending'",
        )
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if orphaned > 0 {
            tracing::info!(
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
            ready: around.ready,
            deliveries: around.deliveries,
            dropped: around.dropped,
            last_id: last_id.unwrap_or(0),
            health: around.health,
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

    fn next_message_id(&mut self, now: i64) -> i64 {
        let candidate = (now - ID_EPOCH_MS).max(0) << 20;
        self.last_id = candidate.max(self.last_id + 1);
        self.last_id
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
        }
        if let Some(Request {
            command: Command::Close { reply },
            ..
        }) = close
        {
            let _ = reply.send(close_database(conn).await);
            // Dropping the state lets go of the database's lock.
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

/// What a transaction changed that the writer acts on only once it commits: the
/// waiting counters, and whether messages became ready to send.
#[derive(Default)]
pub(super) struct Deltas {
    waiting: HashMap<String, i64>,
    ready: bool,
    /// Accounts that got new deliveries, whose limit is checked before COMMIT.
    deliveries: HashMap<String, usize>,
    /// Deliveries dropped unread: (account, why, how many).
    dropped: Vec<(String, DropReason, u64)>,
}

impl Deltas {
    pub(super) fn add(&mut self, system_id: &str, delta: i64) {
        *self.waiting.entry(system_id.to_owned()).or_default() += delta;
    }

    fn pending(&self, system_id: &str) -> i64 {
        self.waiting.get(system_id).copied().unwrap_or(0)
    }

    pub(super) fn mark_ready(&mut self) {
        self.ready = true;
    }

    pub(super) fn delivery_added(&mut self, system_id: &str) {
        *self.deliveries.entry(system_id.to_owned()).or_default() += 1;
    }
}

async fn apply_batch(conn: &mut SqliteConnection, state: &mut WriterState, batch: Vec<Request>) {
    let started = Instant::now();
    let (live, expired): (Vec<Request>, Vec<Request>) =
        batch.into_iter().partition(|r| r.deadline > started);
    if !expired.is_empty() {
        // Their callers have waited busy_timeout already; an ESME may have given up
        // and will submit again, so applying them now could send a message twice.
        let refusal = Refusal::Busy(state.busy_timeout);
        let refused = expired.len() as u64;
        state
            .health
            .failed(refusal.error().to_string(), refused, started)
            .log();
        expired.into_iter().for_each(|r| r.command.refuse(&refusal));
    }
    let Some(earliest) = live.iter().map(|r| r.deadline).min() else {
        return;
    };
    let batch: Vec<Command> = live.into_iter().map(|r| r.command).collect();
    let requests = batch.iter().filter(|c| !matches!(c, Command::Tick)).count() as u64;
    let begun = match bound_lock_wait(conn, state, earliest - started).await {
        Ok(()) => sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await,
        Err(err) => Err(err),
    };
    if let Err(err) = begun {
        let refusal = if is_busy(&err) {
            Refusal::Busy(state.busy_timeout)
        } else {
            Refusal::RolledBack(err.to_string())
        };
        state
            .health
            .failed(refusal.error().to_string(), requests, Instant::now())
            .log();
        batch.into_iter().for_each(|c| c.refuse(&refusal));
        return;
    }
    let mut finishers: Vec<Finisher> = Vec::with_capacity(batch.len());
    let mut deltas = Deltas::default();
    let result = async {
        let now = state.clock.now_ms();
        let (submits, others): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .partition(|c| matches!(c, Command::Submit { .. }));
        submit_all(conn, state, now, submits, &mut deltas, &mut finishers).await?;
        for command in others {
            match command {
                Command::Cancel {
                    system_id,
                    target,
                    reply,
                } => {
                    let outcome = cancel(conn, now, &system_id, target, &mut deltas).await?;
                    finishers.push(finisher(reply, Ok(outcome)));
                }
                Command::Replace {
                    system_id,
                    replacement,
                    reply,
                } => {
                    let outcome = replace(conn, now, &system_id, replacement).await?;
                    finishers.push(finisher(reply, Ok(outcome)));
                }
                Command::Maintain { reply } => {
                    maintain(conn, state, now, &mut deltas).await?;
                    finishers.push(finisher(reply, Ok(())));
                }
                Command::Tick => maintain(conn, state, now, &mut deltas).await?,
                Command::Claim {
                    upstream,
                    limit,
                    lease_ms,
                    reply,
                } => {
                    let claimed = dispatch::claim(conn, now, &upstream, limit, lease_ms).await?;
                    finishers.push(finisher(reply, Ok(claimed)));
                }
                Command::RecordDispatch { outcomes, reply } => {
                    let keep = state.receipt_expiry(now);
                    dispatch::record_dispatch(conn, now, keep, outcomes, &mut deltas).await?;
                    finishers.push(finisher(reply, Ok(())));
                }
                Command::RecordReports { reports, reply } => {
                    let keep = state.receipt_expiry(now);
                    let news =
                        dispatch::record_reports(conn, now, keep, reports, &mut deltas).await?;
                    finishers.push(finisher(reply, Ok(news)));
                }
                Command::CheckLater {
                    outbox_ids,
                    at,
                    reply,
                } => {
                    dispatch::check_later(conn, &outbox_ids, at).await?;
                    finishers.push(finisher(reply, Ok(())));
                }
                Command::RecordIncoming { incoming, reply } => {
                    let keep = state.receipt_expiry(now);
                    let news = receipts::add_incoming(conn, &incoming, now, keep).await?;
                    if news {
                        deltas.delivery_added(&incoming.system_id);
                    }
                    finishers.push(finisher(reply, Ok(news)));
                }
                Command::RecordInbox {
                    upstream,
                    messages,
                    read_until,
                    reply,
                } => {
                    let keep = state.receipt_expiry(now);
                    let mut news = 0;
                    for incoming in &messages {
                        if receipts::add_incoming(conn, incoming, now, keep).await? {
                            deltas.delivery_added(&incoming.system_id);
                            news += 1;
                        }
                    }
                    receipts::move_inbox_cursor(conn, &upstream, read_until).await?;
                    finishers.push(finisher(reply, Ok(news)));
                }
                Command::Acknowledge { ids, reply } => {
                    receipts::acknowledge(conn, &ids).await?;
                    finishers.push(finisher(reply, Ok(())));
                }
                Command::Attempted { ids, reply } => {
                    receipts::attempted(conn, &ids).await?;
                    finishers.push(finisher(reply, Ok(())));
                }
                // Submits went first; Close never reaches a batch (run).
                Command::Submit { .. } | Command::Close { .. } => {}
            }
        }
        for (system_id, added) in &deltas.deliveries {
            let max = state
                .limits
                .max_undelivered
                .get(system_id)
                .copied()
                .unwrap_or(DEFAULT_MAX_UNDELIVERED);
            let dropped = receipts::enforce_cap(conn, system_id, max).await?;
            if dropped > 0 {
                warn!(%system_id, dropped, added, max,
                    "receipts and incoming messages over the account's limit: the oldest were dropped");
                deltas
                    .dropped
                    .push((system_id.clone(), DropReason::OverLimit, dropped));
            }
        }
        Ok::<(), sqlx::Error>(())
    }
    .await;
    let committed = match result {
        Err(err) => Err(Refusal::RolledBack(err.to_string())),
        // Checked before COMMIT, so a refused request is not in the file either if
        // it comes back.
        Ok(()) if !state.file.unchanged() => Err(Refusal::Replaced(state.file.path.clone())),
        Ok(()) => sqlx::query("COMMIT")
            .execute(&mut *conn)
            .await
            .map(|_| ())
            .map_err(|err| Refusal::RolledBack(err.to_string())),
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
    for (system_id, delta) in deltas.waiting {
        let count = state.waiting.entry(system_id).or_default();
        *count = (*count as i64 + delta).max(0) as usize;
    }
    finishers.into_iter().for_each(|finish| finish(Ok(())));
    if deltas.ready {
        state.ready.notify_waiters();
    }
    if !deltas.deliveries.is_empty() {
        state.deliveries.notify_waiters();
    }
    state.dropped.add(deltas.dropped);
}

fn decode_content(charset: Charset, body: &[u8]) -> Option<Content> {
    // The charset was resolved at submit time, with the account's choice for
    // data_coding 0, so the same reading applies here.
    text::decode_as(charset, body)
}

struct OutboxRow<'a> {
    id: i64,
    message: &'a NewMessage,
    content: Content,
    state: &'static str,
    due_at: i64,
}

async fn submit_all(
    conn: &mut SqliteConnection,
    state: &mut WriterState,
    now: i64,
    submits: Vec<Command>,
    deltas: &mut Deltas,
    finishers: &mut Vec<Finisher>,
) -> Result<(), sqlx::Error> {
    let mut accepted: Vec<Accepted> = Vec::new();
    for command in submits {
        let Command::Submit { messages, reply } = command else {
            continue;
        };
        let Some(first) = messages.first() else {
            finishers.push(finisher(reply, Ok(Vec::new())));
            continue;
        };
        let system_id = first.system_id.clone();
        if let Some(&max) = state.limits.max_waiting.get(&system_id) {
            let waiting = state.waiting.get(&system_id).copied().unwrap_or(0) as i64
                + deltas.pending(&system_id);
            if waiting + messages.len() as i64 > max as i64 {
                finishers.push(finisher(reply, Err(SubmitError::QueueFull(max))));
                continue;
            }
        }
        deltas.add(&system_id, messages.len() as i64);
        let ids: Vec<i64> = messages
            .iter()
            .map(|_| state.next_message_id(now))
            .collect();
        finishers.push(finisher(
            reply,
            Ok(ids.iter().map(i64::to_string).collect()),
        ));
        for (message, message_id) in messages.into_iter().zip(ids) {
            let outbox_id = message.concat.is_none().then_some(message_id);
            accepted.push(Accepted {
                message,
                message_id,
                outbox_id,
            });
        }
    }
    if accepted.is_empty() {
        return Ok(());
    }

    // Whole messages get their outbox row straight away; parts wait for their set.
    let mut outbox_rows = Vec::new();
    let mut undecodable = Vec::new();
    for a in &accepted {
        let Some(id) = a.outbox_id else { continue };
        let message = &a.message;
        let content = message
            .content
            .clone()
            .or_else(|| decode_content(message.charset, &message.body));
        match content {
            Some(content) => {
                let (state, due_at) = schedule(message.scheduled_at, now);
                outbox_rows.push(OutboxRow {
                    id,
                    message,
                    content,
                    state,
                    due_at,
                });
            }
            // Validated before it reached the store, so this is a bug if it happens.
            None => undecodable.push(a.message_id),
        }
    }
    if !outbox_rows.is_empty() {
        deltas.mark_ready();
    }
    for chunk in cacheable_chunks(&outbox_rows) {
        insert_outbox(conn, now, chunk).await?;
    }
    for chunk in cacheable_chunks(&accepted) {
        insert_messages(conn, now, chunk).await?;
    }
    for id in undecodable {
        warn!(message_id = %id, "stored message does not decode; rejected");
        sqlx::query("UPDATE messages SET state = 'rejected', final_at = ?1, error_code = ?2 WHERE message_id = ?3")
            .bind(now)
            .bind(ERR_UNDECODABLE)
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    let mut sets: Vec<&str> = accepted
        .iter()
        .filter_map(|a| a.message.concat.as_ref().map(|c| c.key.as_str()))
        .collect();
    sets.sort_unstable();
    sets.dedup();
    for key in sets {
        complete_set_if_whole(conn, now, key, deltas).await?;
    }
    Ok(())
}

/// Splits rows into chunks of ROWS_PER_INSERT, 128, 64, … 1 rows: a multi-row
/// INSERT's text depends on its row count, so a handful of sizes keeps every
/// statement in the connection's prepared-statement cache instead of preparing a
/// new one for each batch.
fn cacheable_chunks<T>(mut rows: &[T]) -> Vec<&[T]> {
    let mut chunks = Vec::new();
    let mut size = ROWS_PER_INSERT;
    while !rows.is_empty() {
        while size > rows.len() {
            size /= 2;
        }
        let (chunk, rest) = rows.split_at(size);
        chunks.push(chunk);
        rows = rest;
    }
    chunks
}

/// A message scheduled in the future waits as 'scheduled'; otherwise it is queued now.
fn schedule(scheduled_at: Option<i64>, now: i64) -> (&'static str, i64) {
    match scheduled_at {
        Some(at) if at > now => ("scheduled", at),
        _ => ("queued", now),
    }
}

async fn insert_outbox(
    conn: &mut SqliteConnection,
    now: i64,
    rows: &[OutboxRow<'_>],
) -> Result<(), sqlx::Error> {
    let mut insert: QueryBuilder<Sqlite> = QueryBuilder::new(
        "INSERT INTO outbox (id, system_id, upstream, state, priority, due_at, expires_at, \
         dest_ton, dest_addr, source_addr, text, data, data_coding, registered_delivery, \
         created_at) ",
    );
    insert.push_values(rows, |mut b, row| {
        let m = row.message;
        let (text, data) = match &row.content {
            Content::Text(t) => (Some(t.clone()), None),
            Content::Binary(d) => (None, Some(d.clone())),
        };
        b.push_bind(row.id)
            .push_bind(&m.system_id)
            .push_bind(&m.upstream)
            .push_bind(row.state)
            .push_bind(i64::from(m.priority))
            .push_bind(row.due_at)
            .push_bind(m.expires_at)
            .push_bind(i64::from(m.dest.ton))
            .push_bind(&m.dest.addr)
            .push_bind(&m.source.addr)
            .push_bind(text)
            .push_bind(data)
            .push_bind(i64::from(m.data_coding))
            .push_bind(i64::from(m.registered_delivery))
            .push_bind(now);
    });
    insert.build().execute(&mut *conn).await?;
    Ok(())
}

async fn insert_messages(
    conn: &mut SqliteConnection,
    now: i64,
    rows: &[Accepted],
) -> Result<(), sqlx::Error> {
    let mut insert: QueryBuilder<Sqlite> = QueryBuilder::new(
        "INSERT INTO messages (message_id, system_id, upstream, state, service_type, \
         source_ton, source_npi, source_addr, dest_ton, dest_npi, dest_addr, esm_class, \
         protocol_id, priority, registered_delivery, data_coding, charset, \
         user_message_reference, body, concat_key, concat_total, concat_seq, outbox_id, \
         submitted_at, scheduled_at, expires_at) ",
    );
    insert.push_values(rows, |mut b, a| {
        let (m, id) = (&a.message, a.message_id);
        let state = match &m.concat {
            Some(_) => "assembling",
            None => schedule(m.scheduled_at, now).0,
        };
        b.push_bind(id)
            .push_bind(&m.system_id)
            .push_bind(&m.upstream)
            .push_bind(state)
            .push_bind(&m.service_type)
            .push_bind(i64::from(m.source.ton))
            .push_bind(i64::from(m.source.npi))
            .push_bind(&m.source.addr)
            .push_bind(i64::from(m.dest.ton))
            .push_bind(i64::from(m.dest.npi))
            .push_bind(&m.dest.addr)
            .push_bind(i64::from(m.esm_class))
            .push_bind(i64::from(m.protocol_id))
            .push_bind(i64::from(m.priority))
            .push_bind(i64::from(m.registered_delivery))
            .push_bind(i64::from(m.data_coding))
            .push_bind(m.charset.as_str())
            .push_bind(m.user_message_reference.map(i64::from))
            .push_bind(&m.body)
            .push_bind(m.concat.as_ref().map(|c| c.key.clone()))
            .push_bind(m.concat.as_ref().map(|c| i64::from(c.total)))
            .push_bind(m.concat.as_ref().map(|c| i64::from(c.seq)));
        b.push_bind(a.outbox_id)
            .push_bind(now)
            .push_bind(m.scheduled_at)
            .push_bind(m.expires_at);
    });
    insert.build().execute(&mut *conn).await?;
    Ok(())
}

/// When every part of a long message is in, joins them (in part order, first copy of
/// a duplicated part) into one outbox row and moves the parts on.
async fn complete_set_if_whole(
    conn: &mut SqliteConnection,
    now: i64,
    key: &str,
    deltas: &mut Deltas,
) -> Result<(), sqlx::Error> {
    let parts = sqlx::query(
        "SELECT message_id, concat_seq, concat_total, body, charset, data_coding, system_id, \
         upstream, priority, scheduled_at, expires_at, dest_ton, dest_addr, source_addr, \
         registered_delivery FROM messages \
         WHERE concat_key = ?1 AND state = 'assembling' ORDER BY concat_seq, message_id",
    )
    .bind(key)
    .fetch_all(&mut *conn)
    .await?;
    let Some(first) = parts.first() else {
        return Ok(());
    };
    let total = first.get::<i64, _>(2) as usize;
    let mut by_seq: BTreeMap<i64, &[u8]> = BTreeMap::new();
    for part in &parts {
        by_seq
            .entry(part.get(1))
            .or_insert_with(|| part.get::<&[u8], _>(3));
    }
    if by_seq.len() < total {
        return Ok(());
    }
    let joined: Vec<u8> = by_seq
        .values()
        .flat_map(|body| body.iter().copied())
        .collect();
    let charset = Charset::parse(first.get::<&str, _>(4)).unwrap_or(Charset::Binary);
    let data_coding = first.get::<i64, _>(5) as u8;
    let system_id: String = first.get(6);
    let Some(content) = decode_content(charset, &joined) else {
        let failed = sqlx::query(
            "UPDATE messages SET state = 'rejected', final_at = ?1, error_code = ?2 \
             WHERE concat_key = ?3 AND state = 'assembling'",
        )
        .bind(now)
        .bind(ERR_UNDECODABLE)
        .bind(key)
        .execute(&mut *conn)
        .await?;
        deltas.add(&system_id, -(failed.rows_affected() as i64));
        warn!(
            concat_key = key,
            "long message does not decode once joined; rejected"
        );
        return Ok(());
    };
    let (text, data) = match content {
        Content::Text(t) => (Some(t), None),
        Content::Binary(d) => (None, Some(d)),
    };
    // The first part's message_id names the set's outbox row, and upstream.
    let outbox_id: i64 = first.get(0);
    let scheduled_at: Option<i64> = first.get(9);
    let (state, due_at) = schedule(scheduled_at, now);
    let expires_at = parts
        .iter()
        .map(|p| p.get::<i64, _>(10))
        .min()
        .unwrap_or(now);
    // Any part may be the one that asks for a report; each part's own receipts
    // follow its own value (see receipts.rs).
    let registered_delivery =
        receipts::covering_request(parts.iter().map(|p| p.get::<i64, _>(14) as u8));
    sqlx::query(
        "INSERT INTO outbox (id, system_id, upstream, state, priority, due_at, expires_at, \
         dest_ton, dest_addr, source_addr, text, data, data_coding, registered_delivery, \
         created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )
    .bind(outbox_id)
    .bind(&system_id)
    .bind(first.get::<String, _>(7))
    .bind(state)
    .bind(first.get::<i64, _>(8))
    .bind(due_at)
    .bind(expires_at)
    .bind(first.get::<i64, _>(11))
    .bind(first.get::<String, _>(12))
    .bind(first.get::<String, _>(13))
    .bind(text)
    .bind(data)
    .bind(i64::from(data_coding))
    .bind(i64::from(registered_delivery))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    deltas.mark_ready();
    sqlx::query(
        "UPDATE messages SET state = ?1, outbox_id = ?2 WHERE concat_key = ?3 AND state = 'assembling'",
    )
    .bind(state)
    .bind(outbox_id)
    .bind(key)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Outbox states in which no dispatcher has the row: cancel and replace may act.
const UNSENT: &str = "('scheduled', 'queued', 'retry')";

/// The messages an outbox row carries, with the row's id as `?1` or `?2`: the
/// message of that id, or the parts of a set (which alone have the parts index).
pub(super) const CARRIED_BY_OUTBOX_1: &str =
    "(message_id = ?1 OR (outbox_id = ?1 AND concat_key IS NOT NULL))";
const CARRIED_BY_OUTBOX_2: &str =
    "(message_id = ?2 OR (outbox_id = ?2 AND concat_key IS NOT NULL))";

/// A message the writer accepted, with its ids.
struct Accepted {
    message: NewMessage,
    message_id: i64,
    /// The outbox row of a whole message; None for a part that waits for its set.
    outbox_id: Option<i64>,
}

/// The messages one cancel acts on: the named one with its whole set, or every
/// waiting message between two addresses.
async fn cancel(
    conn: &mut SqliteConnection,
    now: i64,
    system_id: &str,
    target: CancelTarget,
    deltas: &mut Deltas,
) -> Result<CancelOutcome, sqlx::Error> {
    let rows = match &target {
        CancelTarget::MessageId {
            message_id,
            source_addr,
        } => {
            let Some(message_id) = parse_message_id(message_id) else {
                return Ok(CancelOutcome::NotFound);
            };
            sqlx::query(
                "SELECT message_id, state, outbox_id, concat_key FROM messages \
                 WHERE message_id = ?1 AND system_id = ?2 AND (?3 = '' OR source_addr = ?3)",
            )
            .bind(message_id)
            .bind(system_id)
            .bind(source_addr)
            .fetch_all(&mut *conn)
            .await?
        }
        CancelTarget::Addresses {
            service_type,
            source_addr,
            dest_addr,
        } => {
            sqlx::query(
                "SELECT message_id, state, outbox_id, concat_key FROM messages \
                 WHERE system_id = ?1 AND source_addr = ?2 AND dest_addr = ?3 \
                 AND (?4 = '' OR service_type = ?4)",
            )
            .bind(system_id)
            .bind(source_addr)
            .bind(dest_addr)
            .bind(service_type)
            .fetch_all(&mut *conn)
            .await?
        }
    };
    if rows.is_empty() {
        return Ok(CancelOutcome::NotFound);
    }
    let mut cancelled = 0usize;
    for row in rows {
        if !MessageState::parse(row.get::<&str, _>(1)).is_waiting() {
            continue;
        }
        let outbox_id: Option<i64> = row.get(2);
        let concat_key: Option<String> = row.get(3);
        // A part cancels its whole set: upstream, the set is one message.
        let done =
            match (outbox_id, concat_key) {
                (Some(outbox_id), _) => {
                    // A row a dispatcher has claimed may be on the wire already.
                    let unsent = sqlx::query(&format!(
                        "UPDATE outbox SET state = 'done', last_error = 'cancelled' \
                         WHERE id = ?1 AND state IN {UNSENT}"
                    ))
                    .bind(outbox_id)
                    .execute(&mut *conn)
                    .await?;
                    if unsent.rows_affected() == 0 {
                        continue;
                    }
                    sqlx::query(&format!(
                        "UPDATE messages SET state = 'deleted', final_at = ?1 \
                     WHERE {CARRIED_BY_OUTBOX_2} AND state IN ('scheduled', 'queued')"
                    ))
                    .bind(now)
                    .bind(outbox_id)
                    .execute(&mut *conn)
                    .await?
                }
                (None, Some(key)) => {
                    sqlx::query(
                        "UPDATE messages SET state = 'deleted', final_at = ?1 \
                     WHERE concat_key = ?2 AND state = 'assembling'",
                    )
                    .bind(now)
                    .bind(key)
                    .execute(&mut *conn)
                    .await?
                }
                (None, None) => sqlx::query(
                    "UPDATE messages SET state = 'deleted', final_at = ?1 WHERE message_id = ?2",
                )
                .bind(now)
                .bind(row.get::<i64, _>(0))
                .execute(&mut *conn)
                .await?,
            };
        let count = done.rows_affected() as usize;
        deltas.add(system_id, -(count as i64));
        cancelled += count;
    }
    Ok(if cancelled > 0 {
        CancelOutcome::Cancelled(cancelled)
    } else {
        CancelOutcome::TooLate
    })
}

async fn replace(
    conn: &mut SqliteConnection,
    now: i64,
    system_id: &str,
    r: Replacement,
) -> Result<ReplaceOutcome, sqlx::Error> {
    let Some(message_id) = parse_message_id(&r.message_id) else {
        return Ok(ReplaceOutcome::NotFound);
    };
    let row = sqlx::query(
        "SELECT message_id, state, outbox_id, concat_key, charset, data_coding, scheduled_at, \
         expires_at FROM messages \
         WHERE message_id = ?1 AND system_id = ?2 AND (?3 = '' OR source_addr = ?3)",
    )
    .bind(message_id)
    .bind(system_id)
    .bind(&r.source_addr)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(ReplaceOutcome::NotFound);
    };
    let state = MessageState::parse(row.get::<&str, _>(1));
    let outbox_id: Option<i64> = row.get(2);
    let concat_key: Option<String> = row.get(3);
    let (Some(outbox_id), None, true) = (
        outbox_id,
        concat_key,
        matches!(state, MessageState::Queued | MessageState::Scheduled),
    ) else {
        return Ok(ReplaceOutcome::NotReplaceable);
    };
    let charset = Charset::parse(row.get::<&str, _>(4)).unwrap_or(Charset::Binary);
    let Some(content) = decode_content(charset, &r.body) else {
        return Ok(ReplaceOutcome::NotReplaceable);
    };
    let unsent: Option<i64> = sqlx::query_scalar(&format!(
        "SELECT id FROM outbox WHERE id = ?1 AND state IN {UNSENT}"
    ))
    .bind(outbox_id)
    .fetch_optional(&mut *conn)
    .await?;
    if unsent.is_none() {
        return Ok(ReplaceOutcome::NotReplaceable);
    }
    let scheduled_at = r.scheduled_at.or(row.get(6));
    let expires_at = r.expires_at.unwrap_or(row.get(7));
    let (new_state, due_at) = schedule(scheduled_at, now);
    let (text, data) = match content {
        Content::Text(t) => (Some(t), None),
        Content::Binary(d) => (None, Some(d)),
    };
    sqlx::query(
        "UPDATE messages SET body = ?1, registered_delivery = ?2, scheduled_at = ?3, \
         expires_at = ?4, state = ?5 WHERE message_id = ?6",
    )
    .bind(&r.body)
    .bind(i64::from(r.registered_delivery))
    .bind(scheduled_at)
    .bind(expires_at)
    .bind(new_state)
    .bind(row.get::<i64, _>(0))
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE outbox SET text = ?1, data = ?2, registered_delivery = ?3, due_at = ?4, \
         expires_at = ?5, state = ?6 WHERE id = ?7",
    )
    .bind(text)
    .bind(data)
    .bind(i64::from(r.registered_delivery))
    .bind(due_at)
    .bind(expires_at)
    .bind(new_state)
    .bind(outbox_id)
    .execute(&mut *conn)
    .await?;
    Ok(ReplaceOutcome::Replaced)
}

/// Promotes scheduled messages that are due and fails long messages still missing
/// parts after the assembly timeout.
async fn maintain(
    conn: &mut SqliteConnection,
    state: &WriterState,
    now: i64,
    deltas: &mut Deltas,
) -> Result<(), sqlx::Error> {
    // Scheduled messages and retries that are due, and claims whose lease ran out
    // (a crashed or hung dispatch), go back to the queue.
    let due = sqlx::query(
        "UPDATE outbox SET state = 'queued', lease_until = NULL \
         WHERE (state IN ('scheduled', 'retry') AND due_at <= ?1) \
         OR (state = 'sending' AND lease_until <= ?1) RETURNING id",
    )
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    if !due.is_empty() {
        deltas.mark_ready();
    }
    for row in &due {
        sqlx::query(&format!(
            "UPDATE messages SET state = 'queued' WHERE {CARRIED_BY_OUTBOX_1} AND state = 'scheduled'"
        ))
        .bind(row.get::<i64, _>(0))
        .execute(&mut *conn)
        .await?;
    }
    let cutoff = now - state.limits.assembly_timeout.as_millis() as i64;
    let timed_out = sqlx::query(
        "UPDATE messages SET state = 'undeliverable', final_at = ?1, error_code = ?2 \
         WHERE state = 'assembling' AND submitted_at <= ?3 RETURNING system_id",
    )
    .bind(now)
    .bind(ERR_ASSEMBLY_TIMEOUT)
    .bind(cutoff)
    .fetch_all(&mut *conn)
    .await?;
    for row in &timed_out {
        deltas.add(row.get::<&str, _>(0), -1);
    }
    if !timed_out.is_empty() {
        warn!(
            parts = timed_out.len(),
            "long-message parts timed out waiting for the rest of their set"
        );
    }
    receipts::forget_seen(conn, now).await?;
    let cutoff = now - state.limits.final_retention.as_millis() as i64;
    let purged = purge_final(conn, cutoff).await?;
    if purged > 0 {
        debug!(
            purged,
            "final messages past messages.final_retention deleted"
        );
    }
    for (system_id, dropped) in receipts::expire(conn, now).await? {
        warn!(%system_id, dropped,
            "receipts and incoming messages no receiver took within the retention were dropped");
        deltas
            .dropped
            .push((system_id, DropReason::Expired, dropped as u64));
    }
    Ok(())
}

/// Final messages deleted per maintenance tick at most: the writer holds its
/// transaction meanwhile, so a large backlog goes over many ticks.
const PURGE_BATCH: i64 = 2_000;

/// Deletes messages that became final before `cutoff` (and were submitted before
/// it: message_ids grow with time, so the scan walks the primary key from its
/// oldest end), then the done outbox rows none of whose messages is left.
async fn purge_final(conn: &mut SqliteConnection, cutoff: i64) -> Result<u64, sqlx::Error> {
    let below_id = (cutoff - ID_EPOCH_MS).max(0) << 20;
    let purged = sqlx::query(
        "DELETE FROM messages WHERE message_id IN (SELECT message_id FROM messages \
         WHERE message_id < ?1 AND final_at IS NOT NULL AND final_at < ?2 \
         ORDER BY message_id LIMIT ?3)",
    )
    .bind(below_id)
    .bind(cutoff)
    .bind(PURGE_BATCH)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if purged > 0 {
        sqlx::query(
            "DELETE FROM outbox WHERE id IN (SELECT o.id FROM outbox o WHERE o.id < ?1 \
             AND o.state = 'done' AND NOT EXISTS (SELECT 1 FROM messages m \
             WHERE m.message_id = o.id OR (m.outbox_id = o.id AND m.concat_key IS NOT NULL)) \
             ORDER BY o.id LIMIT ?2)",
        )
        .bind(below_id)
        .bind(PURGE_BATCH)
        .execute(&mut *conn)
        .await?;
    }
    Ok(purged)
}

#[cfg(test)]
mod tests {
    use super::cacheable_chunks;

    #[test]
    fn chunks_use_few_distinct_sizes() {
        let rows: Vec<u32> = (0..700).collect();
        let sizes: Vec<usize> = cacheable_chunks(&rows).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [256, 256, 128, 32, 16, 8, 4]);
        assert_eq!(sizes.iter().sum::<usize>(), 700);
        assert!(cacheable_chunks::<u32>(&[]).is_empty());
    }
}
