-- Every successful bind, for the messages its session submits to name it:
-- the console shows "session 12: transceiver from 127.0.0.1:50123, bound at …".
-- seen_at is renewed hourly while the session is bound; a row not seen for
-- longer than the messages are kept goes (maintenance).
CREATE TABLE session_binds (
    session    INTEGER PRIMARY KEY AUTOINCREMENT,
    system_id  TEXT    NOT NULL,
    bind_type  TEXT    NOT NULL,
    peer       TEXT    NOT NULL,
    bound_at   INTEGER NOT NULL,
    seen_at    INTEGER NOT NULL
) STRICT;

CREATE INDEX session_binds_seen ON session_binds(seen_at);

-- The bind whose session submitted the message (NULL: before this column, or
-- the bind could not be recorded).
ALTER TABLE messages ADD COLUMN session INTEGER;

-- When the upstream took the message (Unix ms): its answer to the send.
ALTER TABLE outbox ADD COLUMN sent_at INTEGER;

-- The steps of a message's life that no column keeps, each with its time
-- (Unix ms, when the broker stored it), written in the transaction that made
-- it so:
--   upstream           an intermediate state the upstream reported ("Sent");
--                      the last one is outbox.upstream_state, at messages.final_at
--   retry              an attempt failed and it waits to be sent again: the error
--   failed             it became final without delivery: the error
--   receipt_delivered  an ESME acknowledged a receipt's deliver_sm: when the
--                      receipt was stored and sent, and to which session
--   receipt_refused    an ESME answered a receipt's deliver_sm with an error,
--                      or its session ended first
-- message_id is the outbox row's (a long message's first part) for the first
-- three, the part's own for the receipts. Deleted with the message.
-- Rows are appended (rowid order); the index finds a message's.
CREATE TABLE message_events (
    message_id INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    event      TEXT    NOT NULL,
    detail     TEXT    NOT NULL DEFAULT ''
) STRICT;

CREATE INDEX message_events_by_message ON message_events(message_id);
