-- When the upstream took a message, and the steps of its life no column
-- keeps: the same as SQLite's migrations/sqlite/0007_message_life.sql, where
-- each is explained.
ALTER TABLE outbox ADD COLUMN sent_at BIGINT;

CREATE TABLE message_events (
    message_id BIGINT NOT NULL,
    at         BIGINT NOT NULL,
    event      TEXT   NOT NULL,
    detail     TEXT   NOT NULL DEFAULT ''
);

CREATE INDEX message_events_by_message ON message_events(message_id);
