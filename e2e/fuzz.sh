#!/usr/bin/env bash
# The libFuzzer targets of fuzz/ on the stable toolchain, in the dev profile:
#   e2e/fuzz.sh build                       build every target
#   e2e/fuzz.sh run [SECONDS] [TARGET…]     fuzz each target (default: all) for its share of
#                                           SECONDS (default 30); corpus in fuzz/corpus/TARGET,
#                                           a crashing input in fuzz/artifacts/TARGET
# The fuzz crate is a workspace member, and coverage instrumentation reaches only the workspace's
# crates (RUSTC_WORKSPACE_WRAPPER=e2e/fuzz-rustc.sh), so every dependency is the artifact the test
# build already compiled with the same toolchain, profile and features: the fuzz build compiles
# countersign and the two targets again, instrumented, and nothing else (cargo keeps the two
# builds of countersign apart by filename hash). cargo-fuzz compiles every crate again with
# nightly and its RUSTFLAGS: 14.3 CPU-minutes in a cold CI run (docs/ci.md). What that leaves
# out is coverage feedback from inside dependencies (serde_json, der, …): the fuzzer is guided by
# our parsing code, and a panic, hang or runaway allocation anywhere under it is still found.
# For AddressSanitizer and instrumented dependencies: `cd fuzz && cargo +nightly fuzz run parsers`.
set -euo pipefail
cd "$(dirname "$0")/.."
# A wrapper already set (e2e/test.sh's clippy-driver, linting as it compiles) still runs, inside
# ours: fuzz-rustc.sh calls it as cargo would have.
export FUZZ_INNER_WRAPPER="${FUZZ_INNER_WRAPPER-${RUSTC_WORKSPACE_WRAPPER:-}}"
export RUSTC_WORKSPACE_WRAPPER="$PWD/e2e/fuzz-rustc.sh"
# Where cargo puts the targets: e2e/test.sh's shared folder when it calls this, else cargo's own.
target_dir=${CARGO_TARGET_DIR:-target}
all=(parsers specs)

build() {
  # `--workspace`: features resolved as for the test build, so dependencies are shared with it.
  cargo build --quiet --workspace "${all[@]/#/--bin=}"
}

case "${1:-}" in
  build) build ;;
  run)
    seconds=${2:-30}
    targets=("${@:3}")
    [ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
    build
    share=$(( seconds / ${#targets[@]} ))
    log=$(mktemp)
    trap 'rm -f "$log"' EXIT
    for target in "${targets[@]}"; do
      mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
      if ! "$target_dir/debug/$target" "fuzz/corpus/$target" -artifact_prefix="fuzz/artifacts/$target/" \
        -max_total_time="$(( share > 0 ? share : 1 ))" >"$log" 2>&1; then
        tail -n 40 "$log"
        echo "fuzzing $target failed: the input is in fuzz/artifacts/$target"
        exit 1
      fi
      # libFuzzer's last line: how many runs in how long.
      echo "$target: $(tail -n 1 "$log")"
    done
    ;;
  *) sed -n '2,5p' "$0" >&2; exit 2 ;;
esac
