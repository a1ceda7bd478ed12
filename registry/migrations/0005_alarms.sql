-- Alarms as site managers know them from SCADA/IoT platforms, on the existing alerts table:
-- active -> acknowledged (with a comment) and/or cleared (the condition ended, or by hand), escalation when
-- nobody acknowledges in time, per-site notification rules, and an audit row for every state change.
-- registry/alarms.py supervises (auto-clear, notify, escalate); the triggers below audit every path.
ALTER TABLE service_alerts
    ADD COLUMN IF NOT EXISTS zone text GENERATED ALWAYS AS (data ->> 'zone') STORED,
    ADD COLUMN IF NOT EXISTS ack_comment text,
    ADD COLUMN IF NOT EXISTS cleared_at timestamptz,
    ADD COLUMN IF NOT EXISTS cleared_by text,
    ADD COLUMN IF NOT EXISTS clear_reason text,
    ADD COLUMN IF NOT EXISTS escalation_level integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS escalated_at timestamptz;

CREATE INDEX IF NOT EXISTS service_alerts_machine ON service_alerts (site_id, machine_id, created_at);
CREATE INDEX IF NOT EXISTS service_alerts_zone ON service_alerts (site_id, zone, created_at);
CREATE INDEX IF NOT EXISTS service_alerts_active ON service_alerts (created_at) WHERE cleared_at IS NULL;

-- The audit trail: one row per state change of an alarm (never updated, never deleted with the alarm).
CREATE TABLE IF NOT EXISTS alarm_events (
    id bigserial PRIMARY KEY,
    alert_id bigint NOT NULL,
    site_id text NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    action text NOT NULL CHECK (action IN ('raised', 'acknowledged', 'cleared', 'escalated', 'notified',
                                           'commented')),
    actor text NOT NULL,
    comment text,
    detail jsonb
);
CREATE INDEX IF NOT EXISTS alarm_events_alert ON alarm_events (alert_id, at, id);
CREATE INDEX IF NOT EXISTS alarm_events_site ON alarm_events (site_id, at, id);

-- Per-site notification rules: who hears of which alarms, and who is told when nobody acknowledged in time.
CREATE TABLE IF NOT EXISTS alarm_rules (
    id bigserial PRIMARY KEY,
    site_id text NOT NULL,
    name text NOT NULL CHECK (length(btrim(name)) > 0),
    min_level text NOT NULL CHECK (min_level IN ('info', 'warning', 'critical')),
    service text,                                     -- null: alarms of every service
    notify text NOT NULL,                             -- who is told when such an alarm is raised
    escalate_after_s integer CHECK (escalate_after_s > 0),
    escalate_to text,                                 -- who is told when it stays unacknowledged that long
    webhook_url text,                                 -- optional: each notification is POSTed here as JSON
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (site_id, name),
    CHECK ((escalate_after_s IS NULL) = (escalate_to IS NULL))
);

CREATE OR REPLACE FUNCTION service_alerts_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO alarm_events (alert_id, site_id, at, action, actor, detail)
        VALUES (NEW.id, NEW.site_id, NEW.created_at, 'raised', NEW.service,
                jsonb_build_object('level', NEW.level, 'key', NEW.key));
        RETURN NULL;
    END IF;
    IF OLD.acknowledged_at IS NULL AND NEW.acknowledged_at IS NOT NULL THEN
        INSERT INTO alarm_events (alert_id, site_id, at, action, actor, comment)
        VALUES (NEW.id, NEW.site_id, NEW.acknowledged_at, 'acknowledged', coalesce(NEW.acknowledged_by, 'unknown'),
                NEW.ack_comment);
    END IF;
    IF OLD.cleared_at IS NULL AND NEW.cleared_at IS NOT NULL THEN
        INSERT INTO alarm_events (alert_id, site_id, at, action, actor, comment)
        VALUES (NEW.id, NEW.site_id, greatest(NEW.cleared_at, NEW.created_at), 'cleared',
                coalesce(NEW.cleared_by, 'unknown'), NEW.clear_reason);
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS service_alerts_audit_insert ON service_alerts;
CREATE TRIGGER service_alerts_audit_insert AFTER INSERT ON service_alerts
    FOR EACH ROW EXECUTE FUNCTION service_alerts_audit();
DROP TRIGGER IF EXISTS service_alerts_audit_update ON service_alerts;
CREATE TRIGGER service_alerts_audit_update AFTER UPDATE OF acknowledged_at, cleared_at ON service_alerts
    FOR EACH ROW EXECUTE FUNCTION service_alerts_audit();

-- Alarms from before this migration: their history starts with what is known of them.
INSERT INTO alarm_events (alert_id, site_id, at, action, actor, detail)
SELECT id, site_id, created_at, 'raised', service, jsonb_build_object('level', level, 'key', key)
FROM service_alerts a WHERE NOT EXISTS (SELECT 1 FROM alarm_events e WHERE e.alert_id = a.id);
INSERT INTO alarm_events (alert_id, site_id, at, action, actor)
SELECT id, site_id, acknowledged_at, 'acknowledged', coalesce(acknowledged_by, 'unknown')
FROM service_alerts a WHERE acknowledged_at IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM alarm_events e WHERE e.alert_id = a.id AND e.action = 'acknowledged');
