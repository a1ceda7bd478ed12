-- The last known values of each machine, one row per machine, upserted by the ingest writer in the
-- batch's transaction. The site view, its live stream and the ISO 15143-3 snapshot read this table
-- instead of scanning telemetry, so they stay flat as history grows.
-- Each value is the newest non-null one as of the newest sample of a batch (a sample missing a field
-- keeps the previous value); ts is the newest sample time, never moved backwards by late samples.
CREATE TABLE IF NOT EXISTS machine_last (
    site_id text NOT NULL,
    machine_id text NOT NULL,
    ts timestamptz NOT NULL,
    seq bigint NOT NULL DEFAULT -1,
    lat double precision,
    lon double precision,
    speed_kmh double precision,
    heading_deg double precision,
    payload_kg double precision,
    fuel_used_l double precision,
    engine_hours double precision,
    engine_on boolean,
    position_ts timestamptz,          -- time of the sample that gave lat/lon
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, machine_id)
);

-- Fill it once from what is already stored (newest sample per machine; empty on a fresh database).
INSERT INTO machine_last (site_id, machine_id, ts, seq, lat, lon, speed_kmh, heading_deg, payload_kg,
                          fuel_used_l, engine_hours, engine_on, position_ts)
SELECT DISTINCT ON (site_id, machine_id) site_id, machine_id, ts, seq, lat, lon, speed_kmh, heading_deg,
       payload_kg, fuel_used_l, engine_hours, engine_on, CASE WHEN lat IS NOT NULL THEN ts END
FROM telemetry
ORDER BY site_id, machine_id, ts DESC, seq DESC
ON CONFLICT DO NOTHING;
