//! The `upstream_states` table: what an upstream's own message states stand for.
//! Read once at startup; the dispatchers, the sandbox and the webhook route all
//! map through it, so polled and pushed states are stored alike.

use std::collections::HashMap;

use sqlx::sqlite::SqliteConnection;
use sqlx::Row;

use super::MessageState;

/// A final state an upstream reported, and the err: code it is reported with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FinalState {
    pub state: MessageState,
    pub error_code: u8,
}

#[derive(Debug, Clone, Default)]
pub struct UpstreamStates {
    finals: HashMap<String, FinalState>,
}

impl UpstreamStates {
    pub(super) async fn load(conn: &mut SqliteConnection) -> Result<Self, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT u.upstream_state, u.state, u.error_code FROM upstream_states u \
             JOIN message_states s ON s.state = u.state WHERE s.final = 1",
        )
        .fetch_all(conn)
        .await?;
        let finals = rows
            .iter()
            .map(|row| {
                let final_state = FinalState {
                    state: MessageState::parse(row.get::<&str, _>(1)),
                    error_code: row.get::<i64, _>(2).clamp(0, 255) as u8,
                };
                (row.get::<String, _>(0), final_state)
            })
            .collect();
        Ok(UpstreamStates { finals })
    }

    /// The final state `upstream_state` stands for; None while the message is
    /// still on its way (or the name is not in the table).
    pub fn final_state(&self, upstream_state: &str) -> Option<FinalState> {
        self.finals.get(upstream_state).copied()
    }
}
