"""CPU training throughput: qaflow vs a plain transformers `Trainer` run, same model/data/batch/sequence length.

Both runs fine-tune the same checkpoint on the same features for the same number of steps, then predict on the
same dev subset; the script prints samples/s for each, the ratio (goal >= 1.0) and both EM/F1 so any speed-up
that changes the result is visible. Runs alternate (baseline, qaflow, baseline, qaflow, ...) to share the noise.

    .venv/bin/python benchmarks/train_cpu.py --model minilm --train_samples 96 --max_seq_length 384 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks.core.checkpoints import load_tokenizer  # noqa: E402
from tasks.core.config import load_config  # noqa: E402
from tasks.core.data import load_dataset_file  # noqa: E402
from tasks.core.features import feature_settings, prepare_train_features, save_features  # noqa: E402
from tasks.core.layout import TrainPaths  # noqa: E402
from tasks.core.model_spec import ModelSpec, resolve_model_path  # noqa: E402
from tasks.core.scoring import score_dataset  # noqa: E402
from tasks.core.specs import inference_recipe  # noqa: E402
from tasks.families.extractive import ExtractiveFamily  # noqa: E402
from tasks.pipeline.training import train_family  # noqa: E402
from tasks.predict import predict_examples  # noqa: E402
from tasks.train.resources import available_cpu_cores  # noqa: E402


def plain_trainer(cfg, features, out: Path) -> tuple[float, Path]:
    """The baseline: what run_qa.py does — padded features in a `datasets.Dataset`, default collator."""
    from datasets import Dataset
    from transformers import AutoModelForQuestionAnswering, Trainer, TrainingArguments, default_data_collator

    columns = {
        "input_ids": features.input_ids,
        "attention_mask": features.attention_mask,
        "start_positions": features.start_positions,
        "end_positions": features.end_positions,
    }
    if features.token_type_ids is not None:
        columns["token_type_ids"] = features.token_type_ids
    dataset = Dataset.from_dict({k: v.tolist() for k, v in columns.items()})
    from transformers import set_seed

    path = resolve_model_path(cfg.model.model_name_or_path)
    set_seed(cfg.train.seed)  # as run_qa.py: the new QA head's initialisation follows the seed
    model = AutoModelForQuestionAnswering.from_pretrained(path)
    t = cfg.train
    args = TrainingArguments(
        output_dir=str(out / "ckpt"),
        learning_rate=t.learning_rate,
        warmup_steps=t.warmup_ratio,
        weight_decay=t.weight_decay,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.per_device_train_batch_size,
        seed=t.seed,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        logging_steps=1000,
    )
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=default_data_collator)
    metrics = trainer.train().metrics
    trainer.save_model(str(out / "model"))
    load_tokenizer(path).save_pretrained(str(out / "model"))
    return metrics["train_samples_per_second"], out / "model"


def evaluate(cfg, model_dir: Path, dev, out: Path) -> dict:
    from transformers import AutoModelForQuestionAnswering

    model = AutoModelForQuestionAnswering.from_pretrained(str(model_dir))
    recipe = inference_recipe(cfg, "extractive", dev.version)
    run = predict_examples(
        ExtractiveFamily(), model, load_tokenizer(str(model_dir)), dev.examples, recipe, out, save_raw=False
    )
    return score_dataset(dev, run.predictions, run.null_odds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--train_samples", type=int, default=96)
    ap.add_argument("--eval_samples", type=int, default=100)
    ap.add_argument("--max_seq_length", type=int, default=384)
    ap.add_argument("--doc_stride", type=int, default=128)
    ap.add_argument("--batch_size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(available_cpu_cores())
    overrides = {
        "model_name_or_path": a.model, "max_seq_length": a.max_seq_length, "doc_stride": a.doc_stride,
        "per_device_train_batch_size": a.batch_size, "max_steps": a.steps, "learning_rate": 5e-5,
        "save_strategy": "no", "logging_steps": 1000, "backend": "cpu",
    }  # fmt: skip
    cfg = load_config(ROOT / "params.yaml", overrides)
    train = load_dataset_file(ROOT / "data/sample/squad-v1.1-sample-train.json", max_samples=a.train_samples)
    dev = load_dataset_file(ROOT / "data/sample/squad-v1.1-sample-dev.json", max_samples=a.eval_samples)
    features = prepare_train_features(train.examples, load_tokenizer(a.model), feature_settings(cfg))
    real = features.attention_mask.sum() / features.attention_mask.size
    print(f"model={a.model} features={len(features)} seq={a.max_seq_length} batch={a.batch_size} steps={a.steps} "
          f"threads={torch.get_num_threads()} non-padding tokens={real:.1%}")  # fmt: skip
    base_sps, ours_sps = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.repeats):
            sps, base_model = plain_trainer(cfg, features, Path(tmp) / f"base{r}")
            base_sps.append(sps)
            cfg.features.pad_to_max_length = False  # qaflow: dynamic padding (same features, trimmed batches)
            cfg.train.output_dir = str(Path(tmp) / f"ours{r}")
            t0 = time.perf_counter()
            features_path = save_features(features, Path(tmp) / "features.npz")
            paths = TrainPaths(Path(cfg.train.output_dir))
            result = train_family(cfg, ExtractiveFamily(), ModelSpec.from_config(cfg), features_path, "cpu", paths)
            ours_sps.append(result.metrics["train_samples_per_second"])
            print(f"repeat {r}: plain Trainer {base_sps[-1]:.2f} samples/s | qaflow {ours_sps[-1]:.2f} samples/s "
                  f"(wall {time.perf_counter() - t0:.1f}s)")  # fmt: skip
            cfg.features.pad_to_max_length = True
        base_scores = evaluate(cfg, base_model, dev, Path(tmp) / "pred_base")
        ours_scores = evaluate(cfg, result.model_dir, dev, Path(tmp) / "pred_ours")
    ratio = float(np.median(ours_sps) / np.median(base_sps))
    print(json.dumps({
        "plain_trainer_samples_per_second": float(np.median(base_sps)),
        "qaflow_samples_per_second": float(np.median(ours_sps)),
        "ratio_qaflow_over_plain": round(ratio, 3),
        "plain_trainer_dev": base_scores, "qaflow_dev": ours_scores,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
