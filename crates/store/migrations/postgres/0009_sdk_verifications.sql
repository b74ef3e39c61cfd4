-- Verifications made through AIM's SDK surface (SQLite 0025): the id's SHA-256, the
-- decision's audit entry, and at most one `result` and one `execution-status` report.
CREATE TABLE sdk_verifications (
    id_sha256 BYTEA PRIMARY KEY,
    audit_index BIGINT NOT NULL,
    agent_id TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    result TEXT,
    result_at_ms BIGINT,
    execution TEXT,
    execution_at_ms BIGINT
);

CREATE INDEX sdk_verifications_by_age ON sdk_verifications (created_at_ms);
