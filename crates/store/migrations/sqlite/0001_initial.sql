-- Bonafide SQLite schema, version 1.
--
-- Times are Unix milliseconds (`_ms`) unless a column says seconds (`_s`, as in JWT
-- claims). Ids are the prefixed base32 text of bonafide_core::ids. Foreign keys are
-- enforced (the store opens every connection with `PRAGMA foreign_keys = ON`).

-- API keys: only the SHA-256 of the key text is stored, looked up by it.
CREATE TABLE api_keys (
    hash          BLOB    NOT NULL PRIMARY KEY CHECK (length(hash) = 32),
    kind          TEXT    NOT NULL CHECK (kind IN ('admin', 'issuer', 'receiver')),
    -- Issuer or receiver id; NULL for admin keys.
    owner         TEXT,
    created_at_ms INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE issuers (
    id            TEXT    NOT NULL PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE,
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE agents (
    -- Insertion order: the opaque pagination position of `list_agents`.
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT    NOT NULL UNIQUE,
    issuer_id     TEXT    NOT NULL REFERENCES issuers (id),
    name          TEXT    NOT NULL,
    description   TEXT,
    -- JSON array of scope strings.
    scopes        TEXT    NOT NULL,
    -- JSON array of audiences; NULL for any receiver.
    audience      TEXT,
    token_ttl_s   INTEGER NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('active', 'revoked')),
    created_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER,
    revoke_reason TEXT,
    -- Target of the tokens' (agent_id, issuer_id) foreign key.
    UNIQUE (id, issuer_id)
);

CREATE INDEX agents_by_issuer ON agents (issuer_id, seq);
CREATE INDEX agents_revoked ON agents (seq) WHERE status = 'revoked';

CREATE TABLE tokens (
    jti           TEXT    NOT NULL PRIMARY KEY,
    agent_id      TEXT    NOT NULL,
    -- The agent's issuer, repeated so `revoke_token` checks ownership on one row.
    issuer_id     TEXT    NOT NULL,
    -- Kid of the registry signing key that signed it.
    kid           TEXT    NOT NULL,
    issued_at_s   INTEGER NOT NULL,
    expires_at_s  INTEGER NOT NULL,
    revoked_at_ms INTEGER,
    -- INVARIANT: a token's issuer is its agent's issuer.
    FOREIGN KEY (agent_id, issuer_id) REFERENCES agents (id, issuer_id)
);

-- `rotate_signing_key` takes MAX(expires_at_s) of one kid.
CREATE INDEX tokens_by_kid ON tokens (kid, expires_at_s);
CREATE INDEX tokens_by_agent ON tokens (agent_id);
CREATE INDEX tokens_revoked ON tokens (jti) WHERE revoked_at_ms IS NOT NULL;

-- Registry signing keys. The private key is PKCS#8 PEM: this is why the database file
-- is mode 0600.
CREATE TABLE signing_keys (
    kid             TEXT    NOT NULL PRIMARY KEY,
    alg             TEXT    NOT NULL CHECK (alg IN ('RS256', 'ES256', 'EdDSA')),
    private_pem     TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('active', 'retired')),
    created_at_ms   INTEGER NOT NULL,
    -- Retired keys only: published in the JWKS until then.
    publish_until_s INTEGER
);

-- INVARIANT: at most one active signing key.
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (state) WHERE state = 'active';
