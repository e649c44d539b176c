#!/usr/bin/env bash
# Create .venv/ at the repository root and install qaflow into it (idempotent, offline-safe for models).
# torch goes first, pinned to the CPU wheel, so nothing pulls the multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.qaflow-installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x .venv/bin/qaflow ]; then
  exit 0
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
.venv/bin/python -m pip install -q --upgrade "pip>=24" >/dev/null
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -c constraints.txt -e ".[pipeline,dev]"
echo "$want" > "$stamp"
echo "qaflow installed in .venv/ ($(.venv/bin/python -c 'import transformers, torch; print("torch", torch.__version__, "transformers", transformers.__version__)'))"
