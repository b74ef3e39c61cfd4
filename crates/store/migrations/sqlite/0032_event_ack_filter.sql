-- What the acknowledging stream or webhook followed (the server's filter JSON): an
-- acknowledgement covers an event only when that filter follows it. Earlier webhook
-- acknowledgements take their webhook's filter; earlier SSE ones stay unknown (NULL)
-- and cover nothing.
ALTER TABLE event_acks ADD COLUMN filter TEXT;
UPDATE event_acks SET filter = (SELECT w.filter FROM webhooks w WHERE w.id = event_acks.via)
    WHERE via <> 'sse';
