-- Random secondary referral as the watchlist's cover (issue 17): a share of passengers who would
-- proceed at a screened touchpoint are referred to an officer and held, exactly as a watchlist hit
-- is. Each referral is an alert-like record in the same table, so officers see and release both
-- through the same authority API; ``kind`` tells them apart, and only the authority reads it.
ALTER TABLE alerts ADD COLUMN kind text NOT NULL DEFAULT 'watchlist' CHECK (kind IN ('watchlist', 'random'));
ALTER TABLE alerts ALTER COLUMN subject_id DROP NOT NULL, ALTER COLUMN score DROP NOT NULL;
-- A watchlist alert names its subject and score; a random referral has neither.
ALTER TABLE alerts ADD CONSTRAINT alerts_kind_subject
    CHECK ((kind = 'watchlist') = (subject_id IS NOT NULL) AND (subject_id IS NULL) = (score IS NULL));

-- 'cleared': the officer checked the passenger and let them go (the usual end of a random
-- referral); like a false alarm it releases the referral's hold.
ALTER TABLE alerts DROP CONSTRAINT alerts_status_check;
ALTER TABLE alerts ADD CONSTRAINT alerts_status_check
    CHECK (status IN ('open', 'confirmed', 'false_alarm', 'cleared'));
