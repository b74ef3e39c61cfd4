-- What the acknowledging stream or webhook followed (SQLite 0032): an acknowledgement
-- covers an event only when that filter follows it. Earlier webhook acknowledgements
-- take their webhook's filter; earlier SSE ones stay unknown (NULL) and cover nothing.
ALTER TABLE event_acks ADD COLUMN filter TEXT;
UPDATE event_acks SET filter = w.filter FROM webhooks w
    WHERE w.id = event_acks.via AND event_acks.via <> 'sse';
