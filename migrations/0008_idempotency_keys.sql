-- Idempotency-Key on the kiosk's POSTs (flighttoken/journey/idempotency.py): one row per device and
-- key, kept 24 h. Never the request body (an enrolment carries face images): only its SHA-256.
CREATE TABLE idempotency_keys (
    device_id    uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    key          text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    operation    text NOT NULL,             -- which POST the key was first used on
    body_sha256  bytea NOT NULL CHECK (length(body_sha256) = 32),
    claim        uuid NOT NULL,             -- the request executing it; a retry replays, never re-runs
    status       smallint,                  -- NULL while the first request is still running
    response     bytea,                     -- the answer's JSON body (no images: results and problems only)
    created_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    PRIMARY KEY (device_id, key),
    CHECK ((status IS NULL) = (response IS NULL))
);
-- The sweeper's expiry scan.
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
