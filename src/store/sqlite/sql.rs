//! SQL fragments and column mappings more than one statement shares.

use crate::text::Content;

/// A message body as its two columns: `text` for text, `data` for octets.
pub(super) fn content_columns(content: &Content) -> (Option<&str>, Option<&[u8]>) {
    match content {
        Content::Text(text) => (Some(text), None),
        Content::Binary(data) => (None, Some(data)),
    }
}

/// The body back from its two columns.
pub(super) fn content_from_columns(text: Option<String>, data: Option<Vec<u8>>) -> Content {
    match text {
        Some(text) => Content::Text(text),
        None => Content::Binary(data.unwrap_or_default()),
    }
}

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
