-- Bonafide PostgreSQL schema, version 1: the SQLite schema's final state
-- (migrations/sqlite/0001…0018) in one file, same tables and column meanings.
--
-- Times are Unix milliseconds (`_ms`, BIGINT) unless a column says seconds (`_s`).
-- Ids are the prefixed base32 text of bonafide_core::ids. Hashes are BYTEA. Decimal
-- amounts are their exact `rust_decimal` string form (`"12.30"`), as in SQLite: the
-- store adds and compares them in Rust, never in SQL.
--
-- Orderings that SQLite takes from `rowid` come from a `seq` identity column here.
-- Constraint names are explicit: `postgres.rs` maps a unique violation to its
-- `ConflictKind` by constraint name.

-- The serialization point of every write (see `postgres.rs`): one row, locked
-- `FOR UPDATE` first by each write transaction, holding the audit log's size.
CREATE TABLE log_head (
    id   SMALLINT NOT NULL PRIMARY KEY CHECK (id = 1),
    -- Number of records in `audit_log`: the index the next record gets.
    size BIGINT   NOT NULL CHECK (size >= 0)
);
INSERT INTO log_head (id, size) VALUES (1, 0);

-- API keys: only the SHA-256 of the key text is stored, looked up by it.
CREATE TABLE api_keys (
    hash          BYTEA  NOT NULL CHECK (octet_length(hash) = 32),
    kind          TEXT   NOT NULL CHECK (kind IN ('admin', 'issuer', 'receiver')),
    -- Issuer or receiver id; NULL for admin keys.
    owner         TEXT,
    created_at_ms BIGINT NOT NULL,
    -- A revoked key is kept, marked: the same key supplied again stays refused.
    revoked_at_ms BIGINT,
    CONSTRAINT api_keys_pkey PRIMARY KEY (hash)
);

CREATE TABLE issuers (
    id            TEXT   NOT NULL,
    name          TEXT   NOT NULL,
    -- bonafide_core::names::issuer_name_key(name), computed in Rust; NULL only for a
    -- twin copied from a registry older than the rule (UNIQUE ignores NULLs).
    name_key      TEXT,
    created_at_ms BIGINT NOT NULL,
    seq           BIGINT GENERATED ALWAYS AS IDENTITY,
    CONSTRAINT issuers_pkey PRIMARY KEY (id),
    CONSTRAINT issuers_name_unique UNIQUE (name),
    CONSTRAINT issuers_name_key_unique UNIQUE (name_key)
);

CREATE TABLE agents (
    -- The row's own number (identity order is not commit order with several writers:
    -- listings use `list_pos`).
    seq                 BIGINT  GENERATED ALWAYS AS IDENTITY,
    id                  TEXT    NOT NULL,
    issuer_id           TEXT    NOT NULL REFERENCES issuers (id),
    name                TEXT    NOT NULL,
    description         TEXT,
    -- JSON array of scope strings.
    scopes              TEXT    NOT NULL,
    -- JSON array of audiences; NULL for any receiver.
    audience            TEXT,
    token_ttl_s         BIGINT  NOT NULL,
    -- A suspended agent is `active` here, suspended by `suspended_at_ms`.
    status              TEXT    NOT NULL CHECK (status IN ('active', 'revoked')),
    created_at_ms       BIGINT  NOT NULL,
    revoked_at_ms       BIGINT,
    revoke_reason       TEXT,
    -- Consent policy (`pol.v0.2`), RFC 8785 canonical JSON text.
    policy              TEXT,
    -- On whose behalf it acts (the `user` claim).
    user_ref            TEXT,
    suspended_at_ms     BIGINT CHECK (suspended_at_ms IS NULL OR status = 'active'),
    suspend_reason      TEXT CHECK (suspend_reason IS NULL OR suspended_at_ms IS NOT NULL),
    -- The issuer opted out of the bound-token rule at registration.
    allow_bearer_tokens BOOLEAN NOT NULL DEFAULT FALSE,
    -- Its place in listings (commit order): the audit index of the entry its
    -- registration appended, handed out under the log head (`store::log`).
    list_pos            BIGINT  NOT NULL CHECK (list_pos >= 0),
    CONSTRAINT agents_pkey PRIMARY KEY (seq),
    CONSTRAINT agents_id_unique UNIQUE (id),
    -- Target of the tokens' (agent_id, issuer_id) foreign key.
    CONSTRAINT agents_id_issuer_unique UNIQUE (id, issuer_id)
);

-- A page of `list_agents` is one range scan; a cursor's agent is found by its id.
CREATE UNIQUE INDEX agents_by_issuer_list_pos ON agents (issuer_id, list_pos);
CREATE INDEX agents_revoked ON agents (seq) WHERE status = 'revoked';
CREATE INDEX agents_suspended ON agents (seq) WHERE suspended_at_ms IS NOT NULL;

CREATE TABLE tokens (
    jti           TEXT   NOT NULL,
    agent_id      TEXT   NOT NULL,
    -- The agent's issuer, repeated so `revoke_token` checks ownership on one row.
    issuer_id     TEXT   NOT NULL,
    -- Kid of the key that signed it.
    kid           TEXT   NOT NULL,
    issued_at_s   BIGINT NOT NULL,
    expires_at_s  BIGINT NOT NULL,
    revoked_at_ms BIGINT,
    CONSTRAINT tokens_pkey PRIMARY KEY (jti),
    -- INVARIANT: a token's issuer is its agent's issuer.
    FOREIGN KEY (agent_id, issuer_id) REFERENCES agents (id, issuer_id)
);

CREATE INDEX tokens_by_kid ON tokens (kid, expires_at_s);
CREATE INDEX tokens_by_agent ON tokens (agent_id);
CREATE INDEX tokens_revoked ON tokens (jti) WHERE revoked_at_ms IS NOT NULL;

-- Registry signing keys (PKCS#8 PEM private keys: secrets).
CREATE TABLE signing_keys (
    kid             TEXT   NOT NULL,
    alg             TEXT   NOT NULL CHECK (alg IN ('RS256', 'ES256', 'EdDSA')),
    private_pem     TEXT   NOT NULL,
    state           TEXT   NOT NULL CHECK (state IN ('active', 'retired')),
    created_at_ms   BIGINT NOT NULL,
    -- Retired keys only: published in the JWKS until then.
    publish_until_s BIGINT,
    seq             BIGINT GENERATED ALWAYS AS IDENTITY,
    CONSTRAINT signing_keys_pkey PRIMARY KEY (kid)
);

-- INVARIANT: at most one active signing key.
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (state) WHERE state = 'active';

-- The audit log (RFC 6962 Merkle tree): one row per record, in append order, with its
-- run of stored hashes (`leaf_hash`, then the interior hashes it completed).
CREATE TABLE audit_log (
    idx           BIGINT NOT NULL CHECK (idx >= 0),
    leaf_hash     BYTEA  NOT NULL CHECK (octet_length(leaf_hash) = 32),
    nodes         BYTEA  NOT NULL CHECK (octet_length(nodes) % 32 = 0),
    -- RFC 8785 canonical JSON (core::audit::AuditEntry).
    entry         BYTEA  NOT NULL,
    agent_id      TEXT,
    issuer_id     TEXT,
    created_at_ms BIGINT NOT NULL,
    CONSTRAINT audit_log_pkey PRIMARY KEY (idx)
);

CREATE INDEX audit_log_by_leaf ON audit_log (leaf_hash);

CREATE TABLE audit_checkpoints (
    size          BIGINT NOT NULL CHECK (size >= 0),
    root          BYTEA  NOT NULL CHECK (octet_length(root) = 32),
    -- The signed note, verbatim.
    note          TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL,
    CONSTRAINT audit_checkpoints_pkey PRIMARY KEY (size)
);

-- The log's Ed25519 checkpoint key (a C2SP signer key string) and origin. One row.
CREATE TABLE audit_log_key (
    id            SMALLINT NOT NULL PRIMARY KEY CHECK (id = 1),
    origin        TEXT     NOT NULL,
    signer_key    TEXT     NOT NULL,
    created_at_ms BIGINT   NOT NULL
);

CREATE TABLE receivers (
    id            TEXT   NOT NULL,
    name          TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL,
    CONSTRAINT receivers_pkey PRIMARY KEY (id),
    CONSTRAINT receivers_name_unique UNIQUE (name)
);

-- The audiences a receiver verifies as; an audience belongs to one receiver at most.
CREATE TABLE receiver_audiences (
    audience    TEXT   NOT NULL,
    receiver_id TEXT   NOT NULL REFERENCES receivers (id),
    position    BIGINT NOT NULL,
    CONSTRAINT receiver_audiences_pkey PRIMARY KEY (audience)
);
CREATE INDEX receiver_audiences_by_receiver ON receiver_audiences (receiver_id, position);

-- What each budget has spent: one row per issuer, policy id, period and currency.
-- INVARIANT: `spent` never exceeds the cap of any charge that raised it (checked in
-- the write transaction that adds the charge, under the log head's lock).
CREATE TABLE budgets (
    issuer_id     TEXT   NOT NULL,
    policy_id     TEXT   NOT NULL,
    period_key    TEXT   NOT NULL,
    -- ISO 4217 code.
    currency      TEXT   NOT NULL,
    -- Exact decimal string: the sum of the charges recorded.
    spent         TEXT   NOT NULL,
    -- Exact decimal string: the cap of the last charge (informative).
    cap           TEXT   NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    CONSTRAINT budgets_pkey PRIMARY KEY (issuer_id, policy_id, period_key, currency)
);

-- Idempotency keys receivers sent, with the answer to give again on a retry.
CREATE TABLE idempotency (
    receiver_id    TEXT   NOT NULL,
    key            TEXT   NOT NULL,
    request_sha256 BYTEA  NOT NULL CHECK (octet_length(request_sha256) = 32),
    answer         BYTEA  NOT NULL,
    audit_index    BIGINT CHECK (audit_index >= 0),
    created_at_ms  BIGINT NOT NULL,
    CONSTRAINT idempotency_pkey PRIMARY KEY (receiver_id, key)
);

CREATE INDEX idempotency_by_age ON idempotency (created_at_ms);

-- Verify receipts, read by id only.
CREATE TABLE receipts (
    id            TEXT   NOT NULL,
    receiver_id   TEXT,
    issuer_id     TEXT,
    -- JSON (core::receipt::ReceiptClaims without `audit_index`).
    claims        BYTEA  NOT NULL,
    audit_index   BIGINT CHECK (audit_index >= 0),
    created_at_ms BIGINT NOT NULL,
    CONSTRAINT receipts_pkey PRIMARY KEY (id)
);

-- The Ed25519 key that signs receipts (PKCS#8 PEM). One row.
CREATE TABLE receipt_key (
    id            SMALLINT NOT NULL PRIMARY KEY CHECK (id = 1),
    private_pem   TEXT     NOT NULL,
    created_at_ms BIGINT   NOT NULL
);

-- Issuers' own public keys (self-custody). Nothing here is secret.
CREATE TABLE issuer_keys (
    kid           TEXT   NOT NULL,
    issuer_id     TEXT   NOT NULL REFERENCES issuers (id),
    alg           TEXT   NOT NULL CHECK (alg IN ('RS256', 'ES256', 'EdDSA')),
    jwk           TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT,
    seq           BIGINT GENERATED ALWAYS AS IDENTITY,
    CONSTRAINT issuer_keys_pkey PRIMARY KEY (kid)
);

CREATE INDEX issuer_keys_by_issuer ON issuer_keys (issuer_id, created_at_ms, seq);

-- Agents' own public keys; at most one current key (`retired_at_ms` NULL) each.
CREATE TABLE agent_keys (
    agent_id       TEXT   NOT NULL REFERENCES agents (id),
    jkt            TEXT   NOT NULL,
    jwk            TEXT   NOT NULL,
    alg            TEXT   NOT NULL CHECK (alg IN ('ES256', 'EdDSA')),
    created_at_ms  BIGINT NOT NULL,
    expires_at_ms  BIGINT NOT NULL,
    retired_at_ms  BIGINT,
    grace_until_ms BIGINT,
    seq            BIGINT GENERATED ALWAYS AS IDENTITY,
    CHECK ((retired_at_ms IS NULL) = (grace_until_ms IS NULL)),
    CONSTRAINT agent_keys_pkey PRIMARY KEY (agent_id, jkt)
);

CREATE UNIQUE INDEX agent_keys_current ON agent_keys (agent_id) WHERE retired_at_ms IS NULL;
-- `refuse_key_held_elsewhere` looks a key up across agents.
CREATE INDEX agent_keys_by_jkt ON agent_keys (jkt);

-- Single-use values (signed actions' nonces, DPoP `jti`s, signature nonces).
CREATE TABLE action_nonces (
    agent_id      TEXT   NOT NULL REFERENCES agents (id),
    nonce         TEXT   NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    CONSTRAINT action_nonces_pkey PRIMARY KEY (agent_id, nonce)
);

CREATE INDEX action_nonces_by_expiry ON action_nonces (expires_at_ms);

-- Domain-verified issuers: one domain per issuer, one issuer per domain.
CREATE TABLE issuer_domains (
    issuer_id      TEXT   NOT NULL REFERENCES issuers (id),
    domain         TEXT   NOT NULL,
    kid            TEXT   NOT NULL,
    verified_at_ms BIGINT NOT NULL,
    seq            BIGINT GENERATED ALWAYS AS IDENTITY,
    CONSTRAINT issuer_domains_pkey PRIMARY KEY (issuer_id),
    CONSTRAINT issuer_domains_domain_unique UNIQUE (domain)
);

-- Tokens made by RFC 8693 token exchange: what a verify of the child cannot read from
-- the child itself. Never changed.
CREATE TABLE delegations (
    jti               TEXT   NOT NULL REFERENCES tokens (jti),
    parent_jti        TEXT   NOT NULL,
    actor_id          TEXT   NOT NULL REFERENCES agents (id),
    -- JSON array of the ancestors' `pol.v0.2` policy texts with a budget, root first.
    ancestor_policies TEXT   NOT NULL,
    -- JSON array, root first: {"agent": "agt_…", "issuer_kid": "…"?, "jkt": "…"?}.
    ancestor_keys     TEXT   NOT NULL DEFAULT '[]',
    created_at_ms     BIGINT NOT NULL,
    CONSTRAINT delegations_pkey PRIMARY KEY (jti)
);

-- The change feed (`Store::changes_since`): what each write changed that a reader
-- mirroring the store must reflect (revocations, suspensions, keys, domains,
-- receivers, revoked API keys). `pos` is handed out by the write that records the
-- change, under the log head's lock (`store::log`), so positions follow commit order
-- across replicas and have no gaps. `kind` and `subject` are the backend-neutral
-- encoding of `store::log::ChangeRow`.
CREATE TABLE changes (
    pos          BIGINT NOT NULL CHECK (pos > 0),
    kind         TEXT   NOT NULL,
    -- The agent, token, issuer or receiver id, or an API key hash (base64url).
    subject      TEXT,
    -- A revoked token's `exp`, Unix seconds: past it (plus leeway) the row is skipped.
    expires_at_s BIGINT,
    CHECK ((kind = 'token_revoked') = (expires_at_s IS NOT NULL)),
    CONSTRAINT changes_pkey PRIMARY KEY (pos)
);
