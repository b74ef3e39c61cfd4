-- The leaf index grows at its right edge. Keyed by the leaf hash alone (0019), the
-- sorted insert at each checkpoint touched index pages all over a tree that outgrows
-- the page cache, and the audited p99 grew with the log (bench/RESULTS.md §11.4).
-- Keyed by epoch first (`idx >> 15`: 32,768 records), a checkpoint's inserts land in
-- the newest epoch's few hundred pages; a lookup by leaf hash probes each epoch
-- (`Store::audit_find`: one index seek per 32,768 records).
CREATE TABLE audit_leaf_index_by_epoch (
    epoch     INTEGER NOT NULL,
    leaf_hash BLOB    NOT NULL CHECK (length(leaf_hash) = 32),
    idx       INTEGER NOT NULL CHECK (idx >= 0),
    CHECK (epoch = idx >> 15),
    PRIMARY KEY (epoch, leaf_hash, idx)
) WITHOUT ROWID;

INSERT INTO audit_leaf_index_by_epoch (epoch, leaf_hash, idx)
    SELECT idx >> 15, leaf_hash, idx FROM audit_leaf_index ORDER BY idx >> 15, leaf_hash, idx;

DROP TABLE audit_leaf_index;
ALTER TABLE audit_leaf_index_by_epoch RENAME TO audit_leaf_index;
