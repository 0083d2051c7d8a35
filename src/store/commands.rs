//! What the writer is asked to do: the commands callers send it, how each is
//! answered once its transaction's fate is known, and the kinds it applies as
//! one set however many callers sent them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::{
    Acknowledged, CancelOutcome, CancelTarget, Dispatch, DispatchOutcome, ExpiredWaiting, Incoming,
    NewMessage, Placer, ReplaceOutcome, Replacement, SessionBind, StoreError, SubmitError,
    UpstreamReport, WriterLimits,
};

/// The way to a backend's writer task: each call sends it a command and waits
/// for the answer, which comes once the command's transaction committed.
#[derive(Clone)]
pub struct Writer {
    sender: mpsc::Sender<Request>,
    /// How long a command may wait for the writer before it is refused unapplied.
    patience: Duration,
}

impl Writer {
    pub(super) fn new(sender: mpsc::Sender<Request>, patience: Duration) -> Writer {
        Writer { sender, patience }
    }

    /// Writes what the backend holds in memory out and stops the writer.
    /// Commands sent after this fail with WriterGone.
    pub(super) async fn close(&self) -> Result<(), StoreError> {
        self.call(|reply| Command::Close { reply }).await?
    }

    /// Sends a command to the writer and waits for its answer. The writer answers
    /// within its patience (SQLite: busy_timeout) of the send, or refuses the command unapplied
    /// (StoreError::Busy): a caller that gave up waiting is never told "no" for
    /// something that was then written.
    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            command: make(reply),
            deadline: Instant::now() + self.patience,
        };
        self.sender
            .send(request)
            .await
            .map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)
    }

    /// Stores messages atomically and returns their message_ids, in order, once
    /// they are committed.
    pub async fn submit(&self, messages: Vec<NewMessage>) -> Result<Vec<String>, SubmitError> {
        self.call(|reply| Command::Submit { messages, reply })
            .await?
    }

    pub async fn cancel(
        &self,
        system_id: &str,
        target: CancelTarget,
    ) -> Result<CancelOutcome, StoreError> {
        let system_id = system_id.to_owned();
        self.call(|reply| Command::Cancel {
            system_id,
            target,
            reply,
        })
        .await?
    }

    pub async fn replace(
        &self,
        system_id: &str,
        replacement: Replacement,
    ) -> Result<ReplaceOutcome, StoreError> {
        let system_id = system_id.to_owned();
        self.call(|reply| Command::Replace {
            system_id,
            replacement,
            reply,
        })
        .await?
    }

    /// Promotes due scheduled messages and fails long messages whose parts did not
    /// all arrive in time. Runs every second on its own; tests call it directly.
    pub async fn maintain(&self) -> Result<(), StoreError> {
        self.call(|reply| Command::Maintain { reply }).await?
    }

    pub async fn claim(
        &self,
        route: &str,
        limit: usize,
        lease_ms: i64,
        reachable: &[String],
        place: Placer,
    ) -> Result<Vec<Dispatch>, StoreError> {
        let route = route.to_owned();
        let reachable = reachable.to_vec();
        self.call(|reply| Command::Claim {
            route,
            limit,
            lease_ms,
            reachable,
            place,
            reply,
        })
        .await?
    }

    pub async fn expire_waiting(&self, route: &str) -> Result<Vec<ExpiredWaiting>, StoreError> {
        let route = route.to_owned();
        self.call(|reply| Command::ExpireWaiting { route, reply })
            .await?
    }

    /// Stores what became of claimed messages (by outbox id).
    pub async fn record_dispatch(
        &self,
        outcomes: Vec<(i64, DispatchOutcome)>,
    ) -> Result<(), StoreError> {
        self.call(|reply| Command::RecordDispatch { outcomes, reply })
            .await?
    }

    /// Stores states reported by an upstream; returns how many were news (a
    /// repeated or stale report changes nothing).
    pub async fn record_reports(&self, reports: Vec<UpstreamReport>) -> Result<usize, StoreError> {
        self.call(|reply| Command::RecordReports { reports, reply })
            .await?
    }

    /// Polls of these enroute rows are next due at `at`.
    pub async fn check_later(&self, outbox_ids: Vec<i64>, at: i64) -> Result<(), StoreError> {
        self.call(|reply| Command::CheckLater {
            outbox_ids,
            at,
            reply,
        })
        .await?
    }

    /// Stores an incoming message for the account's receivers; false when it was
    /// stored before.
    pub async fn record_incoming(&self, incoming: Incoming) -> Result<bool, StoreError> {
        self.call(|reply| Command::RecordIncoming { incoming, reply })
            .await?
    }

    /// Stores messages read from `upstream`'s inbox and moves its cursor to
    /// `read_until`, in one transaction; returns how many were new.
    pub async fn record_inbox(
        &self,
        upstream: &str,
        messages: Vec<Incoming>,
        read_until: i64,
    ) -> Result<usize, StoreError> {
        let upstream = upstream.to_owned();
        self.call(|reply| Command::RecordInbox {
            upstream,
            messages,
            read_until,
            reply,
        })
        .await?
    }

    /// The ESME acknowledged these deliveries: they are done.
    pub async fn acknowledge_deliveries(&self, acks: Vec<Acknowledged>) -> Result<(), StoreError> {
        self.call(|reply| Command::Acknowledge { acks, reply })
            .await?
    }

    /// Records a successful bind; returns the number its session's messages
    /// name it by.
    pub async fn record_bind(&self, bind: SessionBind) -> Result<i64, StoreError> {
        self.call(|reply| Command::RecordBind { bind, reply })
            .await?
    }

    /// These binds' sessions are still bound (`session_binds.seen_at`).
    pub async fn binds_seen(&self, sessions: Vec<i64>) -> Result<(), StoreError> {
        self.call(|reply| Command::BindsSeen { sessions, reply })
            .await?
    }

    /// Limits from a reloaded configuration: the upstreams' limits are
    /// written, and the rest hold from the next transaction on.
    pub async fn reconfigure(&self, limits: WriterLimits) -> Result<(), StoreError> {
        self.call(|reply| Command::Reconfigure { limits, reply })
            .await?
    }

    /// These deliveries were not acknowledged; they wait for another attempt.
    pub async fn delivery_attempted(&self, ids: Vec<i64>) -> Result<(), StoreError> {
        self.call(|reply| Command::Attempted { ids, reply }).await?
    }
}

/// A command and when its caller stops waiting for it.
pub struct Request {
    pub command: Command,
    /// Past it the command is refused unapplied (StoreError::Busy).
    pub deadline: Instant,
}

pub(super) enum Command {
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
        route: String,
        limit: usize,
        lease_ms: i64,
        /// Members a bound message may go to now.
        reachable: Vec<String>,
        place: Placer,
        reply: oneshot::Sender<Result<Vec<Dispatch>, StoreError>>,
    },
    ExpireWaiting {
        route: String,
        reply: oneshot::Sender<Result<Vec<ExpiredWaiting>, StoreError>>,
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
        acks: Vec<Acknowledged>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Attempted {
        ids: Vec<i64>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    RecordBind {
        bind: SessionBind,
        reply: oneshot::Sender<Result<i64, StoreError>>,
    },
    BindsSeen {
        sessions: Vec<i64>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Reconfigure {
        limits: WriterLimits,
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
pub(super) enum Refusal {
    RolledBack(String),
    Busy(Duration),
    Replaced(PathBuf),
}

impl Refusal {
    pub(super) fn error(&self) -> StoreError {
        match self {
            Refusal::RolledBack(reason) => StoreError::Commit(reason.clone()),
            Refusal::Busy(waited) => StoreError::Busy(*waited),
            Refusal::Replaced(path) => StoreError::Replaced(path.clone()),
        }
    }
}

impl Command {
    /// Answers the command with `refusal` without applying it.
    pub(super) fn refuse(self, refusal: &Refusal) {
        fn no<T, E: From<StoreError>>(reply: oneshot::Sender<Result<T, E>>, refusal: &Refusal) {
            let _ = reply.send(Err(E::from(refusal.error())));
        }
        match self {
            Command::Submit { reply, .. } => no(reply, refusal),
            Command::Cancel { reply, .. } => no(reply, refusal),
            Command::Replace { reply, .. } => no(reply, refusal),
            Command::Maintain { reply } => no(reply, refusal),
            Command::Claim { reply, .. } => no(reply, refusal),
            Command::ExpireWaiting { reply, .. } => no(reply, refusal),
            Command::RecordDispatch { reply, .. } => no(reply, refusal),
            Command::RecordReports { reply, .. } => no(reply, refusal),
            Command::CheckLater { reply, .. } => no(reply, refusal),
            Command::RecordIncoming { reply, .. } => no(reply, refusal),
            Command::RecordInbox { reply, .. } => no(reply, refusal),
            Command::Acknowledge { reply, .. } => no(reply, refusal),
            Command::Attempted { reply, .. } => no(reply, refusal),
            Command::Reconfigure { reply, .. } => no(reply, refusal),
            Command::RecordBind { reply, .. } => no(reply, refusal),
            Command::BindsSeen { reply, .. } => no(reply, refusal),
            Command::Close { reply } => no(reply, refusal),
            Command::Tick => {}
        }
    }
}

/// Sends a command's answer once the transaction's fate is known.
pub(super) type Finisher = Box<dyn FnOnce(Result<(), &Refusal>) + Send>;

pub(super) fn finisher<T: Send + 'static, E: From<StoreError> + Send + 'static>(
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

/// The commands of a batch that are applied as sets.
#[derive(Default)]
pub(super) struct Groups {
    pub(super) dispatched: Vec<(i64, DispatchOutcome)>,
    pub(super) dispatch_replies: Vec<oneshot::Sender<Result<(), StoreError>>>,
    pub(super) acknowledged: Vec<Acknowledged>,
    pub(super) attempted: Vec<i64>,
    pub(super) delivery_replies: Vec<oneshot::Sender<Result<(), StoreError>>>,
    pub(super) reports: Vec<Command>,
}

impl Groups {
    /// Takes `command` into its group; gives back one that has none.
    pub(super) fn take(&mut self, command: Command) -> Option<Command> {
        match command {
            Command::RecordDispatch { outcomes, reply } => {
                self.dispatched.extend(outcomes);
                self.dispatch_replies.push(reply);
            }
            Command::Acknowledge { acks, reply } => {
                self.acknowledged.extend(acks);
                self.delivery_replies.push(reply);
            }
            Command::Attempted { ids, reply } => {
                self.attempted.extend(ids);
                self.delivery_replies.push(reply);
            }
            reports @ Command::RecordReports { .. } => self.reports.push(reports),
            other => return Some(other),
        }
        None
    }
}

/// Every RecordReports of a batch as one list, applied as one set, and who
/// sent which.
pub(super) struct ReportBatch {
    pub(super) reports: Vec<UpstreamReport>,
    /// Each caller's reply, and where its reports are in the list.
    callers: Vec<(ReportsReply, usize, usize)>,
}

/// How a RecordReports caller hears how many of its reports were news.
type ReportsReply = oneshot::Sender<Result<usize, StoreError>>;

impl ReportBatch {
    pub(super) fn gather(commands: Vec<Command>) -> ReportBatch {
        let mut batch = ReportBatch {
            reports: Vec::new(),
            callers: Vec::with_capacity(commands.len()),
        };
        for command in commands {
            if let Command::RecordReports { reports, reply } = command {
                batch
                    .callers
                    .push((reply, batch.reports.len(), reports.len()));
                batch.reports.extend(reports);
            }
        }
        batch
    }

    /// Each caller hears how many of its own reports changed something;
    /// `changed` has one entry per report.
    pub(super) fn answer(self, changed: &[bool], finishers: &mut Vec<Finisher>) {
        for (reply, start, count) in self.callers {
            let news = changed[start..start + count].iter().filter(|c| **c).count();
            finishers.push(finisher(reply, Ok(news)));
        }
    }
}
