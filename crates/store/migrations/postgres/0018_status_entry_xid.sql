-- The transaction that allocated each status entry (PostgreSQL only; SQLite has one
-- writer, so its `seq` order is commit order). A `seq` is handed out before its
-- transaction commits, so an entry can become visible after entries with higher
-- `seq`s were read: the status-list publisher reads new entries by transaction
-- instead, from the oldest transaction still running when it last read
-- (`pg_snapshot_xmin`), below which every transaction has committed or aborted for good.
-- `bonafide migrate` leaves the column out of the copy: copied rows get the copy's.
ALTER TABLE status_entries ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX status_entries_by_xid ON status_entries (xid);
