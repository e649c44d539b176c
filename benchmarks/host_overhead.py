"""Host cost per training step: the ceiling on steps/s that no GPU can raise.

A near-zero model (BERT, 1 layer, hidden size 32, one head, no dropout) trains at batch 32 x 384 on SQuAD windows.
On a GPU its arithmetic is negligible; on a CPU it is not (attention over 384 positions still costs ~60 ms a step
on one core), so each mode also times its *bare step* (the same model, loss, optimizer and batches in a tight loop,
benchmarks/step_clock.py) and the host cost is what the step costs above it: fetching and collating the batch,
the Trainer's bookkeeping, hidden syncs. Each mode trains in its own process on one compute thread, timed by the
main thread's CPU clock (robust on a shared, noisy machine; `--clock wall` for wall time); modes alternate over
rounds, and every figure is a median over steady steps:

    .venv/bin/python benchmarks/host_overhead.py                 # all modes, 2 rounds
    .venv/bin/python benchmarks/host_overhead.py --rounds 3 --steps 40 --json benchmarks/results/host_overhead.json

Modes:
* `trainer`: the run_qa-configured Trainer (a dataset of padded int64 windows, `default_data_collator`,
  TrainingArguments defaults, as run_qa.py with `--pad_to_max_length`);
* `qaflow-<mode>`: qaflow's own training (`tasks.train.trainer.run_trainer`) in each benchmark run mode of
  `tasks.pipeline.benchmark` (padded, packed, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SAMPLE_TRAIN = ROOT / "data" / "sample" / "squad-v1.1-sample-train.json"
QAFLOW_MODES = ("eager", "eager-packed")


def near_zero_model(path: Path) -> Path:
    """BERT with 1 layer and hidden size 32 (the bert-base vocabulary and tokenizer)."""
    from transformers import BertConfig, BertForQuestionAnswering

    from tasks.core.checkpoints import load_tokenizer

    if not (path / "config.json").exists():
        config = BertConfig(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=1, intermediate_size=32,
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,  # dropout forces sdpa's slow path on a CPU
        )  # fmt: skip
        BertForQuestionAnswering(config).save_pretrained(path)
        load_tokenizer("minilm").save_pretrained(path)
    return path


def windows(model_dir: Path, n_windows: int) -> Any:
    """At least `n_windows` run_qa training windows at 384/128 of the bundled sample, padded to max length."""
    from tasks.core.checkpoints import load_tokenizer
    from tasks.core.data import load_dataset_file
    from tasks.core.features import FeatureSettings, prepare_train_features

    examples = load_dataset_file(SAMPLE_TRAIN).examples
    features = prepare_train_features(examples, load_tokenizer(str(model_dir)), FeatureSettings(384, 128, True))
    if len(features) < n_windows:
        raise SystemExit(f"{SAMPLE_TRAIN}: {len(features)} windows, {n_windows} needed")
    return features


def run_baseline(model_dir: Path, features: Any, a: argparse.Namespace, out: Path) -> dict[str, float]:
    from gpu_suite import PaddedWindows  # run_qa's dataset: int64 windows, one dict per item
    from step_clock import StepClock
    from transformers import AutoModelForQuestionAnswering, Trainer, TrainingArguments, default_data_collator

    model = AutoModelForQuestionAnswering.from_pretrained(str(model_dir))
    args = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=a.batch, max_steps=a.steps, save_strategy="no",
        report_to="none", disable_tqdm=True, use_cpu=a.device == "cpu", bf16=a.bf16, dataloader_drop_last=True,
    )  # fmt: skip
    trainer = Trainer(
        model=model, args=args, train_dataset=PaddedWindows(features), data_collator=default_data_collator
    )
    clock = StepClock(clock=a.clock, sync=a.sync).attach(trainer)
    trainer.train()
    return {**clock.summary(), "bare_step_ms": clock.bare_step_ms()}


def run_qaflow(model_dir: Path, features: Any, a: argparse.Namespace, out: Path, mode: str) -> dict[str, float]:
    from step_clock import StepClock, clock_every_trainer

    from tasks.core.config import load_config
    from tasks.pipeline.benchmark import run_mode

    cfg = load_config(None, {
        "model_name_or_path": str(model_dir), "max_seq_length": 384, "doc_stride": 128, "backend": a.device,
        "bf16": a.bf16, "per_device_train_batch_size": a.batch, "max_steps": a.steps, "logging_steps": 10,
    })  # fmt: skip
    with clock_every_trainer(StepClock(clock=a.clock, sync=a.sync)) as clock:
        run_mode(cfg, features, a.device, mode, out)
    return {**clock.summary(), "bare_step_ms": clock.bare_step_ms()}


def one_mode(a: argparse.Namespace) -> int:
    """Run `a.mode` in this process and print its summary as one JSON line."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import torch

    import tasks.train.trainer

    torch.set_num_threads(a.threads)
    tasks.train.trainer.available_cpu_cores = lambda: a.threads  # run_trainer sizes torch's pool by it
    out = Path(a.work)
    model_dir = near_zero_model(out / "near-zero-bert")
    features = windows(model_dir, a.batch * (a.steps + 1))
    if a.mode == "trainer":
        figures = run_baseline(model_dir, features, a, out / "trainer")
    else:
        figures = run_qaflow(model_dir, features, a, out / a.mode, a.mode.removeprefix("qaflow-"))
    figures["host_ms_per_step"] = figures["ms_per_step"] - figures["bare_step_ms"]
    print("RESULT " + json.dumps(figures))
    return 0


def run_in_subprocess(mode: str, a: argparse.Namespace, work: Path) -> dict[str, float]:
    argv = [sys.executable, __file__, "--one", mode, "--work", str(work), "--steps", str(a.steps),
            "--batch", str(a.batch), "--device", a.device, "--clock", a.clock, "--threads", str(a.threads),
            *(["--bf16"] if a.bf16 else []),
            *(["--sync"] if a.sync else [])]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{mode}: exit {done.returncode}\n{done.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default=",".join(["trainer", *(f"qaflow-{m}" for m in QAFLOW_MODES)]))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--clock", default="cpu", choices=("cpu", "wall"), help="main-thread CPU time or wall time")
    ap.add_argument("--threads", type=int, default=1, help="torch compute threads")
    ap.add_argument("--sync", action="store_true", help="CUDA: synchronize at each part's end (device time per part)")
    ap.add_argument("--json", default=None, help="write the summary here")
    ap.add_argument("--one", dest="mode", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--work", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.mode:
        return one_mode(a)
    modes = a.modes.split(",")
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            for mode in modes if r % 2 == 0 else reversed(modes):
                runs[mode].append(run_in_subprocess(mode, a, Path(tmp)))
                print(f"round {r + 1} {mode}: {runs[mode][-1]}", flush=True)
    print(json.dumps(runs, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
