-- A revoked policy's revocation id (`bonafide_core::token::policy_revocation_id` of
-- the issuer and the policy id, `tok_…`), indexed: the change feed names a policy
-- revocation by that id only, and push events find its issuer by it. Written by the
-- store for every revocation from now on; rows revoked before have none and are
-- matched by computing theirs (a fixed, small set that never grows).
ALTER TABLE revoked_policies ADD COLUMN revocation_id TEXT;
CREATE UNIQUE INDEX revoked_policies_by_revocation_id ON revoked_policies (revocation_id);
