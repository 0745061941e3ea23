#!/usr/bin/env bash
# Fails when the dependency tree has two versions of jiff or of serde-saphyr, or pulls in
# serde_yaml: kube 5 uses jiff 0.2 and serde-saphyr, and so do we. chrono comes in only through
# oci-client (its config types use it), which is reported, not failed.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=$(cargo tree --workspace -e normal,build --prefix none --format '{p}' 2>/dev/null | sort -u)
fail=0
for crate in jiff serde-saphyr; do
  versions=$(grep -E "^$crate v" <<<"$tree" | awk '{print $2}' | sort -u)
  n=$(grep -c . <<<"$versions" || true)
  if [ "$n" -ne 1 ]; then echo "expected exactly one $crate, found: ${versions:-none}"; fail=1; fi
  echo "$crate: $versions"
done
if grep -qE '^serde_yaml v' <<<"$tree"; then echo "serde_yaml is in the tree: use serde-saphyr"; fail=1; fi
chrono_users=$(cargo tree --workspace -e normal -i chrono --depth 1 --prefix none 2>/dev/null | tail -n +2 | awk '{print $1}' | sort -u | tr '\n' ' ')
[ -z "$chrono_users" ] || echo "chrono: only via ${chrono_users}"
exit $fail
