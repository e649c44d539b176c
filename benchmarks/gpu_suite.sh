#!/usr/bin/env bash
# The GPU suite on the device machine, in one command (carry gpu_payload/, built by benchmarks/gpu_payload.py):
#   run(command="bash benchmarks/gpu_suite.sh", carry=["gpu_payload"], timeout_s=540)
# The image already has torch, transformers, accelerate, tokenizers, numpy, pyyaml: nothing is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv || true
python -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
python benchmarks/gpu_suite.py --out "${OUT:-outputs/gpu_suite}" --budget_s "${BUDGET_S:-470}" "$@"
