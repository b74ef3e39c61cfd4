-- Verifications made through AIM's SDK surface: the SHA-256 of the random id the SDK
-- was given, the decision's audit entry, and the reports the SDK makes afterwards
-- (`result`, `execution-status`), at most one of each. Kept as long as receipts.
CREATE TABLE sdk_verifications (
    id_sha256 BLOB PRIMARY KEY NOT NULL,
    audit_index INTEGER NOT NULL,
    agent_id TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    result TEXT,
    result_at_ms INTEGER,
    execution TEXT,
    execution_at_ms INTEGER
);

CREATE INDEX sdk_verifications_by_age ON sdk_verifications (created_at_ms);
