-- Tokens made by RFC 8693 token exchange (`POST /v1/token`): the child token is in
-- `tokens` like any other (its `agent_id` is its subject, the root of the chain);
-- this row adds what a verify of the child cannot read from the child itself. Its
-- ancestors' policies are in the ancestor tokens, and a descendant's spending must
-- count against every ancestor's period budget too. Written in the same transaction
-- as the token's row; never changed.

CREATE TABLE delegations (
    jti               TEXT    NOT NULL PRIMARY KEY REFERENCES tokens (jti),
    -- The token it was exchanged from (the last of the child's `ancestor_jtis`).
    parent_jti        TEXT    NOT NULL,
    -- The sub-agent it was made for: the child's current actor (`act.sub`).
    actor_id          TEXT    NOT NULL REFERENCES agents (id),
    -- JSON array of the `pol.v0.2` policy texts of the ancestor tokens that have a
    -- `per_period` budget, root first.
    ancestor_policies TEXT    NOT NULL,
    created_at_ms     INTEGER NOT NULL
);
