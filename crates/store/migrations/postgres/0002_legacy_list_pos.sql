-- Agents registered on a SQLite registry before listings followed commit order
-- (SQLite migration 0016) have negative listing positions, below every audit index.
-- `bonafide migrate` copies them as they are, so PostgreSQL takes them too.
ALTER TABLE agents DROP CONSTRAINT agents_list_pos_check;
