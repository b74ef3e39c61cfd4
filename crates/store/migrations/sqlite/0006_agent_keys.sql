-- Agents' own public keys (issue 6 item 4). An agent keeps its private key; the
-- registry holds only the public JWK, binds tokens to it (`cnf.jkt`) and publishes it
-- in the agent's did:web document. Nothing here is secret.
--
-- An agent has at most one current key (`retired_at_ms` NULL). Rotation retires the
-- current key with a grace period (`grace_until_ms`): tokens bound to it verify until
-- then, and are refused after.

CREATE TABLE agent_keys (
    agent_id       TEXT    NOT NULL REFERENCES agents (id),
    -- RFC 7638 thumbprint, computed by the registry.
    jkt            TEXT    NOT NULL,
    -- The public JWK as JSON text (with `kid`, `alg` and `use`), never private members.
    jwk            TEXT    NOT NULL,
    alg            TEXT    NOT NULL CHECK (alg IN ('ES256', 'EdDSA')),
    created_at_ms  INTEGER NOT NULL,
    -- `key_expires_at`: tokens bound to the key are refused from then on.
    expires_at_ms  INTEGER NOT NULL,
    -- Set once, by the rotation that replaced the key, with `grace_until_ms`.
    retired_at_ms  INTEGER,
    grace_until_ms INTEGER,
    CHECK ((retired_at_ms IS NULL) = (grace_until_ms IS NULL)),
    PRIMARY KEY (agent_id, jkt)
);

-- INVARIANT: at most one current key per agent.
CREATE UNIQUE INDEX agent_keys_current ON agent_keys (agent_id) WHERE retired_at_ms IS NULL;
