#!/usr/bin/env bash
# Install wiringlab and what it needs on a fresh machine (Debian/Ubuntu or any Python >= 3.10).
# torch is installed first and pinned to 2.13.0 when absent, so that the package's torch
# range never pulls a newer multi-GB CUDA build onto a CPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install -q "torch==2.13.0"
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1 && [ ! -d /usr/share/datasets/fashion-mnist ]; then
  # Fashion-MNIST (real, full) from Debian; optional: everything else runs without it.
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) \
    || echo "note: could not apt-get install dataset-fashion-mnist; its tests will be skipped (they fail where WIRINGLAB_REQUIRE names it, as .ci/run does)" >&2
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1 && ! command -v chromium >/dev/null 2>&1; then
  # Headless Chromium renders report.html in the tests; optional: nothing else needs it.
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
    || echo "note: could not apt-get install chromium; the browser test of report.html will be skipped (it fails where WIRINGLAB_REQUIRE names it, as .ci/run does)" >&2
fi
# Extras: ray (the Ray executor and its tests against real clusters), tensorboard (--tensorboard),
# numba (csr_kernel: numba, CPU kernels for CSR layers).
"$PY" -m pip install -q -e ".[test,ray,tensorboard,numba]"
