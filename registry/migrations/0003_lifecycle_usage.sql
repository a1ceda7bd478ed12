-- The registry issue: lifecycle stages with an audit trail, usage events, the needs backlog,
-- customers of sites, sharing of contributed services.

-- Lifecycle: proposed -> prioritized -> developing -> pilot -> live -> retired (registry/lifecycle.py).
-- Free-text stages from before this migration: kept when they are a lifecycle stage, else a
-- switched-on service becomes 'pilot' (audited) and a switched-off one loses its stage.
CREATE TABLE IF NOT EXISTS service_stage_changes (
    id bigserial PRIMARY KEY,
    site_id text NOT NULL,
    service text NOT NULL,
    from_stage text,
    to_stage text NOT NULL,
    changed_by text NOT NULL,
    reason text NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS service_stage_changes_site ON service_stage_changes (site_id, service, changed_at);

INSERT INTO service_stage_changes (site_id, service, from_stage, to_stage, changed_by, reason)
SELECT site_id, service, stage, 'pilot', 'migration', 'the free-text stage became a lifecycle stage'
FROM service_enablement
WHERE enabled AND (stage IS NULL OR stage NOT IN ('proposed', 'prioritized', 'developing', 'pilot', 'live', 'retired'));

UPDATE service_enablement
SET stage = CASE WHEN enabled THEN 'pilot' END
WHERE stage IS NULL AND enabled
   OR stage NOT IN ('proposed', 'prioritized', 'developing', 'pilot', 'live', 'retired');

ALTER TABLE service_enablement
    ADD COLUMN IF NOT EXISTS enabled_by text,
    ADD CONSTRAINT service_enablement_stage_known
        CHECK (stage IS NULL OR stage IN ('proposed', 'prioritized', 'developing', 'pilot', 'live', 'retired')),
    ADD CONSTRAINT service_enablement_runs_in_pilot_or_live
        CHECK (NOT enabled OR stage IN ('pilot', 'live'));

-- Usage: one row per call of a service route, card rendered, export and alert acknowledgement.
-- Written in batches by registry/usage.py, off the request path. ``service`` is NULL for
-- site-wide events (e.g. a usage report export).
CREATE TABLE IF NOT EXISTS usage_events (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL,
    site_id text NOT NULL,
    service text,
    principal text NOT NULL,
    action text NOT NULL,
    detail jsonb
);
CREATE INDEX IF NOT EXISTS usage_events_site_at ON usage_events (site_id, at, id);
CREATE INDEX IF NOT EXISTS usage_events_service_site_at ON usage_events (service, site_id, at);

-- The needs backlog: what a customer needs in plain words; priority is value over effort.
CREATE TABLE IF NOT EXISTS needs (
    id bigserial PRIMARY KEY,
    site_id text NOT NULL,
    text text NOT NULL CHECK (length(btrim(text)) > 0),
    raised_by text NOT NULL,
    value_score integer NOT NULL CHECK (value_score BETWEEN 1 AND 10),
    effort integer NOT NULL CHECK (effort BETWEEN 1 AND 10),
    priority numeric(6, 3) GENERATED ALWAYS AS (round(value_score::numeric / effort, 3)) STORED,
    service text,
    status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'answered', 'dropped')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS needs_site_priority ON needs (site_id, priority DESC, id);

-- Which customer a site belongs to (the kernel's sites table stays as it is).
CREATE TABLE IF NOT EXISTS site_customers (
    site_id text PRIMARY KEY,
    customer text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS site_customers_customer ON site_customers (customer);

-- Co-creation: a service contributed by a customer is seen only by that customer's sites until shared.
CREATE TABLE IF NOT EXISTS service_sharing (
    service text PRIMARY KEY,
    contributed_by text,
    shared boolean NOT NULL DEFAULT false,
    shared_at timestamptz,
    shared_by text,
    updated_at timestamptz NOT NULL DEFAULT now()
);
