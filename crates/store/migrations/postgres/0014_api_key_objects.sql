-- API keys as objects (issue 18 item 3). A key's public id is not a column: it is
-- `key_` and the first 8 bytes of its hash in hex (bonafide_core::apikey::ApiKeyHash::
-- public_id), found by a range on the primary key; so every existing key has its id
-- already, and nothing can make the two disagree.
--
-- name: a label for people. scopes: space-separated, NULL = the kind's full rights.
-- expires_at_ms: NULL = never; an expired key is refused like a revoked one (rotation
-- sets it on the old key: its grace period). created_by: `usr_…`, `admin`,
-- `bootstrap` (BONAFIDE_ADMIN_KEY or the first start), `iss_…`/`rcv_…` (a key made by
-- a key of its identity), NULL when unknown (keys from before this migration whose
-- identity an organisation owns). last_used_at_ms: written at most once a minute per
-- key, off the request path. rotated_from: the public id of the key this one replaced.
ALTER TABLE api_keys ADD COLUMN name TEXT NOT NULL DEFAULT 'initial key';
ALTER TABLE api_keys ADD COLUMN scopes TEXT;
ALTER TABLE api_keys ADD COLUMN expires_at_ms BIGINT;
ALTER TABLE api_keys ADD COLUMN created_by TEXT;
ALTER TABLE api_keys ADD COLUMN last_used_at_ms BIGINT;
ALTER TABLE api_keys ADD COLUMN rotated_from TEXT;

UPDATE api_keys SET name = 'bootstrap admin key', created_by = 'bootstrap' WHERE kind = 'admin';
UPDATE api_keys SET created_by = 'admin'
 WHERE kind <> 'admin'
   AND owner NOT IN (SELECT issuer_id FROM org_issuers)
   AND owner NOT IN (SELECT receiver_id FROM org_receivers);

CREATE INDEX api_keys_by_owner ON api_keys (kind, owner, created_at_ms);
CREATE INDEX api_keys_by_creator ON api_keys (created_by) WHERE created_by IS NOT NULL;
