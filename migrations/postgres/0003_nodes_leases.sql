-- Several nodes on one database. Times are Unix milliseconds from the nodes'
-- clocks (kept by NTP; the lease and heartbeat spans, tens of seconds, are far
-- above their skew).
--
-- nodes: each node writes its heartbeat here (about every 10 s); a node not
--   seen for about 30 s is dead, and what it held (claims, deliveries) is taken
--   over.
CREATE TABLE nodes (
    node_id    TEXT   PRIMARY KEY,
    started_at BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL
);

-- leases: work that one node at a time does (an upstream's dispatch, so that
-- its rate holds for the cluster; maintenance), held until `until` and renewed
-- by its holder before then.
CREATE TABLE leases (
    name   TEXT   PRIMARY KEY,
    holder TEXT   NOT NULL,
    until  BIGINT NOT NULL
);
