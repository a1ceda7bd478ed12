-- The positioning service's own schema. Every table is append-only: the runner fills site_id and
-- run_seq and deletes rows by run_seq when it replays after late samples.
CREATE SCHEMA IF NOT EXISTS positioning;

-- One cleaned position per machine per track interval (default 5 s), with the raw fix it came from.
CREATE TABLE IF NOT EXISTS positioning.track (
    site_id text NOT NULL,
    run_seq bigint NOT NULL,
    machine_id text NOT NULL,
    ts timestamptz NOT NULL,
    lat double precision,            -- cleaned (jumps rejected, smoothed, carried through short gaps)
    lon double precision,
    raw_lat double precision,        -- as the device reported it
    raw_lon double precision,
    x_m double precision,            -- cleaned, metres east of the site's local origin
    y_m double precision,            -- metres north
    speed_kmh double precision,
    heading_deg double precision,
    state text NOT NULL,             -- moving | idle | off
    zone text,                       -- highest-priority zone containing the cleaned position
    jump boolean NOT NULL,           -- the raw fix was rejected as a GNSS jump
    carried boolean NOT NULL         -- the position is the last good fix carried through a gap
);
CREATE INDEX IF NOT EXISTS track_run ON positioning.track (site_id, run_seq);
CREATE INDEX IF NOT EXISTS track_time ON positioning.track (site_id, ts);
CREATE INDEX IF NOT EXISTS track_machine_time ON positioning.track (site_id, machine_id, ts DESC);

-- Increments of exact integer sums per machine and minute (sum them: a minute may have several rows).
CREATE TABLE IF NOT EXISTS positioning.activity (
    site_id text NOT NULL,
    run_seq bigint NOT NULL,
    machine_id text NOT NULL,
    minute timestamptz NOT NULL,
    shift_date date NOT NULL,        -- the shift's start date in the site's time zone
    shift text NOT NULL,             -- shift name from the site file ('' outside every shift)
    distance_mm bigint NOT NULL,
    moving_ms bigint NOT NULL,
    idle_ms bigint NOT NULL,         -- engine on, not moving
    off_ms bigint NOT NULL,          -- engine off
    load_ms bigint NOT NULL,
    dump_ms bigint NOT NULL,
    road_ms bigint NOT NULL,
    parking_ms bigint NOT NULL,
    restricted_ms bigint NOT NULL,
    workshop_ms bigint NOT NULL,
    none_ms bigint NOT NULL,         -- in no zone
    samples bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS activity_run ON positioning.activity (site_id, run_seq);
CREATE INDEX IF NOT EXISTS activity_minute ON positioning.activity (site_id, minute);
CREATE INDEX IF NOT EXISTS activity_shift ON positioning.activity (site_id, shift_date, shift);

-- A zone entry as soon as it is confirmed (minimum dwell inside); visits not yet closed show as open.
CREATE TABLE IF NOT EXISTS positioning.zone_entries (
    site_id text NOT NULL,
    run_seq bigint NOT NULL,
    machine_id text NOT NULL,
    zone text NOT NULL,
    zone_type text NOT NULL,
    entered_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS zone_entries_run ON positioning.zone_entries (site_id, run_seq);
CREATE INDEX IF NOT EXISTS zone_entries_time ON positioning.zone_entries (site_id, entered_at);

-- A zone visit once its exit is confirmed (minimum dwell outside the polygon grown by the border margin).
CREATE TABLE IF NOT EXISTS positioning.zone_visits (
    site_id text NOT NULL,
    run_seq bigint NOT NULL,
    machine_id text NOT NULL,
    zone text NOT NULL,
    zone_type text NOT NULL,
    entered_at timestamptz NOT NULL,
    left_at timestamptz NOT NULL,
    dwell_s double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS zone_visits_run ON positioning.zone_visits (site_id, run_seq);
CREATE INDEX IF NOT EXISTS zone_visits_time ON positioning.zone_visits (site_id, entered_at);

-- Speeding episodes against the lowest applicable zone or haul-road limit.
CREATE TABLE IF NOT EXISTS positioning.speeding (
    site_id text NOT NULL,
    run_seq bigint NOT NULL,
    machine_id text NOT NULL,
    zone text,                       -- the zone or road whose limit applied when the episode started
    started_at timestamptz NOT NULL,
    ended_at timestamptz NOT NULL,
    duration_s double precision NOT NULL,
    max_speed_kmh double precision NOT NULL,
    limit_kmh double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS speeding_run ON positioning.speeding (site_id, run_seq);
CREATE INDEX IF NOT EXISTS speeding_time ON positioning.speeding (site_id, started_at);
