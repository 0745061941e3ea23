#!/usr/bin/env bash
# The main job on an embedded default: a real local control plane (kube-apiserver, etcd,
# controller-manager, scheduler, kwok), a real registry and a real Git server (Gitea) on
# 127.0.0.1, the countersign operator, and four Deployments: signed by cosign v3, signed by
# countersign (cosign v2 format), unsigned, and signed by a key nobody trusts. Trust is declared
# in Git: the TrustRoot is committed (with the real `git` CLI) to a repository on Gitea, which a
# TrustSource points at; every change of trust below is a commit, pushed, announced to the
# operator by Gitea's webhook and applied by it. It prints the verdicts and events, then shows
# drift: a commit replacing the trusted key is noticed within seconds; and a key rotation,
# ci-2026 → ci-2027 (the TrustRoot change and the KeyRotation both committed), through its
# dual-acceptance window, `countersign rotation resign` and the old key's retirement, without a
# workload ever failing. Last, the TrustRoot turns to Enforce (a commit) and the API server,
# calling countersign's admission webhook over TLS, refuses a Deployment whose image is not
# signed by a trusted key, naming why.
#
#   e2e/demo.sh          run, print, clean up
#   e2e/demo.sh --keep   leave everything running (prints how to reach it; Ctrl-C to stop)
set -euo pipefail
cd "$(dirname "$0")/.."
KEEP=${1:-}
CACHE="${COUNTERSIGN_CACHE:-$HOME/.cache/countersign}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Real peers (first run builds them from the Go module proxy, ~30 min on 2 cores; then cached)"
# Only those the demo runs: the tests' Prometheus, Sigstore stack and Rekor v1 are built by e2e/test.sh.
e2e/peers.sh registries cosign cluster kubectl gitea
eval "$(e2e/peers.sh env)"
kubectl() { "$COUNTERSIGN_PEER_KUBECTL" --kubeconfig "$WORK/cluster/kubeconfig" "$@"; }
cosign() { HOME="$WORK/home" TUF_ROOT="$WORK/tuf" COSIGN_PASSWORD=demo "$COUNTERSIGN_PEER_COSIGN3" "$@"; }
crane() { "$COUNTERSIGN_PEER_CRANE" "$@"; }

say "Building countersign"
cargo build -q -p countersign --bin countersign -p countersign-tests --bin local-cluster --bin local-gitea
COUNTERSIGN="$CARGO_TARGET_DIR/debug/countersign"

WORK=$(mktemp -d -t countersign-demo-XXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/home" "$WORK/keys"
# listening_port PID [N]: the TCP ports process PID listens on (one a line, N of them: default
# 1), read from /proc once it listens on that many. Our servers start on port 0, so the kernel
# picks a free port and no other process can take it between choosing and binding (as it could
# from a port chosen beforehand).
listening_port() {
  python3 - "$1" "${2:-1}" <<'PY'
import os, sys, time
pid, want, deadline = sys.argv[1], int(sys.argv[2]), time.time() + 120
while time.time() < deadline:
    try:
        inodes = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:["):-1])
        ports = set()
        for table in ("tcp", "tcp6"):
            for line in open(f"/proc/{pid}/net/{table}").readlines()[1:]:
                f = line.split()
                if f[3] == "0A" and f[9] in inodes:  # 0A: LISTEN
                    ports.add(int(f[1].rsplit(":", 1)[1], 16))
        if len(ports) >= want:
            print("\n".join(str(p) for p in sorted(ports)))
            sys.exit(0)
    except FileNotFoundError:
        sys.exit(f"process {pid} exited before listening")
    time.sleep(0.1)
sys.exit(f"process {pid} not listening on {want} port(s) after 120s")
PY
}

# up NAME ARGS…: starts tests/bin's local-NAME (stdout in $WORK/NAME.out, log in $WORK/NAME.log)
# and waits for it. It prints `ready:` once up, or exits when it cannot start (it has its own
# deadlines): no deadline here that a slow machine could miss.
up() {
  local name=$1
  shift
  "$CARGO_TARGET_DIR/debug/local-$name" up "$@" >"$WORK/$name.out" 2>"$WORK/$name.log" &
  local pid=$!
  PIDS+=($pid)
  until grep -q '^ready:' "$WORK/$name.out" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || { tail -20 "$WORK/$name.log"; exit 1; }
    sleep 0.5
  done
}

say "Local control plane"
up cluster --dir "$WORK/cluster"
grep '^ready:' "$WORK/cluster.out"
kubectl get nodes

say "Registry (go-containerregistry, OCI referrers API) and images"
"$COUNTERSIGN_PEER_GGCR_REFERRERS" 127.0.0.1:0 2>"$WORK/registry.log" &
registry_pid=$!
PIDS+=($registry_pid)
REGISTRY="127.0.0.1:$(listening_port "$registry_pid")"
image() { # image NAME: push a small image with content of its own, print its digest
  mkdir -p "$WORK/img/$1" && echo "$1" >"$WORK/img/$1/app" && tar -C "$WORK/img/$1" -cf "$WORK/img/$1.tar" app
  crane append -f "$WORK/img/$1.tar" -t "$REGISTRY/payments/$1:v1" >/dev/null 2>&1
  crane digest "$REGISTRY/payments/$1:v1"
}
for app in api worker reports rogue; do echo "$REGISTRY/payments/$app:v1@$(image $app)"; done

say "Keys: ci-2026 (trusted) and rogue (not); signatures"
(cd "$WORK/keys" && COSIGN_PASSWORD=demo "$COUNTERSIGN" generate-key-pair --output-key-prefix ci-2026 \
  && COSIGN_PASSWORD=demo "$COUNTERSIGN" generate-key-pair --output-key-prefix rogue) 2>/dev/null
cosign sign --key "$WORK/keys/ci-2026.key" --use-signing-config=false --tlog-upload=false -y "$REGISTRY/payments/api:v1" 2>/dev/null
echo "api:    signed by cosign v3 (Sigstore bundle referrer)"
COSIGN_PASSWORD=demo "$COUNTERSIGN" sign --format legacy --key "$WORK/keys/ci-2026.key" "$REGISTRY/payments/worker:v1"
echo "worker: signed by countersign (cosign v2 .sig format)"
echo "reports: not signed"
COSIGN_PASSWORD=demo "$COUNTERSIGN" sign --key "$WORK/keys/rogue.key" "$REGISTRY/payments/rogue:v1"
echo "rogue:  signed by a key nobody trusts"

say "CRDs and the operator (with its Git webhook receiver and admission webhooks)"
kubectl apply --server-side -k crds/ >/dev/null
kubectl create namespace countersign-system >/dev/null
KUBECONFIG="$WORK/cluster/kubeconfig" RUST_LOG="${RUST_LOG:-info,oci_client=error,kube=warn}" \
  "$COUNTERSIGN" run --metrics-addr 127.0.0.1:0 --git-webhook-addr 127.0.0.1:0 \
  --admission-addr 127.0.0.1:0 --webhook-cert-name 127.0.0.1 \
  --git-cache-dir "$WORK/git-cache" --leader-election-namespace countersign-system \
  --identity demo 2>"$WORK/operator.log" &
operator_pid=$!
PIDS+=($operator_pid)
# Three ports: the one serving /metrics over HTTP is the metrics server, the one speaking TLS
# the admission webhooks, the other the Git webhook receiver (which answers 404 on /metrics).
for port in $(listening_port "$operator_pid" 3); do
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/metrics")" = 200 ]; then
    METRICS="127.0.0.1:$port"
  elif [ "$(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$port/validate")" = 405 ]; then
    ADMISSION="127.0.0.1:$port"
  else
    WEBHOOK="http://127.0.0.1:$port/hooks/git"
  fi
done
echo "operator running (log: $WORK/operator.log, metrics: http://$METRICS/metrics, git webhook: $WEBHOOK, admission: https://$ADMISSION)"

say "A Git server (Gitea) with a private repository for trust"
up gitea --repo trust
source <(grep '^export GITEA_' "$WORK/gitea.out")
echo "gitea: $GITEA_URL, repository $GITEA_REPO_TRUST (private)"
REPO="$WORK/trust"
mkdir -p "$REPO/clusters/demo"
# The platform team's working copy: the real git CLI, commits pushed over HTTP with basic auth.
tgit() { git -C "$REPO" -c user.name="Platform Team" -c user.email=platform@example.com -c commit.gpgsign=false "$@"; }
tgit init -q -b main
REMOTE=${GITEA_REPO_TRUST/http:\/\//http://$GITEA_USER:$GITEA_PASSWORD@}
ms() { date +%s%3N; }
push() { # push MESSAGE: commit everything in the working copy and push it; sets COMMIT, PUSHED_MS
  tgit add -A && tgit commit -q -m "$1"
  # Quiet unless it fails (Gitea's progress lines come on stderr even with -q).
  out=$(tgit push -q "$REMOTE" HEAD:refs/heads/main 2>&1) || { echo "$out"; exit 1; }
  COMMIT=$(tgit rev-parse HEAD)
  PUSHED_MS=$(ms)
  tgit log -1 --format='pushed %h %s' --stat=72 | sed '/^$/d'
}
applied() { # applied [SINCE]: wait until the TrustSource has applied COMMIT; say how long after
  # PUSHED_MS that was
  for _ in $(seq 240); do
    [ "$(kubectl get trustsource demo -o jsonpath='{.status.lastAppliedRevision}')" = "main@sha1:$COMMIT" ] && break
    sleep 0.25
  done
  [ "$(kubectl get trustsource demo -o jsonpath='{.status.lastAppliedRevision}')" = "main@sha1:$COMMIT" ] \
    || { kubectl get trustsource demo -o yaml; exit 1; }
  APPLIED_MS=$(ms)
  awk -v ms=$((APPLIED_MS - PUSHED_MS)) -v since="${1:-the push (webhook)}" \
    'BEGIN { printf "applied %.1fs after %s\n", ms / 1000, since }'
}

say "A TrustRoot, committed to Git: ci-2026 may sign $REGISTRY/payments/**"
indent() { sed 's/^/        /'; }
cat >"$WORK/trustroot.yaml" <<YAML
apiVersion: countersign.dev/v1alpha1
kind: TrustRoot
metadata:
  name: payments
spec:
  images: ["$REGISTRY/payments/**"]
  keys:
    - name: ci-2026
      publicKey: |
$(indent <"$WORK/keys/ci-2026.pub")
  threshold: 1
  reverifyInterval: 30s
YAML
cp "$WORK/trustroot.yaml" "$REPO/clusters/demo/payments.yaml"
push "payments: ci-2026 may sign payments images"

say "A TrustSource pointing at it (credentials in a Secret; Gitea's push webhook to the operator)"
kubectl -n countersign-system create secret generic git-trust \
  --from-literal=username="$GITEA_USER" --from-literal=password="$GITEA_PASSWORD" >/dev/null
WEBHOOK_TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
kubectl -n countersign-system create secret generic countersign-git-webhook \
  --from-literal=token="$WEBHOOK_TOKEN" >/dev/null
curl -sf -u "$GITEA_USER:$GITEA_PASSWORD" -H 'Content-Type: application/json' \
  -d "{\"type\": \"gitea\", \"events\": [\"push\"], \"active\": true,
       \"config\": {\"url\": \"$WEBHOOK\", \"content_type\": \"json\", \"secret\": \"$WEBHOOK_TOKEN\"}}" \
  "$GITEA_URL/api/v1/repos/$GITEA_USER/trust/hooks" >/dev/null
cat >"$WORK/trustsource.yaml" <<YAML
apiVersion: countersign.dev/v1alpha1
kind: TrustSource
metadata:
  name: demo
spec:
  url: $GITEA_REPO_TRUST
  ref: {branch: main}
  path: clusters/demo
  interval: 10m          # pushes arrive through the webhook at once
  secretRef: {name: git-trust}
YAML
sed 's/^/    /' "$WORK/trustsource.yaml"
kubectl apply -f "$WORK/trustsource.yaml"
PUSHED_MS=$(ms)
applied "the TrustSource was created"
kubectl get trustsources

say "Workloads in namespace payments"
kubectl create namespace payments >/dev/null
for app in api worker reports rogue; do
  kubectl -n payments create deployment "$app" --image "$REGISTRY/payments/$app:v1" --replicas 2 >/dev/null
done
kubectl -n payments get pods

verdicts() {
  # One WorkloadVerdict per workload (`kubectl get wv -o wide` shows the same and more).
  kubectl -n payments get workloadverdicts -o custom-columns='WORKLOAD:.workload.name,KIND:.workload.kind,VERDICT:.verdict,VERIFIED-BY:.verifiedBy[*],REASON:.reason'
}
say "Verdicts"
for _ in $(seq 120); do
  n=$(verdicts | awk 'NR>1 && $3 != "<none>"' | wc -l)
  [ "$n" -ge 4 ] && break
  sleep 0.5
done
verdicts
echo
kubectl get trustroots
say "Events"
kubectl -n payments get events --field-selector involvedObject.kind!=Pod --sort-by=.lastTimestamp \
  -o custom-columns='TYPE:.type,REASON:.reason,OBJECT:.involvedObject.name,MESSAGE:.message' | grep -v -E 'ScalingReplicaSet|SuccessfulCreate|Completed' || true

say "Drift: a commit removes ci-2026 from the TrustRoot (keeps only a new key)"
(cd "$WORK/keys" && COSIGN_PASSWORD=demo "$COUNTERSIGN" generate-key-pair --output-key-prefix ci-2027) 2>/dev/null
sed -e 's/name: ci-2026/name: ci-2027/' "$WORK/trustroot.yaml" >"$WORK/trustroot-2027.yaml"
python3 - "$WORK/trustroot-2027.yaml" "$WORK/keys/ci-2027.pub" <<'PY'
import sys, re
doc, key = open(sys.argv[1]).read(), open(sys.argv[2]).read()
body = "".join("        " + l + "\n" for l in key.strip().splitlines())
doc = re.sub(r"(      publicKey: \|\n)(        .*\n)+", lambda m: m.group(1) + body, doc)
open(sys.argv[1], "w").write(doc)
PY
cp "$WORK/trustroot-2027.yaml" "$REPO/clusters/demo/payments.yaml"
push "payments: replace ci-2026 by ci-2027"
applied
kubectl get trustsources
for _ in $(seq 120); do
  kubectl -n payments get events --field-selector reason=SignatureDrift -o name | grep -q . && break
  sleep 0.25
done
awk -v ms=$(($(ms) - APPLIED_MS)) 'BEGIN { printf "drift noticed %.1fs after that:\n", ms / 1000 }'
kubectl -n payments get events --field-selector reason=SignatureDrift -o custom-columns='TYPE:.type,REASON:.reason,OBJECT:.involvedObject.name,MESSAGE:.message'
verdicts

say "Rotation, in two commits: trust both keys again, then rotate ci-2026 → ci-2027 (retire early once re-signed)"
python3 - "$WORK/trustroot.yaml" "$WORK/keys/ci-2027.pub" >"$WORK/trustroot-both.yaml" <<'PY'
import sys
doc, key = open(sys.argv[1]).read(), open(sys.argv[2]).read()
body = "".join("        " + l + "\n" for l in key.strip().splitlines())
doc = doc.replace("  threshold: 1", "    - name: ci-2027\n      publicKey: |\n" + body + "  threshold: 1")
print(doc, end="")
PY
cp "$WORK/trustroot-both.yaml" "$REPO/clusters/demo/payments.yaml"
push "payments: trust ci-2026 and ci-2027"
applied
wait_verdict() { # wait_verdict DEPLOYMENT VERDICT
  for _ in $(seq 120); do
    [ "$(kubectl -n payments get workloadverdict "deployment.$1" -o jsonpath='{.verdict}' 2>/dev/null)" = "$2" ] && return
    sleep 0.5
  done
}
wait_verdict api Verified && wait_verdict worker Verified
WINDOW_START=$(date -u +%Y-%m-%dT%H:%M:%SZ)
cat >"$REPO/clusters/demo/rotation.yaml" <<YAML
apiVersion: countersign.dev/v1alpha1
kind: KeyRotation
metadata:
  name: payments-2027
spec:
  trustRootRef: payments
  fromKey: ci-2026
  toKey: ci-2027
  window: {start: "$WINDOW_START", duration: 72h}
  retirement: WhenResigned
  retireEarly: true
YAML
push "payments: rotate ci-2026 → ci-2027 from $WINDOW_START"
applied
rotation_phase() { kubectl get keyrotation payments-2027 -o jsonpath='{.status.phase}'; }
for _ in $(seq 60); do [ "$(rotation_phase)" = DualAcceptance ] && break; sleep 0.5; done
export KUBECONFIG="$WORK/cluster/kubeconfig"
"$COUNTERSIGN" rotation status payments-2027
kubectl get trustroots
say "Re-sign the stragglers with ci-2027 (each checked against ci-2026 first)"
COSIGN_PASSWORD=demo "$COUNTERSIGN" rotation resign payments-2027 --key "$WORK/keys/ci-2027.key" || true
started=$SECONDS
for _ in $(seq 60); do [ "$(rotation_phase)" = Completed ] && break; sleep 0.5; done
echo "completed $((SECONDS - started))s after the last re-sign:"
"$COUNTERSIGN" rotation status payments-2027
kubectl get keyrotations
kubectl get trustroots
kubectl get events --field-selector involvedObject.kind=KeyRotation -o custom-columns='TYPE:.type,REASON:.reason,OBJECT:.involvedObject.name,MESSAGE:.message'
verdicts
echo "workloads announced as failing or drifting since the rotation began: $(kubectl -n payments get events -o json | python3 -c '
import json, sys
start = sys.argv[1]
bad = [e for e in json.load(sys.stdin)["items"]
       if e["reason"] in ("SignatureDrift", "VerificationFailed") and e["involvedObject"]["name"] in ("api", "worker")
       and (e.get("lastTimestamp") or e.get("eventTime") or "") >= start]
print(len(bad))' "$WINDOW_START")"
unset KUBECONFIG

say "Admission: the TrustRoot turns to Enforce in Git; the API server asks countersign first"
# manifests/webhooks.yaml, called at this operator's address instead of its in-cluster Service;
# countersign fills in the caBundle with its own CA.
python3 - "$ADMISSION" manifests/webhooks.yaml >"$WORK/webhooks.yaml" <<'PY'
import json, re, sys
addr, text = sys.argv[1], open(sys.argv[2]).read()
# The manifest's one webhook: point clientConfig at the operator (YAML is edited as text here,
# to need nothing beyond python3; the test suite reads it with a YAML parser).
text = re.sub(r"clientConfig:\n(\s+)service:\n(?:\1  .*\n)+", lambda m: f"clientConfig:\n{m.group(1)}url: https://{addr}/validate\n", text)
print(text)
PY
kubectl apply -f "$WORK/webhooks.yaml" >/dev/null
for _ in $(seq 120); do
  [ -n "$(kubectl get validatingwebhookconfiguration countersign -o jsonpath='{.webhooks[0].clientConfig.caBundle}')" ] && break
  sleep 0.5
done
sed -i 's/^  threshold: 1$/  threshold: 1\n  mode: Enforce/' "$REPO/clusters/demo/payments.yaml"
push "payments: enforce at admission"
applied
for _ in $(seq 60); do
  [ "$(kubectl get trustroot payments -o jsonpath='{.spec.mode}')" = Enforce ] && break
  sleep 0.25
done
echo "\$ kubectl -n payments create deployment rogue --image $REGISTRY/payments/rogue:v1"
kubectl -n payments create deployment rogue --image "$REGISTRY/payments/rogue:v1" 2>&1 | fold -s -w 100 || true
echo "\$ kubectl -n payments create deployment reports-2 --image $REGISTRY/payments/reports:v1"
kubectl -n payments create deployment reports-2 --image "$REGISTRY/payments/reports:v1" 2>&1 | fold -s -w 100 || true
echo "\$ kubectl -n payments run api-debug --image $REGISTRY/payments/api:v1"
kubectl -n payments run api-debug --image "$REGISTRY/payments/api:v1"

say "Trust, as Git and the cluster see it"
tgit log --format='%h %s'
kubectl get trustsources
echo "what TrustSource demo manages (status.inventory):"
kubectl get trustsource demo -o jsonpath='{range .status.inventory[*]}  {.kind}/{.name}{"\n"}{end}'

say "Metrics (excerpt)"
curl -s "http://$METRICS/metrics" | grep -E '^countersign_(workloads|verifications_total|registry_requests_total|rotations|rotation_|gitops_syncs_total|admission_requests_total)' | grep -v -E ' 0$|_bucket' | head -20 || true

if [ "$KEEP" = "--keep" ]; then
  say "Still running. In another shell:"
  echo "  export KUBECONFIG=$WORK/cluster/kubeconfig; alias kubectl=$COUNTERSIGN_PEER_KUBECTL"
  echo "  kubectl get trustroots trustsources; kubectl -n payments get events"
  echo "  git -C $REPO log   # push a commit (remote: $GITEA_REPO_TRUST, $GITEA_USER / $GITEA_PASSWORD)"
  echo "Ctrl-C stops everything."
  wait
fi
