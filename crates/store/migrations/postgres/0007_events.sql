-- Push events (issue 19 item 4), as SQLite migration 0023: the event-signing key,
-- receivers' webhooks and every acknowledgement. Events are change-feed rows; their
-- id is the feed position. (0006 is the status lists' migration.)

CREATE TABLE event_key (
    id            SMALLINT NOT NULL CHECK (id = 1),
    private_pem   TEXT     NOT NULL,
    created_at_ms BIGINT   NOT NULL,
    CONSTRAINT event_key_pkey PRIMARY KEY (id)
);

CREATE TABLE webhooks (
    id              TEXT   NOT NULL,
    receiver_id     TEXT   NOT NULL REFERENCES receivers (id),
    url             TEXT   NOT NULL,
    filter          TEXT   NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    delivered_pos   BIGINT NOT NULL CHECK (delivered_pos >= 0),
    failures        BIGINT NOT NULL DEFAULT 0 CHECK (failures >= 0),
    next_attempt_ms BIGINT NOT NULL DEFAULT 0,
    last_error      TEXT,
    paused_at_ms    BIGINT,
    paused_reason   TEXT,
    CONSTRAINT webhooks_pkey PRIMARY KEY (id),
    CHECK ((paused_at_ms IS NULL) = (paused_reason IS NULL))
);
CREATE INDEX webhooks_by_receiver ON webhooks (receiver_id, created_at_ms);

CREATE TABLE event_acks (
    receiver_id TEXT   NOT NULL REFERENCES receivers (id),
    upto_pos    BIGINT NOT NULL CHECK (upto_pos > 0),
    acked_at_ms BIGINT NOT NULL,
    via         TEXT   NOT NULL
);
CREATE INDEX event_acks_by_receiver ON event_acks (receiver_id, upto_pos, acked_at_ms);
