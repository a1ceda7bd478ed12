#!/usr/bin/env bash
# TimescaleDB compiled to WebAssembly (PGlite + TimescaleDB 2.23) for the TimescaleDB contract tests.
#   bash scripts/timescaledb-wasm.sh install   # npm ci: exact versions and integrity hashes from the lock file
#   bash scripts/timescaledb-wasm.sh serve [--port 5439]   # a server by hand: psql "postgresql://postgres:x@127.0.0.1:5439/postgres?sslmode=disable"
# Without Node.js the install step says so and exits 0 (the tests then skip; in CI they fail).
set -euo pipefail
cd "$(dirname "$0")/../deploy/timescaledb-wasm"
case "${1:-install}" in
  install)
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
      echo "timescaledb-wasm: Node.js/npm not found; TimescaleDB contract tests will not run (install nodejs npm)"
      exit 0
    fi
    if [ -f node_modules/.package-lock.json ] && cmp -s package-lock.json node_modules/.sitepulse-lock; then
      exit 0  # already installed from this lock file
    fi
    npm ci --legacy-peer-deps --no-audit --no-fund --loglevel=error
    cp package-lock.json node_modules/.sitepulse-lock
    ;;
  serve)
    shift
    exec node server.mjs "$@"
    ;;
  *)
    echo "usage: $0 install|serve [--port N]" >&2
    exit 2
    ;;
esac
