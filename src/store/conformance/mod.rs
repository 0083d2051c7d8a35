//! The store's behaviour through its interface, `Store`: every backend must pass
//! it unchanged. What only one backend has (SQLite's WAL, its lock file) is tested
//! beside that backend (sqlite/tests.rs).

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::clock::ManualClock;
use crate::text::{Charset, Content};

mod deliveries;
mod dispatch;
mod intake;
mod routes;

pub(crate) const T0: i64 = 1_790_000_000_000;

/// The backends every case runs on.
#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

/// Where a case's database lives: a temporary folder, or a database of its
/// own on the process's PostgreSQL cluster. Opening it again is a restart.
enum Place {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl Place {
    fn new(backend: Backend) -> Place {
        match backend {
            Backend::Sqlite => Place::Sqlite(tempfile::tempdir().unwrap()),
            Backend::Postgres => {
                let cluster =
                    testkit::postgres::TestPostgres::shared().unwrap_or_else(|err| panic!("{err}"));
                Place::Postgres(cluster.new_database().unwrap())
            }
        }
    }
}

/// Each case named, as a test on each backend: `sqlite::case` and
/// `postgres::case`.
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::Backend::Postgres).await
                }
            )*
        }
    };
}
use on_both_backends;

async fn open(place: &Place, clock: &ManualClock, max_waiting: Option<usize>) -> Store {
    open_with(place, clock, max_waiting, None).await
}

async fn open_with(
    place: &Place,
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
    let clock = Arc::new(clock.clone());
    match place {
        Place::Sqlite(dir) => {
            let settings = StoreSettings::sqlite(dir.path().join("test.db"));
            Store::open(&settings, limits, clock).await.unwrap()
        }
        Place::Postgres(url) => {
            let settings = PostgresSettings::new(url.clone(), "node-a");
            Store::Postgres(PostgresStore::open(&settings, limits, clock).await.unwrap())
        }
    }
}

/// Claims every waiting message of the route "sandbox" and binds each to the
/// upstream of that name, as a dispatcher does before it sends.
pub(crate) async fn claim_all(store: &Store) -> Vec<Dispatch> {
    let reachable = ["sandbox".to_owned()];
    store
        .claim("sandbox", 100, 60_000, &reachable, to("sandbox"))
        .await
        .unwrap()
}

/// A placer that binds every claimed message to `member`.
pub(crate) fn to(member: &str) -> Placer {
    let member = member.to_owned();
    Box::new(move |_| Placement::Member(member.clone()))
}

/// A placer that leaves every claimed message as it is.
pub(crate) fn as_is() -> Placer {
    Box::new(|_| Placement::AsIs)
}

/// A replace_sm of `message_id` with `text`, nothing else changed.
pub(crate) fn replacement(message_id: &str, text: &str) -> Replacement {
    Replacement {
        message_id: message_id.into(),
        source_addr: String::new(),
        body: crate::text::gsm7::encode(text).unwrap(),
        scheduled_at: None,
        expires_at: None,
        registered_delivery: 0,
    }
}

pub(crate) fn message(text: &str) -> NewMessage {
    NewMessage {
        system_id: "acme".into(),
        route: "sandbox".into(),
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
        session: None,
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

    /// How many steps of messages' lives are kept.
    pub async fn events(store: &Store) -> i64 {
        let sql = "SELECT count(*) FROM message_events";
        match store {
            Store::Sqlite(s) => sqlx::query(sql).fetch_one(s.reader()).await.unwrap().get(0),
            Store::Postgres(s) => sqlx::query(sql).fetch_one(s.pool()).await.unwrap().get(0),
        }
    }

    /// The binds kept, by number.
    pub async fn binds(store: &Store) -> Vec<i64> {
        let sql = "SELECT session FROM session_binds ORDER BY session";
        match store {
            Store::Sqlite(s) => sqlx::query_scalar(sql).fetch_all(s.reader()).await.unwrap(),
            Store::Postgres(s) => sqlx::query_scalar(sql).fetch_all(s.pool()).await.unwrap(),
        }
    }

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
            Store::Postgres(s) => sqlx::query("SELECT state, text FROM outbox ORDER BY id")
                .fetch_all(s.pool())
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
            Store::Sqlite(s) => sqlx::query_scalar("SELECT id FROM outbox ORDER BY id")
                .fetch_all(s.reader())
                .await
                .unwrap(),
            Store::Postgres(s) => sqlx::query_scalar("SELECT id FROM outbox ORDER BY id")
                .fetch_all(s.pool())
                .await
                .unwrap(),
        }
        .into_iter()
        .map(|id: i64| id.to_string())
        .collect()
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
            Store::Postgres(s) => {
                sqlx::query("SELECT count(*) FROM message_states WHERE state = $1")
                    .bind(state)
                    .fetch_one(s.pool())
                    .await
                    .unwrap()
                    .get(0)
            }
        }
    }

    /// An operator's change to the table: delivered reported as ACCEPTD (6).
    pub async fn report_delivered_as_accepted(store: &Store) {
        use sqlx::Connection;
        const CHANGE: &str = "UPDATE message_states SET smpp_state = 6, stat = 'ACCEPTD' \
                              WHERE state = 'delivered'";
        match store {
            Store::Sqlite(s) => {
                let url = format!("sqlite://{}", s.path().display());
                let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
                sqlx::query(CHANGE).execute(&mut conn).await.unwrap();
            }
            Store::Postgres(s) => {
                sqlx::query(CHANGE).execute(s.pool()).await.unwrap();
            }
        }
    }
}
