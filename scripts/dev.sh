#!/usr/bin/env bash
# scripts/dev.sh: builds AetherConnect and runs it in its embedded default (`aether dev`): every
# role in one process, SQLite files under ./data, GraphQL at http://127.0.0.1:8080/graphql.
#
# With Node.js present it first builds the web client (web/ into web/dist), which `aether dev`
# then serves at http://127.0.0.1:8080/; without Node.js it says so and serves only the API.
#
# Usage: bash scripts/dev.sh [aether dev options]    (see: bash scripts/dev.sh --help)
# Stop it with Ctrl+C; it shuts down gracefully.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

ensure_cargo
ensure_build_tools

if have node && have npm; then
  ensure_web_deps
  log "building the web client (web/dist)"
  (cd web && npm run --silent build)
else
  log "Node.js not found: skipping the web client; aether dev serves only the API (install Node.js 20+ for the client at /)"
fi

# The dev profile, not --release: a release build takes much longer on a small machine.
exec cargo run -p aether-cli --bin aether -- dev "$@"
