-- The AgentOAuth playground's demo issuer key (issue 21): the Ed25519 key that signs
-- demo consent tokens under the playground's own issuer, sealed like the registry's
-- other private keys. Written only when a registry runs with `--playground`.

CREATE TABLE playground_key (
    id            INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    private_pem   TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL
);
