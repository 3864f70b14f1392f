#!/usr/bin/env bash
# `make image`: build the Dockerfile's image as gpupod-operator:<chart appVersion> without Docker.
#
# buildah (Debian package) builds it in a private store under the cache, FROM a Python base that
# is itself made from Debian packages (mmdebstrap, with the host's apt sources: the same Python
# 3.11 as python:3.11-slim), because no container registry is reachable here. A Docker build
# elsewhere uses the real python:3.11-slim. The base is built once and cached, keyed by its
# recipe; the image layers are cached by buildah. Prints the image name on its last line.
#
#   hack/build-image.sh                  # build (or reuse) the base, build the image
#   BUILDAH_STORE=... hack/build-image.sh  # another store (default: $GPUPOD_CACHE/containers)
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE_ROOT="${GPUPOD_CACHE:-$HOME/.cache/gpupod-operator}"
STORE="${BUILDAH_STORE:-$CACHE_ROOT/containers}"
SUITE="${BASE_SUITE:-bookworm}"
# The base's packages: python3 (3.11 in bookworm), venv, CA store, useradd/groupadd.
BASE_PACKAGES="python3,python3-venv,python-is-python3,ca-certificates,passwd"
log() { echo "build-image: $*" >&2; }

for tool in buildah mmdebstrap; do
  command -v "$tool" >/dev/null || {
    log "$tool not found: apt-get install buildah mmdebstrap (see README, Image)"
    exit 2
  }
done

app_version="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' deploy/helm/gpupod-operator/Chart.yaml)"
[ -n "$app_version" ] || { log "no appVersion in deploy/helm/gpupod-operator/Chart.yaml"; exit 1; }
IMAGE="localhost/gpupod-operator:${app_version}"

B=(buildah --root "$STORE/root" --runroot "$STORE/run" --storage-driver overlay)
mkdir -p "$STORE"

# The base's tag carries a hash of its recipe (this suite, these packages, the host's locally
# added CAs), so a change to any of them builds a new one.
local_cas=(/usr/local/share/ca-certificates/*.crt)
[ -e "${local_cas[0]}" ] || local_cas=()
recipe_hash="$( { echo "$SUITE $BASE_PACKAGES"; cat ${local_cas[@]+"${local_cas[@]}"}; } \
                | sha256sum)"
BASE="localhost/gpupod-python-deb:${SUITE}-${recipe_hash:0:12}"

if ! "${B[@]}" inspect --type image "$BASE" >/dev/null 2>&1; then
  log "building the base $BASE from Debian packages (cold: a minute or two)"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  sources=(/etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list /etc/apt/sources.list)
  mirrors=()
  for f in "${sources[@]}"; do [ -s "$f" ] && mirrors+=("$f"); done
  # TLS from these machines may be re-signed by a local CA: the base trusts what the build host
  # trusts (its locally added CAs), so pip inside the build can verify PyPI.
  hooks=()
  if [ "${#local_cas[@]}" -gt 0 ]; then
    hooks+=(--customize-hook='mkdir -p "$1/usr/local/share/ca-certificates"')
    for ca in "${local_cas[@]}"; do
      hooks+=(--customize-hook="cp '$ca' \"\$1/usr/local/share/ca-certificates/\"")
    done
    hooks+=(--customize-hook='chroot "$1" update-ca-certificates >/dev/null')
  fi
  mmdebstrap --quiet --variant=minbase --include="$BASE_PACKAGES" \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    ${hooks[@]+"${hooks[@]}"} "$SUITE" "$work/base.tar" "${mirrors[@]}"
  c="$("${B[@]}" from scratch)"
  "${B[@]}" add "$c" "$work/base.tar" / >/dev/null
  "${B[@]}" config --env LANG=C.UTF-8 \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd '["python3"]' "$c"
  "${B[@]}" commit --quiet "$c" "$BASE" >/dev/null
  "${B[@]}" rm "$c" >/dev/null
fi

log "building $IMAGE FROM $BASE"
# --network=host: the RUN steps (pip) use the host's network; no bridge, no firewall rules.
"${B[@]}" bud --quiet --pull=never --network=host --layers \
  --build-arg "PYTHON_IMAGE=$BASE" -t "$IMAGE" . >&2

# The local node (`NODE=1 make dev-up`) runs: import the image into its containerd (namespace
# k8s.io) under the name an unqualified `gpupod-operator:<v>` in a Pod resolves to.
sock=".dev/node/containerd/containerd.sock"
if [ -S "$sock" ]; then
  log "importing into the local node's containerd as docker.io/library/gpupod-operator:${app_version}"
  archive="$(mktemp -u /tmp/gpupod-operator-image.XXXXXX.tar)"
  "${B[@]}" push --quiet "$IMAGE" \
    "docker-archive:$archive:docker.io/library/gpupod-operator:${app_version}" >&2
  ctr -a "$sock" -n k8s.io images import "$archive" >&2 || { rm -f "$archive"; exit 1; }
  rm -f "$archive"
fi
echo "$IMAGE"
