#!/usr/bin/env bash
# Set up, then run the quickstart recipe (offline: MNIST-1D is generated locally).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=${PYTHON:-python3}
"$PY" -m wiringlab.cli run recipes/quickstart.yaml "$@"
