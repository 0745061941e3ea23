#!/usr/bin/env bash
# Benchmark of admission: pod creations through the real API server without webhooks, then with
# countersign's webhooks (Enforce) over TLS, warm cache and never-seen digests: latency p50/p99,
# added latency, throughput. Markdown on stdout.
#   e2e/bench-admission.sh [--pods 300] [--cold 20] [--concurrency 8]
# Figures and how they were taken: docs/benchmarks.md ("Admission").
set -euo pipefail
cd "$(dirname "$0")/.."
e2e/peers.sh cluster registries cosign
eval "$(e2e/peers.sh env)"
cargo build -q --release -p countersign-tests --bin bench-admission
target=${CARGO_TARGET_DIR:-target}
"$target/release/bench-admission" "$@"
