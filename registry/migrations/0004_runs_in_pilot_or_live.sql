-- 0003's CHECK (an enabled service has stage pilot or live) refused every writer that switches a
-- service on without naming a stage (runner tests, scripts). Replace it with a trigger that keeps
-- the rule for them: switched on without a stage means pilot; a non-running stage is refused.
-- registry/enablement.py keeps the same rule, and audits it, for the API and the CLI.
ALTER TABLE service_enablement DROP CONSTRAINT IF EXISTS service_enablement_runs_in_pilot_or_live;

CREATE OR REPLACE FUNCTION service_enablement_runs_in_pilot_or_live() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.enabled AND NEW.stage IS NULL THEN
        NEW.stage := 'pilot';
    ELSIF NEW.enabled AND NEW.stage NOT IN ('pilot', 'live') THEN
        RAISE EXCEPTION 'service % cannot run on site % at stage %: only at pilot or live',
            NEW.service, NEW.site_id, NEW.stage USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS service_enablement_runs_in_pilot_or_live ON service_enablement;
CREATE TRIGGER service_enablement_runs_in_pilot_or_live BEFORE INSERT OR UPDATE ON service_enablement
    FOR EACH ROW EXECUTE FUNCTION service_enablement_runs_in_pilot_or_live();
