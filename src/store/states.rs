//! The `upstream_states` table: what an upstream's own message states stand for.
//! Read once at startup; the dispatchers, the sandbox and the webhook route all
//! map through it, so polled and pushed states are stored alike.

use std::collections::HashMap;

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
    /// The query that reads the table's final states, the same on every backend:
    /// (upstream_state, state, error_code).
    pub(super) const FINALS: &'static str =
        "SELECT u.upstream_state, u.state, u.error_code FROM upstream_states u \
         JOIN message_states s ON s.state = u.state WHERE s.final = 1";

    /// The table from the rows `FINALS` read.
    pub(super) fn from_finals(rows: Vec<(String, String, i64)>) -> Self {
        let finals = rows
            .into_iter()
            .map(|(upstream_state, state, error_code)| {
                let final_state = FinalState {
                    state: MessageState::parse(&state),
                    error_code: error_code.clamp(0, 255) as u8,
                };
                (upstream_state, final_state)
            })
            .collect();
        UpstreamStates { finals }
    }

    /// The final state `upstream_state` stands for; None while the message is
    /// still on its way (or the name is not in the table).
    pub fn final_state(&self, upstream_state: &str) -> Option<FinalState> {
        self.finals.get(upstream_state).copied()
    }
}
