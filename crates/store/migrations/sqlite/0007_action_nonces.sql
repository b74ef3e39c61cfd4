-- Replay cache of signed agent actions (`POST /v1/agents/{id}/verify-action`, issue 6
-- item 6): a nonce is accepted once per agent while its request's timestamp could
-- still be in the ±300 s window. Rows past `expires_at_ms` are purged hourly, so the
-- table holds about an hour of signed actions.

CREATE TABLE action_nonces (
    agent_id      TEXT    NOT NULL REFERENCES agents (id),
    nonce         TEXT    NOT NULL,
    -- The request's timestamp + 300 s: until then the nonce is refused again.
    expires_at_ms INTEGER NOT NULL,
    PRIMARY KEY (agent_id, nonce)
) WITHOUT ROWID;

CREATE INDEX action_nonces_by_expiry ON action_nonces (expires_at_ms);
