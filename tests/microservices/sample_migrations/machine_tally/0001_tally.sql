CREATE SCHEMA IF NOT EXISTS machine_tally;
CREATE TABLE IF NOT EXISTS machine_tally.tally (
    site_id text NOT NULL,
    run_seq bigint NOT NULL,
    machine_id text NOT NULL,
    samples bigint NOT NULL,
    missing_upstream bigint NOT NULL
);
