CREATE SCHEMA IF NOT EXISTS machines_per_bucket;
CREATE TABLE IF NOT EXISTS machines_per_bucket.buckets (
    site_id text NOT NULL,
    run_seq bigint NOT NULL,
    bucket timestamptz NOT NULL,
    machines integer NOT NULL
);
