-- Foundation: the append-only audit trail every later table writes to.
-- Who did what, where and when, with its outcome. Never an image or a template.
CREATE TABLE audit_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,            -- device id, key id or "system"
    action      text NOT NULL,            -- e.g. "token.enrolled", "flight.departed"
    outcome     text NOT NULL,            -- "ok", "refused", "error"
    flight_id   uuid,
    token_id    uuid,
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_flight ON audit_events (flight_id, at);
