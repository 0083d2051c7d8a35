-- Which node holds a claim ('sending'): at its restart a node queues its own
-- claims again at once, and a node not seen for a while (nodes.last_seen) has
-- its claims taken over by another.
ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
CREATE INDEX outbox_claimed_by ON outbox(claimed_by) WHERE state = 'sending';

-- An account's waiting messages, counted for its max_waiting on every submit
-- batch (SQLite's single writer keeps that count in memory; nodes cannot).
CREATE INDEX messages_waiting ON messages(system_id)
    WHERE state IN ('assembling', 'scheduled', 'queued');
