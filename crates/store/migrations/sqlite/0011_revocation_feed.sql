-- The revocation feed (review item 9): every revocation in commit order, so a server
-- re-reads only the revocations committed since its last read (`revocations_since`)
-- instead of every revocation ever made, and skips tokens past their expiry.
--
-- `seq` is assigned inside the revoking transaction; SQLite has one writer, so rows
-- become visible in `seq` order and a reader that has seen up to `seq` N never misses
-- a later commit. An agent's row covers every token it has (a revoked agent's tokens
-- are refused by the agent), so revoking an agent writes one row, not one per token.
CREATE TABLE revocation_feed (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id     TEXT REFERENCES agents (id),
    jti          TEXT REFERENCES tokens (jti),
    -- The token's `exp`, Unix seconds: past it (plus leeway) the row is dead weight.
    expires_at_s INTEGER,
    CHECK ((agent_id IS NULL) <> (jti IS NULL)),
    CHECK ((jti IS NULL) = (expires_at_s IS NULL))
);

-- Start-up reads the tokens still alive: by expiry, not the whole feed.
CREATE INDEX revocation_feed_tokens ON revocation_feed (expires_at_s, seq)
    WHERE jti IS NOT NULL;
CREATE INDEX revocation_feed_agents ON revocation_feed (seq) WHERE agent_id IS NOT NULL;

-- What was revoked before the feed existed.
INSERT INTO revocation_feed (agent_id)
    SELECT id FROM agents WHERE status = 'revoked' ORDER BY revoked_at_ms, seq;
INSERT INTO revocation_feed (jti, expires_at_s)
    SELECT t.jti, t.expires_at_s FROM tokens t
    JOIN agents a ON a.id = t.agent_id
    WHERE t.revoked_at_ms IS NOT NULL AND a.status <> 'revoked'
    ORDER BY t.revoked_at_ms, t.jti;
