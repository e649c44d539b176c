"""Choosing the demo's training recipe: each candidate trained and scored as the demo does, timed, with a held-out
score from the *train* sample so the choice is not fitted to the dev sample the demo reports.

    nice -n 10 .venv/bin/python benchmarks/demo_recipe.py run --label round1 --heldout_questions 500 \\
        --recipe baseline --recipe lr3e-4 --recipe baseline --out benchmarks/results/demo_recipe_runs.jsonl
    nice -n 10 .venv/bin/python benchmarks/demo_recipe.py cost --recipe baseline --recipe w256_grouped --steps 16

`run`: for each recipe (a name from RECIPES: `qaflow train` flags over params.yaml), `qaflow train` (timed: wall and
CPU seconds of the process, featurization included as in `qaflow train`), then `qaflow predict` on the bundled dev
sample (timed; the demo's own official score) and on the held-out articles (untimed). One JSON line per run is
appended to `--out`.

Held-out set: the last three articles of the bundled train sample (Spectre_(2015_film), 2008_Sichuan_earthquake,
New_York_City: 1,612 questions; `--heldout_questions N`: their first N), written to `--work`/heldout.json. Every
recipe here trains on at most the first 3,012 questions (the first nine articles), so none sees a held-out article.

`cost`: short runs (`--steps` optimizer steps, no checkpoints) of each recipe, alternated `--repeats` times, for
the median step time: the relative cost of a recipe's step before a full run is spent on it.

The machine is shared and noisy: only ratios between runs of the same period mean anything.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks.core.layout import TrainPaths  # noqa: E402  (light: no torch)

TRAIN_SAMPLE = ROOT / "data/sample/squad-v1.1-sample-train.json"
DEV_SAMPLE = ROOT / "data/sample/squad-v1.1-sample-dev.json"
HELDOUT_ARTICLES = ("Spectre_(2015_film)", "2008_Sichuan_earthquake", "New_York_City")
MAX_TRAIN_QUESTIONS = 3012  # the first nine articles: disjoint from HELDOUT_ARTICLES

# name -> `qaflow train` flags over params.yaml (the demo's recipe when empty)
RECIPES: dict[str, list[str]] = {
    "baseline": [],
    "bs8": ["--per_device_train_batch_size", "8"],
    "w192_grouped": ["--max_seq_length", "192", "--doc_stride", "64", "--group_by_length"],
    "w256_grouped": ["--max_seq_length", "256", "--doc_stride", "64", "--group_by_length"],
    "w384_packed": ["--max_seq_length", "384", "--doc_stride", "128", "--packing"],
    "bs8_grouped": ["--per_device_train_batch_size", "8", "--group_by_length"],
    "bs8_lr2e-4": ["--per_device_train_batch_size", "8", "--learning_rate", "2e-4"],
    "lr2e-4": ["--learning_rate", "2e-4"],
    "lr3e-4": ["--learning_rate", "3e-4"],
    "lr5e-4": ["--learning_rate", "5e-4"],
    "w256_lr3e-4": ["--max_seq_length", "256", "--doc_stride", "64", "--group_by_length", "--learning_rate", "3e-4"],
    "w256_n1500": ["--max_seq_length", "256", "--doc_stride", "64", "--group_by_length", "--max_train_samples", "1500"],
}


def child_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], log_path: Path) -> tuple[float, float]:
    """Run `cmd` (output to `log_path`); (wall seconds, CPU seconds). A failure stops the script with its log."""
    cpu0, t0 = child_cpu_seconds(), time.perf_counter()
    with log_path.open("w") as log:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
    wall, cpu = time.perf_counter() - t0, child_cpu_seconds() - cpu0
    if rc != 0:
        sys.exit(f"{' '.join(cmd)} failed ({rc}); see {log_path}")
    return wall, cpu


def last_json(text: str) -> dict:
    """The JSON object a qaflow command prints last (progress lines may precede it)."""
    start = text.rindex("\n{\n") + 1 if "\n{\n" in text else text.index("{")
    return json.loads(text[start:])


def write_heldout(path: Path, max_questions: int | None) -> Path:
    """The held-out articles, cut to their first `max_questions` questions (in file order) when given."""
    data = json.loads(TRAIN_SAMPLE.read_text())
    kept = [a for a in data["data"] if a["title"] in HELDOUT_ARTICLES]
    assert len(kept) == len(HELDOUT_ARTICLES), "held-out articles missing from the train sample"
    budget = max_questions if max_questions is not None else sum(len(p["qas"]) for a in kept for p in a["paragraphs"])
    cut = []
    for article in kept:
        paragraphs = []
        for p in article["paragraphs"]:
            if budget > 0:
                paragraphs.append({**p, "qas": p["qas"][:budget]})
                budget -= len(paragraphs[-1]["qas"])
        if paragraphs:
            cut.append({**article, "paragraphs": paragraphs})
    path.write_text(json.dumps({"version": data.get("version", "1.1"), "data": cut}))
    return path


def check_disjoint(flags: list[str]) -> None:
    """Every recipe must leave the held-out articles out of training."""
    n = int(flags[flags.index("--max_train_samples") + 1]) if "--max_train_samples" in flags else 1000
    if n > MAX_TRAIN_QUESTIONS:
        sys.exit(f"--max_train_samples {n} would train on held-out articles (at most {MAX_TRAIN_QUESTIONS})")


def qaflow(*args: str) -> list[str]:
    return [sys.executable, "-m", "flows.cli", *args]


def run_recipe(name: str, flags: list[str], work: Path, heldout: Path, seed: int | None, label: str | None) -> dict:
    check_disjoint(flags)
    flags = [*flags, "--seed", str(seed)] if seed is not None else flags
    tag = f"{name}-s{seed}" if seed is not None else name
    out = work / tag
    out.mkdir(parents=True, exist_ok=True)
    train_dir = out / "train"
    paths = TrainPaths(train_dir)  # run_qa's layout: the model and qaflow's record at the output root
    train_cmd = qaflow("train", "--params", "params.yaml", "--output_dir", str(train_dir), "--overwrite_output_dir",
                       "--report_to", "none", *flags)  # fmt: skip
    train_wall, train_cpu = timed(train_cmd, out / "train.log")
    result = json.loads(paths.result_file.read_text())
    metrics = result["metrics"]

    def predict(data: Path, where: str) -> tuple[float, float, dict]:
        cmd = qaflow("predict", "--params", "params.yaml", "--model_dir", str(paths.model_dir), "--data",
                     str(data), "--output_dir", str(out / where), "--no_raw", *flags)  # fmt: skip
        wall, cpu = timed(cmd, out / f"{where}.log")
        return wall, cpu, last_json((out / f"{where}.log").read_text())["metrics"]

    dev_wall, dev_cpu, dev = predict(DEV_SAMPLE, "dev")
    _, _, held = predict(heldout, "heldout")
    row = {
        "recipe": name, "label": label, "flags": flags, "date": time.strftime("%Y-%m-%d %H:%M"),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "train_wall_s": round(train_wall, 1), "train_cpu_s": round(train_cpu, 1),
        "train_runtime_s": round(metrics["train_runtime"], 1),
        "train_features": int(metrics["train_features"]),
        "train_steps": max(int(e.get("step", 0)) for e in result["log_history"]),
        "padded_tokens": round(metrics["train_padded_tokens_per_second"] * metrics["train_runtime"]),
        "real_tokens": round(metrics["train_tokens_per_second"] * metrics["train_runtime"]),
        "predict_dev_wall_s": round(dev_wall, 1), "predict_dev_cpu_s": round(dev_cpu, 1),
        "train_plus_predict_wall_s": round(train_wall + dev_wall, 1),
        "dev": {"exact_match": round(dev["exact_match"], 2), "f1": round(dev["f1"], 2)},
        "heldout": {"exact_match": round(held["exact_match"], 2), "f1": round(held["f1"], 2),
                    "questions": sum(len(p["qas"]) for a in json.loads(heldout.read_text())["data"]
                                     for p in a["paragraphs"])},
    }  # fmt: skip
    return row


def step_cost(name: str, flags: list[str], work: Path, steps: int) -> dict:
    out = work / f"cost-{name}"
    cmd = qaflow("train", "--params", "params.yaml", "--output_dir", str(out), "--overwrite_output_dir",
                 "--report_to", "none", "--save_strategy", "no", "--max_steps", str(steps), "--logging_steps", "1000",
                 *flags)  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    timed(cmd, work / f"cost-{name}.log")
    m = json.loads(TrainPaths(out).result_file.read_text())["metrics"]
    return {
        "median_step_s": round(m["median_step_seconds"], 3),
        "padded_tokens_per_step": round(m["train_padded_tokens_per_second"] * m["train_runtime"] / steps),
        "real_tokens_per_step": round(m["train_tokens_per_second"] * m["train_runtime"] / steps),
        "windows_total": int(m["train_features"]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["run", "cost"])
    ap.add_argument("--recipe", action="append", required=True, help=f"one of {sorted(RECIPES)} (repeatable)")
    ap.add_argument("--seed", type=int, default=None, help="override the recipe's seed")
    ap.add_argument("--work", type=Path, default=Path("/tmp/demo_recipe"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/demo_recipe_runs.jsonl")
    ap.add_argument("--label", default=None, help="recorded with each row (e.g. the round of an alternated series)")
    ap.add_argument("--heldout_questions", type=int, default=None, help="score the first N held-out questions only")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    unknown = [r for r in a.recipe if r not in RECIPES]
    if unknown:
        sys.exit(f"unknown recipe(s) {unknown}; known: {sorted(RECIPES)}")
    a.work.mkdir(parents=True, exist_ok=True)
    if a.mode == "cost":
        samples: dict[str, list[dict]] = {r: [] for r in a.recipe}
        for _ in range(a.repeats):  # alternate so the machine's drift hits every recipe alike
            for r in a.recipe:
                samples[r].append(step_cost(r, RECIPES[r], a.work, a.steps))
                print(r, samples[r][-1], flush=True)
        print(json.dumps(samples, indent=1))
        return
    heldout = write_heldout(a.work / "heldout.json", a.heldout_questions)
    for i, r in enumerate(a.recipe):  # a recipe named twice (baseline first and last) runs twice
        row = run_recipe(r, RECIPES[r], a.work / str(i), heldout, a.seed, a.label)
        print(json.dumps(row), flush=True)
        with a.out.open("a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
