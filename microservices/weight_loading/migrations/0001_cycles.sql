-- weight-loading owns the schema weight_loading. Every table is append-only: the runner fills
-- site_id and run_seq and deletes rows by run_seq when it replays after late samples.
CREATE SCHEMA IF NOT EXISTS weight_loading;

-- One row per finished haul cycle of a hauler (load -> haul -> dump), written once the dump is confirmed.
CREATE TABLE IF NOT EXISTS weight_loading.cycles (
    site_id text NOT NULL,
    run_seq bigint NOT NULL,
    machine_id text NOT NULL,
    load_start timestamptz NOT NULL,       -- hauler stopped at the loader before the first pass
    loaded_at timestamptz NOT NULL,        -- last loader pass tipped
    haul_start timestamptz NOT NULL,       -- drove off loaded
    dump_start timestamptz NOT NULL,       -- payload starts to fall at the dump
    dumped_at timestamptz NOT NULL,        -- payload near empty
    payload_kg double precision NOT NULL,  -- settled payload (median at the end of loading / drive-off)
    rated_payload_kg double precision NOT NULL,
    payload_pct double precision NOT NULL,
    band text NOT NULL,                    -- under | target | over_110 | over_120
    passes integer NOT NULL,               -- loader passes counted from the hauler's payload steps
    load_s double precision,               -- load_start -> haul_start
    haul_s double precision,               -- haul_start -> dump_start (incl. queue at the dump)
    dump_s double precision,               -- dump_start -> dumped_at
    return_s double precision,             -- previous dumped_at -> load_start (null for the first)
    fuel_used_l double precision,          -- fuel counter load_start -> dumped_at
    fuel_return_l double precision,        -- fuel counter previous dumped_at -> load_start
    engine_hours double precision,         -- engine-hour counter load_start -> dumped_at
    load_lat double precision,             -- median position while loading (zone resolved by the route)
    load_lon double precision,
    dump_lat double precision,             -- median position while dumping
    dump_lon double precision,
    settle_samples integer                 -- readings behind payload_kg
);
CREATE INDEX IF NOT EXISTS cycles_site_run ON weight_loading.cycles (site_id, run_seq);
CREATE INDEX IF NOT EXISTS cycles_site_time ON weight_loading.cycles (site_id, dumped_at, machine_id);

-- Operating time and fuel per machine and clock hour (counter deltas), written once the hour is closed.
CREATE TABLE IF NOT EXISTS weight_loading.activity (
    site_id text NOT NULL,
    run_seq bigint NOT NULL,
    machine_id text NOT NULL,
    hour timestamptz NOT NULL,
    engine_hours double precision NOT NULL,
    fuel_l double precision NOT NULL,
    samples integer NOT NULL
);
CREATE INDEX IF NOT EXISTS activity_site_run ON weight_loading.activity (site_id, run_seq);
CREATE INDEX IF NOT EXISTS activity_site_hour ON weight_loading.activity (site_id, hour);

-- Machines whose payload cannot be judged (no rated payload, not registered): shown as a health note.
CREATE TABLE IF NOT EXISTS weight_loading.skipped_machines (
    site_id text NOT NULL,
    run_seq bigint NOT NULL,
    machine_id text NOT NULL,
    reason text NOT NULL,
    first_seen timestamptz
);
CREATE INDEX IF NOT EXISTS skipped_machines_site_run ON weight_loading.skipped_machines (site_id, run_seq);
