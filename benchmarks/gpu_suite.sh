#!/usr/bin/env bash
# The GPU suite on the device machine (carry gpu_payload/, built here by `python benchmarks/gpu_payload.py`).
# A session's 15 device-minutes hold two calls, in this order (what the first leaves unsaid, the second adds):
#   1. the profiles, host overhead, the bert-base table with the new levers and the cached mode (~8 min):
#      run(command="bash benchmarks/gpu_suite.sh", carry=["gpu_payload"], timeout_s=560)
#   2. max-autotune cold then warm, and time to F1 at scale (the seed's run_qa settings vs qaflow's fastest recipe):
#      run(command="BUDGET_S=480 bash benchmarks/gpu_suite.sh --stages c_qaflow_autotune_cached,b_features,b_qaflow,b_baseline --scale_epochs 1",
#          carry=["gpu_payload"], timeout_s=560)
#      (2 epochs, the seed's, need ~12 min: a session of its own)
# Before: `python benchmarks/gpu_suite.py --cpu_smoke --out /tmp/suite` here (the same stages, tiny, on the CPU).
# The image already has torch, transformers, accelerate, tokenizers, numpy, pyyaml: nothing is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv || true
python -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
# Work under outputs/ (models, features); only the summary, the stage results and logs go back through $OUT
# (the device returns at most 8 files).
WORK=outputs/gpu_suite
rc=0
python benchmarks/gpu_suite.py --out "$WORK" --budget_s "${BUDGET_S:-500}" "$@" || rc=$?
if [ -n "${OUT:-}" ]; then
  cp "$WORK/summary.json" "$OUT/" 2>/dev/null || true
  (cd "$WORK" && tar czf "$OUT/stages.tgz" --exclude='*/*' -- *.json *.log 2>/dev/null) || true
  for name in autotune_table.md autotune_table.csv autotune_raw.log; do
    find "$WORK" -name "$name" -exec cp {} "$OUT/" \; -quit 2>/dev/null || true
  done
fi
exit $rc
