-- A receiver verifies as itself (security review, issue 13): the audiences (`aud`
-- values) it answers to, as a JSON array of strings. Existing receivers answer to
-- their name, as new ones do by default.
ALTER TABLE receivers ADD COLUMN audiences TEXT NOT NULL DEFAULT '[]';
UPDATE receivers SET audiences = json_array(name);
