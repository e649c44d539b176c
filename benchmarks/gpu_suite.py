"""The prepared GPU suite, in one command per device call (stages: benchmarks/gpu_stages.py).

    python benchmarks/gpu_payload.py --out gpu_payload                      # here, once (needs ../shared/data)
    bash benchmarks/gpu_suite.sh                                            # on the device (carry gpu_payload)
    python benchmarks/gpu_suite.py --cpu_smoke --out /tmp/suite             # here: the same stages, tiny and fast

Each stage runs in its own process with its own time guard (a slow or hung stage is killed and the next one runs),
in the order given. The default call (~8 min on an H200) is, by priority: the profiles, the host overhead, the
bert-base table with the new levers and the cached mode. The second call (benchmarks/gpu_suite.sh) is
max-autotune cold then warm and time to F1 at scale (`c_qaflow_autotune_cached,b_features,b_baseline,b_qaflow`).

Writes `<out>/<stage>.json` per stage, `<out>/summary.json` (keys: device, mfu, speedup_vs_baseline, delta_f1,
warm_over_cold_first_step, ...) and prints the summary table last.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from gpu_stages import STAGES, settings  # noqa: E402

DEFAULT_STAGES = ("p_trainer", "p_qaflow_packed_static", "h_host_overhead", "c_plain_bf16_compile", "c_qaflow_compile",
                  "c_qaflow_packed_static", "c_qaflow_packed_graphs", "c_qaflow_compile_cached")  # fmt: skip
HOST_KEYS = ("host_ms_per_step_trainer", "host_ms_per_step_qaflow", "host_cost_ratio", "best_qaflow_mode")
QAFLOW_C_MODES = tuple(name for name in STAGES if name.startswith("c_qaflow"))
# the share of the whole budget each stage may use at most (what a stage leaves unused goes to the next ones)
SHARES = {
    "a_correctness": 0.08, "p_trainer": 0.07, "p_qaflow_packed_static": 0.07, "p_qaflow_compile": 0.07,
    "h_host_overhead": 0.08, "c_plain_fp32": 0.05, "c_plain_bf16_compile": 0.07, "c_qaflow_eager": 0.05,
    "c_qaflow_compile": 0.07, "c_qaflow_packed": 0.05, "c_qaflow_packed_compile": 0.07,
    "c_qaflow_packed_static": 0.07, "c_qaflow_packed_graphs": 0.07, "c_qaflow_compile_cached": 0.1,
    "c_qaflow_autotune_cached": 0.2, "b_features": 0.15, "b_baseline": 0.5, "b_qaflow": 0.3,
}  # fmt: skip


# --------------------------------------------------------------------------------------------- orchestration


def run_stage(name: str, a: argparse.Namespace, out: Path, timeout: float) -> dict[str, Any]:
    """One stage in its own process (so a hang or a crash costs only that stage)."""
    argv = [sys.executable, __file__, "--stage", name, "--out", str(out), "--payload", a.payload,
            "--scale_epochs", str(a.scale_epochs), "--scale_batch", str(a.scale_batch),
            "--c_steps", str(a.c_steps), "--c_batch", str(a.c_batch),
            *(["--cpu_smoke"] if a.cpu_smoke else [])]  # fmt: skip
    t0 = time.perf_counter()
    with open(out / f"{name}.log", "w") as log:
        try:
            env = {
                **os.environ,
                "TORCHINDUCTOR_CACHE_DIR": str(out / f"inductor_{name}"),
            }  # cold unless a store warms it
            code = subprocess.run(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=timeout,
                                  env=env).returncode  # fmt: skip
        except subprocess.TimeoutExpired:
            code = "timeout"
    result_file = out / f"{name}.json"
    result = json.loads(result_file.read_text()) if code == 0 and result_file.exists() else {}
    tail = (out / f"{name}.log").read_text(errors="replace").strip().splitlines()[-3:]
    status = "ok" if result else (f"timed out after {timeout:.0f} s" if code == "timeout" else f"failed ({code})")
    print(f"[{name}] {status} in {time.perf_counter() - t0:.0f} s" + ("" if result else f": {' | '.join(tail)}"),
          flush=True)  # fmt: skip
    return {"status": status, **result}


def summarise(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    def sps(name: str) -> float | None:
        """Steady-state samples/s (compile and warm-up apart): steady steps/s times the batch size."""
        m = (results.get(name) or {}).get("metrics") or {}
        if not m.get("train_steps_per_second"):
            return None
        batch = m["train_samples_per_second"] / m["train_steps_per_second"]
        return m.get("steady_train_steps_per_second", m["train_steps_per_second"]) * batch

    plain = max((v for v in (sps("c_plain_fp32"), sps("c_plain_bf16_compile")) if v), default=None)
    ours = {m: sps(m) for m in QAFLOW_C_MODES if sps(m)}
    best_mode = max(ours, key=lambda m: ours[m]) if ours else None
    scale = {k: results.get(k) or {} for k in ("b_qaflow", "b_baseline")}
    f1 = {k: (r.get("metrics") or {}).get("f1") for k, r in scale.items()}
    featurize_s = (results.get("b_features") or {}).get("featurize_s") or 0.0
    device = next((r.get("device") for r in results.values() if r.get("device")), "unknown")
    return {
        "device": device,
        "mfu": ((results.get(best_mode) or {}).get("metrics") or {}).get("mfu") if best_mode else None,
        "speedup_vs_baseline": ours[best_mode] / plain if best_mode and plain else None,
        "best_qaflow_mode": best_mode,
        "delta_f1": f1["b_qaflow"] - f1["b_baseline"] if None not in f1.values() else None,
        "scale_f1": f1,
        # time to F1: featurisation (shared) + training with compilation; prediction and scoring apart
        "time_to_f1_s": {k: featurize_s + r["train_s"] for k, r in scale.items() if r.get("train_s")},
        "warm_over_cold_first_step": warm_over_cold(results),
        "correctness_f1": ((results.get("a_correctness") or {}).get("metrics") or {}).get("f1"),
        "profiles": {k: profile_headline(r.get("profile") or {}) for k, r in results.items() if k.startswith("p_")},
        "host_overhead": {k: (results.get("h_host_overhead") or {}).get(k) for k in HOST_KEYS},
        "stages": {k: v.get("status") for k, v in results.items()},
    }


def warm_over_cold(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    """First step of each cached mode's measured (warm) run over its priming (cold) run."""
    out = {}
    for name in ("c_qaflow_compile_cached", "c_qaflow_autotune_cached"):
        m = (results.get(name) or {}).get("metrics") or {}
        if m.get("priming_first_step_seconds") and m.get("compile_cache_warm"):
            out[name] = m["first_step_seconds"] / m["priming_first_step_seconds"]
    return out


def profile_headline(profile: dict[str, Any]) -> dict[str, Any]:
    keys = ("step_wall_ms", "device_span_ms_per_step", "device_busy_ms_per_step", "device_idle_ms_per_step",
            "device_activities_per_step", "host_sync_calls_per_step")  # fmt: skip
    return {**{k: profile.get(k) for k in keys}, "top_device_ops": profile.get("top_device_ops", [])[:5]}


def cell(values: dict[str, Any], key: str, digits: int = 2) -> str:
    value = values.get(key)
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "-"


def print_table(results: dict[str, dict[str, Any]], summary: dict[str, Any]) -> None:
    print("\n| stage | status | samples/s | steps/s | steady steps/s | first step s | MFU | peak MiB | EM | F1 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        m = {**r, **(r.get("metrics") or {})}
        cells = [cell(m, "train_samples_per_second"), cell(m, "train_steps_per_second", 3),
                 cell(m, "steady_train_steps_per_second", 3), cell(m, "first_step_seconds", 1), cell(m, "mfu", 3),
                 cell(m, "peak_memory_mb", 0), cell(m, "exact_match"), cell(m, "f1")]  # fmt: skip
        print(f"| {name} | {r.get('status')} | " + " | ".join(cells) + " |")
    print("\nsummary: " + json.dumps(summary))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT", str(ROOT / "outputs" / "gpu_suite")))
    ap.add_argument("--payload", default=str(ROOT / "gpu_payload"))
    ap.add_argument("--cpu_smoke", action="store_true", help="the same stages with tiny models and data on CPU")
    ap.add_argument("--budget_s", type=float, default=470.0, help="wall-clock budget for all stages")
    ap.add_argument(
        "--stages", default=",".join(DEFAULT_STAGES), help=f"comma-separated, in order: {', '.join(STAGES)}"
    )
    ap.add_argument("--scale_epochs", type=float, default=2.0)
    ap.add_argument("--scale_batch", type=int, default=64)
    ap.add_argument("--c_steps", type=int, default=60)
    ap.add_argument("--c_batch", type=int, default=32)
    ap.add_argument("--stage", default=None, help=argparse.SUPPRESS)  # internal: run one stage in this process
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.stage:
        result = STAGES[a.stage](a, settings(a), out)
        (out / f"{a.stage}.json").write_text(json.dumps(result, indent=2, default=str))
        return 0
    if not a.cpu_smoke and not (Path(a.payload) / "minilm" / "config.json").exists():
        print(
            f"{a.payload}: no payload; build it with `python benchmarks/gpu_payload.py` and carry it", file=sys.stderr
        )
        return 2
    deadline = time.perf_counter() + a.budget_s
    results: dict[str, dict[str, Any]] = {}
    chosen = a.stages.split(",")
    share_total = sum(SHARES[n] for n in chosen)  # the chosen stages' shares, scaled to the whole budget
    for name in chosen:
        left = deadline - time.perf_counter()
        if left < 10:
            results[name] = {"status": "skipped (budget spent)"}
            continue
        results[name] = run_stage(
            name, a, out, timeout=min(left, max(SHARES[name] / share_total * a.budget_s, 30.0) + left * 0.25)
        )
    summary = summarise(results)
    (out / "summary.json").write_text(json.dumps({**summary, "results": results}, indent=2, default=str))
    print_table(results, summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
