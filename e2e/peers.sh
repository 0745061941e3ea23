#!/usr/bin/env bash
# Builds the real programs the tests and the demo run against, at pinned versions, through the Go
# module proxy, and caches them outside the work tree by name and version. Safe to run again: a
# peer whose binary is already cached is not rebuilt. Each file is renamed into place whole, once
# built (go_build_to, copy_to): tests may run beside this build and wait for a peer until its file
# exists.
#
#   e2e/peers.sh [registries|cosign|cluster|kubectl|gitea|prometheus|policyreport|sigstore|rekor-v1|all]...
#                                                    build (default: all: what the tests need, no kubectl)
#   e2e/peers.sh path NAME                           print the cached binary's (or file's) path
#
# Cache: ${COUNTERSIGN_CACHE:-$HOME/.cache/countersign}/peers/<name>-<version>/
set -euo pipefail

COSIGN3_VERSION=v3.1.2
COSIGN2_VERSION=v2.6.4
CRANE_VERSION=v0.21.9
DISTRIBUTION_VERSION=v3.1.2
KUBE_VERSION=1.36.3
ETCD_VERSION=v3.6.14
KWOK_VERSION=v0.8.0
GITEA_VERSION=v1.26.0
# Prometheus 3.x: its Go module is tagged v0.3MM.P for release 3.MM.P.
PROMETHEUS_VERSION=v0.316.0
# Built with `remove_all_sd`: the tests scrape static targets, and the cloud service discoveries
# (AWS, Azure, GCE, Kubernetes, …) are most of Prometheus' compile time. The tag is in the cache key.
PROMETHEUS_BUILD=$PROMETHEUS_VERSION-nosd
# The PolicyReport CRD (wgpolicyk8s.io/v1alpha2) as Kyverno ships it generated: the upstream
# sigs.k8s.io/wg-policy-prototypes module is refused by the module proxy here (403).
KYVERNO_VERSION=v1.19.1
# The local Sigstore stack (keyless signing end to end). The newest releases of the TSA and
# rekor-tiles need Go 1.27; these are the newest that build with the Go here. rekor-tiles (Rekor
# v2) has a POSIX backend. The CT log is TesseraCT (the static-ct log Sigstore runs) on its POSIX
# backend. The OIDC issuer is kube-apiserver itself
# (service-account tokens, Fulcio's `kubernetes` issuer type): Dex cannot be fetched, see
# docs/keyless.md.
FULCIO_VERSION=v1.8.8
TSA_VERSION=v2.1.3
REKOR_TILES_VERSION=v2.3.0
TESSERACT_VERSION=v0.1.1
# Rekor v1 (the log cosign v2 uploads to, whose SET is the `.sig` bundle annotation) on Trillian's
# PostgreSQL storage (the machine's PostgreSQL; Debian's package when missing, see e2e/test.sh).
# Rekor v1.5.5 and later need Go 1.27. Trillian is built with only its PostgreSQL storage (the
# `postgresql` tag leaves out MySQL, CockroachDB and Cloud Spanner); the tag is in the cache key.
REKOR_V1_VERSION=v1.5.4
TRILLIAN_VERSION=v1.8.0
TRILLIAN_BUILD=$TRILLIAN_VERSION-postgresql

CACHE="${COUNTERSIGN_CACHE:-$HOME/.cache/countersign}"
PEERS="$CACHE/peers"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false"
# The Go compiler and linker collect garbage less often: kwok built cold in 260 s instead of 302 s
# (one pair, a Rust build beside both; docs/ci.md), for memory a 2-core, 24 GiB machine has.
export GOGC=400

log() { printf '[peers] %s\n' "$*" >&2; }

# dir NAME VERSION: the cache folder of one peer.
dir() { printf '%s/%s-%s' "$PEERS" "$1" "$2"; }

# have NAME VERSION BINARY...: true when every binary is cached.
have() {
  local d; d=$(dir "$1" "$2"); shift 2
  for b in "$@"; do [ -x "$d/$b" ] || return 1; done
}

# Every file a test asks for is renamed into place whole, last: a test running beside this build
# waits until the file exists (tests/harness/peers.rs), so a file that exists must be complete.

# go_build_to FILE ARGS...: `go build ARGS` (stripped) into FILE.
go_build_to() {
  local out=$1; shift
  go build -ldflags "-s -w" -o "$out.tmp" "$@" && mv "$out.tmp" "$out"
}

# copy_to SRC FILE: a copy of a file out of the read-only Go module cache, writable.
copy_to() {
  cp "$1" "$2.tmp" && chmod u+w "$2.tmp" && mv "$2.tmp" "$2"
}

# go_install NAME VERSION MODULE_PATH BINARY [extra env]: `go install` into the peer's cache folder.
# MODULE_PATH may carry its own @version when the cache key differs from it (build tags).
go_install() {
  local name=$1 version=$2 pkg=$3 bin=$4; shift 4
  have "$name" "$version" "$bin" && return 0
  local d; d=$(dir "$name" "$version"); mkdir -p "$d"
  log "building $name $version"
  local start=$SECONDS
  [[ $pkg == *@* ]] || pkg="$pkg@$version"
  env GOBIN="$d.tmp" "$@" go install -ldflags="-s -w" "$pkg"
  mv "$d.tmp/$bin" "$d/$bin" && rmdir "$d.tmp" 2>/dev/null || true
  log "built $name $version in $((SECONDS - start))s"
}

# go_main NAME VERSION BINARY MODULE: builds the main package read from stdin (a short main of ours
# serving an upstream library) in a throw-away module that requires MODULE@VERSION, into the
# peer's cache folder.
go_main() {
  local name=$1 version=$2 bin=$3 module=$4
  local main; main=$(cat)
  have "$name" "$version" "$bin" && return 0
  local d; d=$(dir "$name" "$version"); mkdir -p "$d"
  local w; w=$(mktemp -d)
  log "building $name $version"
  local start=$SECONDS
  (
    cd "$w"
    go mod init "local/$bin" >/dev/null 2>&1
    printf '%s\n' "$main" >main.go
    go get "$module@$version" >/dev/null
    go mod tidy >/dev/null 2>&1
    go_build_to "$d/$bin" .
  )
  rm -rf "$w"
  log "built $name $version in $((SECONDS - start))s"
}

build_cosign() {
  go_install cosign "$COSIGN3_VERSION" github.com/sigstore/cosign/v3/cmd/cosign cosign
  go_install cosign "$COSIGN2_VERSION" github.com/sigstore/cosign/v2/cmd/cosign cosign
}

# zot is refused by the module proxy here (403), so the registry with the OCI referrers API is
# go-containerregistry's registry (the one `crane registry serve` runs) with its own
# WithReferrersSupport option switched on: upstream code, started by a five-line main of ours.
build_referrers_registry() {
  go_main ggcr-referrers "$CRANE_VERSION" ggcr-referrers github.com/google/go-containerregistry <<'GO'
// Serves go-containerregistry's registry with the OCI 1.1 referrers API on: ggcr-referrers ADDR
package main

import (
	"log"
	"net/http"
	"os"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	log.Fatal(http.ListenAndServe(os.Args[1], registry.New(registry.WithReferrersSupport(true))))
}
GO
}

build_registries() {
  go_install crane "$CRANE_VERSION" github.com/google/go-containerregistry/cmd/crane crane
  build_referrers_registry
  go_install distribution "$DISTRIBUTION_VERSION" github.com/distribution/distribution/v3/cmd/registry registry
}

# kube_build COMMAND...: Kubernetes commands (kube-apiserver, kubectl, …) at KUBE_VERSION, into
# one cache folder. Kubernetes' own go.mod replaces its staging modules with local paths, so `go
# install` refuses it; a throw-away wrapper module pins each staging module to its published
# v0.<minor>.<patch> tag.
kube_build() {
  have kubernetes "$KUBE_VERSION" "$@" && return 0
  local d; d=$(dir kubernetes "$KUBE_VERSION"); mkdir -p "$d"
  local staging="0.${KUBE_VERSION#1.}" minor; minor=$(cut -d. -f2 <<<"$KUBE_VERSION")
  local pkgs=("${@/#/k8s.io/kubernetes/cmd/}")
  local w; w=$(mktemp -d)
  log "building kubernetes $KUBE_VERSION: $*"
  local start=$SECONDS
  (
    cd "$w"
    go mod init local/k8speers >/dev/null 2>&1
    local gomod
    gomod=$(go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
    for m in $(awk '$2=="=>" && $3 ~ /^\.\/staging\// {print $1}' "$gomod"); do
      go mod edit -replace="$m=$m@v$staging"
    done
    go get "${pkgs[@]/%/@v$KUBE_VERSION}" >/dev/null
    local ld="-s -w -X k8s.io/component-base/version.gitVersion=v$KUBE_VERSION"
    ld+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
    ld+=" -X k8s.io/component-base/version.gitTreeState=clean"
    ld+=" -X k8s.io/client-go/pkg/version.gitVersion=v$KUBE_VERSION"
    rm -rf "$d.tmp" && mkdir -p "$d.tmp"
    go build -ldflags "$ld" -o "$d.tmp/" "${pkgs[@]}"
    mv "$d.tmp"/* "$d/" && rmdir "$d.tmp"
  )
  rm -rf "$w"
  log "built kubernetes $KUBE_VERSION ($*) in $((SECONDS - start))s"
}

# The tests start the control plane's servers themselves and talk to it through kube's client;
# only the demo (and a person looking at its cluster) runs kubectl, a build of its own (195
# packages more, kustomize among them, and a link).
build_kubectl() {
  kube_build kubectl
}

# etcd's server module replaces its siblings with ../ paths; as a dependency of a wrapper module
# those replaces are ignored and the tagged siblings are used.
build_etcd() {
  have etcd "$ETCD_VERSION" etcd && return 0
  local d; d=$(dir etcd "$ETCD_VERSION"); mkdir -p "$d"
  local w; w=$(mktemp -d)
  log "building etcd $ETCD_VERSION"
  (
    cd "$w"
    go mod init local/etcdpeer >/dev/null 2>&1
    go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null
    go_build_to "$d/etcd" go.etcd.io/etcd/server/v3
  )
  rm -rf "$w"
}

build_cluster() {
  build_etcd
  go_install kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok kwok
  kube_build kube-apiserver kube-controller-manager kube-scheduler
}

# Gitea (a real Git host: smart HTTP, SSH with a host key, signed push webhooks). Its go.mod has
# replace lines, so `go install` refuses it: a wrapper module copies them. SQLite needs cgo. Built
# without `bindata`, it reads templates and locales from disk: they are copied next to the binary
# (static/), a path that does not depend on the Go module cache (see `env`).
build_gitea() {
  have gitea "$GITEA_VERSION" gitea && [ -d "$(dir gitea "$GITEA_VERSION")/static/options" ] && return 0
  local d; d=$(dir gitea "$GITEA_VERSION"); mkdir -p "$d"
  local w; w=$(mktemp -d)
  log "building gitea $GITEA_VERSION"
  local start=$SECONDS
  (
    cd "$w"
    go mod init local/giteapeer >/dev/null 2>&1
    local info gomod src
    info=$(go mod download -json "code.gitea.io/gitea@$GITEA_VERSION")
    gomod=$(sed -n 's/.*"GoMod": "\(.*\)",*/\1/p' <<<"$info")
    src=$(sed -n 's/.*"Dir": "\(.*\)",*/\1/p' <<<"$info")
    # single-line `replace a => b v` and lines inside a `replace ( … )` block
    awk '/^replace \(/{blk=1; next} blk && /^\)/{blk=0; next}
         blk && $2=="=>" {print $1"="$3"@"$4}
         /^replace / && $3=="=>" {print $2"="$4"@"$5}' "$gomod" | while read -r r; do
      go mod edit -replace="${r%@}"
    done
    go get "code.gitea.io/gitea@$GITEA_VERSION" >/dev/null
    CGO_ENABLED=1 go build -tags 'sqlite sqlite_unlock_notify' -ldflags "-s -w" -o "$d/gitea.tmp" code.gitea.io/gitea
    rm -rf "$d/static" && mkdir -p "$d/static"
    cp -r "$src/options" "$src/templates" "$src/public" "$d/static/"
    chmod -R u+w "$d/static"
    mv "$d/gitea.tmp" "$d/gitea"
  )
  rm -rf "$w"
  log "built gitea $GITEA_VERSION in $((SECONDS - start))s"
}

# Prometheus and promtool for the alerting rules' unit tests and the end-to-end monitoring test.
# Built without the `builtinassets` tag, the web UI is absent (the HTTP API, which is all the tests
# use, is there). Both binaries share one dependency build, so the second costs a link.
build_prometheus() {
  local start=$SECONDS
  local module=github.com/prometheus/prometheus flags="$GOFLAGS -tags=remove_all_sd"
  have prometheus "$PROMETHEUS_BUILD" prometheus promtool && return 0
  go_install prometheus "$PROMETHEUS_BUILD" "$module/cmd/prometheus@$PROMETHEUS_VERSION" prometheus GOFLAGS="$flags"
  go_install prometheus "$PROMETHEUS_BUILD" "$module/cmd/promtool@$PROMETHEUS_VERSION" promtool GOFLAGS="$flags"
  log "prometheus and promtool $PROMETHEUS_VERSION ready in $((SECONDS - start))s"
}

# The PolicyReport CRD, one YAML file copied out of Kyverno's module (downloaded, never built):
# the tests install it to check the reports the operator writes against the real schema.
fetch_policyreport_crd() {
  local d; d=$(dir policyreport-crd "$KYVERNO_VERSION")
  [ -f "$d/wgpolicyk8s.io_policyreports.yaml" ] && return 0
  log "fetching the PolicyReport CRD from kyverno $KYVERNO_VERSION"
  local src
  src=$(GOFLAGS=-mod=mod go mod download -json "github.com/kyverno/kyverno@$KYVERNO_VERSION" |
    sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
  mkdir -p "$d"
  copy_to "$src/config/crds/policyreport/wgpolicyk8s.io_policyreports.yaml" "$d/wgpolicyk8s.io_policyreports.yaml"
}

# The timestamp authority's own `timestamp-server serve` binds its Prometheus listener on the fixed
# :2112 (all interfaces) and exits when that port is taken, so two cannot run at once. Its REST
# API server is a library (pkg/server): a twenty-line main of ours serves it alone, with the
# in-memory signer (an ephemeral key and certificate chain, served at /api/v1/timestamp/certchain)
# and the flags' defaults: tsa-server HOST:PORT (port 0: the kernel picks).
build_timestamp_authority() {
  go_main timestamp-authority "$TSA_VERSION" tsa-server github.com/sigstore/timestamp-authority/v2 <<'GO'
// Serves sigstore/timestamp-authority's REST API with the in-memory signer: tsa-server HOST:PORT
package main

import (
	"log"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/sigstore/timestamp-authority/v2/pkg/server"
	"github.com/spf13/viper"
)

func main() {
	host, port, err := net.SplitHostPort(os.Args[1])
	if err != nil {
		log.Fatal(err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		log.Fatal(err)
	}
	// The defaults of timestamp-server's flags (cmd/timestamp-server/app/root.go).
	viper.Set("timestamp-signer", "memory")
	viper.Set("timestamp-signer-hash", "sha256")
	viper.Set("default-policy-oid", "1.3.6.1.4.1.57264.2")
	viper.Set("accepted-policy-oids", []string{"1.3.6.1.4.1.57264.2"})
	viper.Set("max-request-body-size", uint64(1048576))
	viper.Set("enforce-intermediate-eku", true)
	s := server.NewRestAPIServer(host, p, []string{"http"}, false, 10*time.Second, 10*time.Second)
	if err := s.Serve(); err != nil {
		log.Fatal(err)
	}
}
GO
}

# Fulcio (with a file CA the harness makes), the timestamp authority, Rekor v2 and
# TesseraCT on their POSIX backends. They share most of their dependencies (sigstore/sigstore,
# the cloud SDKs their KMS signers import), so the second and later builds mostly link.
build_sigstore() {
  local start=$SECONDS
  go_install fulcio "$FULCIO_VERSION" github.com/sigstore/fulcio fulcio
  build_timestamp_authority
  go_install rekor-tiles "$REKOR_TILES_VERSION" github.com/sigstore/rekor-tiles/v2/cmd/rekor-server/posix posix
  go_install tesseract "$TESSERACT_VERSION" github.com/transparency-dev/tesseract/cmd/tesseract/posix posix
  log "sigstore stack ready in $((SECONDS - start))s"
}

# Trillian's log server and signer on PostgreSQL, and its PostgreSQL schema (copied out of the
# module beside the binaries: the harness loads it into the database it starts). The two binaries
# share one dependency build, so the second costs a link.
build_trillian() {
  local module=github.com/google/trillian flags="$GOFLAGS -tags=postgresql"
  local d; d=$(dir trillian "$TRILLIAN_BUILD")
  have trillian "$TRILLIAN_BUILD" trillian_log_server trillian_log_signer && [ -f "$d/storage.sql" ] && return 0
  go_install trillian "$TRILLIAN_BUILD" "$module/cmd/trillian_log_server@$TRILLIAN_VERSION" trillian_log_server GOFLAGS="$flags"
  go_install trillian "$TRILLIAN_BUILD" "$module/cmd/trillian_log_signer@$TRILLIAN_VERSION" trillian_log_signer GOFLAGS="$flags"
  local src
  src=$(GOFLAGS=-mod=mod go mod download -json "$module@$TRILLIAN_VERSION" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
  copy_to "$src/storage/postgresql/schema/storage.sql" "$d/storage.sql"
}

# Rekor v1's own `rekor-server serve` binds its Prometheus listener on the fixed :2112 (all
# interfaces, its error ignored). Its REST API is a library (pkg/api, pkg/generated/restapi): a
# main of ours serves it alone on the address it is given, with the entry types cosign uploads
# (hashedrekord, intoto, dsse, rekord), no search index (Redis or MySQL) and no attestation
# storage, the checkpoint origin 127.0.0.1 (as Rekor v2's here) and the signing key from a PEM
# file. With no tree id it creates its Trillian tree itself:
#   rekor-v1-server HOST:PORT TRILLIAN_HOST:PORT SIGNER_KEY_PEM   (port 0: the kernel picks)
build_rekor_v1_server() {
  go_main rekor-v1 "$REKOR_V1_VERSION" rekor-v1-server github.com/sigstore/rekor <<'GO'
// Serves sigstore/rekor's (v1) REST API without its metrics listener:
// rekor-v1-server HOST:PORT TRILLIAN_HOST:PORT SIGNER_KEY_PEM
package main

import (
	"log"
	"net"
	"os"
	"strconv"

	"github.com/go-openapi/loads"
	"github.com/sigstore/rekor/pkg/api"
	"github.com/sigstore/rekor/pkg/generated/restapi"
	"github.com/sigstore/rekor/pkg/generated/restapi/operations"
	rekorlog "github.com/sigstore/rekor/pkg/log"
	_ "github.com/sigstore/rekor/pkg/types/dsse/v0.0.1"
	_ "github.com/sigstore/rekor/pkg/types/hashedrekord/v0.0.1"
	_ "github.com/sigstore/rekor/pkg/types/intoto/v0.0.1"
	_ "github.com/sigstore/rekor/pkg/types/intoto/v0.0.2"
	_ "github.com/sigstore/rekor/pkg/types/rekord/v0.0.1"
	"github.com/spf13/viper"
)

func hostPort(s string) (string, int) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		log.Fatal(err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		log.Fatal(err)
	}
	return host, p
}

func main() {
	if len(os.Args) != 4 {
		log.Fatal("usage: rekor-v1-server HOST:PORT TRILLIAN_HOST:PORT SIGNER_KEY_PEM")
	}
	host, port := hostPort(os.Args[1])
	trillianHost, trillianPort := hostPort(os.Args[2])
	// The keys `rekor-server serve` reads (cmd/rekor-server/app/root.go); the others keep their
	// zero values, which are the flags' defaults or switch the feature off.
	viper.Set("trillian_log_server.address", trillianHost)
	viper.Set("trillian_log_server.port", trillianPort)
	viper.Set("rekor_server.hostname", "127.0.0.1")
	viper.Set("rekor_server.signer", os.Args[3])
	viper.Set("enable_retrieve_api", false)
	viper.Set("enabled_api_endpoints", []string{"getLogInfo", "getPublicKey", "getLogProof",
		"createLogEntry", "getLogEntryByIndex", "getLogEntryByUUID", "searchLogQuery"})
	rekorlog.ConfigureLogger("dev", "")
	doc, err := loads.Embedded(restapi.SwaggerJSON, restapi.FlatSwaggerJSON)
	if err != nil {
		log.Fatal(err)
	}
	server := restapi.NewServer(operations.NewRekorServerAPI(doc))
	server.Host, server.Port, server.EnabledListeners = host, port, []string{"http"}
	api.ConfigureAPI(0) // no tree id: create one
	server.ConfigureAPI()
	if err := server.Serve(); err != nil {
		log.Fatal(err)
	}
}
GO
}

# Rekor v1 and the Trillian log it writes to.
build_rekor_v1() {
  local start=$SECONDS
  build_trillian
  build_rekor_v1_server
  log "rekor v1 and trillian ready in $((SECONDS - start))s"
}

# path NAME: the binary tests and scripts run.
path() {
  case "$1" in
    cosign | cosign3) echo "$(dir cosign "$COSIGN3_VERSION")/cosign" ;;
    cosign2) echo "$(dir cosign "$COSIGN2_VERSION")/cosign" ;;
    crane) echo "$(dir crane "$CRANE_VERSION")/crane" ;;
    ggcr-referrers) echo "$(dir ggcr-referrers "$CRANE_VERSION")/ggcr-referrers" ;;
    distribution) echo "$(dir distribution "$DISTRIBUTION_VERSION")/registry" ;;
    etcd) echo "$(dir etcd "$ETCD_VERSION")/etcd" ;;
    kwok) echo "$(dir kwok "$KWOK_VERSION")/kwok" ;;
    kube-apiserver | kube-controller-manager | kube-scheduler | kubectl) echo "$(dir kubernetes "$KUBE_VERSION")/$1" ;;
    gitea) echo "$(dir gitea "$GITEA_VERSION")/gitea" ;;
    gitea-static) echo "$(dir gitea "$GITEA_VERSION")/static" ;;
    prometheus | promtool) echo "$(dir prometheus "$PROMETHEUS_BUILD")/$1" ;;
    policyreport-crd) echo "$(dir policyreport-crd "$KYVERNO_VERSION")/wgpolicyk8s.io_policyreports.yaml" ;;
    fulcio) echo "$(dir fulcio "$FULCIO_VERSION")/fulcio" ;;
    tsa-server) echo "$(dir timestamp-authority "$TSA_VERSION")/tsa-server" ;;
    rekor-server) echo "$(dir rekor-tiles "$REKOR_TILES_VERSION")/posix" ;;
    tesseract) echo "$(dir tesseract "$TESSERACT_VERSION")/posix" ;;
    trillian_log_server | trillian_log_signer) echo "$(dir trillian "$TRILLIAN_BUILD")/$1" ;;
    trillian-schema) echo "$(dir trillian "$TRILLIAN_BUILD")/storage.sql" ;;
    rekor-v1-server) echo "$(dir rekor-v1 "$REKOR_V1_VERSION")/rekor-v1-server" ;;
    *) log "unknown peer $1"; return 2 ;;
  esac
}

# env: export lines naming every peer, for tests (COUNTERSIGN_PEER_<NAME>=path).
print_env() {
  for p in cosign3 cosign2 crane ggcr-referrers distribution etcd kwok kube-apiserver kube-controller-manager kube-scheduler kubectl gitea gitea-static prometheus promtool policyreport-crd fulcio tsa-server rekor-server tesseract trillian_log_server trillian_log_signer trillian-schema rekor-v1-server; do
    local var; var="COUNTERSIGN_PEER_$(tr 'a-z-' 'A-Z_' <<<"$p")"
    echo "export $var=$(path "$p")"
  done
}

# again BUILD...: runs a build, and once more if it failed. The versions are pinned, so a build
# that fails once and not twice is the network's doing (the module proxy) or the machine's, and a
# cold CI run should not be lost to it; the Go build and module caches keep what the first try
# finished. The first try runs as a background job so that `set -e` still applies inside it
# (bash ignores it in a function called where a failure is tested).
again() {
  ( "$@" ) &
  wait $! && return 0
  log "$1 failed; trying once more in 10 s"
  sleep 10
  "$@"
}

main() {
  [ $# -gt 0 ] || set -- all
  case "$1" in
    path) path "$2"; return ;;
    env) print_env; return ;;
  esac
  for what in "$@"; do
    case "$what" in
      registries) again build_registries ;;
      cosign) again build_cosign ;;
      cluster) again build_cluster ;;
      kubectl) again build_kubectl ;;
      gitea) again build_gitea ;;
      prometheus) again build_prometheus ;;
      policyreport) again fetch_policyreport_crd ;;
      sigstore) again build_sigstore ;;
      rekor-v1) again build_rekor_v1 ;;
      all)
        # In the order the tests need them: a cold e2e/test.sh runs the tests while the later ones
        # build, and almost every operator test needs the registries and the control plane.
        for build in build_registries build_cluster fetch_policyreport_crd build_cosign build_gitea \
          build_prometheus build_sigstore build_rekor_v1; do
          again "$build"
        done
        ;;
      *) log "unknown target $what"; return 2 ;;
    esac
  done
}

main "$@"
