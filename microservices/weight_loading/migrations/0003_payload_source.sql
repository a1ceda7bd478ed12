-- A cycle found from the track alone (the hauler's payload readings were absent, stuck or out of range over
-- it) has no measured payload: its payload, band and passes are null and payload_source says why.
ALTER TABLE weight_loading.cycles ADD COLUMN IF NOT EXISTS payload_source text NOT NULL DEFAULT 'measured';
ALTER TABLE weight_loading.cycles ALTER COLUMN payload_kg DROP NOT NULL;
ALTER TABLE weight_loading.cycles ALTER COLUMN payload_pct DROP NOT NULL;
ALTER TABLE weight_loading.cycles ALTER COLUMN band DROP NOT NULL;
ALTER TABLE weight_loading.cycles ALTER COLUMN passes DROP NOT NULL;
