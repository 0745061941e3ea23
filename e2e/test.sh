#!/usr/bin/env bash
# The test command (README, and CI through .ci/run). It checks formatting, lints, dependencies,
# runs every test against the real peers, and fuzzes the parsers briefly. On a fresh machine it
# builds the real peers (registries, etcd, Kubernetes, kwok, cosign v2/v3, Gitea, Prometheus, the
# Sigstore stack, Rekor v1 on Trillian: about 40 min on 2 cores, once, then cached in
# ~/.cache/countersign) in the background while the Rust code is linted and built, and while the
# first tests run (docs/ci.md has the figures).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${COUNTERSIGN_CACHE:-$HOME/.cache/countersign}"
# One target folder outside the work tree: a fresh clone (CI) reuses compiled dependencies.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
step() { printf '\n==> %s\n' "$*"; }
started=$SECONDS

step "system packages: git2's OpenSSL is built from source (openssl-src: perl, make), zlib found via pkg-config"
if ! command -v perl >/dev/null || ! command -v make >/dev/null || ! command -v pkg-config >/dev/null; then
  sudo=$(command -v sudo || true)
  $sudo apt-get update -qq && $sudo apt-get install -y -qq perl make pkg-config
fi
command -v ssh-keygen >/dev/null || { sudo=$(command -v sudo || true); $sudo apt-get install -y -qq openssh-client; }
# PostgreSQL for Trillian under Rekor v1 (tests/harness/rekor_v1.rs starts its own server from it)
if ! command -v initdb >/dev/null && ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  sudo=$(command -v sudo || true)
  $sudo apt-get update -qq && $sudo apt-get install -y -qq postgresql
fi

step "disk: the shared target folder keeps room to link"
# Checkouts can each build their own set of test executables (about 3.3 GB a set with line
# tables only, about 12 GB before), so a target folder shared by several checkouts fills the
# disk, and the linker then dies with SIGBUS (it did here, 2026-11-30). Below 20 GB free
# (COUNTERSIGN_MIN_FREE_GB), executables no build has written for an hour go; cargo rebuilds any
# of them that is needed again.
mkdir -p "$CARGO_TARGET_DIR"
deps="$CARGO_TARGET_DIR/debug/deps"
free_gb=$(df -P -BG "$CARGO_TARGET_DIR" | awk 'NR == 2 { sub(/G$/, "", $4); print $4 }')
if [ -d "$deps" ] && [ "${free_gb:-0}" -lt "${COUNTERSIGN_MIN_FREE_GB:-20}" ]; then
  stale=$(find "$deps" -maxdepth 1 -type f -executable ! -name '*.so' -mmin +60 -size +20M -print -delete | wc -l)
  rm -rf "$CARGO_TARGET_DIR/debug/incremental"
  echo "${free_gb} GB free: removed ${stale} stale executables and the incremental caches"
else
  echo "${free_gb} GB free"
fi

step "real peers: built in the background from the Go module proxy (cached in $CACHE/peers)"
peers_log="$CARGO_TARGET_DIR/peers-build.log"
# A file that exists while the build runs: tests started before it ends wait for their peers
# (tests/harness/peers.rs).
building=$(mktemp "$CARGO_TARGET_DIR/peers-building.XXXXXX")
setsid bash -c 'e2e/peers.sh all; status=$?; rm -f "$1"; exit "$status"' peers "$building" >"$peers_log" 2>&1 &
peers=$!
# Whatever fails below, the peers' build (its own process group) does not outlive this script.
trap 'kill -- "-$peers" 2>/dev/null || true; rm -f "$building"' EXIT

step "format"
cargo fmt --all -- --check

step "dependencies: one time crate and one YAML parser, as kube itself uses"
e2e/check-deps.sh

step "build the tests, linted by clippy as they compile"
# clippy-driver is rustc with clippy's lints added, and `cargo clippy` runs it just so: as the
# workspace's wrapper (cargo hands it our crates only), its arguments in CLIPPY_ARGS. Run in the
# test build itself, it lints the targets `cargo clippy --all-targets` would (every lib, bin and
# test; there are no benches or examples) at no measurable cost, where a `cargo clippy` of its own
# type-checked every dependency a second time (4.5 CPU-minutes cold) and our crates too (40 s of a
# fresh clone). Exported: every cargo after this (run-tests.sh's, the harness's nested build of
# `countersign`, the fuzz build's, which chains it) must find the same artifacts, and cargo keeps
# builds made through another wrapper apart.
driver="$(rustc --print sysroot)/bin/clippy-driver"
[ -x "$driver" ] || { echo "clippy is missing ($driver): rustup component add clippy"; exit 1; }
export RUSTC_WORKSPACE_WRAPPER="$driver" CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
cargo test --workspace --no-run --quiet

# The fuzz targets (fuzz/, a workspace member) are built on the same toolchain, instrumented for
# libFuzzer: only countersign and the targets compile again; every dependency is the test build's
# (e2e/fuzz.sh says how). cargo-fuzz would compile every crate again with nightly.
step "build the fuzz targets"
e2e/fuzz.sh build

step "tests (unit, interop with real cosign and registries, operator on a real control plane)"
eval "$(e2e/peers.sh env)"
# On a cold machine the peers are still building (registries and Kubernetes first: about 40
# minutes of Go on 2 cores), which would leave the tests after it. So they start now: a test whose
# peer is not built yet waits for it, and e2e/run-tests.sh starts another executable meanwhile.
# The build gives the tests the cores first from here on.
if [ -e "$building" ]; then
  echo "the peers are still building; tests that need one not built yet wait for it"
  renice -n 19 -g "$peers" >/dev/null 2>&1 || true
  export COUNTERSIGN_PEERS_BUILDING="$building"
fi
# What `cargo test --workspace` runs, two test executables at a time (e2e/run-tests.sh says why).
tests=0
e2e/run-tests.sh || tests=$?

step "real peers: their build"
if ! wait "$peers"; then
  cat "$peers_log"
  echo "building the peers failed (log above, and in $peers_log)"
  exit 1
fi
trap - EXIT
grep '^\[peers\]' "$peers_log" || echo "all cached"
[ "$tests" -eq 0 ] || exit "$tests"

step "fuzz the parsers briefly"
# Every target, sharing the time: registry bytes (parsers) and users' and Git's (specs).
e2e/fuzz.sh run "${FUZZ_SECONDS:-30}"

step "all checks passed in $((SECONDS - started))s"
