#!/usr/bin/env bash
# rustc for the workspace's own crates in the fuzz build (RUSTC_WORKSPACE_WRAPPER, set by
# e2e/fuzz.sh): the coverage instrumentation libFuzzer reads, the flags `cargo fuzz build --dev
# --sanitizer none` gives (cargo-fuzz 0.13, src/project.rs), on the stable toolchain. Cargo calls
# it as `fuzz-rustc.sh RUSTC ARGS…` for workspace members only, so dependencies keep the test
# build's artifacts. Build scripts stay uninstrumented: they do not link libFuzzer. A wrapper that
# was set before e2e/fuzz.sh set this one (FUZZ_INNER_WRAPPER: clippy-driver in e2e/test.sh)
# compiles our crates, called as cargo calls it: `WRAPPER RUSTC ARGS…`.
set -euo pipefail
rustc=$1
shift
compile=("$rustc")
[ -z "${FUZZ_INNER_WRAPPER:-}" ] || compile=("$FUZZ_INNER_WRAPPER" "$rustc")
crate=""
previous=""
for arg in "$@"; do
  [ "$previous" = --crate-name ] && crate=$arg
  previous=$arg
done
case "$crate" in
  "" | ___ | build_script_*) exec "$rustc" "$@" ;;
esac
exec "${compile[@]}" "$@" \
  -Cpasses=sancov-module \
  -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
  -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares \
  -Cllvm-args=-sanitizer-coverage-stack-depth \
  -Cllvm-args=-simplifycfg-branch-fold-threshold=0 \
  --cfg fuzzing
