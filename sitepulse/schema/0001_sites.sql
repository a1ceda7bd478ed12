-- Sites and their configuration (the site file, validated and stored as canonical JSON).
CREATE TABLE IF NOT EXISTS sites (
    site_id text PRIMARY KEY,
    name text NOT NULL DEFAULT '',
    config jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
