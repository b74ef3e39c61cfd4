-- Listings in commit order (issue 15): `GET /v1/agents` pages by `list_pos`, the audit
-- index of the entry the agent's registration appended. Indexes are handed out under
-- the log head, the first lock of every write, so they follow commit order on any
-- backend; `seq` (a rowid, or a PostgreSQL sequence) does not with several writers: a
-- smaller number may commit later, and a page read meanwhile would skip it.
ALTER TABLE agents ADD COLUMN list_pos INTEGER;

-- Agents registered before: below every audit index, in registration order (`seq`,
-- which was commit order under SQLite's single writer), so they keep their places and
-- every agent registered from now on comes after them.
UPDATE agents SET list_pos = seq - (SELECT MAX(seq) FROM agents) - 1;

-- A page is one range scan; a cursor's agent is found by its id.
CREATE UNIQUE INDEX agents_by_issuer_list_pos ON agents (issuer_id, list_pos);
