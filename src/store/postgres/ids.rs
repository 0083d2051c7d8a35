//! message_ids on PostgreSQL: every node reserves blocks from one row, so ids
//! are unique and increasing across nodes and restarts, and never fall behind
//! the time-based floor (`message_ids::first_id_at`) when the clock moves on.

use sqlx::postgres::PgPool;

use crate::store::message_ids::first_id_at;
use crate::store::StoreError;

/// Reserves `count` consecutive message_ids at `now` (Unix ms); returns the
/// first. Its own short transaction: the row is locked only for this statement.
pub async fn reserve(pool: &PgPool, count: u32, now: i64) -> Result<i64, StoreError> {
    let count = i64::from(count.max(1));
    let last: i64 = sqlx::query_scalar(
        "UPDATE message_ids SET last = greatest(last, $1 - 1) + $2 RETURNING last",
    )
    .bind(first_id_at(now))
    .bind(count)
    .fetch_one(pool)
    .await?;
    Ok(last - count + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::postgres::test_pool;
    use testkit::postgres::TestPostgres;

    const NOW: i64 = 1_790_000_000_000;

    async fn pool(cluster: &TestPostgres) -> PgPool {
        test_pool(cluster, "ids").await
    }

    #[tokio::test]
    async fn blocks_follow_each_other_and_the_clock() {
        let cluster = TestPostgres::start().unwrap_or_else(|err| panic!("{err}"));
        let pool = pool(&cluster).await;
        let first = reserve(&pool, 10, NOW).await.unwrap();
        assert_eq!(first, first_id_at(NOW));
        assert_eq!(reserve(&pool, 5, NOW).await.unwrap(), first + 10);
        // A node whose clock is behind still gets ids after everyone's.
        assert_eq!(reserve(&pool, 1, NOW - 60_000).await.unwrap(), first + 15);
        // Time moved on: the ids jump to its floor.
        let later = NOW + 1_000;
        assert_eq!(reserve(&pool, 1, later).await.unwrap(), first_id_at(later));
    }

    /// Two nodes (here: many connections at once) never get the same id.
    #[tokio::test]
    async fn concurrent_reservations_never_overlap() {
        let cluster = TestPostgres::start().unwrap_or_else(|err| panic!("{err}"));
        let pool = pool(&cluster).await;
        let mut tasks = tokio::task::JoinSet::new();
        for node in 0..8_u32 {
            let pool = pool.clone();
            tasks.spawn(async move {
                let mut blocks = Vec::new();
                for i in 0..50_u32 {
                    let count = 1 + (node * 7 + i) % 64;
                    let first = reserve(&pool, count, NOW).await.unwrap();
                    blocks.push((first, first + i64::from(count) - 1));
                }
                blocks
            });
        }
        let mut blocks = Vec::new();
        while let Some(done) = tasks.join_next().await {
            blocks.extend(done.unwrap());
        }
        blocks.sort_unstable();
        assert_eq!(blocks.len(), 400);
        for pair in blocks.windows(2) {
            assert!(pair[0].1 < pair[1].0, "overlap: {pair:?}");
        }
        // Nothing lost between blocks either: the reservations are contiguous.
        assert_eq!(blocks[0].0, first_id_at(NOW));
        for pair in blocks.windows(2) {
            assert_eq!(pair[0].1 + 1, pair[1].0);
        }
    }
}
