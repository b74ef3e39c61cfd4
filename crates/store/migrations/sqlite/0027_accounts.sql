-- Organisations, people and sessions (issue 18). Secrets are never stored as given:
-- passwords as argon2id PHC strings, invitation and refresh tokens and recovery
-- codes as SHA-256, TOTP secrets sealed under the KEK like private keys (their row's
-- identity `totp-secret/<person>` is the associated data).

-- The key that signs people's access tokens (RFC 9068 `at+jwt`), and nothing else.
CREATE TABLE session_key (
    id            INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    private_pem   TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE organisations (
    id            TEXT    NOT NULL PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE,
    -- Every member needs a second factor to act in this organisation.
    require_2fa   INTEGER NOT NULL DEFAULT 0 CHECK (require_2fa IN (0, 1)),
    created_at_ms INTEGER NOT NULL
);

-- A person, by normalised email. `password_hash` is NULL until an invitation is
-- accepted. `totp_secret` (sealed) with `totp_enabled_at_ms` NULL is an enrolment
-- not yet confirmed; `totp_last_step` is the last time step used (codes are single
-- use).
CREATE TABLE people (
    id                 TEXT    NOT NULL PRIMARY KEY,
    email              TEXT    NOT NULL UNIQUE,
    password_hash      TEXT,
    totp_secret        TEXT,
    totp_enabled_at_ms INTEGER,
    totp_last_step     INTEGER,
    created_at_ms      INTEGER NOT NULL
);

CREATE TABLE memberships (
    org_id        TEXT    NOT NULL REFERENCES organisations (id),
    person_id     TEXT    NOT NULL REFERENCES people (id),
    role          TEXT    NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (org_id, person_id)
);
CREATE INDEX memberships_by_person ON memberships (person_id);

CREATE TABLE invitations (
    token_hash     BLOB    NOT NULL PRIMARY KEY CHECK (length(token_hash) = 32),
    org_id         TEXT    NOT NULL REFERENCES organisations (id),
    email          TEXT    NOT NULL,
    role           TEXT    NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    created_at_ms  INTEGER NOT NULL,
    expires_at_ms  INTEGER NOT NULL,
    accepted_at_ms INTEGER
) WITHOUT ROWID;

CREATE TABLE recovery_codes (
    person_id    TEXT    NOT NULL REFERENCES people (id),
    code_hash    BLOB    NOT NULL CHECK (length(code_hash) = 32),
    used_at_ms   INTEGER,
    PRIMARY KEY (person_id, code_hash)
) WITHOUT ROWID;

-- A session is one refresh-token family: every rotation stays in it, and a reused
-- refresh token revokes it whole.
CREATE TABLE sessions (
    id            TEXT    NOT NULL PRIMARY KEY,
    person_id     TEXT    NOT NULL REFERENCES people (id),
    client_id     TEXT    NOT NULL,
    two_factor    INTEGER NOT NULL CHECK (two_factor IN (0, 1)),
    ip            TEXT,
    user_agent    TEXT,
    created_at_ms INTEGER NOT NULL,
    last_used_ms  INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER,
    revoke_reason TEXT
);
CREATE INDEX sessions_by_person ON sessions (person_id, created_at_ms);

CREATE TABLE refresh_tokens (
    token_hash    BLOB    NOT NULL PRIMARY KEY CHECK (length(token_hash) = 32),
    session_id    TEXT    NOT NULL REFERENCES sessions (id),
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    used_at_ms    INTEGER
) WITHOUT ROWID;
CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);

-- Which organisation owns an issuer or a receiver. Rows from before organisations
-- have none: they stay the registry admin's until assigned to one.
CREATE TABLE org_issuers (
    issuer_id TEXT NOT NULL PRIMARY KEY REFERENCES issuers (id),
    org_id    TEXT NOT NULL REFERENCES organisations (id)
);
CREATE INDEX org_issuers_by_org ON org_issuers (org_id);
CREATE TABLE org_receivers (
    receiver_id TEXT NOT NULL PRIMARY KEY REFERENCES receivers (id),
    org_id      TEXT NOT NULL REFERENCES organisations (id)
);
CREATE INDEX org_receivers_by_org ON org_receivers (org_id);

-- Login failures per account key and per client address, for backoff shared by
-- replicas. The account key is the SHA-256 of the normalised email, known or not,
-- so a lockout says nothing about whether an email has an account.
CREATE TABLE login_throttle (
    subject         TEXT    NOT NULL PRIMARY KEY,
    failures        INTEGER NOT NULL CHECK (failures >= 0),
    last_failure_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- Security events (failed logins, refused refresh-token reuse): kept for a
-- retention period, not in the permanent audit log, since anonymous input writes
-- them. `org_id` lets an organisation's admins read their people's events.
CREATE TABLE security_events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT    NOT NULL,
    person_id     TEXT,
    org_id        TEXT,
    ip            TEXT,
    detail        TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX security_events_by_org ON security_events (org_id, id);
CREATE INDEX security_events_by_age ON security_events (created_at_ms);
