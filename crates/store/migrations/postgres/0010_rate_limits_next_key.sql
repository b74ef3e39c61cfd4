-- Issue 18 items 4 and 7 (SQLite 0026).
--
-- Scheduled signing-key rotation: a `next` key, published ahead of the rotation.
ALTER TABLE signing_keys DROP CONSTRAINT signing_keys_state_check;
ALTER TABLE signing_keys ADD CONSTRAINT signing_keys_state_check
    CHECK (state IN ('active', 'retired', 'next'));
-- INVARIANT: at most one next key.
CREATE UNIQUE INDEX signing_keys_one_next ON signing_keys (state) WHERE state = 'next';

-- Rate limits: token buckets shared by replicas, each taking small leases. A missing
-- row is a full bucket; idle rows are purged. A level is in 1/window_ms of a request
-- (a refill is then exactly `quota` units a millisecond).
CREATE TABLE rate_buckets (
    bucket      TEXT   NOT NULL,
    level       BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL,
    CONSTRAINT rate_buckets_pkey PRIMARY KEY (bucket)
);
CREATE INDEX rate_buckets_by_age ON rate_buckets (updated_ms);

-- Limits an admin set (per API key, and the serve defaults last started with).
CREATE TABLE rate_limit_settings (
    name      TEXT   NOT NULL,
    value     TEXT   NOT NULL,
    set_at_ms BIGINT NOT NULL,
    CONSTRAINT rate_limit_settings_pkey PRIMARY KEY (name)
);
