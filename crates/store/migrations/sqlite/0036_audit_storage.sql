-- Storage per verify (issue 17 goal 6, bench/RESULTS.md §19).
--
-- Receipts keyed by their id alone. With a rowid,
-- the text primary key was a second B-tree holding every id again (45 bytes per
-- receipt, bench/RESULTS.md §19); WITHOUT ROWID the table is that B-tree. Receipt ids
-- are time-prefixed, so inserts still land at its right edge.
CREATE TABLE receipts_by_id (
    id            TEXT    NOT NULL PRIMARY KEY,
    receiver_id   TEXT,
    issuer_id     TEXT,
    claims        BLOB    NOT NULL,
    audit_index   INTEGER CHECK (audit_index >= 0),
    created_at_ms INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO receipts_by_id (id, receiver_id, issuer_id, claims, audit_index, created_at_ms)
    SELECT id, receiver_id, issuer_id, claims, audit_index, created_at_ms FROM receipts
    ORDER BY id;

DROP TABLE receipts;
ALTER TABLE receipts_by_id RENAME TO receipts;
CREATE INDEX receipts_by_age ON receipts (created_at_ms);

-- The leaf-hash index keeps the first 8 bytes of each leaf hash, not all 32: a
-- lookup (`Store::audit_find`) finds the candidates by prefix and checks the full
-- hash in `audit_log`, so a shared prefix (odds 2^-64 per pair) costs one more row
-- read, never a wrong answer. 24 bytes less per entry.
CREATE TABLE audit_leaf_index_prefix (
    epoch       INTEGER NOT NULL,
    leaf_prefix BLOB    NOT NULL CHECK (length(leaf_prefix) = 8),
    idx         INTEGER NOT NULL CHECK (idx >= 0),
    CHECK (epoch = idx >> 15),
    PRIMARY KEY (epoch, leaf_prefix, idx)
) WITHOUT ROWID;

INSERT INTO audit_leaf_index_prefix (epoch, leaf_prefix, idx)
    SELECT epoch, substr(leaf_hash, 1, 8), idx FROM audit_leaf_index
    ORDER BY epoch, substr(leaf_hash, 1, 8), idx;

DROP TABLE audit_leaf_index;
ALTER TABLE audit_leaf_index_prefix RENAME TO audit_leaf_index;
