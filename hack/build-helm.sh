#!/usr/bin/env bash
# Build helm from the Go module proxy and cache it outside the repository, keyed by version.
# Prints the binary's path on its last line.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.21.4}"
K8S_MINOR="${K8S_MINOR:-36}"   # the Kubernetes version helm assumes for `helm template`
CACHE_ROOT="${GPUPOD_CACHE:-$HOME/.cache/gpupod-operator}"
OUT="$CACHE_ROOT/bin/helm-${HELM_VERSION}"
mkdir -p "$OUT"
export CGO_ENABLED=0

if [ ! -x "$OUT/helm" ]; then
  echo "build-helm: building helm $HELM_VERSION (cached in $OUT)" >&2
  # The same -X flags as helm's Makefile: without them `helm version` is empty and
  # `helm template` assumes Kubernetes 1.20.
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
  for p in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ldflags="$ldflags -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=${K8S_MINOR}"
  done
  GOBIN="$OUT" go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
fi
ln -sfn "$OUT/helm" "$CACHE_ROOT/bin/helm"
"$OUT/helm" version --short >&2
echo "$OUT/helm"
