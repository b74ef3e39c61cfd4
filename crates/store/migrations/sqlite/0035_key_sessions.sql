-- Issue 18 item 3: an API key exchanged at `/v1/oauth/token` gets a session too (one
-- refresh-token family, rotated and reuse-detected by the same rule as people's). A
-- session's subject is a person or a key: exactly one of `person_id`, `key_hash`.
--
-- SQLite cannot drop a NOT NULL constraint, so the table is rebuilt. Its child,
-- `refresh_tokens`, is rebuilt with it and dropped first: dropping a parent whose
-- children still point at it counts a foreign-key violation that no later rename
-- takes back, so the migration's commit would fail on any database with a refresh
-- token. Renaming `sessions_0035` to `sessions` rewrites the child's reference.
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
CREATE TABLE refresh_tokens_0035 (
    token_hash    BLOB    NOT NULL PRIMARY KEY CHECK (length(token_hash) = 32),
    session_id    TEXT    NOT NULL REFERENCES sessions_0035 (id),
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    used_at_ms    INTEGER
) WITHOUT ROWID;
INSERT INTO refresh_tokens_0035 (token_hash, session_id, created_at_ms, expires_at_ms,
                                 used_at_ms)
    SELECT token_hash, session_id, created_at_ms, expires_at_ms, used_at_ms
    FROM refresh_tokens;
DROP TABLE refresh_tokens;
DROP TABLE sessions;
ALTER TABLE sessions_0035 RENAME TO sessions;
ALTER TABLE refresh_tokens_0035 RENAME TO refresh_tokens;
CREATE INDEX sessions_by_person ON sessions (person_id, created_at_ms);
CREATE INDEX sessions_by_key ON sessions (key_hash) WHERE key_hash IS NOT NULL;
CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);
