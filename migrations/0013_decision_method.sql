-- How a touchpoint decision identified the passenger (issue 20): face-only search ('face'), a
-- boarding pass plus a 1:1 face check ('boarding_pass'), or a gate agent by hand ('manual').
-- A default, not a rewrite: existing events were all face-only, and the append-only trigger
-- (0002) is a row trigger that ADD COLUMN does not fire.
ALTER TABLE journey_events
    ADD COLUMN method text NOT NULL DEFAULT 'face' CHECK (method IN ('face', 'boarding_pass', 'manual'));
