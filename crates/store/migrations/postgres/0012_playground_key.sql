-- The AgentOAuth playground's demo issuer key (issue 21), as SQLite migration 0028:
-- the Ed25519 key that signs demo consent tokens under the playground's own issuer,
-- sealed like the registry's other private keys. Written only with `--playground`.

CREATE TABLE playground_key (
    id            SMALLINT NOT NULL CHECK (id = 1),
    private_pem   TEXT     NOT NULL,
    created_at_ms BIGINT   NOT NULL,
    CONSTRAINT playground_key_pkey PRIMARY KEY (id)
);
