-- The newest track point of each machine, one row per machine, kept by statement triggers on
-- positioning.track: the live map (site-view card, /positions) and traffic-awareness's live queue read
-- this last-value table instead of looking each machine up in the track's index, which deepens as
-- history grows. Inserts (COPY included) keep a machine's newest point; a delete (the runner's replay
-- after late samples), an update or a truncate re-derive the machines they touched from the track.
CREATE TABLE IF NOT EXISTS positioning.track_last (
    site_id text NOT NULL,
    machine_id text NOT NULL,
    ts timestamptz NOT NULL,
    lat double precision,
    lon double precision,
    raw_lat double precision,
    raw_lon double precision,
    speed_kmh double precision,
    heading_deg double precision,
    state text NOT NULL,
    zone text,
    PRIMARY KEY (site_id, machine_id)
);

CREATE OR REPLACE FUNCTION positioning.track_last_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO positioning.track_last AS l (site_id, machine_id, ts, lat, lon, raw_lat, raw_lon, speed_kmh,
                                             heading_deg, state, zone)
    SELECT DISTINCT ON (site_id, machine_id) site_id, machine_id, ts, lat, lon, raw_lat, raw_lon, speed_kmh,
           heading_deg, state, zone
    FROM track_new ORDER BY site_id, machine_id, ts DESC
    ON CONFLICT (site_id, machine_id) DO UPDATE SET
        ts = EXCLUDED.ts, lat = EXCLUDED.lat, lon = EXCLUDED.lon, raw_lat = EXCLUDED.raw_lat,
        raw_lon = EXCLUDED.raw_lon, speed_kmh = EXCLUDED.speed_kmh, heading_deg = EXCLUDED.heading_deg,
        state = EXCLUDED.state, zone = EXCLUDED.zone
    WHERE EXCLUDED.ts >= l.ts;
    RETURN NULL;
END $$;

-- Re-derive the given machines' rows from the track (one index lookup each on track_machine_time).
CREATE OR REPLACE FUNCTION positioning.track_last_refresh(sites text[], machines text[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM positioning.track_last l
    USING unnest(sites, machines) AS m(site_id, machine_id)
    WHERE l.site_id = m.site_id AND l.machine_id = m.machine_id;
    INSERT INTO positioning.track_last (site_id, machine_id, ts, lat, lon, raw_lat, raw_lon, speed_kmh,
                                        heading_deg, state, zone)
    SELECT t.site_id, t.machine_id, t.ts, t.lat, t.lon, t.raw_lat, t.raw_lon, t.speed_kmh, t.heading_deg, t.state,
           t.zone
    FROM (SELECT DISTINCT site_id, machine_id FROM unnest(sites, machines) AS u(site_id, machine_id)) m
    CROSS JOIN LATERAL (
        SELECT * FROM positioning.track t WHERE t.site_id = m.site_id AND t.machine_id = m.machine_id
        ORDER BY t.ts DESC LIMIT 1) t;
END $$;

CREATE OR REPLACE FUNCTION positioning.track_last_delete() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    sites text[];
    machines text[];
BEGIN
    -- only machines whose current newest point was among the deleted rows need a new one
    SELECT array_agg(l.site_id), array_agg(l.machine_id) INTO sites, machines
    FROM positioning.track_last l
    WHERE EXISTS (SELECT 1 FROM track_old o WHERE o.site_id = l.site_id AND o.machine_id = l.machine_id
                  AND o.ts >= l.ts);
    IF sites IS NOT NULL THEN
        PERFORM positioning.track_last_refresh(sites, machines);
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION positioning.track_last_update() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    sites text[];
    machines text[];
BEGIN
    SELECT array_agg(site_id), array_agg(machine_id) INTO sites, machines
    FROM (SELECT site_id, machine_id FROM track_old UNION SELECT site_id, machine_id FROM track_new) touched;
    IF sites IS NOT NULL THEN
        PERFORM positioning.track_last_refresh(sites, machines);
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION positioning.track_last_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM positioning.track_last;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS track_last_insert ON positioning.track;
CREATE TRIGGER track_last_insert AFTER INSERT ON positioning.track REFERENCING NEW TABLE AS track_new
    FOR EACH STATEMENT EXECUTE FUNCTION positioning.track_last_insert();
DROP TRIGGER IF EXISTS track_last_delete ON positioning.track;
CREATE TRIGGER track_last_delete AFTER DELETE ON positioning.track REFERENCING OLD TABLE AS track_old
    FOR EACH STATEMENT EXECUTE FUNCTION positioning.track_last_delete();
DROP TRIGGER IF EXISTS track_last_update ON positioning.track;
CREATE TRIGGER track_last_update AFTER UPDATE ON positioning.track
    REFERENCING OLD TABLE AS track_old NEW TABLE AS track_new
    FOR EACH STATEMENT EXECUTE FUNCTION positioning.track_last_update();
DROP TRIGGER IF EXISTS track_last_truncate ON positioning.track;
CREATE TRIGGER track_last_truncate AFTER TRUNCATE ON positioning.track
    FOR EACH STATEMENT EXECUTE FUNCTION positioning.track_last_truncate();

-- Fill it once from what is already stored (a single pass over the track when upgrading a running site).
INSERT INTO positioning.track_last (site_id, machine_id, ts, lat, lon, raw_lat, raw_lon, speed_kmh, heading_deg,
                                    state, zone)
SELECT DISTINCT ON (site_id, machine_id) site_id, machine_id, ts, lat, lon, raw_lat, raw_lon, speed_kmh,
       heading_deg, state, zone
FROM positioning.track
ORDER BY site_id, machine_id, ts DESC
ON CONFLICT (site_id, machine_id) DO NOTHING;
