-- Receipts purged by their ids, not by an index on their age (issue 17).
--
-- A receipt id carries the time it was made in its first 48 bits
-- (`ReceiptId::from_time_and_random`), so the purge of receipts past their retention
-- finds them by ranges of the primary key (`ReceiptId::ranges_before`, a row's
-- `created_at_ms` checked too). The age index was one more B-tree written by every
-- audited verify's commit, for a purge that runs once an hour.
--
-- Receipts whose id does not carry their time (made before ids did, or with a later
-- time than their creation: `ReceiptRecord::dated_by_id`) are kept here by age, as
-- the index kept them; the purge empties this table as they pass their retention.
-- Copying them is a one-off write about the size of the dropped index, at the first
-- start after the upgrade; the index's pages go to SQLite's free list (reused by later
-- writes; `VACUUM` returns them to the file system).
CREATE TABLE receipts_undated (
    created_at_ms INTEGER NOT NULL,
    id            TEXT    NOT NULL,
    PRIMARY KEY (created_at_ms, id)
) WITHOUT ROWID;

INSERT INTO receipts_undated (created_at_ms, id)
    SELECT created_at_ms, id FROM receipts ORDER BY created_at_ms, id;

DROP INDEX receipts_by_age;
