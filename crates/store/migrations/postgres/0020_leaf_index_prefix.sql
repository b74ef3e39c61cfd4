-- The leaf-hash index keeps the first 8 bytes of each leaf hash, not all 32 (as
-- SQLite migration 0036; issue 17 goal 6, storage per verify): a lookup
-- (`Store::audit_find`) finds the candidates by prefix and checks the full hash in
-- `audit_log`, so a shared prefix (odds 2^-64 per pair) costs one more row read,
-- never a wrong answer.
CREATE TABLE audit_leaf_index_prefix (
    epoch       BIGINT NOT NULL,
    leaf_prefix BYTEA  NOT NULL CHECK (octet_length(leaf_prefix) = 8),
    idx         BIGINT NOT NULL CHECK (idx >= 0),
    CONSTRAINT audit_leaf_index_prefix_epoch_check CHECK (epoch = idx >> 15),
    CONSTRAINT audit_leaf_index_prefix_pkey PRIMARY KEY (epoch, leaf_prefix, idx)
);

INSERT INTO audit_leaf_index_prefix (epoch, leaf_prefix, idx)
    SELECT epoch, substring(leaf_hash from 1 for 8), idx FROM audit_leaf_index
    ORDER BY epoch, substring(leaf_hash from 1 for 8), idx;

DROP TABLE audit_leaf_index;
ALTER TABLE audit_leaf_index_prefix RENAME TO audit_leaf_index;
ALTER TABLE audit_leaf_index RENAME CONSTRAINT audit_leaf_index_prefix_pkey TO audit_leaf_index_pkey;
