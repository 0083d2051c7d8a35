//! Against a real PostgreSQL: a throwaway cluster (testkit/src/postgres.rs).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;
use testkit::postgres::TestPostgres;

use super::*;
use crate::clock::ManualClock;
use crate::config::StoreSettings;
use crate::store::Store;
use crate::store::WriterLimits;

fn cluster() -> TestPostgres {
    TestPostgres::start().unwrap_or_else(|err| panic!("{err}"))
}

fn settings(cluster: &TestPostgres, database: &str) -> PostgresSettings {
    cluster.create_database(database).unwrap();
    PostgresSettings::new(cluster.url(database), "test")
}

#[tokio::test]
async fn connecting_migrates_once_and_again_changes_nothing() {
    let cluster = cluster();
    let settings = settings(&cluster, "smpp");
    let pool = connect(&settings).await.unwrap();
    let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(versions, [1, 2, 3, 4, 5, 6]);
    pool.close().await;
    // A second node, or a restart: the schema is there already.
    let again = connect(&settings).await.unwrap();
    let states: i64 = sqlx::query_scalar("SELECT count(*) FROM message_states")
        .fetch_one(&again)
        .await
        .unwrap();
    assert_eq!(states, 11);
}

#[tokio::test]
async fn a_server_that_does_not_flush_commits_is_refused() {
    let cluster = cluster();
    let settings = settings(&cluster, "smpp");
    cluster
        .psql("postgres", "ALTER SYSTEM SET synchronous_commit = off")
        .unwrap();
    cluster.psql("postgres", "SELECT pg_reload_conf()").unwrap();
    let err = connect(&settings).await.unwrap_err();
    assert!(matches!(err, StoreError::NotDurablePostgres(_)), "{err}");
    assert!(err.to_string().contains("synchronous_commit"), "{err}");
}

#[tokio::test]
async fn an_unreachable_server_is_named_without_its_password() {
    let settings = PostgresSettings {
        connect_timeout: Duration::from_millis(300),
        ..PostgresSettings::new("postgres://broker:s3cret@127.0.0.1:1/smpp", "test")
    };
    let err = connect(&settings).await.unwrap_err().to_string();
    assert!(err.contains("127.0.0.1:1"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
    assert_eq!(
        masked("postgres://broker:s3cret@db:5432/smpp"),
        "postgres://broker:****@db:5432/smpp"
    );
    assert_eq!(masked("postgres://db/smpp"), "postgres://db/smpp");
}

/// Tables only a cluster of nodes needs (migrations/postgres/).
const CLUSTER_ONLY: [&str; 4] = ["message_ids", "nodes", "leases", "sessions"];
/// Columns only a cluster of nodes needs: (table, column).
const CLUSTER_COLUMNS: [(&str, &str); 3] = [
    ("outbox", "claimed_by"),
    ("deliveries", "claimed_by"),
    ("deliveries", "claim_until"),
];

/// Operators read the queues with SQL on either backend: the same tables and
/// views, with the same columns.
#[tokio::test]
async fn both_backends_have_the_same_tables_views_and_columns() {
    let cluster = cluster();
    let pool = connect(&settings(&cluster, "smpp")).await.unwrap();
    let postgres: BTreeSet<(String, String)> = sqlx::query(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        &StoreSettings::sqlite(dir.path().join("parity.db")),
        WriterLimits::for_tests(),
        Arc::new(ManualClock::new(0)),
    )
    .await
    .unwrap();
    store.close().await.unwrap();
    let mut sqlite = sqlx::SqliteConnection::connect(&format!(
        "sqlite://{}",
        dir.path().join("parity.db").display()
    ))
    .await
    .unwrap();
    use sqlx::Connection;
    let sqlite: BTreeSet<(String, String)> = sqlx::query(
        "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p \
         WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite_%' \
         AND m.name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut sqlite)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    assert!(
        sqlite.len() > 80,
        "{} columns read from SQLite",
        sqlite.len()
    );
    // What only several nodes need exists only on PostgreSQL.
    let postgres: BTreeSet<(String, String)> = postgres
        .into_iter()
        .filter(|(table, column)| {
            !CLUSTER_ONLY.contains(&table.as_str())
                && !CLUSTER_COLUMNS.contains(&(table.as_str(), column.as_str()))
        })
        .collect();
    let only_sqlite: Vec<_> = sqlite.difference(&postgres).collect();
    let only_postgres: Vec<_> = postgres.difference(&sqlite).collect();
    assert!(
        only_sqlite.is_empty() && only_postgres.is_empty(),
        "only in SQLite: {only_sqlite:?}\nonly in PostgreSQL: {only_postgres:?}"
    );
}

/// Two processes given one node_id would take over each other's claims: the
/// second is refused while the first runs, and gets the name once it stopped.
#[tokio::test]
async fn a_node_id_is_held_by_one_running_node() {
    let cluster = TestPostgres::shared().unwrap_or_else(|err| panic!("{err}"));
    let settings = PostgresSettings::new(cluster.new_database().unwrap(), "node-a");
    let clock = || Arc::new(ManualClock::new(0));
    let first = PostgresStore::open(&settings, WriterLimits::for_tests(), clock())
        .await
        .unwrap();
    let refused = PostgresStore::open(&settings, WriterLimits::for_tests(), clock())
        .await
        .err()
        .expect("refused");
    assert!(matches!(refused, StoreError::NodeInUse(_)), "{refused}");
    assert!(refused.to_string().contains("node-a"), "{refused}");
    let other = PostgresSettings {
        node_id: "node-b".into(),
        ..settings.clone()
    };
    let second = PostgresStore::open(&other, WriterLimits::for_tests(), clock())
        .await
        .unwrap();
    first.close().await.unwrap();
    let again = PostgresStore::open(&settings, WriterLimits::for_tests(), clock())
        .await
        .unwrap();
    again.close().await.unwrap();
    second.close().await.unwrap();
}

/// The database stops while the node runs: writes are refused (within the
/// store's patience, not hanging), the failure is what /readyz shows, and
/// once the server is back the node writes again without a restart.
#[tokio::test]
async fn an_outage_refuses_writes_and_the_node_recovers_when_the_server_is_back() {
    let cluster = cluster();
    let settings = PostgresSettings {
        connect_timeout: Duration::from_secs(2),
        ..settings(&cluster, "smpp")
    };
    let store = Store::Postgres(
        PostgresStore::open(
            &settings,
            WriterLimits::for_tests(),
            Arc::new(ManualClock::new(0)),
        )
        .await
        .unwrap(),
    );
    let message = crate::store::conformance::message;
    store.submit(vec![message("before")]).await.unwrap();
    assert_eq!(store.write_failure(), None);

    cluster.stop().unwrap();
    let started = std::time::Instant::now();
    let refused = store.submit(vec![message("during")]).await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "refused after {:?}",
        started.elapsed()
    );
    assert!(store.write_failure().is_some(), "/readyz says why");

    cluster.restart().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match store.submit(vec![message("after")]).await {
            Ok(ids) => {
                assert_eq!(ids.len(), 1);
                break;
            }
            Err(err) => assert!(std::time::Instant::now() < deadline, "still refused: {err}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(store.write_failure(), None);
    let texts: Vec<String> = sqlx::query_scalar("SELECT text FROM outbox ORDER BY id")
        .fetch_all(match &store {
            Store::Postgres(s) => s.pool(),
            Store::Sqlite(_) => unreachable!(),
        })
        .await
        .unwrap();
    assert_eq!(texts, ["before", "after"], "nothing refused was stored");
}
