-- Incoming messages read from an upstream's inbox (GET /inbox) when no webhook can
-- reach the broker (http.public_url unset): how far each upstream's inbox has been
-- read, in Unix milliseconds. It moves in the same transaction that stores what
-- was read, so a restart neither skips nor doubles a message.
-- started_at is the first read: nothing the phone received before it is fetched.
CREATE TABLE inbox_cursors (
    upstream   TEXT    PRIMARY KEY,
    started_at INTEGER NOT NULL,
    read_until INTEGER NOT NULL
) STRICT;

-- Incoming messages already stored, by dedupe key, kept after their delivery is
-- acknowledged: the phone repeats a webhook for days (up to 15 tries) and inbox
-- reads overlap, and neither may bring a message to the ESME twice. Rows older
-- than 7 days are pruned.
CREATE TABLE incoming_seen (
    dedupe_key TEXT    PRIMARY KEY,
    seen_at    INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX incoming_seen_age ON incoming_seen(seen_at);
