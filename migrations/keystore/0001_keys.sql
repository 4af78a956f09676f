-- The key store: wrapped data keys and nothing else (never a template, never a master key).
-- It is a database of its own so that no backup of the service database ever holds a data key:
-- deleting a flight's row here is the crypto-shredding of that flight (flighttoken/privacy/purge.py).
-- Keep it out of long-retention backups; see ops/README.md.

-- One data key per flight, wrapped by the master key under the context "flight:<flight id>".
CREATE TABLE flight_data_keys (
    flight_id   uuid PRIMARY KEY,
    key_id      uuid NOT NULL UNIQUE,   -- stable, non-secret: the purge receipt names it
    kek_id      text NOT NULL,          -- the master key it is wrapped under
    wrapped     bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX flight_data_keys_kek ON flight_data_keys (kek_id);

-- What was shredded and when: ids only. A flight listed here can never be given a key again.
CREATE TABLE destroyed_flight_keys (
    flight_id     uuid PRIMARY KEY,
    key_id        uuid NOT NULL,
    kek_id        text NOT NULL,
    destroyed_at  timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION refuse_key_for_destroyed_flight() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM destroyed_flight_keys WHERE flight_id = NEW.flight_id) THEN
        RAISE EXCEPTION 'flight % was purged: it can never have a data key again', NEW.flight_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER flight_data_keys_not_after_purge BEFORE INSERT ON flight_data_keys
    FOR EACH ROW EXECUTE FUNCTION refuse_key_for_destroyed_flight();

-- Watchlist data keys, wrapped under the context "watchlist:<id>". Never destroyed by a flight purge.
CREATE TABLE watchlist_data_keys (
    id          uuid PRIMARY KEY,
    kek_id      text NOT NULL,
    wrapped     bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX watchlist_data_keys_kek ON watchlist_data_keys (kek_id);
