-- Suspension: an issuer stops an agent's tokens verifying, and may let them verify
-- again (reactivation). Unlike revocation it is reversible, so it is not a `status`:
-- SQLite cannot change the `status` CHECK of 0001 without rebuilding the table, and
-- a suspended agent is still `active` underneath. `Store` reads an agent as
-- suspended exactly when `suspended_at_ms` is set.

-- When the current suspension began; NULL when not suspended.
-- INVARIANT: only an active agent is suspended (revoking one clears this).
ALTER TABLE agents ADD COLUMN suspended_at_ms INTEGER
    CHECK (suspended_at_ms IS NULL OR status = 'active');
-- Why, as the issuer said; only while suspended.
ALTER TABLE agents ADD COLUMN suspend_reason TEXT
    CHECK (suspend_reason IS NULL OR suspended_at_ms IS NOT NULL);

-- `suspended_agents` reads exactly these rows on every refresh.
CREATE INDEX agents_suspended ON agents (seq) WHERE suspended_at_ms IS NOT NULL;
