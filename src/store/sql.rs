//! SQL fragments more than one statement shares.

/// The messages an outbox row carries, with the row's id as `?1` or `?2`: the
/// message of that id, or the parts of a set (which alone have the parts index).
pub(super) const CARRIED_BY_OUTBOX_1: &str =
    "(message_id = ?1 OR (outbox_id = ?1 AND concat_key IS NOT NULL))";
pub(super) const CARRIED_BY_OUTBOX_2: &str =
    "(message_id = ?2 OR (outbox_id = ?2 AND concat_key IS NOT NULL))";
