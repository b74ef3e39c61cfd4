-- Quotas and usage (issue 18 item 5).
--
-- The plan an administrator assigned to an organisation (none: the registry's
-- default plan). Plans and their limits are configuration, not data: only the name.
CREATE TABLE org_plans (
    org_id    TEXT    NOT NULL PRIMARY KEY REFERENCES organisations (id),
    plan      TEXT    NOT NULL,
    set_at_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- Verifications counted against an organisation's monthly quota: `month` is the
-- UTC month (`2026-12`); `used` only grows, by what the quota admitted, in the
-- transaction that admits it; `warned` is set once, by the take that crossed 80 %.
CREATE TABLE quota_usage (
    org_id TEXT    NOT NULL,
    month  TEXT    NOT NULL,
    used   INTEGER NOT NULL CHECK (used >= 0),
    warned INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, month)
) WITHOUT ROWID;

-- Requests made with an organisation's API keys, counted in memory and added here
-- in batches: by UTC day, key (the server's stable name for it, never its hash) and
-- route template.
CREATE TABLE usage_daily (
    org_id TEXT    NOT NULL,
    day    TEXT    NOT NULL,
    key    TEXT    NOT NULL,
    route  TEXT    NOT NULL,
    count  INTEGER NOT NULL CHECK (count >= 0),
    PRIMARY KEY (org_id, day, key, route)
) WITHOUT ROWID;
