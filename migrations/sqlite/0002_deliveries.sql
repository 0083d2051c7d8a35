-- What waits to go to the ESMEs as deliver_sm: delivery receipts and incoming (MO)
-- messages. A row stays until an ESME acknowledged it with deliver_sm_resp OK; it
-- is dropped earlier only past the account's limits (count, age), and each drop is
-- logged and counted. Times are Unix milliseconds (UTC).
CREATE TABLE deliveries (
    id           INTEGER PRIMARY KEY,
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

CREATE INDEX deliveries_by_account ON deliveries(system_id, id);
CREATE INDEX deliveries_expiry ON deliveries(expires_at);
