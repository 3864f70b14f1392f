#!/usr/bin/env bash
# Install the Debian packages that provide the given commands, only those missing (idempotent).
#   hack/ensure-packages.sh promtool:prometheus containerd:containerd ...
# Each argument is COMMAND:PACKAGE (the path of a file instead of a command also works).
set -euo pipefail
missing=()
for pair in "$@"; do
  command="${pair%%:*}"
  package="${pair#*:}"
  if [[ "$command" == /* ]]; then
    [ -e "$command" ] && continue
  else
    command -v "$command" >/dev/null 2>&1 && continue
  fi
  missing+=("$package")
done
[ "${#missing[@]}" -eq 0 ] && exit 0
echo "ensure-packages: apt-get install ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# A fresh machine may have no package lists yet: update once, only when the install needs it.
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
  || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
