-- An issuer key's alias: the issuer's own name for the key (AgentOAuth's SDK writes
-- `kid: "key-001"`), given as the JWK's `kid` at registration. Unique per issuer (a
-- consent token whose `iss` names the issuer and whose `kid` is the alias picks that
-- one key); another issuer may use the same alias. NULL for keys registered by
-- thumbprint only; SQLite's unique index treats NULLs as distinct.
ALTER TABLE issuer_keys ADD COLUMN alias TEXT;

CREATE UNIQUE INDEX issuer_keys_alias ON issuer_keys (issuer_id, alias)
    WHERE alias IS NOT NULL;
