#!/usr/bin/env bash
# Install TimescaleDB 2.23.1 into Debian's PostgreSQL 15 for the TimescaleDB test tier and benchmarks.
#
# Built from the source bundled in ../shared/timescaledb with deploy/timescaledb/scheduler-portal.patch:
# current PostgreSQL 15 minors refuse to drop a portal left in PORTAL_NEW, and 2.23.1's background job
# runner does exactly that, so every policy the scheduler starts fails ("cannot drop portal "" while it
# is being set up"). The prebuilt archive has that bug and needs PostgreSQL 15.20's symbols, so it is not
# used. Server, headers and build tools come from apt-get; several minutes on 2 cores, once: a stamp
# beside the library records the patch it was built with.
# Without root or apt-get it says so and exits 0: the tier then skips (CI=true makes that a failure).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
shared="${SITEPULSE_SHARED_DIR:-$root/../shared}/timescaledb"
version=2.23.1
major=15
patch="$root/deploy/timescaledb/scheduler-portal.patch"
libdir="/usr/lib/postgresql/$major/lib"
stamp="$libdir/timescaledb-$version.sitepulse"
say() { echo "timescaledb: $*" >&2; }

want="$(sha256sum "$patch" | cut -c1-16)"
if [ -f "$libdir/timescaledb-$version.so" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  echo "timescaledb $version (patched $want) already installed for PostgreSQL $major"
  exit 0
fi
if [ ! -f "$shared/timescaledb-$version-src.tar.gz" ]; then
  say "no source archive in $shared; the TimescaleDB tier will not run"
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  say "building needs root and apt-get; the TimescaleDB tier will not run"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
say "installing PostgreSQL $major, its server headers and the build tools with apt-get"
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "postgresql-$major" "postgresql-server-dev-$major" cmake gcc make \
  libssl-dev >/dev/null
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
tar xzf "$shared/timescaledb-$version-src.tar.gz" -C "$work"
cd "$work/timescaledb-$version"
patch -p1 --quiet < "$patch"
say "building $version with $(basename "$patch") (a few minutes)"
./bootstrap -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF -DSEND_TELEMETRY_DEFAULT=NO \
  -DPG_CONFIG="/usr/lib/postgresql/$major/bin/pg_config" >/dev/null
make -C build -j"$(nproc)" >/dev/null
make -C build install >/dev/null
echo "$want" > "$stamp"
echo "timescaledb $version built with $(basename "$patch") and installed for PostgreSQL $major"
