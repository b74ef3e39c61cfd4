-- Receipts older than the configured retention are purged (`Store::purge_receipts`);
-- their audit entries stay (as SQLite migration 0020).
CREATE INDEX receipts_by_age ON receipts (created_at_ms);
