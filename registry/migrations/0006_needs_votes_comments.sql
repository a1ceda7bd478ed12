-- The needs backlog as a shared conversation: people vote for a need and comment on it, and every change of
-- a need (raised, re-scored, linked to a service, answered or dropped, voted, commented) is audited.
ALTER TABLE needs ADD COLUMN IF NOT EXISTS updated_by text;

CREATE TABLE IF NOT EXISTS need_votes (
    need_id bigint NOT NULL REFERENCES needs (id) ON DELETE CASCADE,
    principal text NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (need_id, principal)
);

CREATE TABLE IF NOT EXISTS need_comments (
    id bigserial PRIMARY KEY,
    need_id bigint NOT NULL REFERENCES needs (id) ON DELETE CASCADE,
    author text NOT NULL,
    text text NOT NULL CHECK (length(btrim(text)) > 0),
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS need_comments_need ON need_comments (need_id, at, id);

-- The audit trail (kept when a need is deleted: no foreign key).
CREATE TABLE IF NOT EXISTS need_changes (
    id bigserial PRIMARY KEY,
    need_id bigint NOT NULL,
    site_id text NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    actor text NOT NULL,
    action text NOT NULL CHECK (action IN ('raised', 'changed', 'voted', 'unvoted', 'commented')),
    detail jsonb
);
CREATE INDEX IF NOT EXISTS need_changes_need ON need_changes (need_id, at, id);

CREATE OR REPLACE FUNCTION needs_audit() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed jsonb := '{}'::jsonb;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO need_changes (need_id, site_id, at, actor, action, detail)
        VALUES (NEW.id, NEW.site_id, NEW.created_at, NEW.raised_by, 'raised',
                jsonb_build_object('value_score', NEW.value_score, 'effort', NEW.effort, 'service', NEW.service));
        RETURN NULL;
    END IF;
    IF NEW.value_score IS DISTINCT FROM OLD.value_score THEN
        changed := changed || jsonb_build_object('value_score', jsonb_build_array(OLD.value_score, NEW.value_score));
    END IF;
    IF NEW.effort IS DISTINCT FROM OLD.effort THEN
        changed := changed || jsonb_build_object('effort', jsonb_build_array(OLD.effort, NEW.effort));
    END IF;
    IF NEW.service IS DISTINCT FROM OLD.service THEN
        changed := changed || jsonb_build_object('service', jsonb_build_array(OLD.service, NEW.service));
    END IF;
    IF NEW.status IS DISTINCT FROM OLD.status THEN
        changed := changed || jsonb_build_object('status', jsonb_build_array(OLD.status, NEW.status));
    END IF;
    IF changed <> '{}'::jsonb THEN
        INSERT INTO need_changes (need_id, site_id, actor, action, detail)
        VALUES (NEW.id, NEW.site_id, coalesce(NEW.updated_by, 'unknown'), 'changed', changed);
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS needs_audit ON needs;
CREATE TRIGGER needs_audit AFTER INSERT OR UPDATE ON needs FOR EACH ROW EXECUTE FUNCTION needs_audit();

CREATE OR REPLACE FUNCTION need_votes_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO need_changes (need_id, site_id, at, actor, action)
        SELECT NEW.need_id, n.site_id, NEW.at, NEW.principal, 'voted' FROM needs n WHERE n.id = NEW.need_id;
    ELSE
        INSERT INTO need_changes (need_id, site_id, actor, action)
        SELECT OLD.need_id, n.site_id, OLD.principal, 'unvoted' FROM needs n WHERE n.id = OLD.need_id;
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS need_votes_audit ON need_votes;
CREATE TRIGGER need_votes_audit AFTER INSERT OR DELETE ON need_votes FOR EACH ROW EXECUTE FUNCTION need_votes_audit();

CREATE OR REPLACE FUNCTION need_comments_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO need_changes (need_id, site_id, at, actor, action, detail)
    SELECT NEW.need_id, n.site_id, NEW.at, NEW.author, 'commented', jsonb_build_object('comment_id', NEW.id)
    FROM needs n WHERE n.id = NEW.need_id;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS need_comments_audit ON need_comments;
CREATE TRIGGER need_comments_audit AFTER INSERT ON need_comments FOR EACH ROW EXECUTE FUNCTION need_comments_audit();

-- Needs from before this migration: their history starts with the raise.
INSERT INTO need_changes (need_id, site_id, at, actor, action, detail)
SELECT id, site_id, created_at, raised_by, 'raised',
       jsonb_build_object('value_score', value_score, 'effort', effort, 'service', service)
FROM needs n WHERE NOT EXISTS (SELECT 1 FROM need_changes c WHERE c.need_id = n.id);
