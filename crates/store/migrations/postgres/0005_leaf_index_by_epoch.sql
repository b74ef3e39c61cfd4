-- The leaf index grows at its right edge (as SQLite migration 0021): keyed by epoch
-- first (`idx >> 15`: 32,768 records), a checkpoint's inserts land in the newest
-- epoch's pages instead of all over the index; a lookup by leaf hash probes each
-- epoch (`Store::audit_find`).
CREATE TABLE audit_leaf_index_by_epoch (
    epoch     BIGINT NOT NULL,
    leaf_hash BYTEA  NOT NULL CHECK (octet_length(leaf_hash) = 32),
    idx       BIGINT NOT NULL CHECK (idx >= 0),
    CONSTRAINT audit_leaf_index_epoch_check CHECK (epoch = idx >> 15),
    CONSTRAINT audit_leaf_index_by_epoch_pkey PRIMARY KEY (epoch, leaf_hash, idx)
);

INSERT INTO audit_leaf_index_by_epoch (epoch, leaf_hash, idx)
    SELECT idx >> 15, leaf_hash, idx FROM audit_leaf_index ORDER BY idx >> 15, leaf_hash, idx;

DROP TABLE audit_leaf_index;
ALTER TABLE audit_leaf_index_by_epoch RENAME TO audit_leaf_index;
ALTER TABLE audit_leaf_index RENAME CONSTRAINT audit_leaf_index_by_epoch_pkey TO audit_leaf_index_pkey;
