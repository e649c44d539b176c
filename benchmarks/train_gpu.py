"""GPU training throughput: plain Trainer (fp32, eager) vs qaflow bf16 eager / compile / compile max-autotune.

A bert-base-size model (random initialisation from `BertConfig()`; throughput does not need trained weights) at
sequence length 384 on SQuAD features. Prints samples/s, steps/s, compile (first-step) time, MFU and the ratio of
each mode over the plain Trainer run measured in the same process, plus the autotune table path.

    python benchmarks/train_gpu.py --steps 60 --batch_size 32          # on a CUDA machine
    python benchmarks/train_gpu.py --cpu_smoke                          # tiny model on CPU: checks the script runs
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks.core.checkpoints import load_tokenizer  # noqa: E402
from tasks.core.config import load_config  # noqa: E402
from tasks.core.data import load_dataset_file  # noqa: E402
from tasks.core.features import feature_settings, prepare_train_features  # noqa: E402
from tasks.pipeline.benchmark import ALL_MODES, RUN_MODES, comparison_rows, run_mode  # noqa: E402


def build_model_dir(out: Path, tiny: bool) -> Path:
    from transformers import BertConfig, BertForQuestionAnswering

    config = BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128) if tiny \
        else BertConfig()  # fmt: skip
    BertForQuestionAnswering(config).save_pretrained(out)
    load_tokenizer("minilm").save_pretrained(out)  # bert-base-uncased vocabulary
    return out


def plain_trainer_sps(model_dir: Path, features, batch: int, steps: int, out: Path, cpu: bool) -> float:
    from datasets import Dataset
    from transformers import AutoModelForQuestionAnswering, Trainer, TrainingArguments, default_data_collator

    cols = ("input_ids", "attention_mask", "token_type_ids", "start_positions", "end_positions")
    ds = Dataset.from_dict({c: getattr(features, c).tolist() for c in cols})
    args = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=batch, max_steps=steps, save_strategy="no",
        report_to="none", disable_tqdm=True, use_cpu=cpu, logging_steps=10_000,
    )  # fmt: skip
    model = AutoModelForQuestionAnswering.from_pretrained(str(model_dir))
    trainer = Trainer(model=model, args=args, train_dataset=ds, data_collator=default_data_collator)
    return trainer.train().metrics["train_samples_per_second"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch_size", type=int, default=32)
    ap.add_argument("--max_seq_length", type=int, default=384)
    ap.add_argument("--modes", default=",".join(RUN_MODES), help=f"comma-separated, of {', '.join(ALL_MODES)}")
    ap.add_argument("--cpu_smoke", action="store_true", help="tiny model, CPU, few steps")
    a = ap.parse_args()
    backend = "cpu" if a.cpu_smoke else "cuda"
    steps, batch = (3, 4) if a.cpu_smoke else (a.steps, a.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model_dir(Path(tmp) / "model", tiny=a.cpu_smoke)
        cfg = load_config(ROOT / "params.yaml", {
            "model_name_or_path": str(model_dir), "max_seq_length": a.max_seq_length,
            "doc_stride": a.max_seq_length // 3,
            "backend": backend,
            "per_device_train_batch_size": batch, "max_steps": steps, "bf16": not a.cpu_smoke, "logging_steps": 10_000,
        })  # fmt: skip
        n_examples = batch * steps * 2
        train = load_dataset_file(ROOT / "data/sample/squad-v1.1-sample-train.json", max_samples=n_examples)
        features = prepare_train_features(train.examples, load_tokenizer(str(model_dir)), feature_settings(cfg))
        base = plain_trainer_sps(model_dir, features, batch, steps, Path(tmp) / "plain", cpu=a.cpu_smoke)
        results = [run_mode(cfg, features, backend, m, Path(tmp) / m) for m in a.modes.split(",")]
        rows = comparison_rows(results)
        for row, r in zip(rows, results, strict=True):
            row["ratio_vs_plain_trainer"] = round(r.metrics["train_samples_per_second"] / base, 2)
            row["autotune_table"] = str(r.artifacts.get("autotune_table_md", ""))
            if row["autotune_table"]:
                print(Path(row["autotune_table"]).read_text()[:4000])
    print(json.dumps({"plain_trainer_fp32_samples_per_second": base, "modes": rows}, indent=2))


if __name__ == "__main__":
    main()
