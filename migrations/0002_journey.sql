-- The passenger journey: devices, flights, consent, tokens, encrypted templates, decisions.

CREATE TABLE devices (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('kiosk', 'e_channel', 'lounge', 'gate', 'admin', 'airline_ops', 'authority')),
    terminal    text,
    gate        text,        -- gate readers: the gate they stand at
    lounge_id   text,        -- lounge readers: the lounge they guard
    airline     text,        -- airline_ops keys: the airline whose flights they may see
    key_hash    bytea NOT NULL UNIQUE,   -- sha256 of the API key; the key itself is never stored
    created_at  timestamptz NOT NULL DEFAULT now(),
    disabled_at timestamptz
);

CREATE TABLE flights (
    id                   uuid PRIMARY KEY,
    airline              text NOT NULL,
    number               text NOT NULL,
    scheduled_departure  timestamptz NOT NULL,
    window_start         timestamptz NOT NULL,   -- departure window bucket, see flights/windows.py
    gate                 text,
    destination          text NOT NULL,
    international        boolean NOT NULL DEFAULT true,
    state                text NOT NULL DEFAULT 'scheduled'
                         CHECK (state IN ('scheduled', 'boarding', 'departed', 'cancelled')),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    closed_at            timestamptz,             -- when it departed or was cancelled
    UNIQUE (airline, number, scheduled_departure)
);
CREATE INDEX flights_open_by_window ON flights (window_start) WHERE state IN ('scheduled', 'boarding');
CREATE INDEX flights_boarding_gate ON flights (gate) WHERE state = 'boarding';

-- One data key per flight, wrapped by the master key (which never enters the database).
-- Deleting the row is crypto-shredding: every copy of the flight's template ciphertext dies with it.
CREATE TABLE flight_keys (
    flight_id   uuid PRIMARY KEY REFERENCES flights (id),
    kek_id      text NOT NULL,
    wrapped     bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Consent outlives the template: it is the non-biometric proof that capture was agreed to.
CREATE TABLE consents (
    id              uuid PRIMARY KEY,
    flight_id       uuid NOT NULL REFERENCES flights (id),
    document_key    bytea NOT NULL,
    terms_version   text NOT NULL,
    terms_sha256    text NOT NULL,
    consented_at    timestamptz NOT NULL,
    device_id       uuid NOT NULL REFERENCES devices (id),
    recorded_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tokens (
    id                 uuid PRIMARY KEY,
    flight_id          uuid NOT NULL REFERENCES flights (id),
    document_key       bytea NOT NULL,     -- sha256(issuing state|type|number): identity without the number
    document_type      text NOT NULL,
    document_last4     text NOT NULL,
    issuing_state      text NOT NULL,
    nationality        text NOT NULL,
    surname            text NOT NULL,
    given_names        text NOT NULL,
    booking_reference  text NOT NULL,
    seat               text,
    lounge_eligible    boolean NOT NULL DEFAULT false,
    state              text NOT NULL DEFAULT 'enrolled'
                       CHECK (state IN ('enrolled', 'immigration_cleared', 'boarded', 'revoked', 'expired')),
    on_hold            boolean NOT NULL DEFAULT false,
    consent_id         uuid NOT NULL REFERENCES consents (id),
    enrolled_at        timestamptz NOT NULL DEFAULT now(),
    cleared_at         timestamptz,
    last_lounge_at     timestamptz,
    boarded_at         timestamptz,
    ended_at           timestamptz,
    end_reason         text,
    UNIQUE (flight_id, document_key)
);
CREATE INDEX tokens_booking ON tokens (booking_reference);

-- The only biometric data at rest: AES-256-GCM under the flight's data key. Never an image.
CREATE TABLE templates (
    token_id    uuid PRIMARY KEY REFERENCES tokens (id) ON DELETE CASCADE,
    flight_id   uuid NOT NULL REFERENCES flights (id),
    model_id    text NOT NULL,
    sealed      bytea NOT NULL,
    quality     real NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX templates_flight ON templates (flight_id);

-- Every touchpoint decision. Never an image or a template.
CREATE TABLE journey_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    device_id   uuid NOT NULL REFERENCES devices (id),
    touchpoint  text NOT NULL,
    flight_id   uuid,
    token_id    uuid,
    decision    text NOT NULL CHECK (decision IN ('proceed', 'refer')),
    reason      text NOT NULL,
    score       real,
    margin      real,
    latency_ms  real NOT NULL
);
CREATE INDEX journey_events_flight ON journey_events (flight_id, at);
CREATE INDEX journey_events_at ON journey_events (at);

-- Events are evidence: the application may add them, never change or remove them. Retention
-- clean-up sets flighttoken.retention_purge for its own transaction and may delete old rows only.
CREATE FUNCTION refuse_event_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('flighttoken.retention_purge', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION refuse_event_changes();
CREATE TRIGGER journey_events_append_only BEFORE UPDATE OR DELETE ON journey_events
    FOR EACH ROW EXECUTE FUNCTION refuse_event_changes();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_event_changes();
CREATE TRIGGER journey_events_no_truncate BEFORE TRUNCATE ON journey_events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_event_changes();
