-- Self-custody: issuers' own public keys. An issuer keeps its private key and signs
-- its agents' tokens itself; the registry holds only the public JWK, to verify them.
-- Nothing here is secret.

CREATE TABLE issuer_keys (
    -- RFC 7638 thumbprint, computed by the registry. Unique across all issuers: a
    -- token's `kid` names exactly one key.
    kid           TEXT    NOT NULL PRIMARY KEY,
    issuer_id     TEXT    NOT NULL REFERENCES issuers (id),
    alg           TEXT    NOT NULL CHECK (alg IN ('RS256', 'ES256', 'EdDSA')),
    -- The public JWK as JSON text (with `kid`, `alg` and `use`), never private members.
    jwk           TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    -- Revocation is permanent: set once, never cleared.
    revoked_at_ms INTEGER
);

CREATE INDEX issuer_keys_by_issuer ON issuer_keys (issuer_id, created_at_ms);
