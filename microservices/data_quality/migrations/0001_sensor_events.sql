-- data-quality owns the schema data_quality. Append-only: the runner fills site_id and run_seq and
-- deletes rows by run_seq when it replays after late samples.
CREATE SCHEMA IF NOT EXISTS data_quality;

-- One row per change of a sensor's status on a machine: it went bad (stuck, absent, implausible, offset,
-- skew) or became ok again. A finding lasts from its row's `since` to the next row of the same sensor.
CREATE TABLE IF NOT EXISTS data_quality.sensor_events (
    site_id text NOT NULL,
    run_seq bigint NOT NULL,
    machine_id text NOT NULL,
    sensor text NOT NULL,             -- heading | speed | position | payload | fuel | hours | clock
    status text NOT NULL,             -- ok | stuck | absent | implausible | offset | skew
    value double precision,           -- the stuck value, the offset, the clock lead or drift (s, s/h) ...
    since timestamptz NOT NULL,       -- start of the first time bin with this verdict
    detected_at timestamptz NOT NULL, -- end of the bin that confirmed it
    evidence text NOT NULL,
    effect text NOT NULL
);
CREATE INDEX IF NOT EXISTS sensor_events_site_run ON data_quality.sensor_events (site_id, run_seq);
CREATE INDEX IF NOT EXISTS sensor_events_site_machine ON data_quality.sensor_events (site_id, machine_id, sensor, since);
