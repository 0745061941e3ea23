#!/usr/bin/env bash
# Benchmark: `countersign verify` against `cosign verify`, and the engine's throughput in process.
#   e2e/bench-verify.sh [IMAGES]      (default 40 images; release build)
# Figures and how they were taken: docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
e2e/peers.sh registries cosign
eval "$(e2e/peers.sh env)"
cargo build -q --release -p countersign --bin countersign -p countersign-tests --bin bench-verify
target=${CARGO_TARGET_DIR:-target}
COUNTERSIGN_BIN="$target/release/countersign" "$target/release/bench-verify" "$@"
