-- Every stored site file is a numbered version (issue 33): an upload, zones drawn on the map or a restore each
-- add one, with who made it and what changed in the zones; the current one stays in sites.config, which the
-- services read, so they pick up a new version from their next batch on and nothing computed is rewritten.
CREATE TABLE IF NOT EXISTS site_versions (
    site_id text NOT NULL REFERENCES sites (site_id) ON DELETE CASCADE,
    version integer NOT NULL,
    name text NOT NULL DEFAULT '',
    config jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL DEFAULT '',
    source text NOT NULL CHECK (source IN ('upload', 'drawing', 'restore')),
    note text,
    changes jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (site_id, version)
);

ALTER TABLE sites ADD COLUMN IF NOT EXISTS version integer NOT NULL DEFAULT 1;

-- the sites stored before versions existed become their version 1
INSERT INTO site_versions (site_id, version, name, config, created_at, source, note)
SELECT site_id, 1, name, config, updated_at, 'upload', 'stored before site versions were kept' FROM sites
ON CONFLICT DO NOTHING;
