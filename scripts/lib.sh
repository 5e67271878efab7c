# shellcheck shell=bash
# Helpers shared by the scripts in this folder. Source it; do not run it.
#
# Every ensure_* function is idempotent: it checks first and installs only what is missing.

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

# Installs Debian packages, running `apt-get update` once per script run, and only when
# something is about to be installed.
_apt_updated=""
apt_install() {
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    have sudo || die "need root (or sudo) to install: $*"
    sudo="sudo"
  fi
  have apt-get || die "apt-get not found; install these yourself: $*"
  log "installing $*"
  if [ -z "$_apt_updated" ]; then
    $sudo apt-get update -qq
    _apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@"
}

# Rust itself is a prerequisite; rustup installs often leave ~/.cargo/bin off a non-login PATH.
ensure_cargo() {
  if ! have cargo && [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
  fi
  have cargo || die "cargo not found: install Rust first (https://rustup.rs)"
}

# A C/C++ toolchain, make, cmake and pkg-config: some dependencies compile C code.
ensure_build_tools() {
  local missing=()
  have cc || missing+=(gcc)
  [ -e /usr/include/stdio.h ] || missing+=(libc6-dev)
  have make || missing+=(make)
  have pkg-config || missing+=(pkg-config)
  # librdkafka (bundled by rdkafka-sys) builds with these
  have cmake || missing+=(cmake)
  have g++ || missing+=(g++)
  if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}"
  fi
}

# The Kafka-compatible broker the tests and benchmarks run (tansu, from crates.io).
TANSU_VERSION=0.6.0

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_for_port() {
  local host=$1 port=$2 what=$3
  for _ in $(seq 1 100); do
    port_open "$host" "$port" && return 0
    sleep 0.2
  done
  die "$what did not start listening on $host:$port"
}

# --- web client (web/) ---------------------------------------------------------------------

# Node.js 20.19 or newer (what Vite 7 needs) with npm; installs Debian's when missing.
ensure_node() {
  if ! have node || ! have npm; then
    apt_install nodejs npm
  fi
  local major
  major=$(node -p 'process.versions.node.split(".")[0]')
  [ "$major" -ge 20 ] || die "Node.js $(node --version) is too old for the web client: install Node.js 20 or newer"
}

# web/node_modules as package-lock.json pins it: `npm ci` only when the lock file changed since
# the last install (npm's own cache under ~/.npm makes a reinstall cheap).
ensure_web_deps() {
  local stamp=web/node_modules/.aether-lock
  if [ -f "$stamp" ] && cmp -s web/package-lock.json "$stamp"; then
    return 0
  fi
  log "installing the web client's npm packages (web/package-lock.json)"
  (cd web && npm ci --no-audit --no-fund --loglevel=error)
  cp web/package-lock.json "$stamp"
}

# Debian's Chromium, for the web client's end-to-end test (playwright-core drives it).
ensure_chromium() {
  [ -x /usr/bin/chromium ] || apt_install chromium
}
