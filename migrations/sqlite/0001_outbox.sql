-- The durable outbox. Times are Unix milliseconds (UTC).
--
-- messages: one row per message_id the broker handed out: one per submit_sm, one per
--   destination of a submit_multi, one per part of a long message. This is what
--   query_sm, cancel_sm and (later) receipts read.
-- outbox: one row per message to hand to an upstream. A single message has one;
--   a long message gets one once all its parts are in, carrying the whole text.
--   Rows leave the claim index as soon as they are not 'queued'.

CREATE TABLE messages (
    -- The SMPP message_id, in decimal: milliseconds since 2020 shifted left by 20 bits,
    -- made unique by the writer. Rows are appended in message_id order.
    message_id             INTEGER PRIMARY KEY,
    system_id              TEXT    NOT NULL,
    upstream               TEXT    NOT NULL,
    -- assembling | scheduled | queued | enroute | delivered | expired | deleted
    -- | undeliverable | accepted | unknown | rejected
    state                  TEXT    NOT NULL,
    service_type           TEXT    NOT NULL,
    source_ton             INTEGER NOT NULL,
    source_npi             INTEGER NOT NULL,
    source_addr            TEXT    NOT NULL,
    dest_ton               INTEGER NOT NULL,
    dest_npi               INTEGER NOT NULL,
    dest_addr              TEXT    NOT NULL,
    esm_class              INTEGER NOT NULL,
    protocol_id            INTEGER NOT NULL,
    priority               INTEGER NOT NULL,
    registered_delivery    INTEGER NOT NULL,
    data_coding            INTEGER NOT NULL,
    -- How body is read: gsm7 | ascii | latin1 | cyrillic | ucs2 | binary.
    charset                TEXT    NOT NULL,
    user_message_reference INTEGER,
    -- The message octets as submitted, without any UDH.
    body                   BLOB    NOT NULL,
    -- Long messages: the set (account, addresses, reference, total) and this part.
    concat_key             TEXT,
    concat_total           INTEGER,
    concat_seq             INTEGER,
    -- The outbox row that carries this message: its own message_id for a whole
    -- message, the first part's for a long one, NULL while a set is incomplete.
    outbox_id              INTEGER,
    submitted_at           INTEGER NOT NULL,
    scheduled_at           INTEGER,
    expires_at             INTEGER NOT NULL,
    final_at               INTEGER,
    error_code             INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX messages_assembling ON messages(concat_key, concat_seq) WHERE state = 'assembling';
CREATE INDEX messages_parts ON messages(outbox_id) WHERE concat_key IS NOT NULL;
CREATE INDEX messages_addresses ON messages(system_id, source_addr, dest_addr);

CREATE TABLE outbox (
    -- The message_id of the message (of the first part of a long one). It is also
    -- the id the upstream sees, so a retry can never be taken for a new message.
    id              INTEGER PRIMARY KEY,
    system_id       TEXT    NOT NULL,
    upstream        TEXT    NOT NULL,
    -- scheduled | queued | retry | sending | enroute | done
    --   sending: claimed by a dispatcher until lease_until; enroute: the upstream
    --   holds it and a final state is awaited (polled at due_at); done: final.
    state           TEXT    NOT NULL,
    priority        INTEGER NOT NULL,
    -- When a scheduled or retried row is due, or an enroute row is next polled.
    due_at          INTEGER NOT NULL,
    lease_until     INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 0,
    expires_at      INTEGER NOT NULL,
    dest_ton        INTEGER NOT NULL,
    dest_addr       TEXT    NOT NULL,
    source_addr     TEXT    NOT NULL,
    -- Exactly one of text and data: text for characters, data for binary messages.
    text            TEXT,
    data            BLOB,
    data_coding     INTEGER NOT NULL,
    registered_delivery INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    -- The upstream's own id and last reported state, once it accepted the message.
    upstream_id     TEXT,
    upstream_state  TEXT,
    last_error      TEXT
) STRICT;

-- The claim order; the predicate must appear literally in the claim query.
CREATE INDEX outbox_ready ON outbox(upstream, priority DESC, id) WHERE state = 'queued';
CREATE INDEX outbox_due ON outbox(due_at) WHERE state IN ('scheduled', 'retry');
CREATE INDEX outbox_lease ON outbox(lease_until) WHERE state = 'sending';
CREATE INDEX outbox_enroute ON outbox(upstream, due_at) WHERE state = 'enroute';

-- How many messages each account has in each state: `SELECT * FROM queue_depth`.
CREATE VIEW queue_depth AS
SELECT system_id, state, count(*) AS messages
FROM messages
GROUP BY system_id, state
ORDER BY system_id, state;
