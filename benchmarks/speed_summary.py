"""Issue 20's CPU summary in one JSON: the host cost per step (benchmarks/host_overhead.py) and the compile cache's
cold vs warm first step (benchmarks/compile_cache.py), each measured in its own same-run comparison.

    .venv/bin/python benchmarks/speed_summary.py \\
        --host benchmarks/results/host_overhead_cpu_2026-12-07.json \\
        --cache benchmarks/results/compile_cache_cpu_2026-12-07.json \\
        --out benchmarks/results/speed_cpu_2026-12-07.json

Nothing is re-measured here: the figures are copied from the two summaries, which keep every run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HOST_KEYS = ("host_ms_per_step_trainer", "host_ms_per_step_qaflow", "best_qaflow_mode", "host_cost_ratio")
CACHE_KEYS = ("first_step_cold_s", "first_step_warm_s", "warm_over_cold_first_step", "warm_over_cold_steady")


def combined(host: dict, cache: dict, host_path: str, cache_path: str) -> dict:
    """The required keys of both summaries, the per-mode host figures, and where each came from."""
    missing = [k for k in HOST_KEYS if k not in host] + [k for k in CACHE_KEYS if k not in cache]
    if missing:
        raise SystemExit(f"speed_summary: missing keys {missing} (rerun the benchmark that writes them)")
    return {
        "device": "cpu",
        **{k: host[k] for k in HOST_KEYS},
        "host_modes": host.get("modes", {}),
        **{k: cache[k] for k in CACHE_KEYS},
        "compile_cache_setup": {k: cache.get(k) for k in ("model", "compile_mode", "batch", "seq", "bf16", "rounds")},
        "sources": {"host_overhead": host_path, "compile_cache": cache_path},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", required=True, help="benchmarks/host_overhead.py --json output")
    ap.add_argument("--cache", required=True, help="benchmarks/compile_cache.py --json output")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    summary = combined(json.loads(Path(a.host).read_text()), json.loads(Path(a.cache).read_text()), a.host, a.cache)
    Path(a.out).write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "host_modes"}, indent=1))


if __name__ == "__main__":
    main()
