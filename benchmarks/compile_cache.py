"""Cold vs warm compiled training: the first step without and with the stored Inductor caches (same key).

Each round starts an empty cache store, then runs `qaflow train --torch_compile true` twice as a user runs it
(a fresh process each): the first compiles cold and stores its caches, the second restores them (warm).
Rounds alternate nothing else; every figure is from the runs' own train results:

    .venv/bin/python benchmarks/compile_cache.py --rounds 2 --json benchmarks/results/compile_cache_cpu.json
    .venv/bin/python benchmarks/compile_cache.py --model tiny --steps 4          # quick look

Prints first-step seconds (compile plus one step) and steady-state steps/s of both, and their ratios:
`warm_over_cold_first_step` (goal: <= 0.2) and `warm_over_cold_steady` (goal: 1.0, the same compiled code).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks.core.artifacts import read_result  # noqa: E402
from tasks.core.layout import TrainPaths  # noqa: E402

SAMPLE_TRAIN = ROOT / "data" / "sample" / "squad-v1.1-sample-train.json"


def tiny_model(path: Path) -> str:
    from transformers import BertConfig, BertForQuestionAnswering

    from tasks.core.checkpoints import load_tokenizer

    config = BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
    BertForQuestionAnswering(config).save_pretrained(path)
    load_tokenizer("minilm").save_pretrained(path)
    return str(path)


def train_once(model: str, work: Path, out: Path, a: argparse.Namespace) -> dict[str, Any]:
    argv = [sys.executable, "-m", "flows.cli", "train", "--params", str(ROOT / "params.yaml"),
            "--model_name_or_path", model, "--train_file", str(SAMPLE_TRAIN), "--max_train_samples", "400",
            "--max_seq_length", str(a.seq), "--doc_stride", str(a.seq * 3 // 8), "--backend", "cpu",
            "--per_device_train_batch_size", str(a.batch), "--max_steps", str(a.steps), "--bf16", str(a.bf16).lower(),
            "--torch_compile", "true", "--torch_compile_mode", a.mode, "--save_strategy", "no",
            "--pad_to_max_length", "true",
            "--logging_steps", "1000", "--output_dir", str(out)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.perf_counter()
    done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"qaflow train exit {done.returncode}: {done.stderr[-2000:]}")
    m = read_result(TrainPaths(out).result_file).metrics
    state = "warm" if "compile cache: warm" in done.stderr else "cold" if "compile cache: cold" in done.stderr else "?"
    return {"log_says": state, "first_step_s": m["first_step_seconds"], "wall_s": time.perf_counter() - t0,
            "steady_steps_per_s": m.get("steady_train_steps_per_second"),
            "median_step_s": m.get("median_step_seconds"), "warm": m.get("compile_cache_warm")}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minilm", help="minilm (the demo's), tiny (2 layers, hidden 64) or a path")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (the demo's setting on these CPUs)")
    ap.add_argument("--mode", default="default", help="torch.compile mode")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        model = tiny_model(Path(tmp) / "tiny") if a.model == "tiny" else a.model
        for r in range(a.rounds):
            work = Path(tmp) / f"round{r}"  # its own outputs/compile_cache: an empty store
            work.mkdir()
            cold = train_once(model, work, work / "cold", a)
            warm = train_once(model, work, work / "warm", a)
            runs.append({"cold": cold, "warm": warm})
            print(f"round {r + 1}: cold {cold}\n         warm {warm}", flush=True)

    def median(kind: str, key: str) -> float:
        return statistics.median(run[kind][key] for run in runs)

    summary = {
        "device": "cpu", "model": a.model, "compile_mode": a.mode, "batch": a.batch, "seq": a.seq, "bf16": a.bf16,
        "steps": a.steps, "rounds": a.rounds,
        "first_step_cold_s": median("cold", "first_step_s"), "first_step_warm_s": median("warm", "first_step_s"),
        "steady_steps_per_s_cold": median("cold", "steady_steps_per_s"),
        "steady_steps_per_s_warm": median("warm", "steady_steps_per_s"),
        "logs": [[run["cold"]["log_says"], run["warm"]["log_says"]] for run in runs], "runs": runs,
    }  # fmt: skip
    summary["warm_over_cold_first_step"] = summary["first_step_warm_s"] / summary["first_step_cold_s"]
    summary["warm_over_cold_steady"] = summary["steady_steps_per_s_warm"] / summary["steady_steps_per_s_cold"]
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
