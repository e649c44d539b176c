"""Prediction batches by window length against feature order: speed, identical answers, logit differences.

`forward_logits` batches the windows of each chunk longest first (`by_length=True`, the default), so a dynamically
padded batch holds windows of similar length. This script runs the same model over the same dev windows, chunk by
chunk as `qaflow predict` streams them (`--chunk_examples`), both ways, alternating (in order, by length, in
order, ...) so the machine's noise is shared, and prints windows/s, the ratio, the largest logit difference and
whether every n-best answer is the same.

    .venv/bin/python benchmarks/predict_order.py --eval_samples 600 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks.core.checkpoints import load_tokenizer  # noqa: E402
from tasks.core.config import load_config  # noqa: E402
from tasks.core.data import load_dataset_file  # noqa: E402
from tasks.core.features import Features, feature_settings, prepare_eval_features  # noqa: E402
from tasks.core.model_spec import resolve_model_path  # noqa: E402
from tasks.core.specs import inference_recipe  # noqa: E402
from tasks.families.extractive import ExtractiveFamily, SpanLogits, forward_logits  # noqa: E402
from tasks.predict import CHUNK_EXAMPLES  # noqa: E402
from tasks.train.resources import available_cpu_cores  # noqa: E402

SAMPLE_DEV = ROOT / "data" / "sample" / "squad-v1.1-sample-dev.json"


def chunk_bounds(features: Features, chunk_examples: int) -> list[tuple[int, int]]:
    """Row ranges of the windows of each chunk of `chunk_examples` examples, as `qaflow predict` streams them."""
    n_examples = int(features.example_index.max()) + 1 if len(features) else 0
    starts = np.searchsorted(features.example_index, np.arange(0, n_examples, chunk_examples))
    ends = [*starts[1:], len(features)]
    return [(int(lo), int(hi)) for lo, hi in zip(starts, ends, strict=True)]


def rows(features: Features, lo: int, hi: int) -> Features:
    """Windows [lo, hi) (the model inputs; n-best runs later on the whole set)."""
    part = {f.name: getattr(features, f.name) for f in fields(features)}
    return Features(**{k: (v[lo:hi] if v is not None else None) for k, v in part.items()})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minilm", help="a QA checkpoint (the base MiniLM gets a seeded random head)")
    ap.add_argument("--dev_file", default=str(SAMPLE_DEV))
    ap.add_argument("--eval_samples", type=int, default=600)
    ap.add_argument("--max_seq_length", type=int, default=384)
    ap.add_argument("--doc_stride", type=int, default=128)
    ap.add_argument("--batch_size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--chunk_examples", type=int, default=CHUNK_EXAMPLES, help="as qaflow predict streams them")
    a = ap.parse_args()
    torch.set_num_threads(available_cpu_cores())
    torch.manual_seed(0)
    cfg = load_config(ROOT / "params.yaml", {
        "model_name_or_path": a.model, "max_seq_length": a.max_seq_length, "doc_stride": a.doc_stride,
        "per_device_eval_batch_size": a.batch_size,
    })  # fmt: skip
    family = ExtractiveFamily()
    model = family.load_model(resolve_model_path(a.model)).eval()
    dev = load_dataset_file(Path(a.dev_file), max_samples=a.eval_samples)
    features = prepare_eval_features(dev.examples, load_tokenizer(a.model), feature_settings(cfg))
    recipe = inference_recipe(cfg, family.name, dev.version)
    device = torch.device("cpu")
    real = features.attention_mask.sum() / features.attention_mask.size
    print(f"model={a.model} questions={len(dev.examples)} windows={len(features)} at {a.max_seq_length}/"
          f"{a.doc_stride} batch={a.batch_size} chunk={a.chunk_examples} examples, real tokens {real:.1%} "
          f"threads={torch.get_num_threads()}")  # fmt: skip
    bounds = chunk_bounds(features, a.chunk_examples)
    seconds: dict[str, list[float]] = {"in_order": [], "by_length": []}
    logits = {}
    for r in range(a.repeats):
        for name in seconds:
            t0 = time.perf_counter()
            parts = [forward_logits(model, rows(features, lo, hi), a.batch_size, device,
                                    by_length=name == "by_length") for lo, hi in bounds]  # fmt: skip
            logits[name] = SpanLogits(np.concatenate([p.start for p in parts]), np.concatenate([p.end for p in parts]))
            seconds[name].append(time.perf_counter() - t0)
        print(f"repeat {r}: " + ", ".join(f"{k} {len(features) / v[-1]:.1f} windows/s" for k, v in seconds.items()))
    answers = {name: family.postprocess(dev.examples, features, out, recipe).predictions
               for name, out in logits.items()}  # fmt: skip
    same = sum(answers["in_order"][q] == answers["by_length"][q] for q in answers["in_order"])
    diff = max(float(np.abs(logits["in_order"].start - logits["by_length"].start).max()),
               float(np.abs(logits["in_order"].end - logits["by_length"].end).max()))  # fmt: skip
    median = {k: float(np.median(v)) for k, v in seconds.items()}
    print(json.dumps({
        "windows_per_second": {k: len(features) / v for k, v in median.items()},
        "ratio_by_length_over_in_order": round(median["in_order"] / median["by_length"], 3),
        "identical_answers": f"{same}/{len(answers['in_order'])}",
        "max_abs_logit_difference": diff,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
