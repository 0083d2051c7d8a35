//! The store's behaviour through its interface, `Store`: every backend must pass
//! it unchanged. What only one backend has (SQLite's WAL, its lock file) is tested
//! beside that backend (sqlite/tests.rs).

use std::sync::Arc;
use std::time::Duration;

use std::path::Path;

use super::*;
use crate::clock::ManualClock;
use crate::text::{Charset, Content};

pub(super) const T0: i64 = 1_790_000_000_000;

async fn open(dir: &Path, clock: &ManualClock, max_waiting: Option<usize>) -> Store {
    open_with(dir, clock, max_waiting, None).await
}

async fn open_with(
    dir: &Path,
    clock: &ManualClock,
    max_waiting: Option<usize>,
    max_undelivered: Option<usize>,
) -> Store {
    let mut limits = WriterLimits {
        assembly_timeout: Duration::from_secs(60),
        ..WriterLimits::for_tests()
    };
    if let Some(max) = max_waiting {
        limits.max_waiting.insert("acme".into(), max);
    }
    if let Some(max) = max_undelivered {
        limits.max_undelivered.insert("acme".into(), max);
    }
    let settings = StoreSettings {
        path: dir.join("test.db"),
        busy_timeout: Duration::from_secs(5),
    };
    Store::open(&settings, limits, Arc::new(clock.clone()))
        .await
        .unwrap()
}

pub(super) fn message(text: &str) -> NewMessage {
    NewMessage {
        system_id: "acme".into(),
        upstream: "sandbox".into(),
        service_type: String::new(),
        source: Party {
            ton: 1,
            npi: 1,
            addr: "4915100000".into(),
        },
        dest: Party {
            ton: 1,
            npi: 1,
            addr: "4917600000".into(),
        },
        esm_class: 0,
        protocol_id: 0,
        priority: 0,
        registered_delivery: 1,
        data_coding: 0,
        charset: Charset::Gsm7,
        user_message_reference: None,
        body: crate::text::gsm7::encode(text).unwrap(),
        content: None,
        concat: None,
        scheduled_at: None,
        expires_at: T0 + 48 * 3600 * 1000,
    }
}

fn part(key: &str, total: u8, seq: u8, text: &str) -> NewMessage {
    NewMessage {
        concat: Some(ConcatPart {
            key: key.into(),
            total,
            seq,
        }),
        ..message(text)
    }
}

async fn state_of(store: &Store, id: &str) -> MessageState {
    store
        .query("acme", id, "")
        .await
        .unwrap()
        .expect("known message")
        .state
}

async fn outbox_texts(store: &Store) -> Vec<(String, Option<String>)> {
    peek::outbox(store).await
}

/// What the suite reads and changes besides the interface: each backend in its own
/// SQL, so a new backend adds its arm here.
mod peek {
    use sqlx::Row;

    use super::Store;

    /// The outbox rows' states and texts, by id.
    pub async fn outbox(store: &Store) -> Vec<(String, Option<String>)> {
        match store {
            Store::Sqlite(s) => sqlx::query("SELECT state, text FROM outbox ORDER BY id")
                .fetch_all(s.reader())
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect(),
        }
    }

    /// The outbox rows' ids.
    pub async fn outbox_ids(store: &Store) -> Vec<String> {
        match store {
            Store::Sqlite(s) => sqlx::query("SELECT id FROM outbox ORDER BY id")
                .fetch_all(s.reader())
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<i64, _>(0).to_string())
                .collect(),
        }
    }

    /// Rows of the `message_states` table for `state`.
    pub async fn message_state_rows(store: &Store, state: &str) -> i64 {
        match store {
            Store::Sqlite(s) => sqlx::query("SELECT count(*) FROM message_states WHERE state = ?1")
                .bind(state)
                .fetch_one(s.reader())
                .await
                .unwrap()
                .get(0),
        }
    }

    /// An operator's change to the table: delivered reported as ACCEPTD (6).
    pub async fn report_delivered_as_accepted(store: &Store) {
        use sqlx::Connection;
        match store {
            Store::Sqlite(s) => {
                let url = format!("sqlite://{}", s.path().display());
                let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
                sqlx::query(
                    "UPDATE message_states SET smpp_state = 6, stat = 'ACCEPTD' \
                     WHERE state = 'delivered'",
                )
                .execute(&mut conn)
                .await
                .unwrap();
            }
        }
    }
}

#[tokio::test]
async fn submit_returns_unique_increasing_ids_and_query_finds_them() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock, None).await;
    let ids = store
        .submit(vec![message("one"), message("two")])
        .await
        .unwrap();
    assert_eq!(ids.len(), 2);
    assert!(ids[0].parse::<u64>().unwrap() < ids[1].parse::<u64>().unwrap());
    assert!(ids
        .iter()
        .all(|id| id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit())));
    let status = store
        .query("acme", &ids[0], "4915100000")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.state, MessageState::Queued);
    assert_eq!(status.smpp_state, 1, "a waiting message is ENROUTE");
    assert_eq!(status.final_at, None);
    assert_eq!(
        store.query("acme", &ids[0], "999").await.unwrap(),
        None,
        "source must match"
    );
    assert_eq!(
        store.query("other", &ids[0], "").await.unwrap(),
        None,
        "another account's id"
    );
    assert_eq!(
        outbox_texts(&store).await,
        vec![
            ("queued".into(), Some("one".into())),
            ("queued".into(), Some("two".into()))
        ]
    );

    // Ids stay unique after a restart even if the clock went back.
    store.close().await.unwrap();
    clock.advance_ms(-60_000);
    let store = open(dir.path(), &clock, None).await;
    let later = store.submit(vec![message("three")]).await.unwrap();
    assert!(later[0].parse::<u64>().unwrap() > ids[1].parse::<u64>().unwrap());
}

#[tokio::test]
async fn queue_limit_refuses_beyond_the_waiting_count() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &ManualClock::new(T0), Some(3)).await;
    store
        .submit(vec![message("a"), message("b")])
        .await
        .unwrap();
    let ids = store.submit(vec![message("c")]).await.unwrap();
    assert!(matches!(
        store.submit(vec![message("d")]).await,
        Err(SubmitError::QueueFull(3))
    ));
    // Cancelling frees a place; the count survives a restart.
    assert_eq!(
        store
            .cancel(
                "acme",
                CancelTarget::MessageId {
                    message_id: ids[0].clone(),
                    source_addr: String::new()
                }
            )
            .await
            .unwrap(),
        CancelOutcome::Cancelled(1)
    );
    store.close().await.unwrap();
    let store = open(dir.path(), &ManualClock::new(T0), Some(3)).await;
    store.submit(vec![message("e")]).await.unwrap();
    assert!(matches!(
        store.submit(vec![message("f")]).await,
        Err(SubmitError::QueueFull(3))
    ));
}

#[tokio::test]
async fn scheduled_messages_wait_until_due() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock, None).await;
    let later = NewMessage {
        scheduled_at: Some(T0 + 60_000),
        ..message("later")
    };
    let id = store.submit(vec![later]).await.unwrap().remove(0);
    assert_eq!(state_of(&store, &id).await, MessageState::Scheduled);
    clock.advance_ms(59_000);
    store.maintain().await.unwrap();
    assert_eq!(state_of(&store, &id).await, MessageState::Scheduled);
    clock.advance_ms(1_000);
    store.maintain().await.unwrap();
    assert_eq!(state_of(&store, &id).await, MessageState::Queued);
    assert_eq!(
        outbox_texts(&store).await,
        vec![("queued".into(), Some("later".into()))]
    );
}

#[tokio::test]
async fn cancel_by_id_and_by_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &ManualClock::new(T0), None).await;
    let ids = store
        .submit(vec![message("a"), message("b"), message("c")])
        .await
        .unwrap();
    let by_id = CancelTarget::MessageId {
        message_id: ids[0].clone(),
        source_addr: "4915100000".into(),
    };
    assert_eq!(
        store.cancel("acme", by_id.clone()).await.unwrap(),
        CancelOutcome::Cancelled(1)
    );
    assert_eq!(state_of(&store, &ids[0]).await, MessageState::Deleted);
    assert_eq!(
        store.cancel("acme", by_id).await.unwrap(),
        CancelOutcome::TooLate,
        "already final"
    );
    let unknown = CancelTarget::MessageId {
        message_id: "42".into(),
        source_addr: String::new(),
    };
    assert_eq!(
        store.cancel("acme", unknown).await.unwrap(),
        CancelOutcome::NotFound
    );
    let by_addr = CancelTarget::Addresses {
        service_type: String::new(),
        source_addr: "4915100000".into(),
        dest_addr: "4917600000".into(),
    };
    assert_eq!(
        store.cancel("acme", by_addr).await.unwrap(),
        CancelOutcome::Cancelled(2)
    );
    let status = store.query("acme", &ids[2], "").await.unwrap().unwrap();
    assert_eq!(
        (status.state, status.smpp_state),
        (MessageState::Deleted, 4)
    );
    assert!(status.final_at.is_some());
    let states: Vec<String> = peek::outbox(&store)
        .await
        .into_iter()
        .map(|(state, _)| state)
        .collect();
    assert_eq!(states, vec!["done"; 3]);
}

/// A replace_sm of `message_id` with `text`, nothing else changed.
fn replacement(message_id: &str, text: &str) -> Replacement {
    Replacement {
        message_id: message_id.into(),
        source_addr: String::new(),
        body: crate::text::gsm7::encode(text).unwrap(),
        scheduled_at: None,
        expires_at: None,
        registered_delivery: 0,
    }
}

#[tokio::test]
async fn replace_changes_a_waiting_message() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &ManualClock::new(T0), None).await;
    let id = store
        .submit(vec![message("old text")])
        .await
        .unwrap()
        .remove(0);
    let replacement = replacement(&id, "new text");
    assert_eq!(
        store.replace("acme", replacement.clone()).await.unwrap(),
        ReplaceOutcome::Replaced
    );
    assert_eq!(
        outbox_texts(&store).await,
        vec![("queued".into(), Some("new text".into()))]
    );
    let missing = Replacement {
        message_id: "1".into(),
        ..replacement.clone()
    };
    assert_eq!(
        store.replace("acme", missing).await.unwrap(),
        ReplaceOutcome::NotFound
    );
    store
        .cancel(
            "acme",
            CancelTarget::MessageId {
                message_id: id,
                source_addr: String::new(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        store.replace("acme", replacement).await.unwrap(),
        ReplaceOutcome::NotReplaceable
    );
}

#[tokio::test]
async fn long_message_parts_out_of_order_with_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &ManualClock::new(T0), None).await;
    let third = store
        .submit(vec![part("k1", 3, 3, " world")])
        .await
        .unwrap()
        .remove(0);
    let first = store
        .submit(vec![part("k1", 3, 1, "Hello")])
        .await
        .unwrap()
        .remove(0);
    let duplicate = store
        .submit(vec![part("k1", 3, 1, "Hello")])
        .await
        .unwrap()
        .remove(0);
    assert_eq!(state_of(&store, &first).await, MessageState::Assembling);
    assert!(outbox_texts(&store).await.is_empty());
    let second = store
        .submit(vec![part("k1", 3, 2, ",")])
        .await
        .unwrap()
        .remove(0);
    for id in [&first, &second, &third, &duplicate] {
        assert_eq!(
            state_of(&store, id).await,
            MessageState::Queued,
            "part {id}"
        );
    }
    assert_eq!(
        outbox_texts(&store).await,
        vec![("queued".into(), Some("Hello, world".into()))]
    );
}

#[tokio::test]
async fn a_set_survives_a_restart_and_a_missing_part_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock, None).await;
    let a1 = store
        .submit(vec![part("set-a", 2, 1, "first ")])
        .await
        .unwrap()
        .remove(0);
    let b1 = store
        .submit(vec![part("set-b", 2, 1, "never ")])
        .await
        .unwrap()
        .remove(0);
    store.close().await.unwrap();
    let store = open(dir.path(), &clock, None).await;
    store
        .submit(vec![part("set-a", 2, 2, "half")])
        .await
        .unwrap();
    assert_eq!(state_of(&store, &a1).await, MessageState::Queued);
    assert_eq!(
        outbox_texts(&store).await,
        vec![("queued".into(), Some("first half".into()))]
    );

    clock.advance_ms(59_000);
    store.maintain().await.unwrap();
    assert_eq!(state_of(&store, &b1).await, MessageState::Assembling);
    clock.advance_ms(1_000);
    store.maintain().await.unwrap();
    let status = store.query("acme", &b1, "").await.unwrap().unwrap();
    assert_eq!(status.state, MessageState::Undeliverable);
    assert_eq!(status.error_code, ErrorCode::AssemblyTimeout.code());
}

#[tokio::test]
async fn ucs2_parts_split_inside_a_surrogate_pair_join_correctly() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &ManualClock::new(T0), None).await;
    // "a😀" in UTF-16BE: 0061 D83D DE00, cut between the two surrogates.
    let ucs2 = |body: &[u8], seq| NewMessage {
        body: body.to_vec(),
        charset: Charset::Ucs2,
        data_coding: 8,
        ..part("u", 2, seq, "")
    };
    store
        .submit(vec![ucs2(&[0x00, 0x61, 0xD8, 0x3D], 1)])
        .await
        .unwrap();
    store.submit(vec![ucs2(&[0xDE, 0x00], 2)]).await.unwrap();
    assert_eq!(
        outbox_texts(&store).await,
        vec![("queued".into(), Some("a😀".into()))]
    );
}

#[tokio::test]
async fn queue_depth_view_counts_by_account_and_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &ManualClock::new(T0), None).await;
    store
        .submit(vec![message("a"), message("b"), part("x", 2, 1, "c")])
        .await
        .unwrap();
    assert_eq!(
        store.queue_depth().await.unwrap(),
        vec![
            ("acme".into(), "assembling".into(), 1),
            ("acme".into(), "queued".into(), 2)
        ]
    );
}

#[test]
fn only_the_exact_decimal_form_names_a_message() {
    assert_eq!(parse_message_id("1234"), Some(1234));
    assert_eq!(parse_message_id("0"), Some(0));
    for other in ["", "007", "+7", "-7", "7a", " 7", "99999999999999999999"] {
        assert_eq!(parse_message_id(other), None, "{other:?}");
    }
}

async fn claim_all(store: &Store) -> Vec<Dispatch> {
    store.claim("sandbox", 100, 60_000).await.unwrap()
}

#[tokio::test]
async fn claims_go_by_priority_then_age_and_are_leased() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock, None).await;
    let low = store.submit(vec![message("low")]).await.unwrap();
    let high = store
        .submit(vec![NewMessage {
            priority: 2,
            ..message("high")
        }])
        .await
        .unwrap();
    let claimed = claim_all(&store).await;
    let order: Vec<String> = claimed.iter().map(Dispatch::upstream_key).collect();
    assert_eq!(order, [high[0].clone(), low[0].clone()]);
    assert_eq!(claimed[1].content, Content::Text("low".into()));
    assert_eq!(claimed[1].attempts, 0);
    assert!(
        claim_all(&store).await.is_empty(),
        "a leased row is not claimed twice"
    );
    assert!(store.claim("other", 100, 60_000).await.unwrap().is_empty());

    // The dispatcher vanished: once the lease runs out the rows are queued again.
    clock.advance_ms(59_000);
    store.maintain().await.unwrap();
    assert!(claim_all(&store).await.is_empty());
    clock.advance_ms(2_000);
    store.maintain().await.unwrap();
    assert_eq!(claim_all(&store).await.len(), 2);
}

#[tokio::test]
async fn accepted_messages_are_enroute_and_leave_the_queue_limit() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock, Some(1)).await;
    let id = store.submit(vec![message("one")]).await.unwrap().remove(0);
    assert!(matches!(
        store.submit(vec![message("two")]).await,
        Err(SubmitError::QueueFull(1))
    ));
    let claimed = claim_all(&store).await;
    assert!(
        matches!(
            store.submit(vec![message("two")]).await,
            Err(SubmitError::QueueFull(1))
        ),
        "a claimed message still counts until the upstream has it"
    );
    let accepted = DispatchOutcome::Accepted {
        upstream_id: id.clone(),
        upstream_state: "Pending".into(),
        check_at: T0 + 600_000,
    };
    store
        .record_dispatch(vec![(claimed[0].outbox_id, accepted)])
        .await
        .unwrap();
    assert_eq!(state_of(&store, &id).await, MessageState::Enroute);
    store.submit(vec![message("two")]).await.unwrap();
    assert!(matches!(
        store
            .cancel(
                "acme",
                CancelTarget::MessageId {
                    message_id: id.clone(),
                    source_addr: String::new()
                }
            )
            .await
            .unwrap(),
        CancelOutcome::TooLate
    ));
    assert!(store
        .due_checks("sandbox", T0 + 599_999, 10)
        .await
        .unwrap()
        .is_empty());
    let due = store.due_checks("sandbox", T0 + 600_000, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].upstream_id, id);
    store
        .check_later(vec![due[0].outbox_id], T0 + 900_000)
        .await
        .unwrap();
    assert!(store
        .due_checks("sandbox", T0 + 600_000, 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_claimed_message_cannot_be_cancelled_or_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock, None).await;
    let id = store.submit(vec![message("one")]).await.unwrap().remove(0);
    claim_all(&store).await;
    let target = CancelTarget::MessageId {
        message_id: id.clone(),
        source_addr: String::new(),
    };
    assert_eq!(
        store.cancel("acme", target).await.unwrap(),
        CancelOutcome::TooLate
    );
    let replacement = replacement(&id, "new");
    assert_eq!(
        store.replace("acme", replacement).await.unwrap(),
        ReplaceOutcome::NotReplaceable
    );
}

#[tokio::test]
async fn retries_wait_until_due_and_count_attempts_when_charged() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock, None).await;
    store.submit(vec![message("one")]).await.unwrap();
    let first = claim_all(&store).await.remove(0);
    let retry = DispatchOutcome::Retry {
        due_at: T0 + 5_000,
        error: "503 queue limits".into(),
        charged: true,
    };
    store
        .record_dispatch(vec![(first.outbox_id, retry)])
        .await
        .unwrap();
    store.maintain().await.unwrap();
    assert!(claim_all(&store).await.is_empty(), "not due yet");
    clock.advance_ms(5_000);
    store.maintain().await.unwrap();
    let second = claim_all(&store).await.remove(0);
    assert_eq!(second.attempts, 1);

    // A paused upstream hands its rows back uncharged and at once.
    let paused = DispatchOutcome::Retry {
        due_at: T0 + 5_000,
        error: "401".into(),
        charged: false,
    };
    store
        .record_dispatch(vec![(second.outbox_id, paused)])
        .await
        .unwrap();
    assert_eq!(claim_all(&store).await.remove(0).attempts, 1);
}

#[tokio::test]
async fn failures_and_reports_are_final_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock, None).await;
    let ids = store
        .submit(vec![message("expired"), message("delivered")])
        .await
        .unwrap();
    let claimed = claim_all(&store).await;
    let expired = DispatchOutcome::Failed {
        state: MessageState::Expired,
        error_code: 0,
        error: "validity period passed".into(),
    };
    store
        .record_dispatch(vec![(claimed[0].outbox_id, expired)])
        .await
        .unwrap();
    let status = store.query("acme", &ids[0], "").await.unwrap().unwrap();
    assert_eq!(status.state, MessageState::Expired);
    assert_eq!(status.final_at, Some(T0));

    // The delivery report overtakes the 202: the later Accepted does not undo it.
    let report = |state: Option<MessageState>, name: &str| UpstreamReport {
        outbox_id: claimed[1].outbox_id,
        upstream_state: name.into(),
        state,
        error_code: 0,
        error: None,
        at: T0 + 1_000,
    };
    assert_eq!(
        store
            .record_reports(vec![report(None, "Sent")])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .record_reports(vec![report(None, "Sent")])
            .await
            .unwrap(),
        0
    );
    let delivered = report(Some(MessageState::Delivered), "Delivered");
    assert_eq!(
        store.record_reports(vec![delivered.clone()]).await.unwrap(),
        1
    );
    assert_eq!(
        store.record_reports(vec![delivered]).await.unwrap(),
        0,
        "duplicate"
    );
    let accepted = DispatchOutcome::Accepted {
        upstream_id: ids[1].clone(),
        upstream_state: "Pending".into(),
        check_at: T0,
    };
    store
        .record_dispatch(vec![(claimed[1].outbox_id, accepted)])
        .await
        .unwrap();
    let status = store.query("acme", &ids[1], "").await.unwrap().unwrap();
    assert_eq!(status.state, MessageState::Delivered);
    assert_eq!(status.final_at, Some(T0 + 1_000));
    assert!(store
        .due_checks("sandbox", T0 + 1, 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_report_on_a_long_message_reaches_every_part() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock, None).await;
    let ids = store
        .submit(vec![
            part("set", 2, 2, "world"),
            part("set", 2, 1, "hello "),
        ])
        .await
        .unwrap();
    let claimed = claim_all(&store).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].content, Content::Text("hello world".into()));
    assert_eq!(
        claimed[0].upstream_key(),
        ids[1],
        "the first part names the set"
    );
    let failed = UpstreamReport {
        outbox_id: claimed[0].outbox_id,
        upstream_state: "Failed".into(),
        state: Some(MessageState::Undeliverable),
        error_code: 69,
        error: Some("RESULT_ERROR_GENERIC_FAILURE".into()),
        at: T0 + 2_000,
    };
    store.record_reports(vec![failed]).await.unwrap();
    for id in &ids {
        let status = store.query("acme", id, "").await.unwrap().unwrap();
        assert_eq!(status.state, MessageState::Undeliverable);
        assert_eq!(status.error_code, 69);
    }
}

#[tokio::test]
async fn claims_of_a_previous_run_are_queued_again_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock, None).await;
    store.submit(vec![message("one")]).await.unwrap();
    assert_eq!(claim_all(&store).await.len(), 1);
    store.close().await.unwrap();
    let store = open(dir.path(), &clock, None).await;
    assert_eq!(claim_all(&store).await.len(), 1, "no lease to wait for");
}

/// Submits, claims and has the upstream take each message; returns their ids.
async fn taken(store: &Store, messages: Vec<NewMessage>) -> Vec<String> {
    let ids = store.submit(messages).await.unwrap();
    let outcomes = claim_all(store)
        .await
        .into_iter()
        .map(|d| {
            let accepted = DispatchOutcome::Accepted {
                upstream_id: d.upstream_key(),
                upstream_state: "Pending".into(),
                check_at: T0 + 3_600_000,
            };
            (d.outbox_id, accepted)
        })
        .collect();
    store.record_dispatch(outcomes).await.unwrap();
    ids
}

fn report(outbox_id: &str, upstream_state: &str, state: Option<MessageState>) -> UpstreamReport {
    UpstreamReport {
        outbox_id: outbox_id.parse().unwrap(),
        upstream_state: upstream_state.into(),
        state,
        error_code: if state == Some(MessageState::Undeliverable) {
            4
        } else {
            0
        },
        error: None,
        at: T0 + 5_000,
    }
}

async fn receipts(store: &Store) -> Vec<(String, MessageState)> {
    store
        .pending_deliveries("acme", 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|d| match d.content {
            DeliveryContent::Receipt(r) => (r.message_id, r.state),
            other => panic!("{other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn receipts_follow_registered_delivery_and_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock, None).await;
    let with = |rd: u8, text: &str| NewMessage {
        registered_delivery: rd,
        user_message_reference: Some(77),
        ..message(text)
    };
    let ids = taken(
        &store,
        vec![
            with(0, "none"),
            with(1, "final"),
            with(2, "failures"),
            with(0x11, "all"),
        ],
    )
    .await;
    for id in &ids {
        store
            .record_reports(vec![report(id, "Sent", None)])
            .await
            .unwrap();
        store
            .record_reports(vec![report(id, "Delivered", Some(MessageState::Delivered))])
            .await
            .unwrap();
        // The phone repeats itself.
        store
            .record_reports(vec![report(id, "Delivered", Some(MessageState::Delivered))])
            .await
            .unwrap();
    }
    assert_eq!(
        receipts(&store).await,
        [
            (ids[1].clone(), MessageState::Delivered),
            (ids[3].clone(), MessageState::Enroute),
            (ids[3].clone(), MessageState::Delivered),
        ]
    );
    let pending = store.pending_deliveries("acme", 0, 100).await.unwrap();
    let DeliveryContent::Receipt(facts) = &pending[0].content else {
        panic!("{pending:?}")
    };
    assert_eq!(facts.text, "final");
    assert_eq!(facts.submitted_at, T0);
    assert_eq!(facts.done_at, Some(T0 + 5_000));
    assert_eq!(facts.user_message_reference, Some(77));
    assert_eq!(facts.source.addr, "4915100000");
    let DeliveryContent::Receipt(intermediate) = &pending[1].content else {
        panic!()
    };
    assert_eq!(intermediate.done_at, None);

    // Failures-only gets its receipt for a failure.
    let failing = taken(&store, vec![with(2, "fails")]).await;
    store
        .record_reports(vec![report(
            &failing[0],
            "Failed",
            Some(MessageState::Undeliverable),
        )])
        .await
        .unwrap();
    assert_eq!(receipts(&store).await.len(), 4);
    assert_eq!(
        receipts(&store).await[3],
        (failing[0].clone(), MessageState::Undeliverable)
    );

    // Acknowledged receipts are gone; the others stay, across a restart.
    let first_two: Vec<i64> = pending.iter().take(2).map(|d| d.id).collect();
    store.acknowledge_deliveries(first_two).await.unwrap();
    store.close().await.unwrap();
    let store = open(dir.path(), &clock, None).await;
    assert_eq!(receipts(&store).await.len(), 2);
}

#[tokio::test]
async fn query_sm_and_receipts_report_states_as_the_tables_say() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock, None).await;
    let states = store.upstream_states();
    let final_state = |state, error_code| Some(FinalState { state, error_code });
    assert_eq!(
        states.final_state("Delivered"),
        final_state(MessageState::Delivered, 0)
    );
    assert_eq!(
        states.final_state("Failed"),
        final_state(MessageState::Undeliverable, 4)
    );
    assert_eq!(
        states.final_state("Cancelled"),
        final_state(MessageState::Deleted, 0)
    );
    assert_eq!(
        states.final_state("NotFound"),
        final_state(MessageState::Unknown, 0)
    );
    for on_its_way in ["Pending", "Processed", "Sent", "Cancelling", "Martian"] {
        assert_eq!(states.final_state(on_its_way), None, "{on_its_way}");
    }
    // Every state the broker stores has its row.
    for state in [
        MessageState::Assembling,
        MessageState::Scheduled,
        MessageState::Queued,
        MessageState::Enroute,
        MessageState::Delivered,
        MessageState::Expired,
        MessageState::Deleted,
        MessageState::Undeliverable,
        MessageState::Accepted,
        MessageState::Unknown,
        MessageState::Rejected,
    ] {
        let found = peek::message_state_rows(&store, state.as_str()).await;
        assert_eq!(found, 1, "{state:?}");
    }

    let ids = taken(&store, vec![message("hello")]).await;
    let reported = |store: Store, id: String| async move {
        let status = store.query("acme", &id, "").await.unwrap().unwrap();
        let pending = store.pending_deliveries("acme", 0, 10).await.unwrap();
        let DeliveryContent::Receipt(facts) = &pending[0].content else {
            panic!("{pending:?}")
        };
        (status.smpp_state, facts.smpp_state, facts.stat.clone())
    };
    let waiting = store.query("acme", &ids[0], "").await.unwrap().unwrap();
    assert_eq!(waiting.smpp_state, 1, "ENROUTE while the phone has it");
    store
        .record_reports(vec![report(
            &ids[0],
            "Delivered",
            Some(MessageState::Delivered),
        )])
        .await
        .unwrap();
    assert_eq!(
        reported(store.clone(), ids[0].clone()).await,
        (2, 2, "DELIVRD".into())
    );
    // An operator who changes the mapping changes query_sm and receipts alike.
    peek::report_delivered_as_accepted(&store).await;
    assert_eq!(
        reported(store.clone(), ids[0].clone()).await,
        (6, 6, "ACCEPTD".into())
    );
}

#[tokio::test]
async fn every_part_of_a_long_message_gets_its_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock, None).await;
    let ids = taken(
        &store,
        vec![part("k", 2, 1, "hello "), part("k", 2, 2, "world")],
    )
    .await;
    store
        .record_reports(vec![report(
            &ids[0],
            "Failed",
            Some(MessageState::Undeliverable),
        )])
        .await
        .unwrap();
    let got = receipts(&store).await;
    assert_eq!(
        got,
        [
            (ids[0].clone(), MessageState::Undeliverable),
            (ids[1].clone(), MessageState::Undeliverable)
        ]
    );
}

/// Parts submitted one PDU each, as clients send them, with these
/// registered_delivery values; returns their ids and the set's dispatch.
async fn long_message_asking(store: &Store, key: &str, asked: &[u8]) -> (Vec<String>, Dispatch) {
    let total = asked.len() as u8;
    let mut ids = Vec::new();
    for (seq, &registered_delivery) in (1..=total).zip(asked) {
        let part = NewMessage {
            registered_delivery,
            ..part(key, total, seq, &format!("part {seq} "))
        };
        ids.extend(store.submit(vec![part]).await.unwrap());
    }
    // A part's request is fixed once its set is joined: replace_sm refuses parts.
    assert_eq!(
        store
            .replace("acme", replacement(&ids[ids.len() - 1], "other"))
            .await
            .unwrap(),
        ReplaceOutcome::NotReplaceable
    );
    let mut claimed = claim_all(store).await;
    assert_eq!(claimed.len(), 1, "one dispatch for the set");
    (ids, claimed.remove(0))
}

#[tokio::test]
async fn a_long_message_asks_for_a_report_when_any_part_does_and_each_part_gets_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock, None).await;
    // Jasmin asks on the last part only; other clients on the first only.
    let (last_asks, set) = long_message_asking(&store, "jasmin", &[0, 0, 1]).await;
    assert_eq!(set.registered_delivery, 1, "the set asks the upstream");
    assert_eq!(set.content, Content::Text("part 1 part 2 part 3 ".into()));
    let (first_asks, other) = long_message_asking(&store, "first", &[1, 0, 0]).await;
    assert_eq!(other.registered_delivery, 1);
    let (none_asks, silent) = long_message_asking(&store, "none", &[0, 0]).await;
    assert_eq!(silent.registered_delivery, 0);
    let (failures_asks, failing) = long_message_asking(&store, "fail", &[0, 2]).await;
    assert_eq!(failing.registered_delivery, 2, "failures only, as asked");

    for dispatch in [&set, &other, &silent, &failing] {
        let accepted = DispatchOutcome::Accepted {
            upstream_id: dispatch.upstream_key(),
            upstream_state: "Pending".into(),
            check_at: T0 + 3_600_000,
        };
        store
            .record_dispatch(vec![(dispatch.outbox_id, accepted)])
            .await
            .unwrap();
    }
    for dispatch in [&set, &other, &silent, &failing] {
        let delivered = report(
            &dispatch.upstream_key(),
            "Delivered",
            Some(MessageState::Delivered),
        );
        store.record_reports(vec![delivered]).await.unwrap();
    }
    assert_eq!(
        receipts(&store).await,
        [
            (last_asks[2].clone(), MessageState::Delivered),
            (first_asks[0].clone(), MessageState::Delivered),
        ],
        "only the parts that asked get a receipt; failures-only gets none on delivery"
    );
    for id in last_asks.iter().chain(&first_asks).chain(&none_asks) {
        assert_eq!(state_of(&store, id).await, MessageState::Delivered, "{id}");
    }
    assert_eq!(
        state_of(&store, &failures_asks[1]).await,
        MessageState::Delivered
    );
}

#[tokio::test]
async fn the_oldest_deliveries_go_beyond_the_cap_and_all_after_the_retention() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open_with(dir.path(), &clock, None, Some(3)).await;
    let ids = taken(&store, (0..5).map(|n| message(&format!("m{n}"))).collect()).await;
    for id in &ids {
        store
            .record_reports(vec![report(id, "Delivered", Some(MessageState::Delivered))])
            .await
            .unwrap();
    }
    let kept: Vec<String> = receipts(&store)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(kept, ids[2..], "the three newest");
    assert_eq!(
        store.dropped_deliveries(),
        [("acme".to_owned(), DropReason::OverLimit, 2)]
    );

    clock.advance_ms(48 * 3_600_000 - 1);
    store.maintain().await.unwrap();
    assert_eq!(receipts(&store).await.len(), 3);
    clock.advance_ms(1);
    store.maintain().await.unwrap();
    assert!(receipts(&store).await.is_empty(), "48 h is the limit");
    assert_eq!(
        store.dropped_deliveries(),
        [
            ("acme".to_owned(), DropReason::OverLimit, 2),
            ("acme".to_owned(), DropReason::Expired, 3)
        ]
    );
}

#[tokio::test]
async fn an_incoming_message_is_stored_once_even_after_it_was_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock, None).await;
    let hello = || Incoming {
        system_id: "acme".into(),
        source_addr: "+4917611111111".into(),
        dest_addr: "+4915100000".into(),
        content: Content::Text("hello".into()),
        dedupe_key: "mo:phone:a80532bb:+4917611111111:1790000000000".into(),
    };
    assert!(store.record_incoming(hello()).await.unwrap());
    assert!(
        !store.record_incoming(hello()).await.unwrap(),
        "a duplicate"
    );
    let pending = store.pending_deliveries("acme", 0, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    store
        .acknowledge_deliveries(vec![pending[0].id])
        .await
        .unwrap();
    // The phone tries the webhook again hours later: still a duplicate.
    clock.advance_ms(6 * 24 * 3_600_000);
    store.maintain().await.unwrap();
    assert!(!store.record_incoming(hello()).await.unwrap());
    assert!(store
        .pending_deliveries("acme", 0, 10)
        .await
        .unwrap()
        .is_empty());
    // A week on, the key is forgotten.
    clock.advance_ms(24 * 3_600_000 + 1);
    store.maintain().await.unwrap();
    assert!(store.record_incoming(hello()).await.unwrap());
}

#[tokio::test]
async fn the_inbox_cursor_starts_once_and_only_moves_on() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock, None).await;
    assert_eq!(store.inbox_cursor("phone").await.unwrap(), None);
    store.record_inbox("phone", Vec::new(), T0).await.unwrap();
    store
        .record_inbox("phone", Vec::new(), T0 + 500)
        .await
        .unwrap();
    store
        .record_inbox("phone", Vec::new(), T0 + 100)
        .await
        .unwrap();
    assert_eq!(
        store.inbox_cursor("phone").await.unwrap(),
        Some((T0, T0 + 500))
    );
}

#[tokio::test]
async fn final_messages_and_their_outbox_rows_go_after_the_retention() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock, None).await;
    let single = taken(&store, vec![message("done soon"), message("still out")]).await;
    let parts = taken(
        &store,
        vec![part("k", 2, 1, "first "), part("k", 2, 2, "second")],
    )
    .await;
    for id in [&single[0], &parts[0]] {
        store
            .record_reports(vec![report(id, "Delivered", Some(MessageState::Delivered))])
            .await
            .unwrap();
    }
    let outbox_ids = |store: Store| async move { peek::outbox_ids(&store).await };
    assert_eq!(outbox_ids(store.clone()).await.len(), 3);

    // Final at T0 + 5 s; kept 7 days from then.
    clock.advance_ms(7 * 24 * 3_600_000 + 5_000 - 1);
    store.maintain().await.unwrap();
    assert!(store.query("acme", &single[0], "").await.unwrap().is_some());
    clock.advance_ms(2);
    store.maintain().await.unwrap();
    for gone in [&single[0], &parts[0], &parts[1]] {
        assert_eq!(store.query("acme", gone, "").await.unwrap(), None, "{gone}");
    }
    // The message still on its way stays, with its outbox row.
    assert_eq!(state_of(&store, &single[1]).await, MessageState::Enroute);
    assert_eq!(outbox_ids(store.clone()).await, [single[1].clone()]);
}
