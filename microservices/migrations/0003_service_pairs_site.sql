-- A runner claiming a pair looks for other runners' leases on the same site (microservices/pairs.py CLAIM_SQL).
CREATE INDEX IF NOT EXISTS service_pairs_site ON service_pairs (site_id);
