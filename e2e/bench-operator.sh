#!/usr/bin/env bash
# Benchmark of the operator on a loaded local control plane: cold sweep, warm re-verification
# sweeps, reaction to a key removed from a TrustRoot, registry requests per digest (from the
# registry's own log), peak RSS, API server request rate. Prints a markdown report on stdout.
#   e2e/bench-operator.sh [PODS] [DIGESTS] [-- bench flags]   (default 5000 pods over 500 digests)
#   e2e/bench-operator.sh 5000 500 --interval 30 --warm-sweeps 3 -- --max-concurrent-verifications 32
#   e2e/bench-operator.sh 5000 500 --rotation    (also: rotate the key, re-sign everything)
# Release builds of countersign and the benchmark. Figures and how they were taken:
# docs/benchmarks.md ("Operator").
set -euo pipefail
cd "$(dirname "$0")/.."
e2e/peers.sh registries cluster
eval "$(e2e/peers.sh env)"
cargo build -q --release -p countersign --bin countersign -p countersign-tests --bin bench-operator
target=${CARGO_TARGET_DIR:-target}
COUNTERSIGN_BIN="$target/release/countersign" "$target/release/bench-operator" "$@"
