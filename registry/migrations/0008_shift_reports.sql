-- Scheduled shift and daily reports (registry/shift_reports): what is sent to whom, when, and how each delivery went.
CREATE TABLE IF NOT EXISTS report_schedules (
    id bigserial PRIMARY KEY,
    site_id text NOT NULL,
    name text NOT NULL CHECK (length(btrim(name)) > 0),
    trigger text NOT NULL CHECK (trigger IN ('shift_end', 'daily')),
    daily_at time,                                    -- local time (site time zone) of a daily report
    formats text[] NOT NULL DEFAULT '{pdf}',
    emails text[] NOT NULL DEFAULT '{}',
    webhook_url text,
    enabled boolean NOT NULL DEFAULT true,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    delivered_until timestamptz,                      -- end of the last period sent (or tried): the next starts after
    CHECK (trigger <> 'daily' OR daily_at IS NOT NULL)
);
CREATE INDEX IF NOT EXISTS report_schedules_site ON report_schedules (site_id, id);

-- One row per report sent to one recipient (an address or the webhook); never updated but for opens.
CREATE TABLE IF NOT EXISTS report_deliveries (
    id bigserial PRIMARY KEY,
    schedule_id bigint REFERENCES report_schedules (id) ON DELETE SET NULL,
    site_id text NOT NULL,
    period_start timestamptz NOT NULL,
    period_end timestamptz NOT NULL,
    label text NOT NULL,
    channel text NOT NULL CHECK (channel IN ('email', 'webhook')),
    target text NOT NULL,
    status text NOT NULL CHECK (status IN ('delivered', 'failed')),
    attempts integer NOT NULL,
    error text,
    at timestamptz NOT NULL DEFAULT now(),
    link_token text UNIQUE,                           -- the report's download link in the message (opens counted)
    services text[] NOT NULL DEFAULT '{}',            -- the services whose sections the report held
    opens integer NOT NULL DEFAULT 0,
    first_opened_at timestamptz
);
CREATE INDEX IF NOT EXISTS report_deliveries_site ON report_deliveries (site_id, at DESC, id DESC);
