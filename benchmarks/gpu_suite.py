"""The prepared GPU suite: CUDA correctness, quality at scale, and the seeds' throughput table, in one command.

    python benchmarks/gpu_payload.py --out gpu_payload                      # here, once (needs ../shared/data)
    bash benchmarks/gpu_suite.sh                                            # on the device (carry gpu_payload)
    python benchmarks/gpu_suite.py --cpu_smoke --out /tmp/suite             # here: the same stages, tiny and fast

Stages, in priority order, each in its own process with its own time guard (a slow or hung stage is killed and
the next one runs):

a. `a_correctness` — `qaflow train` + `qaflow predict` + `qaflow score` (the CLI, as users run it) on the bundled
   sample with the payload's MiniLM, bf16, on CUDA.
b. `b_features`, `b_qaflow`, `b_baseline` — quality at scale: MiniLM on the full SQuAD v1.1 train set at 384/128,
   qaflow (packed windows, `train.packing`) vs a plain `Trainer` configured as run_qa.py (padded to max length,
   default collator), same settings; both scored on the full dev set with the official metric.
c. `c_*` — the seeds' table at bert-base size (`BertConfig()`, random init, SQuAD features at 384/128): the
   run_qa-configured Trainer in regular execution (fp32) and in its best documented mode (bf16 + torch_compile), vs
   qaflow eager bf16 / compile / compile max-autotune, each also with packed windows (`c_qaflow_packed`,
   `c_qaflow_packed_compile`); samples/s, steps/s, compile time apart from steady state, MFU (over the token
   positions the device computed), peak memory, the AUTOTUNE table.

Writes `<out>/<stage>.json` per stage, `<out>/summary.json` (keys: device, mfu, speedup_vs_baseline, delta_f1, ...)
and prints the summary table last.
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

import numpy as np
import torch
from transformers import (
    AutoModelForQuestionAnswering,
    BertConfig,
    BertForQuestionAnswering,
    Trainer,
    TrainingArguments,
    default_data_collator,
    set_seed,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from tasks.core.artifacts import write_result  # noqa: E402
from tasks.core.checkpoints import load_tokenizer  # noqa: E402
from tasks.core.config import load_config  # noqa: E402
from tasks.core.data import load_dataset_file, to_squad_json  # noqa: E402
from tasks.core.features import (  # noqa: E402
    FeatureSettings,
    load_features,  # noqa: E402
    prepare_train_features,
    save_features,  # noqa: E402
)
from tasks.core.layout import TrainPaths  # noqa: E402
from tasks.families.extractive import ExtractiveFamily  # noqa: E402
from tasks.pipeline.benchmark import (  # noqa: E402
    model_flops_utilisation,
    peak_flops,
    run_mode,  # noqa: E402
)
from tasks.pipeline.prediction import predict_from_config  # noqa: E402
from tasks.pipeline.stages import build_train_features, load_split  # noqa: E402
from tasks.pipeline.training import train_model  # noqa: E402
from tasks.train.resources import peak_memory_mb  # noqa: E402
from tasks.train.trainer import ThroughputCallback  # noqa: E402

SAMPLE_TRAIN = ROOT / "data" / "sample" / "squad-v1.1-sample-train.json"
SAMPLE_DEV = ROOT / "data" / "sample" / "squad-v1.1-sample-dev.json"
QAFLOW_C_MODES = ("c_qaflow_eager", "c_qaflow_grouped", "c_qaflow_compile", "c_qaflow_autotune", "c_qaflow_packed",
                  "c_qaflow_packed_compile")  # fmt: skip


# --------------------------------------------------------------------------------------------- helpers


def settings(a: argparse.Namespace) -> dict[str, Any]:
    """Sizes for the run: the real ones on a GPU, tiny ones for the CPU smoke run."""
    if a.cpu_smoke:
        return {"backend": "cpu", "bf16": False, "a_steps": 4, "a_train": 48, "a_dev": 24, "seq": 128, "stride": 48,
                "b_train": 64, "b_dev": 32, "b_epochs": 1.0, "b_batch": 8, "c_steps": 3, "c_batch": 4}  # fmt: skip
    return {"backend": "cuda", "bf16": True, "a_steps": 60, "a_train": 1000, "a_dev": None, "seq": 384, "stride": 128,
            "b_train": None, "b_dev": None, "b_epochs": a.scale_epochs, "b_batch": a.scale_batch,
            "c_steps": a.c_steps, "c_batch": a.c_batch}  # fmt: skip


def minilm_dir(a: argparse.Namespace, out: Path) -> Path:
    """The payload's MiniLM; for the CPU smoke run a tiny random BERT with the same vocabulary."""
    if not a.cpu_smoke:
        return Path(a.payload) / "minilm"
    return tiny_bert(out / "tiny-minilm", hidden=32)


def tiny_bert(path: Path, hidden: int) -> Path:
    if not (path / "config.json").exists():
        config = BertConfig(
            hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2, intermediate_size=hidden * 2
        )
        BertForQuestionAnswering(config).save_pretrained(path)
        load_tokenizer("minilm").save_pretrained(path)  # bert-base-uncased vocabulary
    return path


def data_files(a: argparse.Namespace) -> tuple[Path, Path]:
    if a.cpu_smoke:
        return SAMPLE_TRAIN, SAMPLE_DEV
    return Path(a.payload) / "train-v1.1.json.gz", Path(a.payload) / "dev-v1.1.json.gz"


def device_name() -> str:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def run_cli(argv: list[str], log: Path) -> dict[str, Any]:
    """`qaflow ARGV` as a user runs it; the JSON it prints, or an error with the tail of its output."""
    done = subprocess.run([sys.executable, "-m", "flows.cli", *argv], cwd=ROOT, capture_output=True, text=True)
    log.write_text(done.stdout + "\n--- stderr ---\n" + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"qaflow {argv[0]} exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
    text = "\n" + done.stdout
    start = text.rfind("\n{\n")  # the command's own (indented) JSON comes last, after any progress output
    return json.loads(text[start:]) if start >= 0 else {}


# --------------------------------------------------------------------------------------------- stages


def stage_a_correctness(a: argparse.Namespace, s: dict[str, Any], out: Path) -> dict[str, Any]:
    model = minilm_dir(a, out)
    dev = SAMPLE_DEV
    if s["a_dev"]:
        dev = out / "a_dev.json"
        dev.write_text(json.dumps(to_squad_json(load_dataset_file(SAMPLE_DEV, max_samples=s["a_dev"]))))
    common = ["--backend", s["backend"], "--max_seq_length", str(s["seq"]), "--doc_stride", str(s["stride"])]
    train_dir = out / "a_train"
    t0 = time.perf_counter()
    trained = run_cli(["train", "--json", *common, "--model_name_or_path", str(model), "--output_dir", str(train_dir),
                       "--max_steps", str(s["a_steps"]), "--max_train_samples", str(s["a_train"]),
                       "--bf16", str(s["bf16"]).lower(), "--per_device_train_batch_size", "16",
                       "--save_steps", "100000", "--learning_rate", "1e-4"], out / "a_train.log")  # fmt: skip
    predicted = run_cli(["predict", *common, "--model_dir", str(train_dir), "--data", str(dev),
                         "--output_dir", str(out / "a_predict")], out / "a_predict.log")  # fmt: skip
    scored = run_cli(["score", "--data", str(dev), "--predictions", str(out / "a_predict" / "predictions.json")],
                     out / "a_score.log")  # fmt: skip
    return {
        "device": device_name(), "backend": s["backend"], "wall_s": time.perf_counter() - t0,
        "train_steps_per_second": trained.get("train_steps_per_second"),
        "train_samples_per_second": trained.get("train_samples_per_second"),
        "predict_samples_per_second": predicted.get("predict_samples_per_second"),
        "metrics": scored, "same_as_predict": scored == predicted.get("metrics"),
    }  # fmt: skip


def scale_config(a: argparse.Namespace, s: dict[str, Any], out: Path, name: str) -> Any:
    train, dev = data_files(a)
    return load_config(None, {
        "model_name_or_path": str(minilm_dir(a, out)), "train_file": str(train), "validation_file": str(dev),
        "max_train_samples": s["b_train"], "max_eval_samples": s["b_dev"],
        "max_seq_length": s["seq"], "doc_stride": s["stride"], "backend": s["backend"], "bf16": s["bf16"],
        "num_train_epochs": s["b_epochs"], "per_device_train_batch_size": s["b_batch"],
        "per_device_eval_batch_size": 256, "learning_rate": a.scale_lr, "warmup_ratio": 0.1, "weight_decay": 0.01,
        "save_steps": 100000, "logging_steps": 50, "output_dir": str(out / name),
        "preprocessing_num_workers": max(1, min(8, (os.cpu_count() or 1) // 2)), "dataloader_num_workers": 2,
    })  # fmt: skip


def stage_b_features(a: argparse.Namespace, s: dict[str, Any], out: Path) -> dict[str, Any]:
    """run_qa-identical training windows of the whole train set, shared by both quality runs."""
    cfg = scale_config(a, s, out, "b_features")
    t0 = time.perf_counter()
    train = load_split(cfg, "train")
    features = build_train_features(
        cfg, ExtractiveFamily(), train.examples, load_tokenizer(cfg.model.model_name_or_path)
    )
    save_features(features, out / "b_train_features.npz")
    return {"examples": len(train.examples), "features": len(features), "featurize_s": time.perf_counter() - t0}


def score_model(cfg: Any, model_dir: Path, out_dir: Path) -> dict[str, Any]:
    summary = predict_from_config(cfg, model_dir=model_dir, data=cfg.data.validation_file, output_dir=out_dir,
                                  save_raw=False)  # fmt: skip
    return {"metrics": summary.metrics, "predict_samples_per_second": summary.speed["predict_samples_per_second"]}


def stage_b_qaflow(a: argparse.Namespace, s: dict[str, Any], out: Path) -> dict[str, Any]:
    cfg = scale_config(a, s, out, "b_qaflow")
    cfg.train.packing = True  # each batch's windows packed into full-width rows: ~1.1 positions per real token
    t0 = time.perf_counter()
    paths = TrainPaths(out / "b_qaflow")
    result = train_model(cfg, features_path=out / "b_train_features.npz", data_path=Path(cfg.data.train_file),
                         paths=paths)  # fmt: skip
    write_result(result, paths.result_file)
    train_s = time.perf_counter() - t0
    return {"train_s": train_s, **{k: result.metrics.get(k) for k in ("train_samples_per_second", "train_loss")},
            **score_model(cfg, result.model_dir, out / "b_qaflow_predict")}  # fmt: skip


def stage_b_baseline(a: argparse.Namespace, s: dict[str, Any], out: Path) -> dict[str, Any]:
    """A plain Trainer configured as run_qa.py: windows padded to max_seq_length, default_data_collator."""
    cfg = scale_config(a, s, out, "b_baseline")
    features = load_features(out / "b_train_features.npz")
    t0 = time.perf_counter()
    set_seed(cfg.train.seed)
    model = AutoModelForQuestionAnswering.from_pretrained(cfg.model.model_name_or_path, dtype=torch.float32)
    t = cfg.train
    args = TrainingArguments(
        output_dir=str(out / "b_baseline"), learning_rate=t.learning_rate, num_train_epochs=t.num_train_epochs,
        per_device_train_batch_size=t.per_device_train_batch_size, warmup_steps=t.warmup_ratio,
        weight_decay=t.weight_decay, seed=t.seed, bf16=t.bf16, save_strategy="no", report_to="none",
        logging_steps=t.logging_steps, use_cpu=s["backend"] == "cpu", dataloader_num_workers=2, disable_tqdm=True,
    )  # fmt: skip
    trainer = Trainer(model=model, args=args, train_dataset=PaddedWindows(features),
                      data_collator=default_data_collator)  # fmt: skip
    metrics = trainer.train().metrics
    trainer.save_model(str(out / "b_baseline" / "model"))
    load_tokenizer(cfg.model.model_name_or_path).save_pretrained(str(out / "b_baseline" / "model"))
    train_s = time.perf_counter() - t0
    return {"train_s": train_s, "train_samples_per_second": metrics.get("train_samples_per_second"),
            "train_loss": metrics.get("train_loss"),
            **score_model(cfg, out / "b_baseline" / "model", out / "b_baseline_predict")}  # fmt: skip


class PaddedWindows:
    """run_qa.py's training dataset: every window padded to max_seq_length, with start/end labels."""

    COLUMNS = ("input_ids", "attention_mask", "token_type_ids", "start_positions", "end_positions")

    def __init__(self, features: Any) -> None:
        self.columns = {c: getattr(features, c) for c in self.COLUMNS if getattr(features, c) is not None}

    def __len__(self) -> int:
        return len(self.columns["input_ids"])

    def __getitem__(self, i: int) -> dict[str, Any]:
        # run_qa's datasets hold int64 columns; qaflow's feature files store compact int32/uint8 ones
        return {c: np.asarray(values[i], dtype=np.int64) for c, values in self.columns.items()}


def c_features(a: argparse.Namespace, s: dict[str, Any], out: Path) -> tuple[Any, Path]:
    model_dir = tiny_bert(out / "c_tiny", hidden=64) if a.cpu_smoke else bert_base(out / "c_bert_base", a.payload)
    n = s["c_batch"] * s["c_steps"] * 2
    train = load_dataset_file(SAMPLE_TRAIN, max_samples=n)
    windows = FeatureSettings(s["seq"], s["stride"], pad_to_max_length=True)
    return prepare_train_features(train.examples, load_tokenizer(str(model_dir)), windows), model_dir


def bert_base(path: Path, payload: str) -> Path:
    """bert-base size (`BertConfig()`), random init; the bert-base-uncased vocabulary from the payload's MiniLM."""
    if not (path / "config.json").exists():
        BertForQuestionAnswering(BertConfig()).save_pretrained(path)
        load_tokenizer(str(Path(payload) / "minilm")).save_pretrained(path)
    return path


def stage_c_plain(a: argparse.Namespace, s: dict[str, Any], out: Path, best: bool) -> dict[str, Any]:
    """The run_qa-configured Trainer: regular execution (fp32), or bf16 + torch_compile (its best documented mode)."""
    features, model_dir = c_features(a, s, out)
    model = AutoModelForQuestionAnswering.from_pretrained(str(model_dir))
    args = TrainingArguments(
        output_dir=str(out / "c_plain"), per_device_train_batch_size=s["c_batch"], max_steps=s["c_steps"],
        save_strategy="no", report_to="none", disable_tqdm=True, use_cpu=s["backend"] == "cpu",
        logging_steps=10_000, bf16=best and s["bf16"], torch_compile=best, dataloader_drop_last=True,
    )  # fmt: skip
    speed = ThroughputCallback()
    trainer = Trainer(model=model, args=args, train_dataset=PaddedWindows(features),
                      data_collator=default_data_collator, callbacks=[speed])  # fmt: skip
    metrics = {**trainer.train().metrics, **speed.figures(), "peak_memory_mb": peak_memory_mb(s["backend"])}
    metrics["model_parameters"] = float(sum(p.numel() for p in model.parameters()))
    peak = peak_flops(device_name()) if s["backend"] == "cuda" else None
    if peak:
        metrics["mfu"] = model_flops_utilisation(
            metrics, model.config, int(metrics["model_parameters"]), s["seq"], peak
        )
    return {"mode": "plain-bf16-compile" if best else "plain-fp32", "device": device_name(), "metrics": metrics}


def stage_c_qaflow(a: argparse.Namespace, s: dict[str, Any], out: Path, mode: str) -> dict[str, Any]:
    features, model_dir = c_features(a, s, out)
    cfg = load_config(None, {
        "model_name_or_path": str(model_dir), "max_seq_length": s["seq"], "doc_stride": s["stride"],
        "backend": s["backend"], "bf16": s["bf16"], "per_device_train_batch_size": s["c_batch"],
        "max_steps": s["c_steps"], "logging_steps": 10_000,
    })  # fmt: skip
    result = run_mode(cfg, features, s["backend"], mode, out / f"c_{mode}")
    autotune = result.artifacts.get("autotune_table_md")
    return {"mode": f"qaflow-{mode}", "device": result.device_name, "metrics": result.metrics,
            "autotune_table": Path(autotune).read_text()[:20000] if autotune else None}  # fmt: skip


STAGES = {
    "a_correctness": stage_a_correctness,
    "b_features": stage_b_features,
    "b_qaflow": stage_b_qaflow,
    "b_baseline": stage_b_baseline,
    "c_plain_fp32": lambda a, s, o: stage_c_plain(a, s, o, best=False),
    "c_plain_bf16_compile": lambda a, s, o: stage_c_plain(a, s, o, best=True),
    "c_qaflow_eager": lambda a, s, o: stage_c_qaflow(a, s, o, "eager"),
    "c_qaflow_grouped": lambda a, s, o: stage_c_qaflow(a, s, o, "eager-grouped"),
    "c_qaflow_compile": lambda a, s, o: stage_c_qaflow(a, s, o, "compile"),
    "c_qaflow_autotune": lambda a, s, o: stage_c_qaflow(a, s, o, "compile-max-autotune"),
    "c_qaflow_packed": lambda a, s, o: stage_c_qaflow(a, s, o, "eager-packed"),
    "c_qaflow_packed_compile": lambda a, s, o: stage_c_qaflow(a, s, o, "compile-packed"),
}
# the share of the whole budget each stage may use at most (what a stage leaves unused goes to the next ones)
SHARES = {
    "a_correctness": 0.12, "b_features": 0.10, "b_qaflow": 0.22, "b_baseline": 0.22, "c_plain_fp32": 0.06,
    "c_plain_bf16_compile": 0.08, "c_qaflow_eager": 0.05,
    "c_qaflow_grouped": 0.05, "c_qaflow_compile": 0.08, "c_qaflow_autotune": 0.12, "c_qaflow_packed": 0.05,
    "c_qaflow_packed_compile": 0.08,
}  # fmt: skip


# --------------------------------------------------------------------------------------------- orchestration


def run_stage(name: str, a: argparse.Namespace, out: Path, timeout: float) -> dict[str, Any]:
    """One stage in its own process (so a hang or a crash costs only that stage)."""
    argv = [sys.executable, __file__, "--stage", name, "--out", str(out), "--payload", a.payload,
            "--scale_epochs", str(a.scale_epochs), "--scale_batch", str(a.scale_batch),
            "--scale_lr", str(a.scale_lr), "--c_steps", str(a.c_steps), "--c_batch", str(a.c_batch),
            *(["--cpu_smoke"] if a.cpu_smoke else [])]  # fmt: skip
    t0 = time.perf_counter()
    with open(out / f"{name}.log", "w") as log:
        try:
            code = subprocess.run(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=timeout).returncode
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
    f1 = {k: (((results.get(k) or {}).get("metrics")) or {}).get("f1") for k in ("b_qaflow", "b_baseline")}
    device = next((r.get("device") for r in results.values() if r.get("device")), "unknown")
    return {
        "device": device,
        "mfu": ((results.get(best_mode) or {}).get("metrics") or {}).get("mfu") if best_mode else None,
        "speedup_vs_baseline": ours[best_mode] / plain if best_mode and plain else None,
        "best_qaflow_mode": best_mode,
        "speedup_fixed_width_vs_baseline": max((v for m, v in ours.items() if m != "c_qaflow_grouped"), default=0)
        / plain
        if plain and ours
        else None,
        "delta_f1": f1["b_qaflow"] - f1["b_baseline"] if None not in f1.values() else None,
        "scale_f1": f1,
        "correctness_f1": ((results.get("a_correctness") or {}).get("metrics") or {}).get("f1"),
        "stages": {k: v.get("status") for k, v in results.items()},
    }


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
    ap.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset, in order")
    ap.add_argument("--scale_epochs", type=float, default=2.0)
    ap.add_argument("--scale_batch", type=int, default=64)
    ap.add_argument("--scale_lr", type=float, default=2e-4)
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
