-- Receipts older than the configured retention are purged (`Store::purge_receipts`);
-- their audit entries stay. Receipts are written in time order, so this index grows
-- at its right edge and costs the commit path little.
CREATE INDEX receipts_by_age ON receipts (created_at_ms);
