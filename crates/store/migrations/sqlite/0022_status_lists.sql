-- Token Status Lists (draft-ietf-oauth-status-list): every token the registry signs,
-- and every issuer-signed token an issuer asked a slot for, has an entry at a random
-- index of a large list shared by many issuers. The published list is rebuilt from
-- these rows and the revocations (the server's publisher), logged, then served.
CREATE TABLE status_lists (
    id            INTEGER PRIMARY KEY,
    bits          INTEGER NOT NULL CHECK (bits IN (1, 2, 4, 8)),
    size          INTEGER NOT NULL CHECK (size > 0),
    allocated     INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL
);

-- One entry per token. `chain`: for a delegated token, JSON
-- {"actors": [...], "ancestor_jtis": [...]}, whose status is its own too (each also
-- a row of status_chain, to find the entry from it).
CREATE TABLE status_entries (
    seq           INTEGER PRIMARY KEY,
    list_id       INTEGER NOT NULL REFERENCES status_lists (id),
    idx           INTEGER NOT NULL,
    jti           TEXT    NOT NULL UNIQUE,
    agent_id      TEXT    NOT NULL,
    issuer_id     TEXT    NOT NULL,
    expires_at_s  INTEGER NOT NULL,
    chain         TEXT,
    created_at_ms INTEGER NOT NULL,
    UNIQUE (list_id, idx)
);
CREATE INDEX status_entries_by_agent ON status_entries (agent_id);
CREATE INDEX status_entries_by_expiry ON status_entries (expires_at_s);

-- What a delegated token's entry depends on beyond its own jti and agent:
-- `agent:<id>` or `token:<jti>`.
CREATE TABLE status_chain (
    subject   TEXT    NOT NULL,
    entry_seq INTEGER NOT NULL,
    PRIMARY KEY (subject, entry_seq)
);
CREATE INDEX status_chain_by_entry ON status_chain (entry_seq);

-- The latest published version of each list: what every replica serves.
CREATE TABLE status_list_tokens (
    list_id      INTEGER PRIMARY KEY REFERENCES status_lists (id),
    version      INTEGER NOT NULL,
    token        TEXT    NOT NULL,
    issued_at_s  INTEGER NOT NULL,
    expires_at_s INTEGER NOT NULL,
    audit_index  INTEGER NOT NULL
);

-- The Ed25519 key that signs status lists only (PKCS#8 PEM, sealed). One row.
CREATE TABLE status_list_key (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    private_pem   TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL
);
