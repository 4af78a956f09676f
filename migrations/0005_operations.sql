-- Airline operations: expected passengers per flight, and "boarding closed" as a flight state.

-- Passengers the airline expects (from its schedule or booking system). Optional: the dashboard
-- falls back to the enrolled count while there is no manifest.
ALTER TABLE flights ADD COLUMN booked integer CHECK (booked IS NULL OR booked BETWEEN 0 AND 2000);

-- 'closed': boarding has closed but the aircraft has not departed yet. Gates stop boarding and
-- the flight's galleries are dropped; only departure or cancellation may follow.
ALTER TABLE flights DROP CONSTRAINT flights_state_check;
ALTER TABLE flights ADD CONSTRAINT flights_state_check
    CHECK (state IN ('scheduled', 'boarding', 'closed', 'departed', 'cancelled'));
ALTER TABLE flights ADD COLUMN boarding_closed_at timestamptz;

-- The ops dashboard and lists read flights by day (look-ups by document use 0003's tokens_document).
CREATE INDEX flights_departure ON flights (scheduled_departure);
