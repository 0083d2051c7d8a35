-- Every successful bind, the bind that submitted each message, when the
-- upstream took a message, and the steps of its life no column keeps: the
-- same as SQLite's migrations/sqlite/0007_message_life.sql, where each is
-- explained.
CREATE TABLE session_binds (
    session    BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    system_id  TEXT    NOT NULL,
    bind_type  TEXT    NOT NULL,
    peer       TEXT    NOT NULL,
    bound_at   BIGINT  NOT NULL,
    seen_at    BIGINT  NOT NULL
);

CREATE INDEX session_binds_seen ON session_binds(seen_at);

ALTER TABLE messages ADD COLUMN session BIGINT;
ALTER TABLE outbox ADD COLUMN sent_at BIGINT;

CREATE TABLE message_events (
    message_id BIGINT NOT NULL,
    at         BIGINT NOT NULL,
    event      TEXT   NOT NULL,
    detail     TEXT   NOT NULL DEFAULT ''
);

CREATE INDEX message_events_by_message ON message_events(message_id);
