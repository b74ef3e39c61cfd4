-- Consent policies an issuer revoked by `id` (SQLite 0029): every token of its agents
-- carrying a policy of that id is refused from then on. Kept for good.
CREATE TABLE revoked_policies (
    issuer_id TEXT NOT NULL REFERENCES issuers (id),
    policy_id TEXT NOT NULL,
    revoked_at_ms BIGINT NOT NULL,
    CONSTRAINT revoked_policies_pkey PRIMARY KEY (issuer_id, policy_id)
);
