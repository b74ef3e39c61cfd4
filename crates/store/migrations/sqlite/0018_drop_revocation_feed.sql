-- One feed: the change feed (0017, `Store::changes_since`) carries every revocation
-- the old revocation feed (0011) did, and 0017 copied that feed's rows in order.
-- Nothing reads or writes `revocation_feed` any more.
DROP INDEX IF EXISTS revocation_feed_tokens;
DROP INDEX IF EXISTS revocation_feed_agents;
DROP TABLE revocation_feed;
