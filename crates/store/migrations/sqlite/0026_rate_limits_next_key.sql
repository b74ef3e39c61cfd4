-- Issue 18 items 4 and 7.
--
-- Scheduled signing-key rotation: a `next` key is published ahead of the rotation
-- (in the JWKS, signing nothing) so receivers' cached key sets hold it before it
-- signs. SQLite cannot change a CHECK constraint, so the table is rebuilt, rows kept
-- in their rowid order (listings read keys in that order). No table references it.
CREATE TABLE signing_keys_0026 (
    kid             TEXT    NOT NULL PRIMARY KEY,
    alg             TEXT    NOT NULL CHECK (alg IN ('RS256', 'ES256', 'EdDSA')),
    private_pem     TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('active', 'retired', 'next')),
    created_at_ms   INTEGER NOT NULL,
    -- Retired keys only: published in the JWKS until then.
    publish_until_s INTEGER
);
INSERT INTO signing_keys_0026 (rowid, kid, alg, private_pem, state, created_at_ms, publish_until_s)
    SELECT rowid, kid, alg, private_pem, state, created_at_ms, publish_until_s
    FROM signing_keys ORDER BY rowid;
DROP TABLE signing_keys;
ALTER TABLE signing_keys_0026 RENAME TO signing_keys;

-- INVARIANT: at most one active signing key, and at most one next key.
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (state) WHERE state = 'active';
CREATE UNIQUE INDEX signing_keys_one_next ON signing_keys (state) WHERE state = 'next';

-- Rate limits: token buckets shared by replicas, each taking small leases. A missing
-- row is a full bucket; idle rows are purged. A level is in 1/window_ms of a request
-- (a refill is then exactly `quota` units a millisecond).
CREATE TABLE rate_buckets (
    bucket      TEXT    NOT NULL PRIMARY KEY,
    level       INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
);
CREATE INDEX rate_buckets_by_age ON rate_buckets (updated_ms);

-- Limits an admin set (per API key, and the serve defaults last started with), as the
-- server wrote them.
CREATE TABLE rate_limit_settings (
    name      TEXT    NOT NULL PRIMARY KEY,
    value     TEXT    NOT NULL,
    set_at_ms INTEGER NOT NULL
);
