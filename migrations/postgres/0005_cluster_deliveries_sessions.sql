-- Receipts and incoming messages are handed to ESME sessions by one node at a
-- time: the node that read them claims them until `claim_until` (renewed while
-- it reads them again); a node that died, or no longer has a session of the
-- account, lets its claims run out and another node with a session takes them.
ALTER TABLE deliveries ADD COLUMN claimed_by TEXT;
ALTER TABLE deliveries ADD COLUMN claim_until BIGINT;

-- The SMPP sessions bound on each node, so that an account's max_sessions
-- counts its sessions on every node. A node's rows go when the session ends,
-- at the node's next start, or when other nodes find it dead.
CREATE TABLE sessions (
    node_id    TEXT   NOT NULL,
    session_id BIGINT NOT NULL,
    system_id  TEXT   NOT NULL,
    bound_at   BIGINT NOT NULL,
    PRIMARY KEY (node_id, session_id)
);
CREATE INDEX sessions_by_account ON sessions(system_id);
