#!/usr/bin/env bash
# Benchmark: `countersign verify` against `cosign verify`, and the engine's throughput in process.
#   e2e/bench-verify.sh [IMAGES]              keys (default 40 images; release build)
#   e2e/bench-verify.sh [IMAGES] --keyless    keyless: a control plane (the OIDC issuer) and the
#                                             local Sigstore stack sign; verified offline
#   ... --hold                                print one verify command per verifier and wait for
#                                             Enter before timing (to profile them)
# Figures and how they were taken: docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
peers=(registries cosign)
if [[ " $* " == *" --keyless "* ]]; then
  peers+=(cluster sigstore)
fi
e2e/peers.sh "${peers[@]}"
eval "$(e2e/peers.sh env)"
cargo build -q --release -p countersign --bin countersign -p countersign-tests --bin bench-verify
target=${CARGO_TARGET_DIR:-target}
COUNTERSIGN_BIN="$target/release/countersign" "$target/release/bench-verify" "$@"
