-- The hourly purge (`purge_security_events`) deletes refresh tokens past their expiry
-- and sessions that ended (revoked, or expired with all their tokens), a chunk at a
-- time: these indexes find them without scanning either table once per chunk.
CREATE INDEX refresh_tokens_by_expiry ON refresh_tokens (expires_at_ms);
CREATE INDEX sessions_by_expiry ON sessions (expires_at_ms);
CREATE INDEX sessions_by_revocation ON sessions (revoked_at_ms)
    WHERE revoked_at_ms IS NOT NULL;
