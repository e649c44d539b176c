#!/usr/bin/env bash
# The GPU suite on the device machine, in one command (carry gpu_payload/, built by benchmarks/gpu_payload.py):
#   run(command="bash benchmarks/gpu_suite.sh", carry=["gpu_payload"], timeout_s=540)
# Measured on 2026-12-04 (benchmarks/results/gpu_suite_h200_2026-12-04.json) with:
#   run(command="BUDGET_S=505 bash benchmarks/gpu_suite.sh --stages c_plain_bf16_compile,c_qaflow_packed_compile,c_qaflow_packed,c_qaflow_compile,b_features,b_qaflow,b_baseline,c_qaflow_autotune",
#       carry=["gpu_payload"], timeout_s=580)
# max-autotune needs more than its ~100 s share at bert-base: run it alone with BUDGET_S=300 for a whole table.
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
python benchmarks/gpu_suite.py --out "$WORK" --budget_s "${BUDGET_S:-470}" "$@" || rc=$?
if [ -n "${OUT:-}" ]; then
  cp "$WORK/summary.json" "$OUT/" 2>/dev/null || true
  (cd "$WORK" && tar czf "$OUT/stages.tgz" --exclude='*/*' -- *.json *.log 2>/dev/null) || true
  for name in autotune_table.md autotune_table.csv autotune_raw.log; do
    find "$WORK" -name "$name" -exec cp {} "$OUT/" \; -quit 2>/dev/null || true
  done
fi
exit $rc
