"""Does bf16 pay on this CPU (AMX-BF16 / AVX512-BF16)? MiniLM training steps and inference, fp32 vs bf16 variants.

    python benchmarks/cpu_bf16.py [--batch 16] [--seq 128] [--steps 6] [--repeats 3]

Variants, alternated within one run (these machines are noisy) and reported as ratios over fp32:
* training: fp32; `torch.autocast(cpu, bf16)` (what `--bf16` does through Trainer on CPU);
* inference: fp32; autocast bf16; bf16 weights (`model.to(torch.bfloat16)`), at two batch sizes.
A 2048² matmul in fp32 and bf16 is timed too, as the ceiling the units offer. Real SQuAD windows (the bundled
sample) are used, so padding and shapes are the ones training sees.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import AutoModelForQuestionAnswering

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks.core.checkpoints import load_tokenizer  # noqa: E402
from tasks.core.data import load_dataset_file  # noqa: E402
from tasks.core.features import FeatureSettings, prepare_train_features  # noqa: E402
from tasks.core.model_spec import resolve_model_path  # noqa: E402
from tasks.families.extractive import FeatureCollator  # noqa: E402


def timed(fn: Callable[[], None], repeats: int) -> float:
    """Median seconds of `fn` over `repeats` runs, after one warm-up run."""
    fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def matmul_gflops(dtype: torch.dtype, n: int = 2048) -> float:
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    seconds = timed(lambda: a @ b, 5)
    return 2 * n**3 / seconds / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    torch.manual_seed(0)
    path = resolve_model_path("minilm")
    tokenizer = load_tokenizer(path)
    examples = load_dataset_file(ROOT / "data/sample/squad-v1.1-sample-train.json", max_samples=400).examples
    features = prepare_train_features(examples, tokenizer, FeatureSettings(a.seq, a.seq // 3))
    collate = FeatureCollator(features, dynamic=True)
    batches = [collate(list(range(i, i + a.batch))) for i in range(0, a.batch * a.steps, a.batch)]

    model = AutoModelForQuestionAnswering.from_pretrained(path, dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def train(autocast: bool) -> Callable[[], None]:
        def run() -> None:
            model.train()
            for batch in batches:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                    loss = model(**batch).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

        return run

    eval_batches = {size: [collate(list(range(i, i + size))) for i in range(0, 256, size)] for size in (16, 64)}
    bf16_model = AutoModelForQuestionAnswering.from_pretrained(path, dtype=torch.float32).to(torch.bfloat16).eval()

    def infer(size: int, mode: str) -> Callable[[], None]:
        net = bf16_model if mode == "bf16-weights" else model

        @torch.inference_mode()
        def run() -> None:
            net.eval()
            for batch in eval_batches[size]:
                inputs = {k: v for k, v in batch.items() if not k.endswith("positions")}
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "autocast"):
                    net(**inputs)

        return run

    results: dict[str, list[float]] = {}
    for _ in range(a.repeats):  # alternate the variants so drift hits all of them alike
        for name, fn in {
            "train fp32": train(False), "train autocast-bf16": train(True),
            **{f"infer b{s} {m}": infer(s, m) for s in (16, 64) for m in ("fp32", "autocast", "bf16-weights")},
        }.items():  # fmt: skip
            results.setdefault(name, []).append(timed(fn, 1))
    median = {k: statistics.median(v) for k, v in results.items()}
    samples = {"train": a.batch * a.steps, **{f"b{s}": 256 for s in (16, 64)}}
    print(f"threads={torch.get_num_threads()} seq={a.seq} (dynamic padding) batch={a.batch} steps={a.steps}")
    print(f"matmul 2048²: fp32 {matmul_gflops(torch.float32):.0f} GFLOP/s, bf16 {matmul_gflops(torch.bfloat16):.0f}")
    rows = {}
    for name, seconds in median.items():
        group = "train" if name.startswith("train") else name.split()[1]
        base = median["train fp32"] if group == "train" else median[f"infer {group} fp32"]
        rows[name] = {"samples_per_second": samples[group] / seconds, "ratio_vs_fp32": base / seconds}
        print(f"{name:28s} {samples[group] / seconds:8.1f} samples/s   x{base / seconds:.2f} vs fp32")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
