-- Verify decisions: receivers, consent-policy budgets, idempotency keys and receipts.
--
-- Amounts are rust_decimal `Decimal`s in their exact string form (`"12.30"`), never
-- REAL: sums must be exact. Written for every verify decision (the hot path), so the
-- tables carry only the indexes a `Store` method needs.

-- What an agent's tokens carry besides scopes.
-- Consent policy (`pol.v0.2`), RFC 8785 canonical JSON text; NULL if none.
ALTER TABLE agents ADD COLUMN policy TEXT;
-- On whose behalf it acts (the `user` claim); NULL if not stated. Not named `user`,
-- a reserved word in other SQL dialects.
ALTER TABLE agents ADD COLUMN user_ref TEXT;

-- APIs that verify tokens with a receiver key (`api_keys.kind = 'receiver'`, owner =
-- the receiver id).
CREATE TABLE receivers (
    id            TEXT    NOT NULL PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE,
    created_at_ms INTEGER NOT NULL
);

-- What each budget has spent: one row per issuer, policy id, calendar period
-- (core::policy::PeriodWindow::key) and currency, created by its first charge.
-- INVARIANT: `spent` never exceeds the cap of any charge that raised it (the store
-- checks in the same write transaction that adds the charge).
CREATE TABLE budgets (
    issuer_id     TEXT    NOT NULL,
    policy_id     TEXT    NOT NULL,
    period_key    TEXT    NOT NULL,
    -- ISO 4217 code.
    currency      TEXT    NOT NULL,
    -- Decimal string: the sum of the charges recorded.
    spent         TEXT    NOT NULL,
    -- Decimal string: the cap of the last charge (informative; each charge is checked
    -- against its own decision's cap).
    cap           TEXT    NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (issuer_id, policy_id, period_key, currency)
) WITHOUT ROWID;

-- Idempotency keys receivers sent, with the answer to give again on a retry.
CREATE TABLE idempotency (
    receiver_id    TEXT    NOT NULL,
    -- The key as sent.
    key            TEXT    NOT NULL,
    -- SHA-256 of the request: the same key with another request is a conflict.
    request_sha256 BLOB    NOT NULL CHECK (length(request_sha256) = 32),
    -- Opaque to the store.
    answer         BLOB    NOT NULL,
    -- The first decision's audit entry; NULL if it was not logged.
    audit_index    INTEGER CHECK (audit_index >= 0),
    -- The decision's time (see `Store::purge_idempotency`).
    created_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (receiver_id, key)
);

-- `purge_idempotency` deletes by age.
CREATE INDEX idempotency_by_age ON idempotency (created_at_ms);

-- Verify receipts, read by id only. The server signs `claims` (plus `audit_index`) on
-- read.
CREATE TABLE receipts (
    id            TEXT    NOT NULL PRIMARY KEY,
    -- The receiver that asked, if it presented its key; it may read the receipt.
    receiver_id   TEXT,
    -- The agent's issuer, if the token was genuine; it may read the receipt.
    issuer_id     TEXT,
    -- JSON (core::receipt::ReceiptClaims without `audit_index`).
    claims        BLOB    NOT NULL,
    -- The decision's audit entry; NULL if it was not logged.
    audit_index   INTEGER CHECK (audit_index >= 0),
    created_at_ms INTEGER NOT NULL
);

-- The Ed25519 key that signs receipts (PKCS#8 PEM). One row.
CREATE TABLE receipt_key (
    id            INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    private_pem   TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL
);
