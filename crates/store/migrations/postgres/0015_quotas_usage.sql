-- Quotas and usage (issue 18 item 5); see migrations/sqlite/0031_quotas_usage.sql.
CREATE TABLE org_plans (
    org_id    TEXT   NOT NULL PRIMARY KEY REFERENCES organisations (id),
    plan      TEXT   NOT NULL,
    set_at_ms BIGINT NOT NULL
);

CREATE TABLE quota_usage (
    org_id TEXT    NOT NULL,
    month  TEXT    NOT NULL,
    used   BIGINT  NOT NULL CHECK (used >= 0),
    warned BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (org_id, month)
);

CREATE TABLE usage_daily (
    org_id TEXT   NOT NULL,
    day    TEXT   NOT NULL,
    key    TEXT   NOT NULL,
    route  TEXT   NOT NULL,
    count  BIGINT NOT NULL CHECK (count >= 0),
    PRIMARY KEY (org_id, day, key, route)
);
