-- Wrapped data keys leave the service database for the key store (migrations/keystore/), so that
-- no backup of this database can ever decrypt a purged flight.
--
-- The service copies every wrapped key into the key store inside this migration's transaction,
-- with the migration lock held and both key tables locked (flighttoken/db/keystore.py), and says so
-- with flighttoken.keys_in_keystore = 'on'. Any other path (a bare `flighttoken migrate` on a
-- database still holding keys) is refused here, before a single key could be dropped.
DO $$
BEGIN
    IF current_setting('flighttoken.keys_in_keystore', true) IS DISTINCT FROM 'on'
       AND (EXISTS (SELECT 1 FROM flight_keys) OR EXISTS (SELECT 1 FROM watchlist_keys)) THEN
        RAISE EXCEPTION 'flight_keys / watchlist_keys still hold wrapped data keys: start the service once '
                        '(flighttoken serve) with its key store reachable; it moves them to the key store '
                        'and then applies this migration'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
END $$;

-- What stays is a marker with ids only: which flights (and watchlist keys) still have a data key in
-- the key store. Templates still need their flight's marker (0003's trigger), watchlist templates
-- still reference their key's id; neither table holds key material any more.
ALTER TABLE flight_keys DROP COLUMN kek_id, DROP COLUMN wrapped;
ALTER TABLE watchlist_keys DROP COLUMN kek_id, DROP COLUMN wrapped;
COMMENT ON TABLE flight_keys IS 'flights whose data key exists in the key store (ids only, never key material)';
COMMENT ON TABLE watchlist_keys IS 'watchlist data keys held in the key store (ids only, never key material)';
