#!/usr/bin/env bash
# Runs what `cargo test --workspace` runs (every test executable, then the doctests), but
# COUNTERSIGN_TEST_JOBS executables at a time (default 2) instead of one after the other.
#
#   e2e/run-tests.sh [-- ARGS...]    ARGS go to every test executable (a name filter, --nocapture)
#
# Why: most test executables wait on a control plane, a registry or an operator's sweep, not on a
# CPU. Run one at a time they kept this 2-core machine 33 % busy, and took 787 s; two at a time
# take 421 s (docs/ci.md). Every test already takes its own ephemeral ports and scratch folders,
# and the one binary they share is copied per checkout by rename (`countersign_bin`), so two
# executables share nothing but the cores. Longest first, by the previous run's times, so that the
# queues end together. Each executable's output is kept and printed whole when it ends, never
# interleaved; the end lists every executable with its time and result, then the whole output of
# each one that failed.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${COUNTERSIGN_TEST_JOBS:-2}
[ "${1:-}" = "--" ] && shift
times="${CARGO_TARGET_DIR:-target}/test-times"
logs=$(mktemp -d "${TMPDIR:-/tmp}/countersign-tests-XXXXXX")
export LOGS=$logs

# NAME DIR EXECUTABLE for each test executable, from cargo's own messages: NAME is the target's
# (an integration test's file name, else `countersign:lib`, `local-cluster:bin`, …), DIR its
# package's folder, the working directory `cargo test` gives it. Only artifacts built with the
# test profile: a `bin` target is also built as a program, which is not a test.
artifact='.*"manifest_path":"([^"]*)/Cargo\.toml","target":\{"kind":\["([^"]*)"\][^}]*"name":"([^"]*)".*"executable":"([^"]*)".*'
cargo test --workspace --no-run --quiet --message-format=json-render-diagnostics |
  grep '"reason":"compiler-artifact"' | grep -E '"profile":\{[^}]*"test":true\}' |
  sed -nE "s#$artifact#\3:\2 \1 \4#p" | sed -E 's/^([^ ]*):test /\1 /' >"$logs/executables"

# Longest first: seconds from the previous run; one not timed yet goes first.
while read -r name dir exe; do
  seconds=$(awk -v n="$name" '$1 == n { s = $2 } END { print s }' "$times" 2>/dev/null || true)
  printf '%s %s %s %s\n' "${seconds:-9999}" "$name" "$dir" "$exe"
done <"$logs/executables" | sort -rn | cut -d' ' -f2- >"$logs/queue"
if [ $# -gt 0 ]; then printf '%s\0' "$@"; fi >"$logs/args"

# run_one NAME DIR EXE: runs one executable in its package folder, with this script's ARGS, and
# prints its output whole when it ends.
run_one() {
  local name=$1 dir=$2 exe=$3 args=() start=$SECONDS status=0
  [ -s "$LOGS/args" ] && mapfile -d '' args <"$LOGS/args"
  (cd "$dir" && COUNTERSIGN_TEST_WAITING="$LOGS/waiting/$name" "$exe" "${args[@]}") >"$LOGS/$name.log" 2>&1 || status=$?
  local took=$((SECONDS - start))
  printf '%s %s %s\n' "$name" "$took" "$status" >>"$LOGS/results"
  # One writer at a time, so that two executables' outputs never interleave.
  flock "$LOGS/print.lock" sh -c 'printf "\n==> %s (%ss, exit %s)\n" "$1" "$2" "$3"; cat "$4"' \
    _ "$name" "$took" "$status" "$LOGS/$name.log"
  echo "$name" >&3 # wakes the loop below
}

# waiting NAME: whether a test of that executable waits for a peer that e2e/peers.sh is still
# building (tests/harness/peers.rs marks it in the executable's folder). Only in a cold
# e2e/test.sh, which runs the tests beside the peers' build: such an executable does not count
# against the jobs, so another starts in its place, up to COUNTERSIGN_TEST_WAITING_JOBS more.
waiting() { [ -n "$(ls -A "$LOGS/waiting/$1" 2>/dev/null)" ]; }
limit=$((jobs + ${COUNTERSIGN_TEST_WAITING_JOBS:-3}))

started=$SECONDS
mapfile -t queue <"$logs/queue"
# The loop sleeps on this pipe: an executable ending wakes it at once, and a second passes
# otherwise, to notice tests that began or stopped waiting for a peer.
mkfifo "$logs/ended" && exec 3<>"$logs/ended"
declare -A running=() # pid → executable name
next=0
while [ "$next" -lt "${#queue[@]}" ] || [ "${#running[@]}" -gt 0 ]; do
  alive=" $(jobs -rp | tr '\n' ' ') "
  active=0
  for pid in "${!running[@]}"; do
    if [[ $alive != *" $pid "* ]]; then
      unset "running[$pid]"
    elif ! waiting "${running[$pid]}"; then
      active=$((active + 1))
    fi
  done
  if [ "$next" -lt "${#queue[@]}" ] && [ "$active" -lt "$jobs" ] && [ "${#running[@]}" -lt "$limit" ]; then
    read -r name dir exe <<<"${queue[$next]}"
    next=$((next + 1))
    mkdir -p "$LOGS/waiting/$name"
    run_one "$name" "$dir" "$exe" &
    running[$!]=$name
    continue
  fi
  read -r -t 1 _ <&3 || true
done
wait
took=$((SECONDS - started))

printf '\n==> doctests\n'
doctests=0
cargo test --workspace --doc --quiet -- "$@" 2>&1 | tee "$logs/doctests.log" || doctests=$?

printf '\n==> %s test executables, %s at a time, in %ss\n' "$(wc -l <"$logs/queue")" "$jobs" "$took"
sort -k2 -rn "$logs/results" |
  awk '{ printf "  %-28s %5ss  %s\n", $1, $2, ($3 == 0 ? "ok" : "FAILED (exit " $3 ")") }'
# Only a whole run's times order the next one (a filtered run's are not the executables' own).
if [ $# -eq 0 ]; then awk '{ print $1, $2 }' "$logs/results" >"$times"; fi
sed -nE 's/^test result: [A-Za-z]+\. ([0-9]+) passed; ([0-9]+) failed.*/\1 \2/p' "$logs"/*.log |
  awk '{ p += $1; f += $2 } END { printf "tests: %d passed, %d failed\n", p, f }'

failed=$(awk '$3 != 0 { print $1 }' "$logs/results")
ran=$(wc -l <"$logs/results")
if [ -n "$failed" ] || [ "$ran" -ne "$(wc -l <"$logs/queue")" ] || [ "$doctests" -ne 0 ]; then
  for name in $failed; do printf '\n==> FAILED: %s\n' "$name"; cat "$logs/$name.log"; done
  echo "failed: ${failed:-(none)}; ran $ran executables; doctests exit $doctests; logs in $logs"
  exit 1
fi
rm -rf "$logs"
