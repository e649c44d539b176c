"""Host cost per training step: the ceiling on steps/s that no GPU can raise.

A near-zero model (BERT, 1 layer, hidden size 32, one head, no dropout) trains at batch 32 x 384 on SQuAD
windows. Each mode trains in its own process, modes alternate over rounds, and every figure is a median over steady
steps, split by benchmarks/step_clock.py into data (the training process waiting for / collating its batch),
forward+backward, optimizer and bookkeeping (the rest of the Trainer's loop), plus the *bare step* (the same model,
loss, optimizer and batches in a tight loop).

On a GPU the near-zero model's arithmetic is negligible, so the whole step is host cost. On a CPU it is not
(attention over 384 positions still takes ~60 ms a step on one core), so there the host cost is measured
directly as data + bookkeeping: the step's work outside the model's forward, backward and optimizer. CPU runs use
one compute thread and the main thread's CPU clock (robust on a shared, noisy machine); `--clock wall` for wall
time.

    .venv/bin/python benchmarks/host_overhead.py                                # all modes, 2 rounds
    .venv/bin/python benchmarks/host_overhead.py --rounds 3 --json benchmarks/results/host_overhead_cpu.json
    .venv/bin/python benchmarks/host_overhead.py --code /path/to/other/checkout  # adds that code's qaflow modes

Modes: `trainer` (the run_qa-configured Trainer: a dataset of padded int64 windows, `default_data_collator`,
TrainingArguments defaults, as run_qa.py with `--pad_to_max_length`) and `qaflow-<run mode>` (qaflow's own
training in a `tasks.pipeline.benchmark` run mode); `+w<N>` collates in N DataLoader workers (qaflow's default
on CUDA is 2). With `--code DIR` each qaflow mode also runs on DIR's qaflow code (labelled `DIR-name:mode`), e.g.
main before a change, in the same rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_TRAIN = ROOT / "data" / "sample" / "squad-v1.1-sample-train.json"
DEFAULT_MODES = ("trainer", "qaflow-eager", "qaflow-eager-packed", "qaflow-eager-packed+w2")


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
    from run_qa_data import PaddedWindows
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


def run_qaflow(model_dir: Path, features: Any, a: argparse.Namespace, out: Path, spec: str) -> dict[str, float]:
    from step_clock import StepClock, on_every_trainer

    from tasks.core.config import load_config
    from tasks.pipeline.benchmark import run_mode

    mode, _, workers = spec.partition("+w")
    cfg = load_config(None, {
        "model_name_or_path": str(model_dir), "max_seq_length": 384, "doc_stride": 128, "backend": a.device,
        "bf16": a.bf16, "per_device_train_batch_size": a.batch, "max_steps": a.steps, "logging_steps": 10_000,
        "dataloader_num_workers": int(workers or 0),
    })  # fmt: skip
    clock = StepClock(clock=a.clock, sync=a.sync)
    with on_every_trainer(clock.attach):
        run_mode(cfg, features, a.device, mode, out)
    return {**clock.summary(), "bare_step_ms": clock.bare_step_ms()}


def one_mode(a: argparse.Namespace) -> int:
    """Run `a.mode` in this process (qaflow's code from `a.code`) and print its figures as one JSON line."""
    sys.path[:0] = [a.code, str(ROOT / "benchmarks")]
    import torch

    import tasks.train.trainer

    torch.set_num_threads(a.threads)
    tasks.train.trainer.available_cpu_cores = lambda: a.threads  # run_trainer sizes torch's pool by it
    out = Path(a.work)
    model_dir = near_zero_model(out / "near-zero-bert")
    features = windows(model_dir, a.batch * (a.steps + 1))
    mode = a.mode.split(":")[-1]
    if mode == "trainer":
        figures = run_baseline(model_dir, features, a, out / "trainer")
    else:
        figures = run_qaflow(model_dir, features, a, out / a.mode.replace(":", "_"), mode.removeprefix("qaflow-"))
    print("RESULT " + json.dumps(figures))
    return 0


def run_in_subprocess(mode: str, code: str, a: argparse.Namespace, work: Path) -> dict[str, float]:
    argv = [sys.executable, __file__, "--one", mode, "--code", code, "--work", str(work), "--steps", str(a.steps),
            "--batch", str(a.batch), "--device", a.device, "--clock", a.clock, "--threads", str(a.threads),
            *(["--bf16"] if a.bf16 else []), *(["--sync"] if a.sync else [])]  # fmt: skip
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": code}
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{mode}: exit {done.returncode}\n{done.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def host_ms(figures: dict[str, float], device: str) -> float:
    """The host cost of one step (module docstring): the whole step on a GPU; data + bookkeeping on a CPU."""
    return figures["ms_per_step"] if device == "cuda" else figures["data_ms"] + figures["bookkeeping_ms"]


def summarise(runs: dict[str, list[dict[str, float]]], a: argparse.Namespace) -> dict[str, Any]:
    modes = {
        mode: {key: statistics.median(r[key] for r in rs) for key in rs[0]} | {"host_ms": statistics.median(
            host_ms(r, a.device) for r in rs)}
        for mode, rs in runs.items()
    }  # fmt: skip
    ours = {m: v["host_ms"] for m, v in modes.items() if m.startswith("qaflow-")}
    best = min(ours, key=ours.get) if ours else None
    trainer = modes.get("trainer", {}).get("host_ms")
    return {
        "device": a.device, "clock": a.clock, "threads": a.threads, "batch": a.batch, "seq": 384,
        "steps": a.steps, "rounds": a.rounds, "bf16": a.bf16,
        "host_definition": "ms_per_step (near-zero model on a GPU)" if a.device == "cuda"
        else "data_ms + bookkeeping_ms (CPU: the model's own arithmetic is not host cost)",
        "host_ms_per_step_trainer": trainer, "host_ms_per_step_qaflow": ours.get(best), "best_qaflow_mode": best,
        "host_cost_ratio": ours[best] / trainer if best and trainer else None, "modes": modes,
    }  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default=",".join(DEFAULT_MODES))
    ap.add_argument("--code", default=str(ROOT), help="qaflow checkout whose code the modes run")
    ap.add_argument("--compare_code", default=None, help="also run the qaflow modes on this checkout")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--clock", default="cpu", choices=("cpu", "wall"), help="main-thread CPU time or wall time")
    ap.add_argument("--threads", type=int, default=1, help="torch compute threads")
    ap.add_argument("--sync", action="store_true", help="CUDA: synchronize at each part's end (device time per part)")
    ap.add_argument("--json", default=None, help="write the summary (and every run) here")
    ap.add_argument("--one", dest="mode", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--work", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.mode:
        return one_mode(a)
    plan = [(m, a.code) for m in a.modes.split(",")]
    if a.compare_code:
        label = Path(a.compare_code).name
        plan += [(f"{label}:{m}", a.compare_code) for m in a.modes.split(",") if m.startswith("qaflow-")]
    runs: dict[str, list[dict[str, float]]] = {m: [] for m, _ in plan}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            for mode, code in plan if r % 2 == 0 else reversed(plan):
                runs[mode].append(run_in_subprocess(mode, code, a, Path(tmp)))
                figures = runs[mode][-1]
                print(f"round {r + 1} {mode}: " + ", ".join(f"{k} {v:.2f}" for k, v in figures.items()), flush=True)
    summary = summarise(runs, a)
    print(f"\n| mode | ms/step | data | forward+backward | optimizer | bookkeeping | bare step | host ({a.clock}) |")
    print("|---|---|---|---|---|---|---|---|")
    for mode, m in summary["modes"].items():
        cells = [m["ms_per_step"], m["data_ms"], m["forward_backward_ms"], m["optimizer_ms"], m["bookkeeping_ms"],
                 m["bare_step_ms"], m["host_ms"]]  # fmt: skip
        print(f"| {mode} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    print("\nsummary: " + json.dumps({k: v for k, v in summary.items() if k != "modes"}))
    if a.json:
        Path(a.json).write_text(json.dumps({**summary, "runs": runs}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
