-- An issuer key's alias (SQLite 0024): the issuer's own name for the key, unique per
-- issuer, NULL when registered by thumbprint only.
ALTER TABLE issuer_keys ADD COLUMN alias TEXT;

CREATE UNIQUE INDEX issuer_keys_alias ON issuer_keys (issuer_id, alias)
    WHERE alias IS NOT NULL;
