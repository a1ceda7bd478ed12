-- A service schema for the TimescaleDB contract test: a plain table, as every service owns.
CREATE SCHEMA IF NOT EXISTS contract_loads;
CREATE TABLE IF NOT EXISTS contract_loads.loads (
    site_id text NOT NULL,
    run_seq bigint NOT NULL,
    machine_id text NOT NULL,
    ts timestamptz NOT NULL,
    seq bigint NOT NULL,
    payload_kg double precision,
    PRIMARY KEY (site_id, machine_id, ts, seq)
);
CREATE INDEX IF NOT EXISTS loads_run ON contract_loads.loads (site_id, run_seq);
