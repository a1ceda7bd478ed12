CREATE SCHEMA IF NOT EXISTS running_count;
CREATE TABLE IF NOT EXISTS running_count.samples (
    site_id text NOT NULL,
    run_seq bigint NOT NULL,
    machine_id text NOT NULL,
    ts timestamptz NOT NULL,
    seq bigint NOT NULL,
    n bigint NOT NULL,
    cum_payload double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS samples_run ON running_count.samples (site_id, run_seq);
