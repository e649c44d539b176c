"""Sequence packing (`train.packing`) against padded and dynamically padded batches: tokens, speed and F1.

Three measurements, all in one run:

1. **Tokens** — the model positions each batching computes per real token, over random batches of the training
   windows: padded to max_seq_length (run_qa.py), dynamic padding (qaflow's default), length-grouped dynamic
   padding (`group_by_length`, rounded to 64 as on the GPU) and packed rows.
2. **Speed** — qaflow's Trainer on the same windows, same steps, in the three modes, alternating
   (padded, dynamic, packed, padded, ...) so the machine's noise is shared; samples/s and ratios.
3. **Quality** — one training run per mode (dynamic, packed) over the same windows, scored on the dev file with the
   official metric: packing must not cost F1.

    .venv/bin/python benchmarks/packing.py --train_samples 400 --steps 12 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks.core.checkpoints import load_tokenizer  # noqa: E402
from tasks.core.config import load_config  # noqa: E402
from tasks.core.data import load_dataset_file  # noqa: E402
from tasks.core.features import Features, feature_settings, padding_band, prepare_train_features, save_features  # noqa: E402
from tasks.core.layout import TrainPaths  # noqa: E402
from tasks.core.model_spec import ModelSpec  # noqa: E402
from tasks.core.packing import first_fit_decreasing  # noqa: E402
from tasks.families.extractive import ExtractiveFamily  # noqa: E402
from tasks.pipeline.prediction import predict_from_config  # noqa: E402
from tasks.pipeline.training import train_family  # noqa: E402
from tasks.train.resources import available_cpu_cores  # noqa: E402

SAMPLE_TRAIN = ROOT / "data" / "sample" / "squad-v1.1-sample-train.json"
SAMPLE_DEV = ROOT / "data" / "sample" / "squad-v1.1-sample-dev.json"
MODES = {  # train-section settings of each batching mode
    "padded": {"pad_to_max_length": True},
    "dynamic": {"pad_to_max_length": False},
    "packed": {"pad_to_max_length": False, "packing": True},
}


def token_costs(features: Features, batch: int, seed: int = 0) -> dict[str, float]:
    """Model positions per real token of each batching mode over shuffled batches of `batch` windows."""
    mask = features.attention_mask
    lengths = mask.sum(axis=1).astype(np.int64)
    width = mask.shape[1]
    order = np.random.default_rng(seed).permutation(len(lengths))
    batches = [order[i : i + batch] for i in range(0, len(order) - batch + 1, batch)]
    grouped = np.argsort(lengths[order], kind="stable")  # sorted within mega-batches of 50, as LengthGroupedSampler
    mega = [order[grouped][i : i + 50 * batch] for i in range(0, len(order), 50 * batch)]
    grouped_batches = [m[i : i + batch] for m in mega for i in range(0, len(m) - batch + 1, batch)]
    real = float(sum(lengths[b].sum() for b in batches))

    def band(b: np.ndarray, multiple: int) -> int:
        lo, hi = padding_band(mask[b], multiple)
        return (hi - lo) * len(b)

    return {
        "padded": len(batches) * batch * width / real,
        "dynamic": sum(band(b, 1) for b in batches) / real,
        "grouped_64": sum(band(b, 64) for b in grouped_batches) / float(sum(lengths[b].sum() for b in grouped_batches)),
        "packed": sum(first_fit_decreasing(lengths[b], width).n_rows * width for b in batches) / real,
    }


def train_mode(cfg: Any, mode: str, features_path: Path, out: Path) -> Any:
    for key, value in MODES[mode].items():
        section = cfg.features if key == "pad_to_max_length" else cfg.train
        setattr(section, key, value)
    cfg.train.packing = MODES[mode].get("packing", False)
    cfg.train.output_dir = str(out)
    return train_family(cfg, ExtractiveFamily(), ModelSpec.from_config(cfg), features_path, "cpu", TrainPaths(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--train_file", default=str(SAMPLE_TRAIN))
    ap.add_argument("--dev_file", default=str(SAMPLE_DEV))
    ap.add_argument("--train_samples", type=int, default=400)
    ap.add_argument("--max_seq_length", type=int, default=384)
    ap.add_argument("--doc_stride", type=int, default=128)
    ap.add_argument("--batch_size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=12, help="steps per speed run")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--quality_epochs", type=float, default=1.0, help="0: skip the quality runs")
    ap.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--seed", type=int, default=42, help="training seed (the QA head's init, shuffling, dropout)")
    a = ap.parse_args()
    torch.set_num_threads(available_cpu_cores())
    cfg = load_config(ROOT / "params.yaml", {
        "model_name_or_path": a.model, "max_seq_length": a.max_seq_length, "doc_stride": a.doc_stride,
        "per_device_train_batch_size": a.batch_size, "max_steps": a.steps, "learning_rate": 1e-4,
        "save_strategy": "no", "logging_steps": 1000, "backend": "cpu", "bf16": a.bf16, "validation_file": a.dev_file,
        "seed": a.seed,
    })  # fmt: skip
    train = load_dataset_file(Path(a.train_file), max_samples=a.train_samples)
    features = prepare_train_features(train.examples, load_tokenizer(a.model), feature_settings(cfg))
    costs = token_costs(features, a.batch_size)
    print(f"model={a.model} windows={len(features)} at {a.max_seq_length}/{a.doc_stride} batch={a.batch_size} "
          f"bf16={a.bf16} threads={torch.get_num_threads()}")  # fmt: skip
    print("positions per real token: " + ", ".join(f"{k} {v:.3f}" for k, v in costs.items()))
    speeds: dict[str, list[float]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        features_path = save_features(features, Path(tmp) / "train.npz")
        for r in range(a.repeats):
            for mode in MODES:
                result = train_mode(cfg, mode, features_path, Path(tmp) / f"{mode}{r}")
                speeds[mode].append(result.metrics["train_samples_per_second"])
            print(f"repeat {r}: " + ", ".join(f"{m} {v[-1]:.2f}" for m, v in speeds.items()) + " samples/s", flush=True)
        scores: dict[str, dict[str, float]] = {}
        if a.quality_epochs > 0:
            cfg.train.max_steps, cfg.train.num_train_epochs = -1, a.quality_epochs
            for mode in ("dynamic", "packed"):
                result = train_mode(cfg, mode, features_path, Path(tmp) / f"quality-{mode}")
                summary = predict_from_config(cfg, model_dir=result.model_dir, data=a.dev_file,
                                              output_dir=Path(tmp) / f"pred-{mode}", save_raw=False)  # fmt: skip
                scores[mode] = {**summary.metrics, "train_samples_per_second": result.metrics[
                    "train_samples_per_second"], "train_loss": result.metrics["train_loss"]}  # fmt: skip
                print(f"quality {mode}: {json.dumps(scores[mode])}", flush=True)
    median = {mode: float(np.median(v)) for mode, v in speeds.items() if v}
    print(json.dumps({
        "positions_per_real_token": costs,
        "samples_per_second": median,
        "ratio_packed_over_dynamic": round(median["packed"] / median["dynamic"], 3) if median else None,
        "ratio_packed_over_padded": round(median["packed"] / median["padded"], 3) if median else None,
        "quality": scores,
        "delta_f1_packed_minus_dynamic": scores["packed"]["f1"] - scores["dynamic"]["f1"] if scores else None,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
