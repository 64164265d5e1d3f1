#!/usr/bin/env bash
# Set up, then run the whole test suite. Exits non-zero when no test ran (pytest exit 5).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit $?
PY=${PYTHON:-python3}
"$PY" -m pytest -q "$@"
rc=$?
if [ "$rc" = "5" ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
