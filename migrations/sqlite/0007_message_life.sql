-- The session that submitted each message, as the console shows it
-- ("#7 from 127.0.0.1:50123"); NULL for messages stored before.
ALTER TABLE messages ADD COLUMN session TEXT;

-- What happened to a message after it was accepted, each with its time (Unix
-- ms, when the broker stored it), written in the transaction that made it so:
--   sent               an upstream took it: "UPSTREAM id UPSTREAM_ID"
--   retry              an attempt failed and it waits to be sent again: the error
--   failed             it became final without delivery: the error
--   upstream           the upstream reported a state: "Sent", "Delivered", …
--   receipt_stored     a delivery receipt for the ESME was stored: the state
--   receipt_delivered  an ESME acknowledged its deliver_sm: which session, when sent
--   receipt_refused    an ESME answered its deliver_sm with an error, or left
-- message_id is the outbox row's (a long message's first part) for the first
-- four, the part's own for the receipts. Deleted with the message.
CREATE TABLE message_events (
    message_id INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    event      TEXT    NOT NULL,
    detail     TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (message_id, at, event, detail)
) STRICT, WITHOUT ROWID;

-- A receipt stored for an ESME, whichever change stored it (a report, a
-- failure, an expiry, a cancel), at the time the writer stored it.
CREATE TRIGGER message_events_receipt_stored AFTER INSERT ON deliveries
WHEN NEW.kind = 'receipt' AND NEW.message_id IS NOT NULL
BEGIN
    INSERT OR IGNORE INTO message_events (message_id, at, event, detail)
    VALUES (NEW.message_id, NEW.created_at, 'receipt_stored', coalesce(NEW.state, ''));
END;
