-- The session that submitted each message, and what happened to a message
-- after it was accepted: the same as SQLite's migrations/sqlite/0007_message_life.sql,
-- where each event is explained.
ALTER TABLE messages ADD COLUMN session TEXT;

CREATE TABLE message_events (
    message_id BIGINT NOT NULL,
    at         BIGINT NOT NULL,
    event      TEXT   NOT NULL,
    detail     TEXT   NOT NULL DEFAULT '',
    PRIMARY KEY (message_id, at, event, detail)
);

-- A receipt stored for an ESME, whichever change stored it, at the time the
-- writer stored it.
CREATE FUNCTION message_events_receipt_stored() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO message_events (message_id, at, event, detail)
    VALUES (NEW.message_id, NEW.created_at, 'receipt_stored', coalesce(NEW.state, ''))
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END;
$$;

CREATE TRIGGER message_events_receipt_stored AFTER INSERT ON deliveries
FOR EACH ROW WHEN (NEW.kind = 'receipt' AND NEW.message_id IS NOT NULL)
EXECUTE FUNCTION message_events_receipt_stored();
