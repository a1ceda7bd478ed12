-- The runner's own tables: which service runs for which site, its checkpoints and
-- snapshots (for replay after late samples), its health, and the alerts it raised.
CREATE TABLE IF NOT EXISTS service_enablement (
    site_id text NOT NULL,
    service text NOT NULL,
    enabled boolean NOT NULL DEFAULT false,
    settings jsonb NOT NULL DEFAULT '{}'::jsonb,
    enabled_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, service)
);

CREATE TABLE IF NOT EXISTS service_checkpoints (
    service text NOT NULL,
    site_id text NOT NULL,
    seq bigint NOT NULL DEFAULT 0,
    watermark text,  -- ingest.reader.Watermark as JSON
    processed_until jsonb NOT NULL DEFAULT '{}'::jsonb,
    state jsonb NOT NULL DEFAULT '{}'::jsonb,
    rows_processed bigint NOT NULL DEFAULT 0,
    replays bigint NOT NULL DEFAULT 0,
    data_until timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (service, site_id)
);

CREATE TABLE IF NOT EXISTS service_snapshots (
    service text NOT NULL,
    site_id text NOT NULL,
    seq bigint NOT NULL,
    processed_until jsonb NOT NULL,
    state jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (service, site_id, seq)
);

CREATE TABLE IF NOT EXISTS service_health (
    service text PRIMARY KEY,
    status text NOT NULL DEFAULT 'starting',
    failures integer NOT NULL DEFAULT 0,
    last_error text,
    last_error_at timestamptz,
    last_success_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS service_alerts (
    id bigserial PRIMARY KEY,
    site_id text NOT NULL,
    service text NOT NULL,
    key text NOT NULL,
    level text NOT NULL,
    at timestamptz,
    machine_id text,
    message text NOT NULL,
    data jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    acknowledged_at timestamptz,
    acknowledged_by text,
    UNIQUE (site_id, service, key)
);
CREATE INDEX IF NOT EXISTS service_alerts_open ON service_alerts (site_id, created_at) WHERE acknowledged_at IS NULL;
