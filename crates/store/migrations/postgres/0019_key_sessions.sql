-- Issue 18 item 3: an API key exchanged at `/v1/oauth/token` gets a session too (one
-- refresh-token family, rotated and reuse-detected by the same rule as people's). A
-- session's subject is a person or a key: exactly one of `person_id`, `key_hash`.
ALTER TABLE sessions ALTER COLUMN person_id DROP NOT NULL;
-- The API key (its SHA-256, the `api_keys` primary key) whose family this is.
ALTER TABLE sessions ADD COLUMN key_hash BYTEA REFERENCES api_keys (hash);
ALTER TABLE sessions ADD CONSTRAINT sessions_one_subject
    CHECK ((person_id IS NULL) <> (key_hash IS NULL));
CREATE INDEX sessions_by_key ON sessions (key_hash) WHERE key_hash IS NOT NULL;
