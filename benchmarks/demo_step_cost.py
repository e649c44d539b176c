"""What does a smaller batch cost per training window on this CPU? One process, variants interleaved step by step.

    nice -n 10 .venv/bin/python benchmarks/demo_step_cost.py [--rounds 40] [--batches 16,8,4]

Each round draws 16 random training windows of the demo's features (the first 1,000 sample questions at 128/48)
and trains on them once per variant: one step of 16, two steps of 8, four steps of 4, ... Each step is what the
Trainer does: bf16 autocast forward, backward, gradient clipping at 1.0, fused AdamW, linear schedule, zero_grad.
The variants alternate within every round (their order rotating), so the machine's load (shared, noisy) hits them
alike; the figure is the median over rounds of each variant's time over the batch-16 step's time on the same windows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForQuestionAnswering, get_linear_schedule_with_warmup

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks.core.checkpoints import load_tokenizer  # noqa: E402
from tasks.core.data import load_dataset_file  # noqa: E402
from tasks.core.features import FeatureSettings, prepare_train_features  # noqa: E402
from tasks.core.model_spec import resolve_model_path  # noqa: E402
from tasks.families.extractive import FeatureCollator  # noqa: E402
from tasks.train.resources import available_cpu_cores  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--batches", default="16,8,4")
    ap.add_argument("--window", type=int, nargs=2, default=[128, 48])
    a = ap.parse_args()
    sizes = [int(b) for b in a.batches.split(",")]
    group = max(sizes)
    torch.manual_seed(0)
    torch.set_num_threads(available_cpu_cores())
    path = resolve_model_path("minilm")
    examples = load_dataset_file(ROOT / "data/sample/squad-v1.1-sample-train.json", max_samples=1000).examples
    features = prepare_train_features(examples, load_tokenizer(path), FeatureSettings(*a.window))
    collate = FeatureCollator(features, dynamic=True)
    model = AutoModelForQuestionAnswering.from_pretrained(path, dtype=torch.float32)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01, fused=True)
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, 10**6)

    def step(indices: list[int]) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(**collate(indices)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

    rng = np.random.default_rng(0)
    step(list(range(group)))  # warm-up
    seconds: dict[int, list[float]] = {b: [] for b in sizes}
    for r in range(a.rounds):
        windows = rng.choice(len(features), size=group, replace=False).tolist()
        order = sizes[r % len(sizes) :] + sizes[: r % len(sizes)]
        for b in order:
            t0 = time.perf_counter()
            for i in range(0, group, b):
                step(windows[i : i + b])
            seconds[b].append(time.perf_counter() - t0)
    ratios = {
        f"batch_{b}_over_batch_{group}": round(statistics.median(np.array(seconds[b]) / np.array(seconds[group])), 3)
        for b in sizes
        if b != group
    }
    print(json.dumps({
        "windows_per_round": group, "rounds": a.rounds, "window": a.window, "threads": torch.get_num_threads(),
        "median_seconds_per_round": {f"batch_{b}": round(statistics.median(seconds[b]), 3) for b in sizes},
        "median_ratio_same_windows": ratios,
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
