-- Telemetry on TimescaleDB: a hypertable with 1-day chunks, compression segmented by machine,
-- retention, and a continuous aggregate with 1-minute rollups per machine.
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
);

SELECT create_hypertable('telemetry', by_range('ts', INTERVAL '1 day'), if_not_exists => TRUE);

CREATE INDEX IF NOT EXISTS telemetry_xid_idx ON telemetry (xid);

ALTER TABLE telemetry SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'site_id, machine_id',
    timescaledb.compress_orderby = 'ts, seq'
);
SELECT add_compression_policy('telemetry', INTERVAL '7 days', if_not_exists => TRUE);
SELECT add_retention_policy('telemetry', INTERVAL '400 days', if_not_exists => TRUE);

CREATE MATERIALIZED VIEW IF NOT EXISTS telemetry_1m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT
    site_id,
    machine_id,
    time_bucket(INTERVAL '1 minute', ts) AS bucket,
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
GROUP BY site_id, machine_id, bucket
WITH NO DATA;

SELECT add_continuous_aggregate_policy('telemetry_1m',
    start_offset => INTERVAL '3 days',
    end_offset => INTERVAL '1 minute',
    schedule_interval => INTERVAL '1 minute',
    if_not_exists => TRUE);
