//! The store's vocabulary: what the rest of the broker hands it and gets back.
//! No SQL here; each backend maps these to its own rows.

use crate::text::{Charset, Content};

use super::StoreError;

/// Why a message failed, as `messages.error_code` stores it and query_sm and
/// receipts report it (the `err:` of a receipt). The phone's own failures keep
/// the code it reported; these are the broker's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ErrorCode {
    /// A long message whose parts did not all arrive in time.
    AssemblyTimeout = 1,
    /// A long message whose joined octets do not decode.
    Undecodable = 2,
    /// The upstream refused the message (HTTP 400).
    UpstreamRejected = 3,
    /// The upstream could not deliver it (its phone reported a failure).
    UpstreamFailed = 4,
    /// Its validity ended before it could be handed over.
    Expired = 5,
}

impl ErrorCode {
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<ErrorCode> for i64 {
    fn from(code: ErrorCode) -> i64 {
        i64::from(code.code())
    }
}

/// One side of a message: TON, NPI and address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Party {
    pub ton: u8,
    pub npi: u8,
    pub addr: String,
}

/// A part of a long message: which set it belongs to and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConcatPart {
    /// Identifies the set: account, addresses, reference and total.
    pub key: String,
    pub total: u8,
    pub seq: u8,
}

/// A message the broker accepts, validated and ready to be stored.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub system_id: String,
    /// The route chosen for its account and destination.
    pub route: String,
    pub service_type: String,
    pub source: Party,
    pub dest: Party,
    pub esm_class: u8,
    pub protocol_id: u8,
    pub priority: u8,
    pub registered_delivery: u8,
    pub data_coding: u8,
    pub charset: Charset,
    pub user_message_reference: Option<u16>,
    /// The octets without any UDH.
    pub body: Vec<u8>,
    /// The decoded body of a whole message, when the caller already decoded it
    /// (validation does); the writer decodes it otherwise. Parts leave it None: a set
    /// is decoded once it is whole.
    pub content: Option<Content>,
    pub concat: Option<ConcatPart>,
    pub scheduled_at: Option<i64>,
    pub expires_at: i64,
    /// The bind of the session that submitted it (`session_binds`), when known.
    pub session: Option<i64>,
}

/// A successful bind, as `session_binds` keeps it for the messages its
/// session submits to name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionBind {
    pub system_id: String,
    /// transmitter | receiver | transceiver
    pub bind_type: &'static str,
    /// The ESME's address.
    pub peer: String,
}

/// How often a bound session's `session_binds.seen_at` is renewed. A bind row
/// not seen for longer than twice this before the oldest message kept was
/// submitted names no message, and goes.
pub const SESSION_SEEN_EVERY_MS: i64 = 3_600_000;

/// An ESME's positive deliver_sm_resp for a stored delivery: which session
/// took it and when its deliver_sm went out (the message's life keeps both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acknowledged {
    pub id: i64,
    pub session_id: u64,
    /// Unix ms.
    pub sent_at: i64,
}

impl Acknowledged {
    /// An acknowledgement without a session or time to tell (tests).
    pub fn of(id: i64) -> Acknowledged {
        Acknowledged {
            id,
            session_id: 0,
            sent_at: 0,
        }
    }
}

/// Why a submit was not stored.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the account has {0} messages waiting, its limit")]
    QueueFull(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What query_sm reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageStatus {
    pub message_id: String,
    pub state: MessageState,
    /// The SMPP 3.4 message_state, from the `message_states` table.
    pub smpp_state: u8,
    pub final_at: Option<i64>,
    pub error_code: u8,
}

/// Message states as the database stores them, with their SMPP 3.4 message_state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageState {
    Assembling,
    Scheduled,
    Queued,
    Enroute,
    Delivered,
    Expired,
    Deleted,
    Undeliverable,
    Accepted,
    Unknown,
    Rejected,
}

impl MessageState {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageState::Assembling => "assembling",
            MessageState::Scheduled => "scheduled",
            MessageState::Queued => "queued",
            MessageState::Enroute => "enroute",
            MessageState::Delivered => "delivered",
            MessageState::Expired => "expired",
            MessageState::Deleted => "deleted",
            MessageState::Undeliverable => "undeliverable",
            MessageState::Accepted => "accepted",
            MessageState::Unknown => "unknown",
            MessageState::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> MessageState {
        match s {
            "assembling" => MessageState::Assembling,
            "scheduled" => MessageState::Scheduled,
            "queued" => MessageState::Queued,
            "enroute" => MessageState::Enroute,
            "delivered" => MessageState::Delivered,
            "expired" => MessageState::Expired,
            "deleted" => MessageState::Deleted,
            "undeliverable" => MessageState::Undeliverable,
            "accepted" => MessageState::Accepted,
            "rejected" => MessageState::Rejected,
            _ => MessageState::Unknown,
        }
    }

    /// Not yet handed to an upstream: the states cancel_sm and replace_sm may act on
    /// and the queue limit counts.
    pub fn is_waiting(self) -> bool {
        matches!(
            self,
            MessageState::Assembling | MessageState::Scheduled | MessageState::Queued
        )
    }
}

/// Which messages a cancel_sm names.
#[derive(Debug, Clone)]
pub enum CancelTarget {
    /// One message (and, for a part of a long message, its whole set).
    MessageId {
        message_id: String,
        source_addr: String,
    },
    /// Every waiting message from `source` to `dest` (service_type empty = any).
    Addresses {
        service_type: String,
        source_addr: String,
        dest_addr: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    Cancelled(usize),
    NotFound,
    /// Known, but already handed upstream or final.
    TooLate,
}

/// New content for a waiting message (replace_sm). The data_coding stays.
#[derive(Debug, Clone)]
pub struct Replacement {
    pub message_id: String,
    pub source_addr: String,
    pub body: Vec<u8>,
    pub scheduled_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub registered_delivery: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplaceOutcome {
    Replaced,
    NotFound,
    /// Already handed upstream, final, part of a long message, or not decodable.
    NotReplaceable,
}

/// A message claimed for sending: everything the upstream request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatch {
    /// The outbox row, whose decimal form is the id the upstream sees.
    pub outbox_id: i64,
    pub system_id: String,
    pub route: String,
    /// The member an earlier attempt went to without a definite answer (or
    /// that took it): the message may go nowhere else.
    pub upstream: Option<String>,
    pub dest_ton: u8,
    pub dest_addr: String,
    pub source_addr: String,
    pub content: Content,
    pub data_coding: u8,
    pub registered_delivery: u8,
    pub priority: u8,
    pub expires_at: i64,
    /// Attempts made before this one.
    pub attempts: u32,
    /// When the message (the whole set, for a long one) was complete in the outbox.
    pub created_at: i64,
    /// Until when this claim holds the row; it also tells this claim from a
    /// later one of the same row.
    pub lease_until: i64,
}

impl Dispatch {
    /// The idempotency key at the upstream: the (first) message_id.
    pub fn upstream_key(&self) -> String {
        self.outbox_id.to_string()
    }
}

/// Where a message being claimed goes, as its dispatcher decides inside the
/// claim's transaction: the member is bound in the same commit, before any
/// request leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Bound to this member, and returned to be sent there.
    Member(String),
    /// No member can take it now: back to wait until `until`, unclaimed, still
    /// bound to its member if it was.
    Wait { until: i64, reason: String },
    /// Returned as it is, for the dispatcher to settle (a message past its
    /// validity).
    AsIs,
}

/// Decides each claimed message's placement (see `Store::claim`).
pub type Placer = Box<dyn FnMut(&Dispatch) -> Placement + Send>;

/// A message expired while it waited: its outbox id and the member it was
/// bound to, if any.
pub type ExpiredWaiting = (i64, Option<String>);

/// What became of one dispatch attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DispatchOutcome {
    /// The upstream holds the message; if no report comes, poll it at `check_at`.
    Accepted {
        upstream_id: String,
        upstream_state: String,
        check_at: i64,
        /// The SMS parts it counts against the member's limits.
        charge: Option<UsageCharge>,
    },
    /// Send again at `due_at`. `charged` counts an attempt; a paused upstream's
    /// messages are not charged. `stay` keeps the message with its member: the
    /// member may hold it (a timeout, a lost connection), so it may go nowhere
    /// else; otherwise any member may take it.
    Retry {
        due_at: i64,
        error: String,
        charged: bool,
        stay: bool,
        /// The lease of the claim this answers (`Dispatch::lease_until`): a
        /// late answer finds the row claimed again and leaves it alone. None:
        /// whichever claim holds it.
        claim: Option<i64>,
    },
    /// Final without delivery: refused by the upstream, or past its validity.
    Failed {
        state: MessageState,
        error_code: u8,
        error: String,
    },
}

/// SMS parts a member took, counted in its current day and month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageCharge {
    pub parts: u32,
    pub periods: Vec<UsagePeriod>,
}

/// A period of an upstream's limits: `day` or `month`, [starts_at, ends_at) in
/// Unix ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsagePeriod {
    pub period: &'static str,
    pub starts_at: i64,
    pub ends_at: i64,
}

/// An upstream's configured limits, as the `upstream_usage` view shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamLimits {
    pub upstream: String,
    pub daily_limit: Option<u32>,
    pub monthly_limit: Option<u32>,
    pub timezone: String,
}

/// A state the upstream reported for a message it holds: by webhook, by polling,
/// or from the sandbox's simulated network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamReport {
    pub outbox_id: i64,
    /// The upstream's own name for the state (`Sent`, `Delivered`, `Failed`, …).
    pub upstream_state: String,
    /// The message state it means; None while the message is still on its way.
    pub state: Option<MessageState>,
    pub error_code: u8,
    pub error: Option<String>,
    pub at: i64,
}

/// An accepted message whose final state has not come in time, to poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCheck {
    pub outbox_id: i64,
    pub upstream_id: String,
    pub expires_at: i64,
}

/// An incoming (MO) message from an upstream, for an account's receivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    pub system_id: String,
    pub source_addr: String,
    pub dest_addr: String,
    pub content: Content,
    /// The same message reported twice is stored once.
    pub dedupe_key: String,
}

/// A receipt or incoming message waiting for one of the account's receivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingDelivery {
    pub id: i64,
    /// Attempts so far that were not acknowledged.
    pub attempts: u32,
    pub content: DeliveryContent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryContent {
    Receipt(ReceiptFacts),
    Incoming {
        source_addr: String,
        dest_addr: String,
        content: Content,
    },
}

/// What a delivery receipt reports, with the original message's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptFacts {
    pub message_id: String,
    pub state: MessageState,
    /// How the state is reported, from the `message_states` table: the SMPP 3.4
    /// message_state and the stat: word.
    pub smpp_state: u8,
    pub stat: String,
    pub error_code: u8,
    pub submitted_at: i64,
    /// When the state became final; None for an intermediate receipt.
    pub done_at: Option<i64>,
    /// The original message's source and destination.
    pub source: Party,
    pub dest: Party,
    /// The original text (or, for binary, none).
    pub text: String,
    pub user_message_reference: Option<u16>,
}

/// A message_id as the store keeps it. Only the exact decimal form the broker
/// handed out names a message ("007" does not name 7).
pub(crate) fn parse_message_id(text: &str) -> Option<i64> {
    let id: i64 = text.parse().ok()?;
    (id >= 0 && id.to_string() == text).then_some(id)
}

/// Receipts and incoming messages waiting for an account's ESMEs.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct WaitingDeliveries {
    pub system_id: String,
    pub waiting: i64,
    /// When the oldest was stored (Unix ms).
    pub oldest_at: i64,
}

impl WaitingDeliveries {
    /// The same on both backends.
    pub(crate) const SQL: &'static str = "SELECT system_id, count(*) AS waiting, \
         min(created_at) AS oldest_at FROM deliveries GROUP BY system_id";
}

/// A message as the console shows it: what the database keeps of its life.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct MessageLife {
    pub message_id: i64,
    pub system_id: String,
    pub route: String,
    pub state: String,
    pub source_addr: String,
    pub dest_addr: String,
    /// Unix ms.
    pub submitted_at: i64,
    pub scheduled_at: Option<i64>,
    pub expires_at: i64,
    pub final_at: Option<i64>,
    pub error_code: i64,
    pub registered_delivery: i64,
    /// Of a long message: this part's number and the set's size.
    pub concat_seq: Option<i64>,
    pub concat_total: Option<i64>,
    /// The outbox row that carries it (its first part's id for a long one).
    pub outbox_id: Option<i64>,
    pub outbox_state: Option<String>,
    /// The upstream it was handed to or is bound to, its id there and its
    /// last reported state.
    pub upstream: Option<String>,
    pub upstream_id: Option<String>,
    pub upstream_state: Option<String>,
    pub attempts: Option<i64>,
    /// When the upstream took it (Unix ms).
    pub sent_at: Option<i64>,
    pub last_error: Option<String>,
    /// Receipts for it still waiting for an ESME's deliver_sm_resp, and when
    /// the oldest of them was stored.
    pub receipts_waiting: i64,
    pub receipts_waiting_since: Option<i64>,
    /// The bind of the session that submitted it: its number, type, the
    /// ESME's address and when it bound.
    pub session: Option<i64>,
    pub session_bind_type: Option<String>,
    pub session_peer: Option<String>,
    pub session_bound_at: Option<i64>,
    /// What no column keeps of its life, oldest first: its outbox row's
    /// steps (intermediate upstream states, retries, a failure) and its own
    /// receipts' (delivered to an ESME, or not taken).
    #[sqlx(skip)]
    pub events: Vec<MessageEvent>,
}

/// A step of a message's life, as `message_events` keeps it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct MessageEvent {
    #[serde(skip)]
    pub message_id: i64,
    /// Unix ms.
    pub at: i64,
    /// upstream | retry | failed | receipt_delivered | receipt_refused
    pub event: String,
    pub detail: String,
}

impl MessageEvent {
    /// Gives each found message the events of its outbox row and its own,
    /// oldest first; `events` are those of every id the messages name.
    pub(crate) fn attach(found: &mut [MessageLife], events: &[MessageEvent]) {
        for life in found {
            let own = |e: &&MessageEvent| {
                e.message_id == life.message_id || Some(e.message_id) == life.outbox_id
            };
            life.events = events.iter().filter(own).cloned().collect();
            life.events
                .sort_by(|a, b| (a.at, &a.event).cmp(&(b.at, &b.event)));
        }
    }

    /// The ids whose events the found messages show.
    pub(crate) fn ids_of(found: &[MessageLife]) -> Vec<i64> {
        let mut ids: Vec<i64> = found
            .iter()
            .flat_map(|m| std::iter::once(m.message_id).chain(m.outbox_id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

impl MessageLife {
    /// The same on both backends, with `first` the message_id sought (-1 for
    /// none), `second` the destination ('' for none) and `third` the oldest
    /// message_id looked at for it: that message, and the latest 50 to that
    /// destination, newest first. The destination has no index of its own
    /// (one cost intake about 10 %): the newest messages are read back to
    /// `third` until 50 are found.
    pub(crate) fn sql(first: &str, second: &str, third: &str) -> String {
        format!(
            "WITH found AS (SELECT message_id FROM messages WHERE message_id = {first} \
               UNION SELECT message_id FROM (SELECT message_id FROM messages \
                 WHERE message_id >= {third} AND dest_addr = {second} \
                 ORDER BY message_id DESC LIMIT 50) AS latest), \
             waiting AS (SELECT message_id, count(*) AS n, min(created_at) AS stored_at \
               FROM deliveries \
               WHERE message_id IN (SELECT message_id FROM found) GROUP BY message_id) \
             SELECT m.message_id, m.system_id, m.route, m.state, m.source_addr, m.dest_addr, \
             m.submitted_at, m.scheduled_at, m.expires_at, m.final_at, m.error_code, \
             m.registered_delivery, m.concat_seq, m.concat_total, m.outbox_id, m.session, \
             s.bind_type AS session_bind_type, s.peer AS session_peer, \
             s.bound_at AS session_bound_at, \
             o.state AS outbox_state, o.upstream, o.upstream_id, o.upstream_state, o.attempts, \
             o.sent_at, \
             o.last_error, coalesce(w.n, 0) AS receipts_waiting, \
             w.stored_at AS receipts_waiting_since \
             FROM found f JOIN messages m ON m.message_id = f.message_id \
             LEFT JOIN outbox o ON o.id = m.outbox_id \
             LEFT JOIN session_binds s ON s.session = m.session \
             LEFT JOIN waiting w ON w.message_id = m.message_id \
             ORDER BY m.message_id DESC"
        )
    }
}
