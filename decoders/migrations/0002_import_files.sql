-- Files brought in by `sitepulse import` (decoders/history): how far each one is, saved after the rows it counts
-- have committed, so an interrupted import resumes there (rows stored twice are impossible anyway: ON CONFLICT).
CREATE TABLE IF NOT EXISTS import_files (
    site_id text NOT NULL,
    file_key text NOT NULL,          -- digest of the file's size, first and last MiB, and the mapping's text
    path text NOT NULL,
    rows_done bigint NOT NULL DEFAULT 0,
    stored bigint NOT NULL DEFAULT 0,
    duplicates bigint NOT NULL DEFAULT 0,
    rejected bigint NOT NULL DEFAULT 0,
    started_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    PRIMARY KEY (site_id, file_key)
);
