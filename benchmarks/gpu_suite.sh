#!/usr/bin/env bash
# The GPU suite on the device machine, in one command (carry gpu_payload/, built by benchmarks/gpu_payload.py):
#   run(command="bash benchmarks/gpu_suite.sh", carry=["gpu_payload"], timeout_s=540)
# A follow-up session (the a/b stages were measured on 2026-11-28, benchmarks/results/): the c table only,
#   run(command="bash benchmarks/gpu_suite.sh --stages c_plain_bf16_compile,c_qaflow_compile,c_qaflow_grouped,c_qaflow_autotune",
#       carry=["gpu_payload"], timeout_s=400)
# The image already has torch, transformers, accelerate, tokenizers, numpy, pyyaml: nothing is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv || true
python -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
python benchmarks/gpu_suite.py --out "${OUT:-outputs/gpu_suite}" --budget_s "${BUDGET_S:-470}" "$@"
