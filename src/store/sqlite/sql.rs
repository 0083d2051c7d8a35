//! SQL fragments and column mappings more than one statement shares.

use futures::TryStreamExt;
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{Either, Executor};

/// The one rule for which message a request (query_sm, cancel_sm, replace_sm)
/// may touch, on the messages table named `$table`: its id `?1`, its account
/// `?2`, and its source address `?3` when the request gives one. A security rule:
/// written once.
macro_rules! owned_message {
    ($table:literal) => {
        concat!(
            $table,
            ".message_id = ?1 AND ",
            $table,
            ".system_id = ?2 AND (?3 = '' OR ",
            $table,
            ".source_addr = ?3)"
        )
    };
}
pub(super) use owned_message;

/// The messages an outbox row carries, with the row's id as `?1` or `?2`: the
/// message of that id, or the parts of a set (which alone have the parts index).
pub(super) const CARRIED_BY_OUTBOX_1: &str =
    "(message_id = ?1 OR (outbox_id = ?1 AND concat_key IS NOT NULL))";
pub(super) const CARRIED_BY_OUTBOX_2: &str =
    "(message_id = ?2 OR (outbox_id = ?2 AND concat_key IS NOT NULL))";

/// The one statement shape that stores receipts: for the `messages` rows of
/// `from` that meet `condition`, the receipt their ESME asked for
/// (registered_delivery): with `enroute`, the intermediate one (0x10), else the
/// final one, 1 = every final state, 2 = failures only. `now` and `keep` are
/// the SQL giving when it is stored and when, unread, it is dropped.
pub(super) fn insert_receipts(
    now: &str,
    keep: &str,
    from: &str,
    condition: &str,
    enroute: bool,
) -> String {
    let wanted = if enroute {
        "messages.registered_delivery & 16 = 16"
    } else {
        "(messages.registered_delivery & 3 = 1 \
          OR (messages.registered_delivery & 3 = 2 AND messages.state != 'delivered'))"
    };
    format!(
        "INSERT OR IGNORE INTO deliveries (system_id, kind, message_id, state, error_code, \
         done_at, created_at, expires_at, dedupe_key) \
         SELECT messages.system_id, 'receipt', messages.message_id, messages.state, \
         messages.error_code, messages.final_at, {now}, {keep}, \
         'receipt:' || messages.message_id || ':' || messages.state \
         FROM {from} WHERE {condition} AND {wanted}"
    )
}

/// Several statements sent to SQLite's worker thread as one. A statement is a
/// round trip between the writer and that thread, about 50 µs on a 2-core
/// machine, where the work on a row is under 1 µs; a script pays one round trip
/// for all of its statements. sqlx 0.8's SQLite driver runs such a query
/// statement by statement (other drivers refuse it, and sqlx means to drop it:
/// launchbadge/sqlx#3108); the tests below fail if it stops.
///
/// Every statement reads its values from one parameter, `?1`, a JSON object
/// (`json_each(?1, '$.rows')`, `?1->>'now'`): sqlx numbers parameters across
/// the statements of a script, and loses the values of a statement that skips
/// a number.
#[derive(Default)]
pub(super) struct Script {
    sql: String,
    statements: usize,
}

impl Script {
    /// Adds a statement; returns its place among the script's results.
    pub(super) fn add(&mut self, statement: &str) -> usize {
        debug_assert!(
            !statement.contains("?2"),
            "a script's statements read only ?1"
        );
        self.sql.push_str(statement);
        self.sql.push_str(";\n");
        self.statements += 1;
        self.statements - 1
    }

    /// Its statements, one by one.
    #[cfg(test)]
    pub(super) fn statements(&self) -> impl Iterator<Item = &str> {
        self.sql.split(";\n").filter(|s| !s.trim().is_empty())
    }

    /// Runs the script in one round trip with `params` as `?1`; returns the
    /// rows each statement returned, in the order they were added.
    pub(super) async fn run(
        &self,
        conn: &mut SqliteConnection,
        params: &serde_json::Value,
    ) -> Result<Vec<Vec<SqliteRow>>, sqlx::Error> {
        let mut results: Vec<Vec<SqliteRow>> = (0..self.statements).map(|_| Vec::new()).collect();
        let mut done = 0;
        let query = sqlx::query(&self.sql).bind(params.to_string());
        let mut stream = conn.fetch_many(query);
        while let Some(step) = stream.try_next().await? {
            match step {
                Either::Left(_) => done += 1,
                Either::Right(row) => match results.get_mut(done) {
                    Some(rows) => rows.push(row),
                    None => break,
                },
            }
        }
        if done != self.statements {
            return Err(sqlx::Error::Protocol(format!(
                "a script of {} statements reported {done}",
                self.statements
            )));
        }
        Ok(results)
    }
}

/// The one value a script's statement returned (`json_group_array(…)`,
/// `json_group_object(…)`: many rows as one, one hand-off between threads
/// instead of one each), read as `T`.
pub(super) fn json_value<T: serde::de::DeserializeOwned>(
    rows: &[SqliteRow],
) -> Result<T, sqlx::Error> {
    use sqlx::Row;
    let text: Option<&str> = match rows.first() {
        Some(row) => row.try_get(0)?,
        None => None,
    };
    serde_json::from_str(text.unwrap_or("null"))
        .map_err(|err| sqlx::Error::Protocol(format!("a script's JSON value: {err}")))
}

/// The writer connection's scratch tables (in memory, its own): where one step
/// of a script leaves the rows the next steps work on, since a statement's
/// RETURNING rows cannot feed another statement.
pub(super) async fn create_scratch_tables(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(
        "CREATE TEMP TABLE IF NOT EXISTS report_moved (id INTEGER PRIMARY KEY, us TEXT); \
         CREATE TEMP TABLE IF NOT EXISTS report_final (id INTEGER PRIMARY KEY, us TEXT, \
           err TEXT, state TEXT, at INTEGER, code INTEGER); \
         CREATE TEMP TABLE IF NOT EXISTS accepted (id INTEGER PRIMARY KEY, uid TEXT, us TEXT, \
           due INTEGER); \
         CREATE TEMP TABLE IF NOT EXISTS claimed (id INTEGER PRIMARY KEY); \
         CREATE TEMP TABLE IF NOT EXISTS receipt_mark (id INTEGER);",
    )
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sqlx::{Connection, Row};

    #[tokio::test]
    async fn a_script_returns_each_statements_rows_in_order() {
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        let mut script = Script::default();
        let create = script.add("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
        let insert = script.add(
            "INSERT INTO t (id, v) SELECT value, ?1->>'a' FROM json_each(?1, '$.ids') RETURNING id",
        );
        let update = script.add("UPDATE t SET v = ?1->>'b' WHERE id > 1 RETURNING id, v");
        let none = script.add("DELETE FROM t WHERE id > 10");
        let params = json!({"ids": [1, 2, 3], "a": "a", "b": "b"});
        let results = script.run(&mut conn, &params).await.unwrap();
        assert_eq!(results.len(), 4);
        assert!(results[create].is_empty() && results[none].is_empty());
        let mut inserted: Vec<i64> = results[insert].iter().map(|r| r.get(0)).collect();
        inserted.sort_unstable();
        assert_eq!(inserted, [1, 2, 3]);
        let mut updated: Vec<(i64, String)> = results[update]
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        updated.sort_unstable();
        assert_eq!(updated, [(2, "b".to_owned()), (3, "b".to_owned())]);

        // Again and again, with other values: every statement takes them.
        let mut again = Script::default();
        again.add("DELETE FROM t");
        let insert = again.add(
            "INSERT INTO t (id, v) SELECT value, ?1->>'v' FROM json_each(?1, '$.ids') RETURNING id",
        );
        let read = again.add("SELECT count(*) FROM t WHERE v = ?1->>'v'");
        for (ids, n) in [
            (json!([]), 0),
            (json!([7, 8]), 2),
            (json!([]), 0),
            (json!([9]), 1),
        ] {
            let params = json!({"ids": ids, "v": "c"});
            let results = again.run(&mut conn, &params).await.unwrap();
            assert_eq!(results[insert].len(), n, "{params}");
            assert_eq!(results[read][0].get::<i64, _>(0), n as i64, "{params}");
        }
    }

    #[tokio::test]
    async fn a_failing_statement_fails_the_script() {
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        let mut script = Script::default();
        script.add("CREATE TABLE t (id INTEGER PRIMARY KEY)");
        script.add("INSERT INTO t (id) VALUES (1), (1)");
        assert!(script.run(&mut conn, &json!({})).await.is_err());
    }
}
