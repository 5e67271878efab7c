#!/usr/bin/env bash
# Starts a private, fresh tansu broker for one benchmark run, on loopback, beside the tests' own
# broker on 9092 (which it never touches). A fresh broker each run keeps one run's stored log from
# slowing the next.
#
#   bash bench/broker.sh [--release | --memory] [PORT]     # PORT defaults to 19092
#
# --release runs tansu built with cargo's release profile, installed once under
# .tools/tansu-release (about 20 minutes on 2 cores); without it, the debug build the tests use
# (scripts/test.sh installs it). --memory runs that release build (with its in-memory engine,
# feature dynostore) on `memory://`: nothing is kept across a restart, and the broker's own cost
# per message is the lowest available here, so a benchmark shows the product's ceiling. A broker already on PORT that this script started is stopped
# first, and its data deleted. The data lives in .tools/bench-broker-PORT/; the log is tansu.log
# there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

source scripts/lib.sh

profile=debug
engine=sqlite
if [ "${1:-}" = "--release" ]; then
  profile=release
  shift
elif [ "${1:-}" = "--memory" ]; then
  profile=release
  engine=memory
  shift
fi
port="${1:-19092}"
case "$port" in
  '' | *[!0-9]*) echo "broker.sh: the port must be a number, not '$port'" >&2; exit 2 ;;
esac
if [ "$port" = 9092 ]; then
  echo "broker.sh: 9092 is the tests' broker; pick another port" >&2
  exit 2
fi

if [ "$profile" = release ]; then
  root="$PWD/.tools/tansu-release"
  if ! "$root/bin/tansu" --version 2>/dev/null | grep -q "$TANSU_VERSION" \
    || [ ! -f "$root/dynostore" ]; then
    log "installing tansu $TANSU_VERSION with the release profile under $root (once)"
    CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
      CARGO_PROFILE_RELEASE_DEBUG=0 \
      cargo install tansu --version "$TANSU_VERSION" --locked --features libsql,dynostore \
      --root "$root" --force
    touch "$root/dynostore"
  fi
  tansu="$root/bin/tansu"
else
  tansu="$(command -v tansu || true)"
  if [ -z "$tansu" ]; then
    echo "broker.sh: no tansu on PATH; run 'bash scripts/test.sh --services' first, or pass --release" >&2
    exit 1
  fi
fi

dir="$PWD/.tools/bench-broker-$port"
if [ -f "$dir/pid" ]; then
  old="$(cat "$dir/pid")"
  if kill -0 "$old" 2>/dev/null; then
    log "stopping the previous benchmark broker on $port (pid $old)"
    kill "$old"
    for _ in $(seq 1 50); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$old" 2>/dev/null || true
  fi
fi
if port_open 127.0.0.1 "$port"; then
  echo "broker.sh: something this script did not start listens on 127.0.0.1:$port" >&2
  exit 1
fi
rm -rf "$dir"
mkdir -p "$dir"
(
  cd "$dir"
  nohup "$tansu" broker \
    --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine "$([ "$engine" = memory ] && echo memory://tansu/ || echo sqlite://tansu.db)" \
    >tansu.log 2>&1 &
  echo $! >pid
)
wait_for_port 127.0.0.1 "$port" "tansu ($profile, $engine)"
if [ "$engine" = memory ]; then
  log "tansu ($profile, in memory) on 127.0.0.1:$port, pid $(cat "$dir/pid")"
  exit 0
fi
# The header index scripts/test.sh adds to the tests' broker (tansu 0.6 scans every stored
# header for each fetched record without it). The table exists once the broker has started.
python3 - "$dir/tansu.db" <<'PY'
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=30)
for _ in range(50):
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'header'").fetchone():
        break
    time.sleep(0.1)
db.execute("CREATE INDEX IF NOT EXISTS header_by_record ON header (topition, offset_id)")
db.commit()
PY
log "tansu ($profile) on 127.0.0.1:$port, pid $(cat "$dir/pid"), data in $dir"
