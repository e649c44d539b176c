"""qaflow's IPU training worker: runs INSIDE the Graphcore environment (`ipu.ipu_python`), never in qaflow's.

    <ipu-python> ipu_worker.py JOB.json

Started by `tasks/train/ipu.py`, which writes JOB.json. Self-contained on purpose: only the standard
library and the IPU environment's packages (poptorch from the Poplar SDK, optimum-graphcore 0.7.1,
transformers 4.29.2); it imports nothing of qaflow, whose modules need transformers 5. Keep it Python 3.8
compatible (the Poplar SDK's poptorch wheels are built for the SDK's system Python).

Exit codes: 0 trained (the last stdout line is one JSON object of metrics), 1 training failed,
2 bad job spec, 3 poptorch missing, 4 optimum-graphcore/transformers missing.
"""

from __future__ import annotations

import sys

try:  # first of all: without the Poplar SDK nothing below can work
    import poptorch
except Exception as _exc:  # ImportError, or OSError when the SDK's libraries are not on the library path
    sys.stderr.write(
        f"qaflow-ipu-worker: poptorch missing: cannot import poptorch in {sys.executable} "
        f"({type(_exc).__name__}: {_exc}); install the Poplar SDK's poptorch wheel into this environment "
        "and run `source <sdk>/enable`\n"
    )
    sys.exit(3)

import json  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

try:
    import torch
    from optimum.graphcore import IPUConfig, IPUTrainer, IPUTrainingArguments
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, default_data_collator
except Exception as _exc:
    sys.stderr.write(
        f"qaflow-ipu-worker: optimum-graphcore/transformers missing: {type(_exc).__name__}: {_exc}; "
        f"install requirements-ipu.txt into {sys.executable}\n"
    )
    sys.exit(4)

REQUIRED_KEYS = (
    "model_name_or_path", "tokenizer_name", "ipu_config_name", "ipu_config_overrides", "training_args",
    "pod_ipus", "train_file", "max_seq_length", "doc_stride", "output_dir", "model_dir",
)  # fmt: skip


def say(message: str) -> None:
    sys.stdout.write(f"qaflow-ipu-worker: {message}\n")
    sys.stdout.flush()


def read_spec(path: str) -> dict[str, Any]:
    spec = json.loads(Path(path).read_text(encoding="utf-8"))
    missing = [k for k in REQUIRED_KEYS if k not in spec]
    if missing:
        raise ValueError(f"job spec {path} lacks {', '.join(missing)}")
    return spec


def read_squad(path: str) -> list[dict[str, Any]]:
    """Flat examples from nested SQuAD JSON: id, question, context, answers [{text, answer_start}]."""
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    examples = []
    for article in raw["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                answers = [] if qa.get("is_impossible") else list(qa.get("answers") or [])
                examples.append(
                    {
                        "id": qa["id"],
                        "question": qa["question"],
                        "context": paragraph["context"],
                        "answers": answers,
                    }
                )
    return examples


def answer_token_span(offsets, sequence_ids, context_id: int, answer: dict[str, Any], cls_index: int):
    """(start, end) token indices of the answer in this window; (cls, cls) when it is not fully inside."""
    start_char = int(answer["answer_start"])
    end_char = start_char + len(answer["text"])
    ctx = [i for i, s in enumerate(sequence_ids) if s == context_id]
    if not ctx:
        return cls_index, cls_index
    first, last = ctx[0], ctx[-1]
    if offsets[first][0] > start_char or offsets[last][1] < end_char:
        return cls_index, cls_index
    start = first
    while start <= last and offsets[start][0] <= start_char:
        start += 1
    end = last
    while end >= first and offsets[end][1] >= end_char:
        end -= 1
    return start - 1, end + 1


def prepare_features(tokenizer, examples: list[dict[str, Any]], max_len: int, stride: int) -> dict[str, list]:
    """run_qa-style training features: long contexts in overlapping windows, answers as token spans."""
    pad_right = tokenizer.padding_side == "right"
    context_id = 1 if pad_right else 0
    columns: dict[str, list] = {}
    for lo in range(0, len(examples), 1000):
        chunk = examples[lo : lo + 1000]
        questions = [e["question"].lstrip() for e in chunk]
        contexts = [e["context"] for e in chunk]
        enc = tokenizer(
            questions if pad_right else contexts,
            contexts if pad_right else questions,
            truncation="only_second" if pad_right else "only_first",
            max_length=max_len,
            stride=stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding="max_length",
        )
        sample_map = enc.pop("overflow_to_sample_mapping")
        offsets = enc.pop("offset_mapping")
        starts, ends = [], []
        for i, window_offsets in enumerate(offsets):
            ids = enc["input_ids"][i]
            cls_index = ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in ids else 0
            answers = chunk[sample_map[i]]["answers"]
            if not answers:
                start, end = cls_index, cls_index
            else:
                start, end = answer_token_span(window_offsets, enc.sequence_ids(i), context_id, answers[0], cls_index)
            starts.append(start)
            ends.append(end)
        enc["start_positions"] = starts
        enc["end_positions"] = ends
        for key, values in enc.items():
            columns.setdefault(key, []).extend(values)
    return columns


class FeatureDataset(torch.utils.data.Dataset):
    """Fixed-length features as a map-style dataset of tensors (IPU graphs need static shapes)."""

    def __init__(self, columns: dict[str, list]) -> None:
        self.columns = columns
        self.length = len(columns["input_ids"])

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {k: torch.tensor(v[i]) for k, v in self.columns.items()}


def known_fields(cls, values: dict[str, Any]) -> dict[str, Any]:
    """Keep the arguments this optimum-graphcore version's dataclass accepts; report the others."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(cls)}
    dropped = sorted(set(values) - names)
    if dropped:
        say(f"ignoring {cls.__name__} arguments unknown to this version: {', '.join(dropped)}")
    return {k: v for k, v in values.items() if k in names}


def build_ipu_config(spec: dict[str, Any], num_hidden_layers: int | None):
    overrides = dict(spec["ipu_config_overrides"])
    ipu_config = IPUConfig.from_pretrained(spec["ipu_config_name"], **overrides)
    layers = list(ipu_config.layers_per_ipu)
    if (
        not spec.get("layers_per_ipu_set")
        and num_hidden_layers is not None
        and -1 not in layers
        and sum(layers) != num_hidden_layers
    ):
        # e.g. a 6-layer MiniLM with bert-base's [0, 4, 4, 4]: spread the layers evenly over the same IPUs
        say(
            f"layers_per_ipu {layers} does not add up to the model's {num_hidden_layers} layers; "
            f"using [-1] * {len(layers)} (set ipu.layers_per_ipu to choose)"
        )
        ipu_config.layers_per_ipu = [-1] * len(layers)
    replicas = int(ipu_config.replication_factor)
    per_replica = int(ipu_config.ipus_per_replica)
    if replicas * per_replica > int(spec["pod_ipus"]):
        replicas = max(1, int(spec["pod_ipus"]) // per_replica)
        say(f"the IPU config pipelines over {per_replica} IPUs; replication factor set to {replicas}")
        ipu_config.replication_factor = replicas
    return ipu_config


def train(spec: dict[str, Any]) -> dict[str, Any]:
    say(f"poptorch {getattr(poptorch, '__version__', '?')}, job {spec.get('output_dir')}")
    tokenizer = AutoTokenizer.from_pretrained(spec["tokenizer_name"], use_fast=True, trust_remote_code=False)
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"QA features need a fast tokenizer (offset mappings); {spec['tokenizer_name']} has none")
    max_len, stride = int(spec["max_seq_length"]), int(spec["doc_stride"])
    train_examples = read_squad(spec["train_file"])
    train_columns = prepare_features(tokenizer, train_examples, max_len, stride)
    train_dataset = FeatureDataset(train_columns)
    eval_dataset = None
    if spec.get("eval_file"):
        eval_dataset = FeatureDataset(prepare_features(tokenizer, read_squad(spec["eval_file"]), max_len, stride))
    say(f"{len(train_examples)} training examples -> {len(train_dataset)} features")

    model = AutoModelForQuestionAnswering.from_pretrained(spec["model_name_or_path"], trust_remote_code=False)
    ipu_config = build_ipu_config(spec, getattr(model.config, "num_hidden_layers", None))
    args = IPUTrainingArguments(**known_fields(IPUTrainingArguments, spec["training_args"]))
    trainer = IPUTrainer(
        model=model,
        ipu_config=ipu_config,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=default_data_collator,
        tokenizer=tokenizer,
    )
    started = time.time()
    result = trainer.train()
    wall = time.time() - started
    trainer.save_model(spec["model_dir"])
    tokenizer.save_pretrained(spec["model_dir"])

    micro = int(spec["training_args"]["per_device_train_batch_size"])
    replicas = int(ipu_config.replication_factor)
    accumulation = int(ipu_config.gradient_accumulation_steps)
    metrics = dict(result.metrics)
    metrics.update(
        {
            "train_wall_seconds": wall,
            "global_batch_size": micro * accumulation * replicas,
            "micro_batch_size": micro,
            "gradient_accumulation_steps": accumulation,
            "replication_factor": replicas,
            "ipus_per_replica": int(ipu_config.ipus_per_replica),
            "ipus": replicas * int(ipu_config.ipus_per_replica),
            "device_iterations": int(ipu_config.device_iterations),
            "train_examples": len(train_examples),
            "train_features": len(train_dataset),
            "global_step": int(result.global_step),
            "model_dir": spec["model_dir"],
        }
    )
    if eval_dataset is not None:
        metrics.update({k: v for k, v in trainer.evaluate().items() if k.startswith("eval_")})
    return metrics


def write_metrics(path: str, metrics: dict[str, Any]) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: ipu_worker.py JOB.json\n")
        return 2
    try:
        spec = read_spec(argv[0])
    except (OSError, ValueError, KeyError) as exc:
        sys.stderr.write(f"qaflow-ipu-worker: bad job spec: {exc}\n")
        return 2
    metrics = train(spec)
    if spec.get("metrics_file"):
        write_metrics(spec["metrics_file"], metrics)
    sys.stdout.write(json.dumps(metrics, default=str) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
