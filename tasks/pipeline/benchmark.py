"""Training throughput across run modes (eager, compile, compile max-autotune): one short run per mode.

Used by the `benchmark` flow and `benchmarks/train_gpu.py`. Each mode trains the same model on the same fixed-shape
features for the same steps; compile time (first step) is reported apart from steady-state throughput, and model
FLOPs utilisation is computed where the device's peak is known.
"""

from __future__ import annotations

import copy
import dataclasses
import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.core.artifacts import CompileCacheStore
from tasks.core.checkpoints import load_checkpoint_config
from tasks.core.config import NO_EVALUATION, QAFlowConfig
from tasks.core.features import Features
from tasks.core.layout import TrainPaths
from tasks.core.model_spec import ModelSpec
from tasks.families.registry import get_family
from tasks.train.compile_cache import LocalCompileCacheStore
from tasks.train.trainer import run_trainer

RUN_MODES: dict[str, dict[str, Any]] = {
    "eager": {"torch_compile": False, "torch_compile_mode": None},
    "compile": {"torch_compile": True, "torch_compile_mode": "default"},
    "compile-max-autotune": {"torch_compile": True, "torch_compile_mode": "max-autotune"},
}
# Modes that batch windows of similar length and pad each batch to its longest row (shapes vary per batch)
LENGTH_GROUPED_MODES: dict[str, dict[str, Any]] = {
    "eager-grouped": {
        "torch_compile": False,
        "torch_compile_mode": None,
        "group_by_length": True,
        "pad_to_multiple_of": 64,
    },
}
# Modes that pack each batch's windows into full-width rows (`train.packing`)
PACKED_MODES: dict[str, dict[str, Any]] = {
    "eager-packed": {"torch_compile": False, "torch_compile_mode": None, "packing": True},
    # one graph whose row count is symbolic: packed batches vary in rows, and recompiles would land in the timing
    "compile-packed": {
        "torch_compile": True,
        "torch_compile_mode": "default",
        "packing": True,
        "torch_compile_dynamic": True,
    },
    # static shapes: two packed row counts (tasks.core.packing.static_row_counts), one graph each
    "compile-packed-static": {"torch_compile": True, "torch_compile_mode": "default", "packing": True},
    # the same, replayed as CUDA graphs (no kernel launches from the host; on a CPU the same as static)
    "compile-packed-graphs": {"torch_compile": True, "torch_compile_mode": "reduce-overhead", "packing": True},
}
# The seed's "compile - autotune cached": the compiled run of a fresh process whose Inductor caches were restored
# from the store (tasks/train/compile_cache), filled by a priming run in another process if the key was new
CACHED_MODES: dict[str, str] = {
    "compile-cached": "compile",
    "compile-max-autotune-cached": "compile-max-autotune",
    "compile-packed-static-cached": "compile-packed-static",
}
_BASE_MODES = {**RUN_MODES, **LENGTH_GROUPED_MODES, **PACKED_MODES}
ALL_MODES = {**_BASE_MODES, **{mode: _BASE_MODES[base] for mode, base in CACHED_MODES.items()}}

# Dense bf16 tensor-core peaks (FLOP/s) from the vendors' data sheets, by substring of the device name.
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12, "A10G": 70e12, "V100": 125e12}


@dataclass
class ModeResult:
    mode: str
    metrics: dict[str, float]
    device_name: str
    artifacts: dict[str, Path]


def peak_flops(device_name: str) -> float | None:
    for key, value in PEAK_BF16_FLOPS.items():
        if key in device_name:
            return value
    return None


def training_flops_per_token(n_params: int, n_layers: int, hidden: int, seq_len: int) -> float:
    """6N for the dense weights (forward + backward) plus the attention score/value matmuls (12·L·H·S)."""
    return 6.0 * n_params + 12.0 * n_layers * hidden * seq_len


def model_flops_utilisation(
    metrics: dict[str, float], model_config: Any, n_params: int, seq_len: float, peak: float,
    positions_per_sample: float | None = None,
) -> float:  # fmt: skip
    """MFU from steady-state throughput: achieved model FLOP/s over the device's peak.

    The device computes `positions_per_sample` token positions per sample (default `seq_len`: padded windows;
    fewer under dynamic padding or packing), each attending over rows of `seq_len`.
    """
    samples_per_second = metrics.get("steady_train_steps_per_second", metrics["train_steps_per_second"]) * (
        metrics["train_samples_per_second"] / max(metrics["train_steps_per_second"], 1e-9)
    )  # fmt: skip
    tokens_per_second = samples_per_second * (positions_per_sample or seq_len)
    per_token = training_flops_per_token(n_params, model_config.num_hidden_layers, model_config.hidden_size, seq_len)
    return tokens_per_second * per_token / peak


def run_mode(
    cfg: QAFlowConfig, features: Features, backend: str, mode: str, out_dir: Path,
    compile_cache: CompileCacheStore | None = None,
) -> ModeResult:  # fmt: skip
    """One fresh short training run in `mode` (nothing resumed: the output directory is cleared first).

    Compiled modes start from `compile_cache` and store into it; the cached modes run in fresh processes
    (`run_cached_mode`), so nothing compiled earlier in this process can make them look warm.
    """
    if mode in CACHED_MODES:
        return run_cached_mode(cfg, features, backend, mode, out_dir, compile_cache)

    mode_cfg = copy.deepcopy(cfg)
    grouped = mode in LENGTH_GROUPED_MODES
    for key, value in ALL_MODES[mode].items():
        setattr(mode_cfg.train, key, value)
    mode_cfg.train = dataclasses.replace(mode_cfg.train, save_strategy="no", **NO_EVALUATION)  # throughput only
    mode_cfg.features.pad_to_max_length = not grouped  # else fixed shapes: nothing recompiles per batch
    shutil.rmtree(out_dir, ignore_errors=True)
    family = get_family("extractive")
    result = run_trainer(
        family, ModelSpec.from_config(mode_cfg), mode_cfg.train, features,
        backend=backend, paths=TrainPaths(out_dir), dynamic_padding=grouped, compile_cache=compile_cache,
    )  # fmt: skip
    metrics = dict(result.metrics)
    peak = peak_flops(result.device.device_name) if backend == "cuda" else None
    if peak:
        model_config = load_checkpoint_config(cfg.model.model_name_or_path)
        n_params = int(metrics["model_parameters"])
        # token positions the device computed per sample (the window length padded, fewer grouped or packed) and
        # the rows they attend over (the window length, or a grouped batch's trimmed width)
        width = float(features.input_ids.shape[1])
        counted = metrics.get("train_padded_tokens_per_second", 0.0)
        positions = counted / max(metrics["train_samples_per_second"], 1e-9) if counted else width
        seq = positions if grouped else width
        metrics["mfu"] = model_flops_utilisation(metrics, model_config, n_params, seq, peak, positions)
    return ModeResult(mode, metrics, result.device.device_name, result.artifacts)


def in_fresh_process(fn: Any, *args: Any) -> Any:
    """`fn(*args)` in a new interpreter (spawned: no compiled code, caches or CUDA state inherited)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def run_cached_mode(
    cfg: QAFlowConfig, features: Features, backend: str, mode: str, out_dir: Path, store: CompileCacheStore | None
) -> ModeResult:
    """`mode`'s compiled run, measured in a fresh process after a priming run (another fresh process) has made sure
    the store holds this key's caches; without a store, a local one under `out_dir` (kept for the next time)."""
    base = CACHED_MODES[mode]
    store = store or LocalCompileCacheStore(out_dir.parent / f"{out_dir.name}-compile-cache")
    primed = in_fresh_process(run_mode, cfg, features, backend, base, out_dir.with_name(f"{out_dir.name}-priming"),
                              store)  # fmt: skip
    measured = in_fresh_process(run_mode, cfg, features, backend, base, out_dir, store)
    metrics = {**measured.metrics, "priming_first_step_seconds": primed.metrics.get("first_step_seconds", 0.0)}
    artifacts = {**{f"priming_{k}": v for k, v in primed.artifacts.items()}, **measured.artifacts}
    return ModeResult(mode, metrics, measured.device_name, artifacts)


def comparison_rows(results: list[ModeResult]) -> list[dict[str, Any]]:
    """The seeds' layout: device | run mode | train_steps_per_second, plus the rest."""
    return [
        {
            "GPU": r.device_name,
            "Run Mode": r.mode,
            "train_steps_per_second": round(r.metrics.get("train_steps_per_second", 0.0), 3),
            "steady_train_steps_per_second": round(r.metrics.get("steady_train_steps_per_second", 0.0), 3),
            "train_samples_per_second": round(r.metrics.get("train_samples_per_second", 0.0), 2),
            "first_step_seconds": round(r.metrics.get("first_step_seconds", 0.0), 1),
            "compile_cache": {1.0: "warm", 0.0: "cold"}.get(r.metrics.get("compile_cache_warm", -1.0), "-"),
            "mfu": round(r.metrics["mfu"], 3) if "mfu" in r.metrics else None,
        }
        for r in results
    ]
