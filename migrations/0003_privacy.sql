-- Privacy by design: purge receipts (crypto-shredding evidence), consent withdrawal (opt-out),
-- audit queries and audit retention.

-- A stable, non-secret id per data key: the purge receipt names the key it destroyed.
ALTER TABLE flight_keys ADD COLUMN key_id uuid NOT NULL DEFAULT gen_random_uuid();

-- When the flight's biometric data was purged. Also what the sweeper's scan is indexed on.
ALTER TABLE flights ADD COLUMN purged_at timestamptz;
CREATE INDEX flights_unpurged ON flights (scheduled_departure) WHERE purged_at IS NULL;

-- One row per flight purge: durable progress while it runs (a purge resumes from here after a
-- crash), the receipt an operator shows an auditor once completed_at is set. Never personal data.
CREATE TABLE purge_receipts (
    id                   bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    flight_id            uuid PRIMARY KEY REFERENCES flights (id),
    flight_code          text NOT NULL,
    scheduled_departure  timestamptz NOT NULL,
    trigger              text NOT NULL CHECK (trigger IN ('departed', 'cancelled', 'grace_elapsed')),
    initiated_by         text NOT NULL,
    started_at           timestamptz NOT NULL DEFAULT now(),
    key_id               uuid,            -- the destroyed data key's id (never the key)
    kek_id               text,            -- the master key it was wrapped under
    key_destroyed_at     timestamptz,
    templates_deleted    integer NOT NULL DEFAULT 0,
    tokens_ended         integer NOT NULL DEFAULT 0,
    tokens_total         integer,
    consents_kept        integer,         -- consent records kept as non-biometric evidence
    completed_at         timestamptz
);
CREATE INDEX purge_receipts_unfinished ON purge_receipts (started_at) WHERE completed_at IS NULL;
CREATE INDEX purge_receipts_completed ON purge_receipts (completed_at);

-- A completed receipt is evidence: it can't change. No receipt can be deleted.
CREATE FUNCTION refuse_receipt_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.completed_at IS NULL THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'purge receipt of flight % is final', OLD.flight_id USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER purge_receipts_final BEFORE UPDATE OR DELETE ON purge_receipts
    FOR EACH ROW EXECUTE FUNCTION refuse_receipt_changes();

-- Once a flight's data key is destroyed nothing may seal new templates for it: closes the race
-- between a late enrolment (holding a cached key) and the purge.
CREATE FUNCTION refuse_template_without_key() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM flight_keys WHERE flight_id = NEW.flight_id) THEN
        RAISE EXCEPTION 'flight % has no data key (purged): no template may be stored', NEW.flight_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER templates_need_flight_key BEFORE INSERT OR UPDATE ON templates
    FOR EACH ROW EXECUTE FUNCTION refuse_template_without_key();

-- Opt-out: the consent record stays (non-biometric evidence) and says when it was withdrawn.
ALTER TABLE consents ADD COLUMN withdrawn_at timestamptz;
CREATE INDEX consents_document ON consents (document_key);
CREATE INDEX consents_flight ON consents (flight_id);  -- the receipt counts the consents kept
CREATE INDEX tokens_document ON tokens (document_key);

-- Audit queries by device.
CREATE INDEX audit_events_actor ON audit_events (actor, at);
CREATE INDEX journey_events_device ON journey_events (device_id, at);

-- Retention clean-up may delete only rows older than the cutoff it declares for its own
-- transaction (flighttoken.retention_cutoff), and that cutoff must be at least a day old.
CREATE OR REPLACE FUNCTION refuse_event_changes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    cutoff timestamptz;
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('flighttoken.retention_purge', true) = 'on' THEN
        cutoff := nullif(current_setting('flighttoken.retention_cutoff', true), '')::timestamptz;
        IF cutoff IS NOT NULL AND cutoff <= now() - interval '1 day' AND OLD.at < cutoff THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION '% row % is within the retention period', TG_TABLE_NAME, OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END $$;
