#!/usr/bin/env bash
# Every CUDA path run once, one PASS / FAIL / SKIP line per check (benchmarks/gpu_check.py says which).
# About 8 minutes on one GPU; without CUDA, its CPU-side checks at a tiny size and a SKIP line per CUDA check.
#
#   bash benchmarks/gpu_check.sh        (from anywhere; it works in the repository root)
#
# Python: $PYTHON if it can import torch and okspose, else the project's venv, made as `make setup` makes it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's okspose, whatever the venv holds
if [ -n "${PYTHON:-}" ] && "$PYTHON" -c "import torch, okspose" 2>/dev/null; then
    PY="$PYTHON"
else
    make -s setup >&2
    PY=.venv/bin/python
fi
exec "$PY" benchmarks/gpu_check.py "$@"
