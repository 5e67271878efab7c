#!/usr/bin/env bash
# Installs the Node.js peer servers' packages (pinned in package-lock.json) for
# `aether-bench realtime`. Needs node and npm (Debian: `apt-get install nodejs npm`); does nothing
# when they are already installed.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "node and npm are needed: apt-get install -y nodejs npm" >&2
  exit 1
fi
if [ -d node_modules/socket.io ] && [ -d node_modules/graphql-ws ] && [ node_modules/.package-lock.json -nt package-lock.json ]; then
  echo "peer servers' packages already installed"
  exit 0
fi
npm ci --no-audit --no-fund
