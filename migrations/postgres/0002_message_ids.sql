-- message_ids across nodes: the last one handed out, in one row. A node's
-- writer reserves a block for a batch with one UPDATE (src/store/postgres/ids.rs),
-- outside the batch's transaction so that the row lock is held for a moment,
-- not until the batch commits. A block a failed batch never used leaves a gap.
CREATE TABLE message_ids (
    one  BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
    last BIGINT  NOT NULL
);
INSERT INTO message_ids (last) VALUES (0);
