//! The SQL views operators read (`queue_depth`, `route_depth`,
//! `upstream_usage`), with the same names and columns on both backends, and
//! the read-only handle `smpp-broker queues` reads them through.

use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;

use super::{postgres, sqlite, PostgresSettings, StoreError};
use crate::config::StoreSettings;

pub(super) const QUEUE_DEPTH: &str = "SELECT system_id, state, messages FROM queue_depth";
const ROUTE_DEPTH: &str = "SELECT route, upstream, state, messages FROM route_depth";
const UPSTREAM_USAGE: &str = "SELECT upstream, parts_today, daily_limit, parts_this_month, \
     monthly_limit, timezone FROM upstream_usage";

/// Messages not yet final of one route, member ("" while free) and state.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RouteDepth {
    pub route: String,
    pub upstream: String,
    pub state: String,
    pub messages: i64,
}

/// An upstream's parts today and this month, and its limits.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UpstreamUsage {
    pub upstream: String,
    pub parts_today: i64,
    pub daily_limit: Option<i64>,
    pub parts_this_month: i64,
    pub monthly_limit: Option<i64>,
    pub timezone: String,
}

/// The database opened to read its views beside a live broker: no lock, no
/// migration, no writes.
pub enum ReadOnlyStore {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$sql` as `query_as` on whichever pool `$store` holds.
macro_rules! read_all {
    ($store:expr, $sql:expr) => {
        match $store {
            ReadOnlyStore::Sqlite(pool) => sqlx::query_as($sql).fetch_all(pool).await?,
            ReadOnlyStore::Postgres(pool) => sqlx::query_as($sql).fetch_all(pool).await?,
        }
    };
}

impl ReadOnlyStore {
    pub async fn open(settings: &StoreSettings) -> Result<ReadOnlyStore, StoreError> {
        match &settings.url {
            None => sqlite::open_read_only(settings)
                .await
                .map(ReadOnlyStore::Sqlite),
            Some(_) => postgres::open_read_only(&PostgresSettings::of(settings))
                .await
                .map(ReadOnlyStore::Postgres),
        }
    }

    /// Rows of the `queue_depth` view: (system_id, state, messages).
    pub async fn queue_depth(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        Ok(read_all!(self, QUEUE_DEPTH))
    }

    /// Rows of the `route_depth` view.
    pub async fn route_depth(&self) -> Result<Vec<RouteDepth>, StoreError> {
        Ok(read_all!(self, ROUTE_DEPTH))
    }

    /// Rows of the `upstream_usage` view.
    pub async fn upstream_usage(&self) -> Result<Vec<UpstreamUsage>, StoreError> {
        Ok(read_all!(self, UPSTREAM_USAGE))
    }
}
