-- How states are reported, kept here so that query_sm and delivery receipts read
-- the same rows and cannot disagree, and so an operator sees the mapping in SQL.

-- Each state the broker stores (messages.state, deliveries.state): the SMPP 3.4
-- message_state that query_sm_resp and the receipt's message_state TLV carry, and
-- the stat: word of the receipt text. A message the broker or the upstream still
-- holds is ENROUTE (1); 3.4 has no SCHEDULED.
CREATE TABLE message_states (
    state       TEXT    PRIMARY KEY,
    smpp_state  INTEGER NOT NULL CHECK (smpp_state BETWEEN 1 AND 8),
    stat        TEXT    NOT NULL CHECK (length(stat) = 7),
    final       INTEGER NOT NULL CHECK (final IN (0, 1))
) STRICT;

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

-- What the upstream's own message states (SMSGate's, which the sandbox uses too)
-- stand for, and the err: code a final one is reported with. Read at startup.
-- A state not listed is taken as still on its way.
CREATE TABLE upstream_states (
    upstream_state TEXT    PRIMARY KEY,
    state          TEXT    NOT NULL REFERENCES message_states(state),
    error_code     INTEGER NOT NULL DEFAULT 0 CHECK (error_code BETWEEN 0 AND 255)
) STRICT;

INSERT INTO upstream_states (upstream_state, state, error_code) VALUES
    ('Pending',    'enroute',       0),
    ('Processed',  'enroute',       0),
    ('Sent',       'enroute',       0),
    ('Cancelling', 'enroute',       0),
    ('Delivered',  'delivered',     0),
    ('Failed',     'undeliverable', 4),
    ('Cancelled',  'deleted',       0),
    -- The upstream no longer knows the message, long after its validity.
    ('NotFound',   'unknown',       0);
