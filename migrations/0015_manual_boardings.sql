-- Staff processing at the gate (issue 20, part 5): a gate agent boards a referred passenger by hand
-- after checking the document (flighttoken/journey/manual.py). The boarding itself is the token's
-- move to 'boarded'; this row says it was manual, who did it (the agent's id as the gate device
-- asserts it) and why. At most one per token: a token boards once. Evidence, like the event tables:
-- append-only (refuse_event_changes, migrations/0002 and 0003).
CREATE TABLE manual_boardings (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    token_id     uuid NOT NULL UNIQUE REFERENCES tokens (id),
    flight_id    uuid NOT NULL REFERENCES flights (id),
    device_id    uuid NOT NULL REFERENCES devices (id),
    agent_id     text NOT NULL CHECK (length(agent_id) BETWEEN 1 AND 40),
    reason_code  text NOT NULL
                 CHECK (reason_code IN ('face_not_recognised', 'capture_refused', 'no_token_face', 'device_fault',
                                        'other'))
);
-- Flight progress counts a flight's manual boardings (db/queries/operations.py).
CREATE INDEX manual_boardings_flight ON manual_boardings (flight_id);

CREATE TRIGGER manual_boardings_append_only BEFORE UPDATE OR DELETE ON manual_boardings
    FOR EACH ROW EXECUTE FUNCTION refuse_event_changes();
CREATE TRIGGER manual_boardings_no_truncate BEFORE TRUNCATE ON manual_boardings
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_event_changes();
