#!/usr/bin/env bash
# Build kube-apiserver, kube-controller-manager and etcd from the Go module proxy (no Docker, no
# release downloads) and cache them outside the repository, keyed by version, so that a second
# run costs seconds.
#
#   K8S_VERSION=v1.36.3 ETCD_VERSION=v3.6.14 hack/build-control-plane.sh
#   NODE=1 hack/build-control-plane.sh    # also kubelet and kube-scheduler
#
# Prints the directory holding the binaries on its last line.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.14}"
CACHE_ROOT="${GPUPOD_CACHE:-$HOME/.cache/gpupod-operator}"
OUT="$CACHE_ROOT/bin/k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}"
mkdir -p "$OUT"
export CGO_ENABLED=0 GOFLAGS=-mod=mod
work="" ework=""
trap 'rm -rf "$work" "$ework"' EXIT
log() { echo "build-control-plane: $*" >&2; }

# The Kubernetes commands come from one wrapper module (one `go get` resolution, one GOCACHE);
# each is built only if it is missing, so adding one to the list costs only its own build.
K8S_COMMANDS=(kube-apiserver kube-controller-manager)
# NODE=1 (`NODE=1 make dev-up`): also the local node's kubelet and kube-scheduler (2 min after
# kube-controller-manager filled the Go build cache; ~7 min from an empty one). Without NODE
# they are neither built nor needed.
if [ "${NODE:-}" = 1 ]; then K8S_COMMANDS+=(kubelet kube-scheduler); fi
missing=()
for c in "${K8S_COMMANDS[@]}"; do [ -x "$OUT/$c" ] || missing+=("$c"); done

if [ "${#missing[@]}" -gt 0 ]; then
  log "building ${missing[*]} $K8S_VERSION (cold: minutes each; cached in $OUT)"
  work="$(mktemp -d)"
  (
    cd "$work"
    go mod init example.invalid/gpupod-control-plane >/dev/null 2>&1
    # k/k requires its staging modules at v0.0.0 and maps them to ./staging with replace
    # directives that a dependent module ignores: replace each with its published v0.Y.Z tag,
    # deriving the list from k/k's own go.mod so a new staging module needs no edit here.
    gomod="$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" \
             | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
    staging="v0.${K8S_VERSION#v1.}"
    go mod edit -json "$gomod" | python3 -c '
import json, sys
for r in json.load(sys.stdin)["Require"]:
    if r["Version"] == "v0.0.0":
        print(r["Path"])' | while read -r m; do
      go mod edit -replace="${m}=${m}@${staging}"
    done
    for c in "${missing[@]}"; do
      go get "k8s.io/kubernetes/cmd/${c}@${K8S_VERSION}" >&2
    done
    # Stamp the real version (hack/lib/version.sh does the same), or /version says v0.0.0.
    minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
    ldflags="-s -w"
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags="$ldflags -X $p.gitVersion=${K8S_VERSION} -X $p.gitMajor=1 -X $p.gitMinor=${minor}"
      ldflags="$ldflags -X $p.gitTreeState=clean -X $p.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    done
    for c in "${missing[@]}"; do
      log "go build $c"
      go build -trimpath -ldflags "$ldflags" -o "$OUT/$c.tmp" "k8s.io/kubernetes/cmd/$c"
      mv "$OUT/$c.tmp" "$OUT/$c"
    done
  )
fi

if [ ! -x "$OUT/etcd" ]; then
  log "building etcd $ETCD_VERSION"
  ework="$(mktemp -d)"
  (
    cd "$ework"
    go mod init example.invalid/gpupod-etcd >/dev/null 2>&1
    go get "go.etcd.io/etcd/server/v3@${ETCD_VERSION}" >&2
    go build -trimpath -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=${ETCD_VERSION}" \
      -o "$OUT/etcd.tmp" go.etcd.io/etcd/server/v3
    mv "$OUT/etcd.tmp" "$OUT/etcd"
  )
fi

ln -sfn "$OUT" "$CACHE_ROOT/bin/current"
for c in "${K8S_COMMANDS[@]}"; do echo "$("$OUT/$c" --version)" >&2; done
# No pipe into head: under pipefail, head exiting first kills etcd with SIGPIPE (exit 141).
etcd_version="$("$OUT/etcd" --version)"
echo "${etcd_version%%$'\n'*}" >&2
echo "$OUT"
