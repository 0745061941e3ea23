#!/usr/bin/env bash
# The fault campaign of tests/faults.rs, run ROUNDS times on the real control plane, with PODS
# pods in the leader-kill fault and IMAGES images of each kind (signed by a, signed by b,
# unsigned) elsewhere; prints the time to recover of each fault as a markdown table (runs, min,
# median, max) on stdout, and every round's `fault=` lines on stderr. Each round asserts the
# campaign's invariants (no false verdict, each Event once, status consistent); a failed round
# stops the script.
#   e2e/faults.sh [ROUNDS] [PODS] [IMAGES]   (default 3 rounds, 200 pods, 2 images of each kind)
# Figures and how they were taken: docs/benchmarks.md ("Faults").
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
pods=${2:-200}
images=${3:-2}
e2e/peers.sh registries cosign cluster >&2
eval "$(e2e/peers.sh env)"
lines=$(mktemp)
trap 'rm -f "$lines"' EXIT
for round in $(seq 1 "$rounds"); do
  echo "--- round $round of $rounds" >&2
  COUNTERSIGN_FAULTS_PODS=$pods COUNTERSIGN_FAULTS_IMAGES=$images \
    cargo test -q -p countersign-tests --test faults -- --test-threads=1 --nocapture 2>&1 |
    grep -E '^fault=|^test result|panicked' | tee -a "$lines" >&2
  grep -q '^test result: ok' "$lines" || { echo "round $round failed" >&2; exit 1; }
  sed -i '/^test result/d' "$lines"
done
echo "| fault | runs | min ms | median ms | max ms |"
echo "|---|---|---|---|---|"
grep '^fault=' "$lines" |
  sed -E 's/^fault=([^ ]+) recovered_in_ms=([0-9]+).*/\1 \2/' |
  sort -k1,1 -k2,2n |
  awk '{ v[$1] = v[$1] " " $2; n[$1]++ }
       END { for (f in v) { split(substr(v[f], 2), a, " ");
             printf "| %s | %d | %d | %d | %d |\n", f, n[f], a[1], a[int((n[f] + 1) / 2)], a[n[f]] } }' |
  sort
