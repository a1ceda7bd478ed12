-- The stage a site manager gave a service on a site (e.g. trial, adopted); the lifecycle
-- and its allowed values arrive with the registry issue, until then it is free text.
ALTER TABLE service_enablement ADD COLUMN IF NOT EXISTS stage text;
