-- The leaf-hash index leaves the commit path (as SQLite migration 0019): an index on a
-- random 32-byte key costs every commit a page per record. `audit_leaf_index` holds
-- the same pairs, extended in one sorted insert whenever a checkpoint is stored;
-- `audit_leaf_progress.upto` is the first index not yet in it (no row: 0, so that a
-- new database has no rows and `bonafide migrate` can copy a registry's in).
-- `Store::audit_find` looks there, then scans the records from `upto` on by primary
-- key, in one statement.
CREATE TABLE audit_leaf_index (
    leaf_hash BYTEA  NOT NULL CHECK (octet_length(leaf_hash) = 32),
    idx       BIGINT NOT NULL CHECK (idx >= 0),
    CONSTRAINT audit_leaf_index_pkey PRIMARY KEY (leaf_hash, idx)
);

INSERT INTO audit_leaf_index (leaf_hash, idx)
    SELECT leaf_hash, idx FROM audit_log ORDER BY leaf_hash, idx;

CREATE TABLE audit_leaf_progress (
    id   SMALLINT NOT NULL CHECK (id = 1),
    upto BIGINT   NOT NULL CHECK (upto >= 0),
    CONSTRAINT audit_leaf_progress_pkey PRIMARY KEY (id)
);

INSERT INTO audit_leaf_progress (id, upto)
    SELECT 1, MAX(idx) + 1 FROM audit_log HAVING COUNT(*) > 0;

DROP INDEX audit_log_by_leaf;
