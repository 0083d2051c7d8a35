-- Delivery ids only ever grow (AUTOINCREMENT). Without it SQLite gives a new row
-- the id of the newest row once that row is deleted (acknowledged), and the
-- delivery hub, which reads the waiting deliveries after the last id it handed
-- out (src/smpp/delivery.rs), would see the new row only at its next read from
-- the start, a second later. The table is rebuilt with the same columns.
CREATE TABLE deliveries_grown (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    system_id    TEXT    NOT NULL,
    -- receipt | mo
    kind         TEXT    NOT NULL,
    -- Receipts: the message reported on, the state reported (enroute for an
    -- intermediate receipt), its error code and when it became final.
    message_id   INTEGER,
    state        TEXT,
    error_code   INTEGER NOT NULL DEFAULT 0,
    done_at      INTEGER,
    -- Incoming messages: who sent it, to which number, and the content.
    source_addr  TEXT,
    dest_addr    TEXT,
    text         TEXT,
    data         BLOB,
    -- Delivery attempts so far (a session lost or a negative deliver_sm_resp).
    attempts     INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    -- The same receipt or incoming message is stored once, however often it is
    -- reported.
    dedupe_key   TEXT    NOT NULL UNIQUE
) STRICT;

INSERT INTO deliveries_grown (id, system_id, kind, message_id, state, error_code, done_at,
    source_addr, dest_addr, text, data, attempts, created_at, expires_at, dedupe_key)
SELECT id, system_id, kind, message_id, state, error_code, done_at,
    source_addr, dest_addr, text, data, attempts, created_at, expires_at, dedupe_key
FROM deliveries;

DROP TABLE deliveries;
ALTER TABLE deliveries_grown RENAME TO deliveries;
CREATE INDEX deliveries_by_account ON deliveries(system_id, id);
CREATE INDEX deliveries_expiry ON deliveries(expires_at);
