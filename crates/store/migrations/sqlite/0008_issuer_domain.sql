-- Domain-verified issuers: an issuer proved it controls a domain by publishing, at
-- `https://<domain>/.well-known/jwks.json`, a JWKS holding one of its registered,
-- unrevoked keys. One domain per issuer (a new verification replaces the old one),
-- and one issuer per domain. Nothing here is secret.

CREATE TABLE issuer_domains (
    issuer_id      TEXT    NOT NULL PRIMARY KEY REFERENCES issuers (id),
    -- Lowercase ASCII DNS name, as validated by the server.
    domain         TEXT    NOT NULL UNIQUE,
    -- The issuer key (RFC 7638 thumbprint) found in the fetched JWKS.
    kid            TEXT    NOT NULL,
    verified_at_ms INTEGER NOT NULL
);
