#!/usr/bin/env bash
# The full test suite: lints, then every unit and black-box test.
# Black-box tests start real `portcullis` processes on loopback with random ports.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/validate-deploy.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Build the binary first: the black-box tests run it.
cargo build --locked -p portcullis --bin portcullis
export PORTCULLIS_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/portcullis"
# Cluster tests run several 3-node clusters; two at a time fit these 2-core machines.
RUST_TEST_THREADS="${RUST_TEST_THREADS:-2}" cargo test --workspace --locked
