#!/usr/bin/env bash
# Benchmark of TrustSources: 200 TrustRoots and 50 KeyRotations in a real Gitea, the real local
# control plane, the operator as a release process: first sync, cost of an unchanged resync (API
# writes, Git objects received), push (webhook) → applied, operator memory. Markdown on stdout.
#   e2e/bench-gitops.sh [--roots 200] [--rotations 50] [--pushes 5] [--resyncs 3] [--interval 10]
# Figures and how they were taken: docs/benchmarks.md ("TrustSource").
set -euo pipefail
cd "$(dirname "$0")/.."
e2e/peers.sh cluster gitea
eval "$(e2e/peers.sh env)"
cargo build -q --release -p countersign --bin countersign -p countersign-tests --bin bench-gitops
target=${CARGO_TARGET_DIR:-target}
COUNTERSIGN_BIN="$target/release/countersign" "$target/release/bench-gitops" "$@"
