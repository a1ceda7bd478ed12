-- The machine registry: filled from site files and devices' retained birth/status messages.
CREATE TABLE IF NOT EXISTS machines (
    site_id text NOT NULL,
    machine_id text NOT NULL,
    kind text NOT NULL DEFAULT 'other',
    model text NOT NULL DEFAULT '',
    rated_payload_kg double precision,
    attributes jsonb NOT NULL DEFAULT '{}'::jsonb,
    status text,
    status_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, machine_id)
);
