//! The PostgreSQL backend (issue 15), for several broker nodes on one
//! database: its own SQL and its own migrations (migrations/postgres/).
//!
//! So far: connecting, the durability check, the schema, message_ids across
//! nodes (ids.rs), and heartbeats and leases (cluster.rs). The store's commands follow, each held to the
//! SQLite backend's behaviour by the conformance suite.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::Row;

use super::StoreError;

/// How the PostgreSQL store connects.
#[derive(Debug, Clone)]
pub struct PostgresSettings {
    /// `postgres://user:password@host:port/database`.
    pub url: String,
    /// The pool's size.
    pub max_connections: u32,
    /// How long connecting (and later, waiting for a pooled connection) may take.
    pub connect_timeout: Duration,
}

/// Connects, checks that a COMMIT is durable, and brings the schema up to date.
pub async fn connect(settings: &PostgresSettings) -> Result<PgPool, StoreError> {
    let options: PgConnectOptions = settings
        .url
        .parse()
        .map_err(|source| StoreError::Connect(masked(&settings.url), source))?;
    let pool = PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.connect_timeout)
        .connect_with(options)
        .await
        .map_err(|source| StoreError::Connect(masked(&settings.url), source))?;
    check_durable(&pool).await?;
    sqlx::migrate!("./migrations/postgres").run(&pool).await?;
    Ok(pool)
}

/// A submit_sm_resp goes back only after COMMIT returned, so COMMIT must wait
/// for the WAL flush: `synchronous_commit` anything but `off`.
async fn check_durable(pool: &PgPool) -> Result<(), StoreError> {
    let setting: String = sqlx::query("SHOW synchronous_commit")
        .fetch_one(pool)
        .await?
        .get(0);
    if setting == "off" {
        return Err(StoreError::NotDurablePostgres(setting));
    }
    let fsync: String = sqlx::query("SHOW fsync").fetch_one(pool).await?.get(0);
    if fsync != "on" {
        return Err(StoreError::NotDurablePostgres(format!("fsync = {fsync}")));
    }
    Ok(())
}

/// The URL with its password masked, for messages and logs.
pub fn masked(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("****"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "(an unreadable store.url)".to_owned(),
    }
}

pub mod cluster;
pub mod ids;

/// A pool on a new database `database` of a throwaway cluster, migrated.
#[cfg(test)]
async fn test_pool(cluster: &testkit::postgres::TestPostgres, database: &str) -> PgPool {
    cluster.create_database(database).unwrap();
    connect(&PostgresSettings {
        url: cluster.url(database),
        max_connections: 10,
        connect_timeout: Duration::from_secs(10),
    })
    .await
    .unwrap()
}

#[cfg(test)]
mod tests;
