-- New status entries are read by `seq` (`Store::status_entries_since`, from the
-- `MAX(seq) + 1` taken before a read): one writer makes `seq` order commit order. But a
-- plain INTEGER PRIMARY KEY hands out `MAX(rowid) + 1`, so once the newest entry is
-- purged (expired), the next one could get a `seq` at or below a horizon already
-- taken, and be read by no round. AUTOINCREMENT never hands a `seq` out twice.
CREATE TABLE status_entries_seq (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    list_id       INTEGER NOT NULL REFERENCES status_lists (id),
    idx           INTEGER NOT NULL,
    jti           TEXT    NOT NULL UNIQUE,
    agent_id      TEXT    NOT NULL,
    issuer_id     TEXT    NOT NULL,
    expires_at_s  INTEGER NOT NULL,
    chain         TEXT,
    created_at_ms INTEGER NOT NULL,
    UNIQUE (list_id, idx)
);

INSERT INTO status_entries_seq
    (seq, list_id, idx, jti, agent_id, issuer_id, expires_at_s, chain, created_at_ms)
    SELECT seq, list_id, idx, jti, agent_id, issuer_id, expires_at_s, chain, created_at_ms
    FROM status_entries ORDER BY seq;

DROP TABLE status_entries;
ALTER TABLE status_entries_seq RENAME TO status_entries;
CREATE INDEX status_entries_by_agent ON status_entries (agent_id);
CREATE INDEX status_entries_by_expiry ON status_entries (expires_at_s);
