//! New messages as both backends store them: what the writer accepted, the
//! outbox rows that carry them, and a long message's parts joined into one.

use std::collections::BTreeMap;

use super::commands::{finisher, Command, Finisher};
use super::model::{NewMessage, SubmitError};
use super::rules::{covering_request, decode_content, schedule};
use crate::text::{Charset, Content};

/// Rows per multi-row INSERT, well inside SQLite's bound-parameter limit; a power
/// of two (see `cacheable_chunks`).
pub(crate) const ROWS_PER_INSERT: usize = 256;

/// A message the writer accepted, with its ids.
pub(crate) struct Accepted {
    pub(crate) message: NewMessage,
    pub(crate) message_id: i64,
    /// The outbox row of a whole message; None for a part that waits for its set.
    pub(crate) outbox_id: Option<i64>,
}

/// An outbox row to insert: one whole message, or the joined parts of a set.
pub(crate) struct OutboxRow<'a> {
    pub(crate) id: i64,
    pub(crate) system_id: &'a str,
    pub(crate) route: &'a str,
    pub(crate) state: &'static str,
    pub(crate) priority: u8,
    pub(crate) due_at: i64,
    pub(crate) expires_at: i64,
    pub(crate) dest_ton: u8,
    pub(crate) dest_addr: &'a str,
    pub(crate) source_addr: &'a str,
    pub(crate) content: Content,
    pub(crate) data_coding: u8,
    pub(crate) registered_delivery: u8,
}

impl<'a> OutboxRow<'a> {
    /// The row of a whole message, which takes the message's id.
    pub(crate) fn of_message(
        id: i64,
        m: &'a NewMessage,
        content: Content,
        now: i64,
    ) -> OutboxRow<'a> {
        let (state, due_at) = schedule(m.scheduled_at, now);
        OutboxRow {
            id,
            system_id: &m.system_id,
            route: &m.route,
            state,
            priority: m.priority,
            due_at,
            expires_at: m.expires_at,
            dest_ton: m.dest.ton,
            dest_addr: &m.dest.addr,
            source_addr: &m.source.addr,
            content,
            data_coding: m.data_coding,
            registered_delivery: m.registered_delivery,
        }
    }
}

/// A part of a long message that waits for the rest of its set.
#[derive(sqlx::FromRow)]
pub(crate) struct AssemblingPart {
    pub(crate) message_id: i64,
    pub(crate) concat_seq: i64,
    pub(crate) concat_total: i64,
    pub(crate) body: Vec<u8>,
    pub(crate) charset: String,
    pub(crate) data_coding: i64,
    pub(crate) system_id: String,
    pub(crate) route: String,
    pub(crate) priority: i64,
    pub(crate) scheduled_at: Option<i64>,
    pub(crate) expires_at: i64,
    pub(crate) dest_ton: i64,
    pub(crate) dest_addr: String,
    pub(crate) source_addr: String,
    pub(crate) registered_delivery: i64,
}

/// The submits of a batch, each accepted whole or refused: `room` says whether
/// an account may have `count` more messages waiting (and counts them if so),
/// `next_id` numbers them. The callers' answers go to `finishers`, sent once
/// the batch commits.
pub(crate) fn accept_all(
    submits: Vec<Command>,
    mut room: impl FnMut(&str, usize) -> Result<(), SubmitError>,
    mut next_id: impl FnMut() -> i64,
    finishers: &mut Vec<Finisher>,
) -> Vec<Accepted> {
    let mut accepted = Vec::new();
    for command in submits {
        let Command::Submit { messages, reply } = command else {
            continue;
        };
        let Some(first) = messages.first() else {
            finishers.push(finisher(reply, Ok(Vec::new())));
            continue;
        };
        if let Err(refused) = room(&first.system_id, messages.len()) {
            finishers.push(finisher(reply, Err(refused)));
            continue;
        }
        let ids: Vec<i64> = messages.iter().map(|_| next_id()).collect();
        finishers.push(finisher(
            reply,
            Ok(ids.iter().map(i64::to_string).collect()),
        ));
        for (message, message_id) in messages.into_iter().zip(ids) {
            let outbox_id = message.concat.is_none().then_some(message_id);
            accepted.push(Accepted {
                message,
                message_id,
                outbox_id,
            });
        }
    }
    accepted
}

/// The outbox rows of the whole messages among `accepted` (parts wait for
/// their set), and the message_ids of those that do not decode.
pub(crate) fn outbox_rows(accepted: &[Accepted], now: i64) -> (Vec<OutboxRow<'_>>, Vec<i64>) {
    let mut rows = Vec::new();
    let mut undecodable = Vec::new();
    for a in accepted {
        let Some(id) = a.outbox_id else { continue };
        let message = &a.message;
        let content = message
            .content
            .clone()
            .or_else(|| decode_content(message.charset, &message.body));
        match content {
            Some(content) => rows.push(OutboxRow::of_message(id, message, content, now)),
            // Validated before it reached the store, so this is a bug if it happens.
            None => undecodable.push(a.message_id),
        }
    }
    (rows, undecodable)
}

/// The keys of the sets `accepted` added parts to, each once.
pub(crate) fn touched_sets(accepted: &[Accepted]) -> Vec<&str> {
    let mut sets: Vec<&str> = accepted
        .iter()
        .filter_map(|a| a.message.concat.as_ref().map(|c| c.key.as_str()))
        .collect();
    sets.sort_unstable();
    sets.dedup();
    sets
}

/// What a long message's parts, read in part order, make.
pub(crate) enum SetJoin<'a> {
    /// A part is still missing.
    Incomplete,
    /// Joined, they do not decode (a bug upstream of the store if it happens).
    Undecodable { system_id: &'a str },
    /// One outbox row for the whole set.
    Whole(OutboxRow<'a>),
}

/// Joins a set's parts (in part order, the first copy of a repeated part) into
/// one outbox row once every part is in.
pub(crate) fn join_set(parts: &[AssemblingPart], now: i64) -> SetJoin<'_> {
    let Some(first) = parts.first() else {
        return SetJoin::Incomplete;
    };
    let mut by_seq: BTreeMap<i64, &[u8]> = BTreeMap::new();
    for part in parts {
        by_seq.entry(part.concat_seq).or_insert(&part.body);
    }
    if by_seq.len() < first.concat_total as usize {
        return SetJoin::Incomplete;
    }
    let joined: Vec<u8> = by_seq
        .values()
        .flat_map(|body| body.iter().copied())
        .collect();
    let charset = Charset::parse(&first.charset).unwrap_or(Charset::Binary);
    let Some(content) = decode_content(charset, &joined) else {
        return SetJoin::Undecodable {
            system_id: &first.system_id,
        };
    };
    let (state, due_at) = schedule(first.scheduled_at, now);
    // The first part's message_id names the set's outbox row, and its route.
    SetJoin::Whole(OutboxRow {
        id: first.message_id,
        system_id: &first.system_id,
        route: &first.route,
        state,
        priority: first.priority as u8,
        due_at,
        expires_at: parts.iter().map(|p| p.expires_at).min().unwrap_or(now),
        dest_ton: first.dest_ton as u8,
        dest_addr: &first.dest_addr,
        source_addr: &first.source_addr,
        content,
        data_coding: first.data_coding as u8,
        // Any part may be the one that asks for a report; each part's own receipts
        // follow its own value (rules::covering_request).
        registered_delivery: covering_request(parts.iter().map(|p| p.registered_delivery as u8)),
    })
}

/// Splits rows into chunks of ROWS_PER_INSERT, 128, 64, … 1 rows: a multi-row
/// INSERT's text depends on its row count, so a handful of sizes keeps every
/// statement in the connection's prepared-statement cache instead of preparing a
/// new one for each batch.
pub(crate) fn cacheable_chunks<T>(mut rows: &[T]) -> Vec<&[T]> {
    let mut chunks = Vec::new();
    let mut size = ROWS_PER_INSERT;
    while !rows.is_empty() {
        while size > rows.len() {
            size /= 2;
        }
        let (chunk, rest) = rows.split_at(size);
        chunks.push(chunk);
        rows = rest;
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::cacheable_chunks;

    #[test]
    fn chunks_use_few_distinct_sizes() {
        let rows: Vec<u32> = (0..700).collect();
        let sizes: Vec<usize> = cacheable_chunks(&rows).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [256, 256, 128, 32, 16, 8, 4]);
        assert_eq!(sizes.iter().sum::<usize>(), 700);
        assert!(cacheable_chunks::<u32>(&[]).is_empty());
    }
}
