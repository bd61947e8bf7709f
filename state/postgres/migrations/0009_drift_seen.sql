-- The drift each deployment's last check acted on (reported or repaired), so that a
-- director restarted while a drift lasts does not report or repair it a second time.
CREATE TABLE drift_seen (
    deployment text PRIMARY KEY,
    keys       text[]      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
