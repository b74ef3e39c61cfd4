-- A revoked API key is kept, marked, never deleted: the same key supplied again (an
-- old `BONAFIDE_ADMIN_KEY` in a restarted server's environment) must not come back
-- as a valid key. Lookups ignore revoked keys.
ALTER TABLE api_keys ADD COLUMN revoked_at_ms INTEGER;
