-- The keys behind a delegated token's ancestors (review of issue 7): a child is
-- signed by the registry, so nothing in it says which issuer key signed its root
-- token, or which agent keys its ancestors were bound to. Revoking that issuer key,
-- or rotating an ancestor's bound key out past its grace period, must end every
-- descendant too; a verify of the child reads them from here.

-- JSON array, root first, one object per ancestor token:
-- {"agent": "agt_…", "issuer_kid": "…"?, "jkt": "…"?}.
ALTER TABLE delegations ADD COLUMN ancestor_keys TEXT NOT NULL DEFAULT '[]';
