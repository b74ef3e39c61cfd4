-- Issuer names that differ only by case, a leading `https://` or trailing dots are one
-- name (`bonafide_core::names::issuer_name_key`): a consent token's `iss` may be the
-- name in any of those spellings, so two issuers must never share one.
--
-- The key is computed in Rust (Unicode lowercase), so it is filled in by the store
-- when it opens, oldest issuer first; it stays NULL for an issuer whose name an older
-- issuer already holds (a registry from before this rule may have such twins), and a
-- UNIQUE index ignores NULLs: existing data can never make this migration fail.
ALTER TABLE issuers ADD COLUMN name_key TEXT;
CREATE UNIQUE INDEX issuers_name_key ON issuers (name_key);
