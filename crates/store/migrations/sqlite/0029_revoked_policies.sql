-- Consent policies an issuer revoked by `id`: every token of its agents carrying a
-- policy of that id is refused from then on. Kept for good (the revocation's change,
-- a `token_revoked` of the policy's revocation id, never expires either).
CREATE TABLE revoked_policies (
    issuer_id TEXT NOT NULL REFERENCES issuers (id),
    policy_id TEXT NOT NULL,
    revoked_at_ms INTEGER NOT NULL,
    PRIMARY KEY (issuer_id, policy_id)
);
