-- The authority's audit trail gets its own table and id sequence (issue 17): while watchlist rows
-- shared audit_events' ids, an admin reading GET /v1/audit saw a gap wherever a watchlist hit (or
-- any other authority action) had taken an id. Same columns, same append-only rule, same retention.
CREATE TABLE authority_audit_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,            -- "watchlist.*"
    outcome     text NOT NULL,
    flight_id   uuid,
    token_id    uuid,
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX authority_audit_events_at ON authority_audit_events (at);
CREATE TRIGGER authority_audit_events_append_only BEFORE UPDATE OR DELETE ON authority_audit_events
    FOR EACH ROW EXECUTE FUNCTION refuse_event_changes();
CREATE TRIGGER authority_audit_events_no_truncate BEFORE TRUNCATE ON authority_audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_event_changes();

-- Existing rows move with their ids (evidence keeps its numbers); the sequence continues after them.
INSERT INTO authority_audit_events (id, at, actor, action, outcome, flight_id, token_id, detail)
    OVERRIDING SYSTEM VALUE
    SELECT id, at, actor, action, outcome, flight_id, token_id, detail FROM audit_events
    WHERE starts_with(action, 'watchlist.') ORDER BY id;
SELECT setval(pg_get_serial_sequence('authority_audit_events', 'id'),
              coalesce((SELECT max(id) FROM authority_audit_events), 0) + 1, false);

-- The one deletion the append-only rule allows outside retention: this move. ALTER TABLE holds an
-- exclusive lock on audit_events until the migration commits, so no other writer sees the trigger off.
ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only;
DELETE FROM audit_events WHERE starts_with(action, 'watchlist.');
ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only;
