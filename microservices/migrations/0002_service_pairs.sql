-- Each (service, site) pair as the runners' unit of work (microservices/pairs.py): which runner holds it
-- and until when (a lease renewed while a step runs, free again soon after its runner dies), when it is next
-- due (at once when telemetry or a dependency's progress waits for it), and its own health and back-off.
CREATE TABLE IF NOT EXISTS service_pairs (
    service text NOT NULL,
    site_id text NOT NULL,
    runner text,                      -- host:pid:nonce of the runner holding the lease
    lease_until timestamptz,
    due_at timestamptz NOT NULL DEFAULT '1970-01-01 00:00:00+00',   -- look at it from then on (now: telemetry waits)
    retry_at timestamptz NOT NULL DEFAULT '1970-01-01 00:00:00+00',
    status text NOT NULL DEFAULT 'starting',
    failures integer NOT NULL DEFAULT 0,
    last_error text,
    last_error_at timestamptz,
    last_success_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (service, site_id)
);
CREATE INDEX IF NOT EXISTS service_pairs_due ON service_pairs (due_at);
