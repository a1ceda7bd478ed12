-- The traffic-awareness service's own schema. Every table is append-only: the runner fills site_id
-- and run_seq and deletes rows by run_seq when it replays after late samples.
CREATE SCHEMA IF NOT EXISTS traffic_awareness;

-- One row per close encounter between two machines, written once no later moment can join it.
CREATE TABLE IF NOT EXISTS traffic_awareness.encounters (
    site_id text NOT NULL,
    run_seq bigint NOT NULL,
    machine_a text NOT NULL,                 -- the pair, sorted
    machine_b text NOT NULL,
    started_at timestamptz NOT NULL,         -- first flagged instant
    ended_at timestamptz NOT NULL,           -- last flagged instant
    at timestamptz NOT NULL,                 -- instant of the minimum distance
    min_distance_m double precision NOT NULL,
    min_ttc_s double precision,              -- null: never on a collision course (e.g. passing close)
    max_closing_kmh double precision,        -- highest speed at which the distance shrank
    level text NOT NULL,                     -- warning | critical (the highest reached)
    lat double precision,                    -- midpoint of the pair at the closest instant
    lon double precision,
    zone text                                -- zone at that point (highest priority), if any
);
CREATE INDEX IF NOT EXISTS encounters_site_run ON traffic_awareness.encounters (site_id, run_seq);
CREATE INDEX IF NOT EXISTS encounters_site_time ON traffic_awareness.encounters (site_id, at, machine_a, machine_b);

-- A hauler waiting at a load or dump zone before the stop at which it was served (waits >= queue_min_s).
CREATE TABLE IF NOT EXISTS traffic_awareness.queues (
    site_id text NOT NULL,
    run_seq bigint NOT NULL,
    machine_id text NOT NULL,
    zone text NOT NULL,
    zone_type text NOT NULL,                 -- load | dump
    queued_from timestamptz NOT NULL,        -- first stop near the zone
    queued_to timestamptz NOT NULL,          -- drove off to the spot where it was served
    wait_s double precision NOT NULL,
    shift_date date NOT NULL,
    shift text NOT NULL
);
CREATE INDEX IF NOT EXISTS queues_site_run ON traffic_awareness.queues (site_id, run_seq);
CREATE INDEX IF NOT EXISTS queues_site_time ON traffic_awareness.queues (site_id, queued_from, machine_id);

-- Every stay of a hauler at a load or dump zone with its service stop (loading or tipping): the basis of
-- loader idle time, service times and the re-allocation recommendation.
CREATE TABLE IF NOT EXISTS traffic_awareness.services (
    site_id text NOT NULL,
    run_seq bigint NOT NULL,
    machine_id text NOT NULL,
    zone text NOT NULL,
    zone_type text NOT NULL,
    arrived_at timestamptz NOT NULL,         -- came within queue_approach_m of the zone
    served_from timestamptz NOT NULL,        -- stopped at its spot
    served_to timestamptz NOT NULL,          -- drove off
    left_at timestamptz NOT NULL,            -- beyond queue_approach_m again
    service_s double precision NOT NULL,
    shift_date date NOT NULL,
    shift text NOT NULL
);
CREATE INDEX IF NOT EXISTS services_site_run ON traffic_awareness.services (site_id, run_seq);
CREATE INDEX IF NOT EXISTS services_site_time ON traffic_awareness.services (site_id, served_from, machine_id);

-- Increments per road segment, minute and machine (sum them: one minute may have several rows).
CREATE TABLE IF NOT EXISTS traffic_awareness.segment_use (
    site_id text NOT NULL,
    run_seq bigint NOT NULL,
    segment text NOT NULL,                   -- '<path id>#<n>' (n-th piece from the path's start) or a road zone id
    minute timestamptz NOT NULL,
    machine_id text NOT NULL,
    samples bigint NOT NULL,
    speed_sum_kmh double precision NOT NULL, -- sum of reported speeds (mean = speed_sum_kmh / samples)
    dwell_ms bigint NOT NULL                 -- time on the segment (interval since the machine's previous sample)
);
CREATE INDEX IF NOT EXISTS segment_use_site_run ON traffic_awareness.segment_use (site_id, run_seq);
CREATE INDEX IF NOT EXISTS segment_use_site_minute ON traffic_awareness.segment_use (site_id, minute, segment);
