-- The change feed (issue 15, `Store::changes_since`): what each write changed that a
-- reader mirroring the store must reflect (revocations, suspensions, keys, domains,
-- receivers), so a server or replica refreshes only what changed.
--
-- `pos` is handed out by the write that records the change, under the audit log's
-- head (the first lock of every write; SQLite: its one writer), so positions follow
-- commit order and a reader that has seen position N never misses a later commit.
-- The encoding of `kind` and `subject` is backend-neutral (`store::log::ChangeRow`).
CREATE TABLE changes (
    pos          INTEGER NOT NULL PRIMARY KEY CHECK (pos > 0),
    kind         TEXT    NOT NULL,
    -- The agent, token, issuer or receiver id, or an API key hash (base64url).
    subject      TEXT,
    -- A revoked token's `exp`, Unix seconds: past it (plus leeway) the row is skipped.
    expires_at_s INTEGER,
    CHECK ((kind = 'token_revoked') = (expires_at_s IS NOT NULL))
);

-- What readers must know from the start: every revocation, in the order the
-- revocation feed (0011) recorded them, then the suspensions in force now. Key,
-- domain and receiver changes before this migration are not replayed: readers load
-- those tables whole when they start.
INSERT INTO changes (pos, kind, subject, expires_at_s)
    SELECT ROW_NUMBER() OVER (ORDER BY seq),
           CASE WHEN agent_id IS NOT NULL THEN 'agent_revoked' ELSE 'token_revoked' END,
           COALESCE(agent_id, jti),
           expires_at_s
    FROM revocation_feed;
INSERT INTO changes (pos, kind, subject)
    SELECT (SELECT COALESCE(MAX(pos), 0) FROM changes)
               + ROW_NUMBER() OVER (ORDER BY suspended_at_ms, seq),
           'agent_suspended',
           id
    FROM agents WHERE status = 'active' AND suspended_at_ms IS NOT NULL;
