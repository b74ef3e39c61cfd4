-- An agent with its own key accepts only tokens bound to it (`cnf.jkt`) unless its
-- issuer opted out at registration (security review, item 9). 1 = the issuer opted
-- out: tokens without `cnf` (issuer-signed, or issued before the agent had a key)
-- still verify. Agents registered before this migration did not opt out, so once
-- they have a key their unbound tokens are refused, which is the point of the rule.
ALTER TABLE agents ADD COLUMN allow_bearer_tokens INTEGER NOT NULL DEFAULT 0
    CHECK (allow_bearer_tokens IN (0, 1));
