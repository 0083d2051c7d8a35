-- Routes: a message takes a route (chosen at submit from its account and
-- destination) and is carried by one member of the route's pool, chosen when
-- it is sent. Times are Unix milliseconds (UTC).
--
-- outbox.route: the route's name. outbox.upstream: the member the message is
--   bound to, NULL while it is free to go to any member. It is set before a
--   request leaves and cleared only when that member definitely did not take
--   the message (a refusal, a 503), so a message whose outcome at a member is
--   unknown (a timeout, a crash) goes back to that member: SMSGate knows a
--   repeated id only on the same device. Once taken, it names the member that
--   took it.
-- messages.route (was upstream: an account's upstream was its only route, named
--   after the upstream as `upstream = "x"` still is): the route of the message,
--   which the parts of a long message carry until their set is whole.

ALTER TABLE messages RENAME COLUMN upstream TO route;

CREATE TABLE outbox_routed (
    id              INTEGER PRIMARY KEY,
    system_id       TEXT    NOT NULL,
    route           TEXT    NOT NULL,
    upstream        TEXT,
    state           TEXT    NOT NULL,
    priority        INTEGER NOT NULL,
    due_at          INTEGER NOT NULL,
    lease_until     INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 0,
    expires_at      INTEGER NOT NULL,
    dest_ton        INTEGER NOT NULL,
    dest_addr       TEXT    NOT NULL,
    source_addr     TEXT    NOT NULL,
    text            TEXT,
    data            BLOB,
    data_coding     INTEGER NOT NULL,
    registered_delivery INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    upstream_id     TEXT,
    upstream_state  TEXT,
    last_error      TEXT
) STRICT;

-- A row never tried is free; one tried
-- before (or in flight) stays with its upstream.
INSERT INTO outbox_routed
SELECT id, system_id, upstream,
       CASE WHEN attempts = 0 AND state IN ('scheduled', 'queued') THEN NULL ELSE upstream END,
       state, priority, due_at, lease_until, attempts, expires_at, dest_ton, dest_addr,
       source_addr, text, data, data_coding, registered_delivery, created_at, upstream_id,
       upstream_state, last_error
FROM outbox;

DROP TABLE outbox;
ALTER TABLE outbox_routed RENAME TO outbox;

-- The claim order; the predicate must appear literally in the claim query.
CREATE INDEX outbox_ready ON outbox(route, priority DESC, id) WHERE state = 'queued';
CREATE INDEX outbox_due ON outbox(due_at) WHERE state IN ('scheduled', 'retry');
CREATE INDEX outbox_lease ON outbox(lease_until) WHERE state = 'sending';
CREATE INDEX outbox_enroute ON outbox(upstream, due_at) WHERE state = 'enroute';

-- SMS parts each upstream took, per day and per calendar month of its
-- limits_timezone: [starts_at, ends_at) is the period in UTC milliseconds.
CREATE TABLE upstream_usage_counts (
    upstream   TEXT    NOT NULL,
    period     TEXT    NOT NULL CHECK (period IN ('day', 'month')),
    starts_at  INTEGER NOT NULL,
    ends_at    INTEGER NOT NULL,
    parts      INTEGER NOT NULL,
    PRIMARY KEY (upstream, period, starts_at)
) STRICT;

-- The configured limits, written by the broker at startup.
CREATE TABLE upstream_limits (
    upstream       TEXT    PRIMARY KEY,
    daily_limit    INTEGER,
    monthly_limit  INTEGER,
    timezone       TEXT    NOT NULL
) STRICT;

-- Each upstream's parts today and this month against its limits:
-- `SELECT * FROM upstream_usage`.
CREATE VIEW upstream_usage AS
WITH now(ms) AS (SELECT CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
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

-- Messages not yet final by route, the member they are bound to or that took
-- them ('' while free) and outbox state: `SELECT * FROM route_depth`. Each
-- state is read through its own partial index.
CREATE VIEW route_depth AS
SELECT route, coalesce(upstream, '') AS upstream, state, count(*) AS messages
FROM outbox WHERE state = 'queued' GROUP BY route, upstream
UNION ALL
SELECT route, coalesce(upstream, ''), state, count(*)
FROM outbox WHERE state IN ('scheduled', 'retry') GROUP BY route, upstream, state
UNION ALL
SELECT route, coalesce(upstream, ''), state, count(*)
FROM outbox WHERE state = 'sending' GROUP BY route, upstream
UNION ALL
SELECT route, coalesce(upstream, ''), state, count(*)
FROM outbox WHERE state = 'enroute' GROUP BY route, upstream
ORDER BY 1, 2, 3;
