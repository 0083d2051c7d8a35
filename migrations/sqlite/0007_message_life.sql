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
