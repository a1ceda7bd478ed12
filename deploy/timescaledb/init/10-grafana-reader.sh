#!/bin/sh
# First start of the database volume only: a read-only role for Grafana's TimescaleDB datasource.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v pw="$GRAFANA_DB_PASSWORD" <<'SQL'
CREATE ROLE grafana_reader LOGIN PASSWORD :'pw';
GRANT CONNECT ON DATABASE sitepulse TO grafana_reader;
GRANT pg_read_all_data TO grafana_reader;
SQL
