-- Idempotency-Key on the kiosk's POSTs (flighttoken/journey/idempotency.py): one row per device and
-- key, kept 24 h. Never the request body (an enrolment carries face images): only an HMAC-SHA256 of
-- it under a key derived from the master key, so a low-entropy body (an opt-out: booking reference
-- and document number) cannot be recovered by hashing guesses.
CREATE TABLE idempotency_keys (
    device_id    uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    key          text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    operation    text NOT NULL,             -- which POST the key was first used on
    body_mac     bytea NOT NULL CHECK (length(body_mac) = 32),
    body_kek_id  text NOT NULL,             -- the master key the MAC was made under
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
