-- A receiver verifies as itself (security review, issue 13): the audiences (`aud`
-- values) it answers to. An audience belongs to one receiver at most (the primary
-- key): a receiver that could take another's audience could verify and spend that
-- receiver's tokens. Existing receivers answer to their name, as new ones do by
-- default (names are unique, so this cannot collide).
CREATE TABLE receiver_audiences (
    audience    TEXT PRIMARY KEY,
    receiver_id TEXT NOT NULL REFERENCES receivers(id),
    position    INTEGER NOT NULL
);
CREATE INDEX receiver_audiences_by_receiver ON receiver_audiences (receiver_id, position);
INSERT INTO receiver_audiences (audience, receiver_id, position) SELECT name, id, 0 FROM receivers;
