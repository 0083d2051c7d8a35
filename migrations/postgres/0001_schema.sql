-- The PostgreSQL store's schema: the same tables, columns and views as the
-- SQLite store's migrations 0001-0006 (migrations/sqlite/), in PostgreSQL's
-- types. Times are Unix milliseconds (UTC) in BIGINT, as there. The comments on
-- each column are in the SQLite migrations; the store's conformance suite holds
-- both to the same behaviour, and a test compares their tables and views.

CREATE TABLE messages (
    message_id             BIGINT  PRIMARY KEY,
    system_id              TEXT    NOT NULL,
    route                  TEXT    NOT NULL,
    state                  TEXT    NOT NULL,
    service_type           TEXT    NOT NULL,
    source_ton             BIGINT  NOT NULL,
    source_npi             BIGINT  NOT NULL,
    source_addr            TEXT    NOT NULL,
    dest_ton               BIGINT  NOT NULL,
    dest_npi               BIGINT  NOT NULL,
    dest_addr              TEXT    NOT NULL,
    esm_class              BIGINT  NOT NULL,
    protocol_id            BIGINT  NOT NULL,
    priority               BIGINT  NOT NULL,
    registered_delivery    BIGINT  NOT NULL,
    data_coding            BIGINT  NOT NULL,
    charset                TEXT    NOT NULL,
    user_message_reference BIGINT ,
    body                   BYTEA   NOT NULL,
    concat_key             TEXT,
    concat_total           BIGINT ,
    concat_seq             BIGINT ,
    outbox_id              BIGINT,
    submitted_at           BIGINT  NOT NULL,
    scheduled_at           BIGINT,
    expires_at             BIGINT  NOT NULL,
    final_at               BIGINT,
    error_code             BIGINT  NOT NULL DEFAULT 0
);
CREATE INDEX messages_assembling ON messages(concat_key, concat_seq) WHERE state = 'assembling';
CREATE INDEX messages_parts ON messages(outbox_id) WHERE concat_key IS NOT NULL;
CREATE INDEX messages_addresses ON messages(system_id, source_addr, dest_addr);

CREATE TABLE outbox (
    id                  BIGINT  PRIMARY KEY,
    system_id           TEXT    NOT NULL,
    route               TEXT    NOT NULL,
    upstream            TEXT,
    state               TEXT    NOT NULL,
    priority            BIGINT  NOT NULL,
    due_at              BIGINT  NOT NULL,
    lease_until         BIGINT,
    attempts            BIGINT  NOT NULL DEFAULT 0,
    expires_at          BIGINT  NOT NULL,
    dest_ton            BIGINT  NOT NULL,
    dest_addr           TEXT    NOT NULL,
    source_addr         TEXT    NOT NULL,
    text                TEXT,
    data                BYTEA,
    data_coding         BIGINT  NOT NULL,
    registered_delivery BIGINT  NOT NULL,
    created_at          BIGINT  NOT NULL,
    upstream_id         TEXT,
    upstream_state      TEXT,
    last_error          TEXT
);
CREATE INDEX outbox_ready ON outbox(route, priority DESC, id) WHERE state = 'queued';
CREATE INDEX outbox_due ON outbox(due_at) WHERE state IN ('scheduled', 'retry');
CREATE INDEX outbox_lease ON outbox(lease_until) WHERE state = 'sending';
CREATE INDEX outbox_enroute ON outbox(upstream, due_at) WHERE state = 'enroute';

CREATE TABLE message_states (
    state       TEXT    PRIMARY KEY,
    smpp_state  BIGINT  NOT NULL CHECK (smpp_state BETWEEN 1 AND 8),
    stat        TEXT    NOT NULL CHECK (length(stat) = 7),
    final       BIGINT  NOT NULL CHECK (final IN (0, 1))
);
INSERT INTO message_states (state, smpp_state, stat, final) VALUES
    ('assembling',    1, 'ENROUTE', 0),
    ('scheduled',     1, 'ENROUTE', 0),
    ('queued',        1, 'ENROUTE', 0),
    ('enroute',       1, 'ENROUTE', 0),
    ('delivered',     2, 'DELIVRD', 1),
    ('expired',       3, 'EXPIRED', 1),
    ('deleted',       4, 'DELETED', 1),
    ('undeliverable', 5, 'UNDELIV', 1),
    ('accepted',      6, 'ACCEPTD', 1),
    ('unknown',       7, 'UNKNOWN', 1),
    ('rejected',      8, 'REJECTD', 1);

CREATE TABLE upstream_states (
    upstream_state TEXT    PRIMARY KEY,
    state          TEXT    NOT NULL REFERENCES message_states(state),
    error_code     BIGINT  NOT NULL DEFAULT 0 CHECK (error_code BETWEEN 0 AND 255)
);
INSERT INTO upstream_states (upstream_state, state, error_code) VALUES
    ('Pending',    'enroute',       0),
    ('Processed',  'enroute',       0),
    ('Sent',       'enroute',       0),
    ('Cancelling', 'enroute',       0),
    ('Delivered',  'delivered',     0),
    ('Failed',     'undeliverable', 4),
    ('Cancelled',  'deleted',       0),
    ('NotFound',   'unknown',       0);

-- Ids only grow (GENERATED ALWAYS AS IDENTITY never reuses one): the delivery
-- hub reads the waiting deliveries after the last id it handed out.
CREATE TABLE deliveries (
    id           BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    system_id    TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    message_id   BIGINT,
    state        TEXT,
    error_code   BIGINT  NOT NULL DEFAULT 0,
    done_at      BIGINT,
    source_addr  TEXT,
    dest_addr    TEXT,
    text         TEXT,
    data         BYTEA,
    attempts     BIGINT  NOT NULL DEFAULT 0,
    created_at   BIGINT  NOT NULL,
    expires_at   BIGINT  NOT NULL,
    dedupe_key   TEXT    NOT NULL UNIQUE
);
CREATE INDEX deliveries_by_account ON deliveries(system_id, id);
CREATE INDEX deliveries_expiry ON deliveries(expires_at);

CREATE TABLE inbox_cursors (
    upstream   TEXT   PRIMARY KEY,
    started_at BIGINT NOT NULL,
    read_until BIGINT NOT NULL
);

CREATE TABLE incoming_seen (
    dedupe_key TEXT   PRIMARY KEY,
    seen_at    BIGINT NOT NULL
);
CREATE INDEX incoming_seen_age ON incoming_seen(seen_at);

CREATE TABLE upstream_usage_counts (
    upstream   TEXT    NOT NULL,
    period     TEXT    NOT NULL CHECK (period IN ('day', 'month')),
    starts_at  BIGINT  NOT NULL,
    ends_at    BIGINT  NOT NULL,
    parts      BIGINT  NOT NULL,
    PRIMARY KEY (upstream, period, starts_at)
);

CREATE TABLE upstream_limits (
    upstream       TEXT    PRIMARY KEY,
    daily_limit    BIGINT,
    monthly_limit  BIGINT,
    timezone       TEXT    NOT NULL
);

CREATE VIEW queue_depth AS
SELECT system_id, state, count(*) AS messages
FROM messages
GROUP BY system_id, state
ORDER BY system_id, state;

CREATE VIEW upstream_usage AS
WITH now(ms) AS (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT)
SELECT l.upstream,
       coalesce((SELECT c.parts FROM upstream_usage_counts c
                 WHERE c.upstream = l.upstream AND c.period = 'day'
                   AND c.starts_at <= now.ms AND now.ms < c.ends_at), 0) AS parts_today,
       l.daily_limit,
       coalesce((SELECT c.parts FROM upstream_usage_counts c
                 WHERE c.upstream = l.upstream AND c.period = 'month'
                   AND c.starts_at <= now.ms AND now.ms < c.ends_at), 0) AS parts_this_month,
       l.monthly_limit,
       l.timezone
FROM upstream_limits l, now
ORDER BY l.upstream;

CREATE VIEW route_depth AS
SELECT route, coalesce(upstream, '') AS upstream, state, count(*) AS messages
FROM outbox WHERE state IN ('queued', 'scheduled', 'retry', 'sending', 'enroute')
GROUP BY route, upstream, state
ORDER BY 1, 2, 3;
