-- Rejected input, kept with its reason; and each worker's counters for /metrics.
CREATE TABLE IF NOT EXISTS ingest_rejects (
    id bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    topic text NOT NULL,
    payload bytea NOT NULL,
    reason text NOT NULL,
    site_id text,
    machine_id text,
    -- sha256 of (topic, payload, reason): a re-delivered reject is stored once
    digest bytea NOT NULL UNIQUE
);
CREATE INDEX IF NOT EXISTS ingest_rejects_received_idx ON ingest_rejects (received_at);
CREATE INDEX IF NOT EXISTS ingest_rejects_machine_idx ON ingest_rejects (site_id, machine_id, received_at);

CREATE TABLE IF NOT EXISTS ingest_worker_stats (
    worker_id text PRIMARY KEY,
    host text NOT NULL,
    pid integer NOT NULL,
    started_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    counters jsonb NOT NULL DEFAULT '{}'::jsonb
);
