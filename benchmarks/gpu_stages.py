"""The GPU suite's stages (benchmarks/gpu_suite.py runs each in its own process). Each takes the parsed arguments,
the sizes for this run (`settings`: real on a GPU, tiny for `--cpu_smoke`) and the work directory, and returns
a JSON-able dict.

a. `a_correctness`: `qaflow train` + `predict` + `score` (the CLI, as users run it), MiniLM bf16 on CUDA.
p. `p_*`: a torch.profiler trace of steady steps (benchmarks/gpu_profile.py) of the run_qa-configured Trainer
   (bf16 + torch_compile) and of qaflow's compiled modes: top ops by self device time, device idle time per
   step and its largest gaps, host syncs per step.
h. `h_host_overhead`: benchmarks/host_overhead.py on the device: the near-zero model's ms per step, where compute
   is negligible, for the Trainer and qaflow's modes (the host ceiling on steps/s).
c. `c_*`: the seeds' table at bert-base size (`BertConfig()`, random init, SQuAD windows at 384/128): the
   run_qa-configured Trainer in regular execution (fp32) and its best documented mode (bf16 + torch_compile) vs
   qaflow's run modes (`tasks.pipeline.benchmark`), the cached ones included (`*-cached`: a priming process fills
   the compile cache, a fresh process is measured warm).
b. `b_*`: time to F1 at scale, MiniLM on the full SQuAD v1.1 train set at 384/128, scored on the full dev set with
   the official metric: the seed's run_qa settings (batch 12, lr 3e-5, 2 epochs, bf16 + torch_compile, a plain
   Trainer, padded windows) vs qaflow's fastest recipe (packed windows, compiled with static shapes and the
   compile cache, the lean step, batch `--scale_batch` with the learning rate scaled by the square root of the
   batch ratio: lr = 3e-5 * sqrt(batch / 12), 10 % warm-up). Wall times include featurisation and compilation.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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
sys.path.insert(0, str(ROOT / "benchmarks"))

from gpu_profile import ProfileSteps  # noqa: E402
from run_qa_data import PaddedWindows  # noqa: E402
from step_clock import on_every_trainer  # noqa: E402

from tasks.core.artifacts import write_result  # noqa: E402
from tasks.core.checkpoints import load_tokenizer  # noqa: E402
from tasks.core.config import load_config  # noqa: E402
from tasks.core.data import load_dataset_file, to_squad_json  # noqa: E402
from tasks.core.features import FeatureSettings, load_features, prepare_train_features, save_features  # noqa: E402
from tasks.core.layout import TrainPaths  # noqa: E402
from tasks.families.extractive import ExtractiveFamily  # noqa: E402
from tasks.pipeline.benchmark import model_flops_utilisation, peak_flops, run_mode  # noqa: E402
from tasks.pipeline.featurize import build_train_features  # noqa: E402
from tasks.pipeline.prediction import predict_from_config  # noqa: E402
from tasks.pipeline.stages import load_split  # noqa: E402
from tasks.pipeline.training import train_model  # noqa: E402
from tasks.train.compile_cache import LocalCompileCacheStore  # noqa: E402
from tasks.train.resources import peak_memory_mb  # noqa: E402
from tasks.train.trainer import ThroughputCallback  # noqa: E402

SAMPLE_TRAIN = ROOT / "data" / "sample" / "squad-v1.1-sample-train.json"
SAMPLE_DEV = ROOT / "data" / "sample" / "squad-v1.1-sample-dev.json"
SEED_BATCH, SEED_LR = 12, 3e-5  # run_qa's documented SQuAD recipe (the seeds' notebook)


def settings(a: argparse.Namespace) -> dict[str, Any]:
    """Sizes for the run: the real ones on a GPU, tiny ones for the CPU smoke run."""
    if a.cpu_smoke:
        return {"backend": "cpu", "bf16": False, "a_steps": 4, "a_train": 48, "a_dev": 24, "seq": 128, "stride": 48,
                "b_train": 64, "b_dev": 32, "b_epochs": 1.0, "b_batch": 8, "c_steps": 12, "c_batch": 4,
                "p_skip": 3, "p_steps": 3, "h_steps": 8}  # fmt: skip
    return {"backend": "cuda", "bf16": True, "a_steps": 60, "a_train": 1000, "a_dev": None, "seq": 384, "stride": 128,
            "b_train": None, "b_dev": None, "b_epochs": a.scale_epochs, "b_batch": a.scale_batch,
            "c_steps": a.c_steps, "c_batch": a.c_batch, "p_skip": 10, "p_steps": 5, "h_steps": 40}  # fmt: skip


def tiny_bert(path: Path, hidden: int) -> Path:
    if not (path / "config.json").exists():
        config = BertConfig(
            hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2, intermediate_size=hidden * 2
        )
        BertForQuestionAnswering(config).save_pretrained(path)
        load_tokenizer("minilm").save_pretrained(path)  # bert-base-uncased vocabulary
    return path


def minilm_dir(a: argparse.Namespace, out: Path) -> Path:
    """The payload's MiniLM; for the CPU smoke run a tiny random BERT with the same vocabulary."""
    return tiny_bert(out / "tiny-minilm", hidden=32) if a.cpu_smoke else Path(a.payload) / "minilm"


def bert_base(path: Path, payload: str) -> Path:
    """bert-base size (`BertConfig()`), random init; the bert-base-uncased vocabulary from the payload's MiniLM."""
    if not (path / "config.json").exists():
        BertForQuestionAnswering(BertConfig()).save_pretrained(path)
        load_tokenizer(str(Path(payload) / "minilm")).save_pretrained(path)
    return path


def data_files(a: argparse.Namespace) -> tuple[Path, Path]:
    if a.cpu_smoke:
        return SAMPLE_TRAIN, SAMPLE_DEV
    return Path(a.payload) / "train-v1.1.json.gz", Path(a.payload) / "dev-v1.1.json.gz"


def device_name() -> str:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def run_cli(argv: list[str], log: Path) -> dict[str, Any]:
    """`qaflow ARGV --json` as a user runs it; the JSON it prints, or an error with the tail of its output."""
    done = subprocess.run([sys.executable, "-m", "flows.cli", *argv], cwd=ROOT, capture_output=True, text=True)
    log.write_text(done.stdout + "\n--- stderr ---\n" + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"qaflow {argv[0]} exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
    text = "\n" + done.stdout
    start = text.rfind("\n{\n")  # the command's own (indented) JSON comes last, after any progress output
    return json.loads(text[start:]) if start >= 0 else {}


# --------------------------------------------------------------------------------------------- a: correctness


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
    predicted = run_cli(["predict", *common, "--model_dir", str(TrainPaths(train_dir).model_dir), "--data", str(dev),
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


# --------------------------------------------------------------------------------------------- c: the seeds' table


def c_features(a: argparse.Namespace, s: dict[str, Any], out: Path) -> tuple[Any, Path]:
    model_dir = tiny_bert(out / "c_tiny", hidden=64) if a.cpu_smoke else bert_base(out / "c_bert_base", a.payload)
    n = s["c_batch"] * s["c_steps"] * 2
    train = load_dataset_file(SAMPLE_TRAIN, max_samples=n)
    windows = FeatureSettings(s["seq"], s["stride"], pad_to_max_length=True)
    return prepare_train_features(train.examples, load_tokenizer(str(model_dir)), windows), model_dir


def plain_trainer(
    model_dir: Path, features: Any, s: dict[str, Any], out: Path, best: bool, callbacks: list[Any]
) -> dict[str, Any]:
    """The run_qa-configured Trainer: regular execution (fp32), or bf16 + torch_compile (its best documented mode)."""
    model = AutoModelForQuestionAnswering.from_pretrained(str(model_dir))
    args = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=s["c_batch"], max_steps=s["c_steps"],
        save_strategy="no", report_to="none", disable_tqdm=True, use_cpu=s["backend"] == "cpu",
        logging_steps=10_000, bf16=best and s["bf16"], torch_compile=best, dataloader_drop_last=True,
    )  # fmt: skip
    speed = ThroughputCallback()
    trainer = Trainer(model=model, args=args, train_dataset=PaddedWindows(features),
                      data_collator=default_data_collator, callbacks=[speed, *callbacks])  # fmt: skip
    metrics = {**trainer.train().metrics, **speed.figures(), "peak_memory_mb": peak_memory_mb(s["backend"])}
    metrics["model_parameters"] = float(sum(p.numel() for p in model.parameters()))
    peak = peak_flops(device_name()) if s["backend"] == "cuda" else None
    if peak:
        metrics["mfu"] = model_flops_utilisation(
            metrics, model.config, int(metrics["model_parameters"]), s["seq"], peak
        )
    return metrics


def stage_c_plain(a: argparse.Namespace, s: dict[str, Any], out: Path, best: bool) -> dict[str, Any]:
    features, model_dir = c_features(a, s, out)
    metrics = plain_trainer(model_dir, features, s, out / "c_plain", best, [])
    return {"mode": "plain-bf16-compile" if best else "plain-fp32", "device": device_name(), "metrics": metrics}


def fresh_store(out: Path, name: str) -> LocalCompileCacheStore:
    """An empty compile-cache store of this stage's own: a cached mode's priming run starts cold, and no stage is
    warmed by another's compilation (the suite also gives each stage process its own Inductor cache directory)."""
    path = out / f"compile_cache_{name}"
    shutil.rmtree(path, ignore_errors=True)
    return LocalCompileCacheStore(path)


def qaflow_config(s: dict[str, Any], model_dir: Path) -> Any:
    return load_config(None, {
        "model_name_or_path": str(model_dir), "max_seq_length": s["seq"], "doc_stride": s["stride"],
        "backend": s["backend"], "bf16": s["bf16"], "per_device_train_batch_size": s["c_batch"],
        "max_steps": s["c_steps"], "logging_steps": 10_000,
    })  # fmt: skip


def stage_c_qaflow(a: argparse.Namespace, s: dict[str, Any], out: Path, mode: str) -> dict[str, Any]:
    features, model_dir = c_features(a, s, out)
    store = fresh_store(out, f"c_{mode}")
    result = run_mode(qaflow_config(s, model_dir), features, s["backend"], mode, out / f"c_{mode}", store)
    tables = [Path(v) for k, v in result.artifacts.items() if k.endswith("autotune_table_md")]
    return {"mode": f"qaflow-{mode}", "device": result.device_name, "metrics": result.metrics,
            "autotune_table": tables[0].read_text()[:20000] if tables else None}  # fmt: skip


# --------------------------------------------------------------------------------------------- p: profiles


def stage_p_trainer(a: argparse.Namespace, s: dict[str, Any], out: Path) -> dict[str, Any]:
    features, model_dir = c_features(a, s, out)
    profile = ProfileSteps(skip=s["p_skip"], steps=s["p_steps"])
    metrics = plain_trainer(model_dir, features, s, out / "p_trainer", True, [profile])
    return {"mode": "plain-bf16-compile", "device": device_name(), "metrics": metrics, "profile": profile.summary()}


def stage_p_qaflow(a: argparse.Namespace, s: dict[str, Any], out: Path, mode: str) -> dict[str, Any]:
    features, model_dir = c_features(a, s, out)
    profile = ProfileSteps(skip=s["p_skip"], steps=s["p_steps"])
    store = fresh_store(out, f"p_{mode}")
    with on_every_trainer(lambda trainer: trainer.add_callback(profile)):
        result = run_mode(qaflow_config(s, model_dir), features, s["backend"], mode, out / f"p_{mode}", store)
    return {"mode": f"qaflow-{mode}", "device": result.device_name, "metrics": result.metrics,
            "profile": profile.summary()}  # fmt: skip


# --------------------------------------------------------------------------------------------- h: host overhead


def stage_h_host_overhead(a: argparse.Namespace, s: dict[str, Any], out: Path) -> dict[str, Any]:
    summary = out / "h_host_overhead_summary.json"
    argv = [sys.executable, str(ROOT / "benchmarks" / "host_overhead.py"), "--device", s["backend"],
            "--clock", "wall", "--rounds", "1", "--steps", str(s["h_steps"]), "--json", str(summary),
            *(["--bf16"] if s["bf16"] else []), *(["--threads", "2"] if a.cpu_smoke else [])]  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    (out / "h_host_overhead.log").write_text(done.stdout + "\n--- stderr ---\n" + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"host_overhead.py exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
    return {"device": device_name(), **json.loads(summary.read_text())}


# --------------------------------------------------------------------------------------------- b: time to F1


def scale_config(a: argparse.Namespace, s: dict[str, Any], out: Path, name: str, batch: int, lr: float) -> Any:
    train, dev = data_files(a)
    return load_config(None, {
        "model_name_or_path": str(minilm_dir(a, out)), "train_file": str(train), "validation_file": str(dev),
        "max_train_samples": s["b_train"], "max_eval_samples": s["b_dev"],
        "max_seq_length": s["seq"], "doc_stride": s["stride"], "backend": s["backend"], "bf16": s["bf16"],
        "num_train_epochs": s["b_epochs"], "per_device_train_batch_size": batch,
        "per_device_eval_batch_size": 256, "learning_rate": lr, "weight_decay": 0.01,
        "save_steps": 100000, "logging_steps": 50, "output_dir": str(out / name),
        "preprocessing_num_workers": max(1, min(8, (os.cpu_count() or 1) // 2)),
    })  # fmt: skip


def stage_b_features(a: argparse.Namespace, s: dict[str, Any], out: Path) -> dict[str, Any]:
    """run_qa-identical training windows of the whole train set, shared by both runs (their time is added to both)."""
    cfg = scale_config(a, s, out, "b_features", SEED_BATCH, SEED_LR)
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
    """qaflow's fastest recipe (module docstring): the square-root rule for the learning rate of a larger batch."""
    batch = s["b_batch"]
    lr = SEED_LR * math.sqrt(batch / SEED_BATCH)
    cfg = scale_config(a, s, out, "b_qaflow", batch, lr)
    cfg.train.warmup_ratio = 0.1
    cfg.train.packing = True
    cfg.train.torch_compile = True  # static shapes: two packed row counts, one compiled graph each
    t0 = time.perf_counter()
    paths = TrainPaths(out / "b_qaflow")
    result = train_model(cfg, features_path=out / "b_train_features.npz", data_path=Path(cfg.data.train_file),
                         paths=paths, compile_cache=fresh_store(out, "b_qaflow"))  # fmt: skip
    write_result(result, paths.result_file)
    train_s = time.perf_counter() - t0
    return {"recipe": {"batch": batch, "learning_rate": lr, "warmup_ratio": 0.1, "packing": True, "compile": True},
            "train_s": train_s, **{k: result.metrics.get(k) for k in ("train_samples_per_second", "train_loss",
                                                                     "first_step_seconds", "compile_cache_warm")},
            **score_model(cfg, result.model_dir, out / "b_qaflow_predict")}  # fmt: skip


def stage_b_baseline(a: argparse.Namespace, s: dict[str, Any], out: Path) -> dict[str, Any]:
    """A plain Trainer with the seed's run_qa settings: padded windows, default_data_collator, batch 12, lr 3e-5,
    bf16 + torch_compile (its best documented mode)."""
    batch = SEED_BATCH if not a.cpu_smoke else s["b_batch"]
    cfg = scale_config(a, s, out, "b_baseline", batch, SEED_LR)
    features = load_features(out / "b_train_features.npz")
    t0 = time.perf_counter()
    set_seed(cfg.train.seed)
    model = AutoModelForQuestionAnswering.from_pretrained(cfg.model.model_name_or_path, dtype=torch.float32)
    t = cfg.train
    args = TrainingArguments(
        output_dir=str(out / "b_baseline"), learning_rate=t.learning_rate, num_train_epochs=t.num_train_epochs,
        per_device_train_batch_size=batch, weight_decay=t.weight_decay, seed=t.seed, bf16=t.bf16,
        torch_compile=not a.cpu_smoke, save_strategy="no", report_to="none", logging_steps=t.logging_steps,
        use_cpu=s["backend"] == "cpu", disable_tqdm=True,
    )  # fmt: skip
    trainer = Trainer(model=model, args=args, train_dataset=PaddedWindows(features),
                      data_collator=default_data_collator)  # fmt: skip
    metrics = trainer.train().metrics
    model_dir = out / "b_baseline" / "model"
    trainer.save_model(str(model_dir))
    load_tokenizer(cfg.model.model_name_or_path).save_pretrained(str(model_dir))
    train_s = time.perf_counter() - t0
    return {"recipe": {"batch": batch, "learning_rate": SEED_LR, "compile": not a.cpu_smoke},
            "train_s": train_s, "train_samples_per_second": metrics.get("train_samples_per_second"),
            "train_loss": metrics.get("train_loss"),
            **score_model(cfg, model_dir, out / "b_baseline_predict")}  # fmt: skip


STAGES = {
    "a_correctness": stage_a_correctness,
    "p_trainer": stage_p_trainer,
    "p_qaflow_packed_static": lambda a, s, o: stage_p_qaflow(a, s, o, "compile-packed-static"),
    "p_qaflow_compile": lambda a, s, o: stage_p_qaflow(a, s, o, "compile"),
    "h_host_overhead": stage_h_host_overhead,
    "c_plain_fp32": lambda a, s, o: stage_c_plain(a, s, o, best=False),
    "c_plain_bf16_compile": lambda a, s, o: stage_c_plain(a, s, o, best=True),
    "c_qaflow_eager": lambda a, s, o: stage_c_qaflow(a, s, o, "eager"),
    "c_qaflow_compile": lambda a, s, o: stage_c_qaflow(a, s, o, "compile"),
    "c_qaflow_packed": lambda a, s, o: stage_c_qaflow(a, s, o, "eager-packed"),
    "c_qaflow_packed_compile": lambda a, s, o: stage_c_qaflow(a, s, o, "compile-packed"),
    "c_qaflow_packed_static": lambda a, s, o: stage_c_qaflow(a, s, o, "compile-packed-static"),
    "c_qaflow_packed_graphs": lambda a, s, o: stage_c_qaflow(a, s, o, "compile-packed-graphs"),
    "c_qaflow_compile_cached": lambda a, s, o: stage_c_qaflow(a, s, o, "compile-cached"),
    "c_qaflow_autotune_cached": lambda a, s, o: stage_c_qaflow(a, s, o, "compile-max-autotune-cached"),
    "b_features": stage_b_features,
    "b_baseline": stage_b_baseline,
    "b_qaflow": stage_b_qaflow,
}
