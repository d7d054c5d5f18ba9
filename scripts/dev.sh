#!/usr/bin/env bash
# The playground in one command: install what is missing, build, and run
# `portcullis dev --postgres` (3 nodes, dev OIDC issuer, throwaway Postgres, demo policy).
# Extra arguments go to `portcullis dev`, e.g. `bash scripts/dev.sh --dir /tmp/pc`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then
  bash scripts/install-deps.sh
elif ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "Postgres is not installed; run: sudo bash scripts/install-deps.sh" >&2
  exit 1
fi
cargo build --release -p portcullis
exec ./target/release/portcullis dev --postgres "$@"
