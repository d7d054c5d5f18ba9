#!/usr/bin/env bash
# Install what a fresh Debian machine lacks for building, the playground and the tests:
# Debian packages (Postgres, libclang for pg_query, pgbouncer for benchmarks, haproxy for
# the load-balancer tests and deploy checks, OpenSSH and sshpass for the SSH door) and the npm
# packages of the test OIDC provider. Safe to run again: installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

# Debian packages the build and the black-box tests need (iproute2 and iptables: the
# chaos harness puts nodes in network namespaces and cuts links with iptables;
# openssh-server: the playground's throwaway sshd behind `dev --ssh`; openssh-client
# (ssh, scp, sftp, ssh-keygen) and sshpass: the SSH tests' clients, which send a token
# as the password; curl: the HTTP tests' client, through the HTTP door and straight at
# the playground's demo API; chromium and chromium-driver: the web console's browser test
# (tests/tests/console_browser.rs) drives headless Chromium through WebDriver;
# libnss3-tools: its certutil puts the test cluster's CA in a throwaway NSS database, so
# the browser trusts the console's certificate instead of ignoring certificate errors).
packages=(build-essential pkg-config curl ca-certificates procps iproute2 iptables postgresql postgresql-contrib libclang-dev pgbouncer haproxy openssl libpostgresql-jdbc-java openssh-server openssh-client sshpass xauth chromium chromium-driver libnss3-tools)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# scripts/validate-deploy.sh installs its pinned validators from PyPI into a venv: it needs
# python3 with venv and pip (on Debian: python3-venv); a machine whose python3 already
# makes venvs (e.g. a pyenv build) is left alone.
venv_probe="$(mktemp -d)"
if ! python3 -m venv "$venv_probe/v" >/dev/null 2>&1; then
  echo "installing: python3 python3-venv python3-pip"
  apt-get update -q
  apt-get install -y -q --no-install-recommends python3 python3-venv python3-pip
fi
rm -rf "$venv_probe"

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: this project needs the machine's Rust toolchain" >&2
  exit 1
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

# npm: the black-box tests run a real third-party OIDC provider, node `oidc-provider` 9
# (tests/oidc). It needs Node 20.18 or later (it calls crypto.hash and URL.parse; it
# warns that it wants 22). The machine image ships Node 20; Debian's own nodejs is
# installed only when node is missing altogether (only Debian's packages and the npm
# registry are reachable here, so there is no other source to fall back on).
node_ok() {
  node -e 'process.exit(typeof require("node:crypto").hash === "function" && typeof URL.parse === "function" ? 0 : 1)' \
    >/dev/null 2>&1
}
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "installing: nodejs npm"
  apt-get update -q
  apt-get install -y -q --no-install-recommends nodejs npm
fi
if ! node_ok; then
  echo "node $(node --version 2>/dev/null || echo missing) cannot run oidc-provider 9 (needs Node >= 20.18: crypto.hash, URL.parse)" >&2
  exit 1
fi
echo "node $(node --version), npm $(npm --version)"
(cd tests/oidc && npm ci --no-audit --no-fund)

# The web console's browser assets (htmx, its SSE extension, asciinema-player), pinned with
# their integrity in node/assets/vendor.lock: each tarball comes from the npm registry
# (`npm pack`), is checked against its pinned sha512 before anything is extracted, and the
# named file lands in node/assets/vendor/ for node/build.rs to embed (rebuild afterwards).
# Fetched again only when the lock changes or a file is missing.
vendor=node/assets/vendor
lock_sum="$(sha256sum node/assets/vendor.lock | cut -d' ' -f1)"
vendor_ok=1
[ "$(cat "$vendor/.portcullis-lock" 2>/dev/null)" = "$lock_sum" ] || vendor_ok=0
while read -r key pkg version integrity file served; do
  [ -f "$vendor/$served" ] || vendor_ok=0
done < <(grep -v '^#' node/assets/vendor.lock | grep -v '^[[:space:]]*$')
if [ "$vendor_ok" -eq 0 ]; then
  echo "fetching the console's browser assets (node/assets/vendor.lock) into $vendor"
  packs="$(mktemp -d)"
  mkdir -p "$vendor"
  while read -r key pkg version integrity file served; do
    tgz="$packs/$pkg-$version.tgz"
    if [ ! -f "$tgz" ]; then
      name="$(cd "$packs" && npm pack --silent "$pkg@$version" | tail -n 1)"
      [ "$packs/$name" = "$tgz" ] || mv "$packs/$name" "$tgz"
    fi
    got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
    if [ "$got" != "$integrity" ]; then
      echo "$pkg@$version: tarball integrity $got, but node/assets/vendor.lock pins $integrity; not using it" >&2
      rm -rf "$packs"
      exit 1
    fi
    tar -xzf "$tgz" -C "$packs" --to-stdout "$file" > "$vendor/$served.part"
    mv "$vendor/$served.part" "$vendor/$served"
    echo "  $served  ($pkg@$version $file)"
  done < <(grep -v '^#' node/assets/vendor.lock | grep -v '^[[:space:]]*$')
  rm -rf "$packs"
  echo "$lock_sum" > "$vendor/.portcullis-lock"
fi

# Python drivers the black-box tests run through the gateway (tests/tests/drivers.rs),
# pinned in tests/python/requirements.txt, in a cached venv (reinstalled when the pins
# change). The tests find it at $XDG_CACHE_HOME/portcullis-ci/drivers (or ~/.cache/...).
drivers="${XDG_CACHE_HOME:-$HOME/.cache}/portcullis-ci/drivers"
want="$(sha256sum tests/python/requirements.txt | cut -d' ' -f1)"
if [ ! -x "$drivers/bin/python" ] || [ "$(cat "$drivers/.portcullis-pins" 2>/dev/null)" != "$want" ]; then
  echo "installing the test drivers (tests/python/requirements.txt) into $drivers"
  rm -rf "$drivers"
  mkdir -p "$(dirname "$drivers")"
  python3 -m venv "$drivers"
  "$drivers/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
  echo "$want" > "$drivers/.portcullis-pins"
fi

# A JDK for the JDBC driver test (tests/java, run with java's source launcher); the
# machine image may ship one outside Debian's packages: install only when javac is missing.
if ! command -v javac >/dev/null 2>&1; then
  echo "installing: default-jdk-headless"
  apt-get update -q
  apt-get install -y -q --no-install-recommends default-jdk-headless
fi

