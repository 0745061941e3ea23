#!/usr/bin/env bash
# Benchmark: what one verdict's writes (its WorkloadVerdict, its transition Event) cost the real
# kube-apiserver and etcd in CPU, and so how fast any operator can change N verdicts on this machine.
#   e2e/bench-writes.sh [VERDICTS]   (default 2000)
# Figures and how they were taken: docs/benchmarks.md ("What one verdict costs the API server").
set -euo pipefail
cd "$(dirname "$0")/.."
e2e/peers.sh cluster
eval "$(e2e/peers.sh env)"
cargo build -q --release -p countersign-tests --bin bench-writes
target=${CARGO_TARGET_DIR:-target}
"$target/release/bench-writes" "$@"
