-- Push events (issue 19 item 4): the key that signs Security Event Tokens, receivers'
-- webhooks and every acknowledgement a receiver gave. The events themselves are not
-- stored: an event is a row of the change feed (0017), its id the feed position, so
-- every replica serves the same ids without a second copy.

-- The event-signing key (Ed25519, sealed like the receipt key; one row, created once).
CREATE TABLE event_key (
    id            INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    private_pem   TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL
);

-- A receiver's webhook: where its events are POSTed, which ones (`filter`, JSON the
-- server wrote), and how delivery stands. `delivered_pos` is the last event the
-- target acknowledged (2xx); a webhook that kept failing is paused with its reason.
CREATE TABLE webhooks (
    id              TEXT    NOT NULL PRIMARY KEY,
    receiver_id     TEXT    NOT NULL REFERENCES receivers (id),
    url             TEXT    NOT NULL,
    filter          TEXT    NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    delivered_pos   INTEGER NOT NULL CHECK (delivered_pos >= 0),
    failures        INTEGER NOT NULL DEFAULT 0 CHECK (failures >= 0),
    next_attempt_ms INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    paused_at_ms    INTEGER,
    paused_reason   TEXT,
    CHECK ((paused_at_ms IS NULL) = (paused_reason IS NULL))
);
CREATE INDEX webhooks_by_receiver ON webhooks (receiver_id, created_at_ms);

-- Every acknowledgement: receiver R acknowledged every event up to `upto_pos` at
-- `acked_at_ms`, over `via` ('sse', or the webhook's id). Append-only, so "event P
-- was first acknowledged by R at T" is the earliest row with `upto_pos >= P`.
CREATE TABLE event_acks (
    receiver_id TEXT    NOT NULL REFERENCES receivers (id),
    upto_pos    INTEGER NOT NULL CHECK (upto_pos > 0),
    acked_at_ms INTEGER NOT NULL,
    via         TEXT    NOT NULL
);
CREATE INDEX event_acks_by_receiver ON event_acks (receiver_id, upto_pos, acked_at_ms);
