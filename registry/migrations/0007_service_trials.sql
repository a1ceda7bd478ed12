-- A trial: a service run over a site's recorded history before it is switched on (registry/trials.py).
-- Its rows live in the service's own tables under the shadow key '<site>@trial-<id>'; this is the record.
CREATE TABLE IF NOT EXISTS service_trials (
    id           bigserial PRIMARY KEY,
    site_id      text NOT NULL,
    service      text NOT NULL,
    period_from  timestamptz NOT NULL,
    period_to    timestamptz NOT NULL CHECK (period_to > period_from),
    status       text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done', 'failed')),
    error        text,
    requested_by text NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    progress_at  timestamptz,
    samples      bigint NOT NULL DEFAULT 0,
    found        jsonb NOT NULL DEFAULT '{}',
    alerts       jsonb NOT NULL DEFAULT '{}',
    examples     jsonb NOT NULL DEFAULT '[]',
    kpis         jsonb NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS service_trials_site ON service_trials (site_id, service, id);

-- 'trial' joins the lifecycle between developing and pilot (registry/lifecycle.py)
ALTER TABLE service_enablement DROP CONSTRAINT IF EXISTS service_enablement_stage_known;
ALTER TABLE service_enablement ADD CONSTRAINT service_enablement_stage_known
    CHECK (stage IS NULL OR stage IN ('proposed', 'prioritized', 'developing', 'trial', 'pilot', 'live', 'retired'));
