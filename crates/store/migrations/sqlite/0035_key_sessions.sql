-- Issue 18 item 3: an API key exchanged at `/v1/oauth/token` gets a session too (one
-- refresh-token family, rotated and reuse-detected by the same rule as people's). A
-- session's subject is a person or a key: exactly one of `person_id`, `key_hash`.
--
-- SQLite cannot drop a NOT NULL constraint, so the table is rebuilt; `refresh_tokens`
-- references it, so foreign keys are checked at commit (when the rebuilt table has
-- its old name back) instead of at the DROP.
PRAGMA defer_foreign_keys = ON;

CREATE TABLE sessions_0035 (
    id            TEXT    NOT NULL PRIMARY KEY,
    person_id     TEXT    REFERENCES people (id),
    -- The API key (its SHA-256, the `api_keys` primary key) whose family this is.
    key_hash      BLOB    REFERENCES api_keys (hash),
    client_id     TEXT    NOT NULL,
    two_factor    INTEGER NOT NULL CHECK (two_factor IN (0, 1)),
    ip            TEXT,
    user_agent    TEXT,
    created_at_ms INTEGER NOT NULL,
    last_used_ms  INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER,
    revoke_reason TEXT,
    CHECK ((person_id IS NULL) <> (key_hash IS NULL))
);
INSERT INTO sessions_0035 (id, person_id, client_id, two_factor, ip, user_agent,
                           created_at_ms, last_used_ms, expires_at_ms, revoked_at_ms,
                           revoke_reason)
    SELECT id, person_id, client_id, two_factor, ip, user_agent, created_at_ms,
           last_used_ms, expires_at_ms, revoked_at_ms, revoke_reason
    FROM sessions;
DROP TABLE sessions;
ALTER TABLE sessions_0035 RENAME TO sessions;
CREATE INDEX sessions_by_person ON sessions (person_id, created_at_ms);
CREATE INDEX sessions_by_key ON sessions (key_hash) WHERE key_hash IS NOT NULL;
