-- Telemetry on plain PostgreSQL: native range partitions by month on ts, created on demand
-- by the writer (ingest/partitions.py). No DEFAULT partition: one holding rows would block
-- creating the matching monthly partition later, and the writer creates partitions before COPY.
CREATE TABLE IF NOT EXISTS telemetry (
    site_id text NOT NULL,
    machine_id text NOT NULL,
    ts timestamptz NOT NULL,
    seq bigint NOT NULL DEFAULT -1,           -- absent seq is -1 so the unique key works
    received_at timestamptz NOT NULL DEFAULT now(),
    lat double precision,
    lon double precision,
    speed_kmh double precision,
    heading_deg double precision,
    payload_kg double precision,
    fuel_used_l double precision,
    engine_hours double precision,
    engine_on boolean,
    extra jsonb,
    xid xid8 NOT NULL DEFAULT pg_current_xact_id(),  -- commit-order watermark (ingest/reader.py)
    CONSTRAINT telemetry_sample_key UNIQUE (site_id, machine_id, ts, seq)
) PARTITION BY RANGE (ts);

-- The unique key doubles as the per-machine time-range index; xid serves read_new_telemetry.
CREATE INDEX IF NOT EXISTS telemetry_xid_idx ON telemetry (xid);

-- 1-minute rollups per machine. TimescaleDB keeps a continuous aggregate; here a plain view
-- computed on read keeps the writer cheap and gives shared queries the same columns.
CREATE OR REPLACE VIEW telemetry_1m AS
SELECT
    site_id,
    machine_id,
    date_bin(INTERVAL '1 minute', ts, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
    count(*) AS samples,
    avg(speed_kmh) AS avg_speed_kmh,
    max(speed_kmh) AS max_speed_kmh,
    avg(payload_kg) AS avg_payload_kg,
    max(payload_kg) AS max_payload_kg,
    min(fuel_used_l) AS min_fuel_used_l,
    max(fuel_used_l) AS max_fuel_used_l,
    max(engine_hours) AS max_engine_hours,
    avg(lat) AS avg_lat,
    avg(lon) AS avg_lon
FROM telemetry
GROUP BY site_id, machine_id, bucket;
