#!/usr/bin/env bash
# Fail on a pipe into a reader that may exit before the writer is done (`| head`, `| grep -q`):
# under `set -o pipefail` the writer then dies of SIGPIPE (exit 141) now and then, and so does
# the script. Read the whole output into a variable instead. Checks hack/*.sh and .ci/run;
# comment lines are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
pattern='\|[[:space:]]*(head|grep[[:space:]]+(-[a-zA-Z]*q|--quiet))\b'
found="$(grep -nE "$pattern" hack/*.sh .ci/run | grep -vE '^[^:]+:[0-9]+:[[:space:]]*#' || true)"
if [ -n "$found" ]; then
  printf 'lint-shell: a pipe into head / grep -q races with pipefail (exit 141):\n%s\n' "$found" >&2
  exit 1
fi
