-- Issue 20: two touchpoint kinds (self bag drop, e-Security Gate) and late enrolment at the
-- e-Security Gate.
ALTER TABLE devices DROP CONSTRAINT devices_kind_check;
ALTER TABLE devices ADD CONSTRAINT devices_kind_check
    CHECK (kind IN ('kiosk', 'bag_drop', 'e_security_gate', 'e_channel', 'lounge', 'gate', 'admin', 'airline_ops',
                    'authority'));

-- The bags a bag drop reported with its decision (NULL at every other touchpoint, or none reported).
-- NOT VALID: every existing row is NULL, so the check need not scan a large, append-only table while
-- holding its lock; new rows are checked all the same.
ALTER TABLE journey_events ADD COLUMN bags smallint;
ALTER TABLE journey_events ADD CONSTRAINT journey_events_bags
    CHECK (bags IS NULL OR (bags BETWEEN 0 AND 9 AND touchpoint = 'bag_drop')) NOT VALID;

-- The kind of device that created the token: a kiosk, or an e-Security Gate (late enrolment).
ALTER TABLE tokens ADD COLUMN enrolled_by text NOT NULL DEFAULT 'kiosk'
    CHECK (enrolled_by IN ('kiosk', 'e_security_gate'));
