-- The audit log (RFC 6962 Merkle tree) and its signed checkpoints.
--
-- One row per record, in append order. `leaf_hash` is SHA-256(0x00 ‖ entry) and
-- `nodes` the interior hashes this record completed (32 bytes each, lowest level
-- first): together the record's run of stored hashes (core::merkle::stored_hash_index),
-- so a proof reads a few rows by primary key and never recomputes the tree.
CREATE TABLE audit_log (
    idx           INTEGER NOT NULL PRIMARY KEY CHECK (idx >= 0),
    leaf_hash     BLOB    NOT NULL CHECK (length(leaf_hash) = 32),
    nodes         BLOB    NOT NULL CHECK (length(nodes) % 32 = 0),
    -- RFC 8785 canonical JSON (core::audit::AuditEntry).
    entry         BLOB    NOT NULL,
    -- Who may read the entry in full besides admins: the issuer it concerns, or the
    -- issuer of the agent it concerns (resolved at read time).
    agent_id      TEXT,
    issuer_id     TEXT,
    created_at_ms INTEGER NOT NULL
);

-- Inclusion proofs by leaf hash.
CREATE INDEX audit_log_by_leaf ON audit_log (leaf_hash);

-- Every checkpoint the registry signed. INVARIANT: each is consistent with all others
-- (the server checks a consistency proof before signing).
CREATE TABLE audit_checkpoints (
    size          INTEGER NOT NULL PRIMARY KEY CHECK (size >= 0),
    root          BLOB    NOT NULL CHECK (length(root) = 32),
    -- The signed note, verbatim.
    note          TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL
);

-- The log's Ed25519 checkpoint key (a C2SP signer key string) and origin. One row.
CREATE TABLE audit_log_key (
    id            INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    origin        TEXT    NOT NULL,
    signer_key    TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL
);
