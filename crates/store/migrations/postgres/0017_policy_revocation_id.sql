-- A revoked policy's revocation id, indexed, as SQLite migration 0033: the change feed
-- names a policy revocation by that id only, and push events find its issuer by it.
-- Rows revoked before have none and are matched by computing theirs.
ALTER TABLE revoked_policies ADD COLUMN revocation_id TEXT;
CREATE UNIQUE INDEX revoked_policies_by_revocation_id ON revoked_policies (revocation_id);
