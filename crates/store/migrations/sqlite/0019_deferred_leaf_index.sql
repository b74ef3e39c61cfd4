-- The leaf-hash index leaves the commit path. An index on a random 32-byte key puts
-- each appended record on its own index page, so every commit wrote about one page
-- per record (9x fewer appends than the table alone). `audit_leaf_index` holds the
-- same pairs, extended in one sorted insert whenever a checkpoint is stored (every
-- checkpoint interval while the log grows); `audit_leaf_progress.upto` is the first
-- index not yet in it. `Store::audit_find` looks there, then scans the records from
-- `upto` on by primary key, in one statement.
CREATE TABLE audit_leaf_index (
    leaf_hash BLOB    NOT NULL CHECK (length(leaf_hash) = 32),
    idx       INTEGER NOT NULL CHECK (idx >= 0),
    PRIMARY KEY (leaf_hash, idx)
) WITHOUT ROWID;

INSERT INTO audit_leaf_index (leaf_hash, idx)
    SELECT leaf_hash, idx FROM audit_log ORDER BY leaf_hash, idx;

-- One row. Absent means 0 (a PostgreSQL registry starts without it).
CREATE TABLE audit_leaf_progress (
    id   INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    upto INTEGER NOT NULL CHECK (upto >= 0)
);

INSERT INTO audit_leaf_progress (id, upto)
    SELECT 1, COALESCE(MAX(idx) + 1, 0) FROM audit_log;

DROP INDEX audit_log_by_leaf;
