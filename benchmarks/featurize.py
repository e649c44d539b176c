"""Benchmark: qaflow's whole `featurize` stage vs Hugging Face `datasets.map` with run_qa.py's feature code.

In one run, alternating (HF, qaflow, HF, qaflow, ...) for `--rounds` rounds per setting, it times on the same
SQuAD v1.1 train questions (default: the whole file; `--limit N` for the first N questions):

* HF: read the JSON, `datasets.Dataset.from_dict`, then `.map(prepare_train_features, batched=True)` with
  run_qa.py's own `prepare_train_features` (written out below as run_qa.py has it);
* qaflow: `tasks.pipeline.featurize.featurize` of the same file to a `.npz` (what the DVC `featurize` stage runs:
  read + validate, question policy check, windows and labels, save).

Both use the offline MiniLM tokenizer (`minilm`). Settings 384/128 (run_qa.py's default) and 128/48 (the
demo). It checks that the features are identical (input_ids, attention_mask, token_type_ids, start/end
positions), prints HF s, qaflow s and the ratio HF / qaflow per round and their median, and the bytes of the
saved `.npz` against the same arrays stored as int64 (the old format).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/featurize.py [--limit N] [--rounds 2] [--settings 384/128,128/48]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks.core.checkpoints import load_tokenizer  # noqa: E402
from tasks.core.config import QAFlowConfig  # noqa: E402
from tasks.core.features import load_features  # noqa: E402
from tasks.pipeline.featurize import featurize  # noqa: E402

TRAIN = ROOT.parent / "shared" / "data" / "squad-v1.1" / "train-v1.1.json"
COMPARED = ("input_ids", "attention_mask", "token_type_ids", "start_positions", "end_positions")


# --------------------------------------------------------------------------------------------- HF run_qa.py


def hf_prepare_train_features(examples: dict[str, list], tokenizer: Any, max_seq_length: int, doc_stride: int):
    """run_qa.py's `prepare_train_features` (transformers examples/pytorch/question-answering), as written there."""
    pad_on_right = tokenizer.padding_side == "right"
    examples["question"] = [q.lstrip() for q in examples["question"]]
    tokenized_examples = tokenizer(
        examples["question" if pad_on_right else "context"],
        examples["context" if pad_on_right else "question"],
        truncation="only_second" if pad_on_right else "only_first",
        max_length=max_seq_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length",
    )
    sample_mapping = tokenized_examples.pop("overflow_to_sample_mapping")
    offset_mapping = tokenized_examples.pop("offset_mapping")
    tokenized_examples["start_positions"] = []
    tokenized_examples["end_positions"] = []
    for i, offsets in enumerate(offset_mapping):
        input_ids = tokenized_examples["input_ids"][i]
        if tokenizer.cls_token_id in input_ids:
            cls_index = input_ids.index(tokenizer.cls_token_id)
        elif tokenizer.bos_token_id in input_ids:
            cls_index = input_ids.index(tokenizer.bos_token_id)
        else:
            cls_index = 0
        sequence_ids = tokenized_examples.sequence_ids(i)
        sample_index = sample_mapping[i]
        answers = examples["answers"][sample_index]
        if len(answers["answer_start"]) == 0:
            tokenized_examples["start_positions"].append(cls_index)
            tokenized_examples["end_positions"].append(cls_index)
        else:
            start_char = answers["answer_start"][0]
            end_char = start_char + len(answers["text"][0])
            token_start_index = 0
            while sequence_ids[token_start_index] != (1 if pad_on_right else 0):
                token_start_index += 1
            token_end_index = len(input_ids) - 1
            while sequence_ids[token_end_index] != (1 if pad_on_right else 0):
                token_end_index -= 1
            if not (offsets[token_start_index][0] <= start_char and offsets[token_end_index][1] >= end_char):
                tokenized_examples["start_positions"].append(cls_index)
                tokenized_examples["end_positions"].append(cls_index)
            else:
                while token_start_index < len(offsets) and offsets[token_start_index][0] <= start_char:
                    token_start_index += 1
                tokenized_examples["start_positions"].append(token_start_index - 1)
                while offsets[token_end_index][1] >= end_char:
                    token_end_index -= 1
                tokenized_examples["end_positions"].append(token_end_index + 1)
    return tokenized_examples


def squad_columns(path: Path, limit: int | None) -> dict[str, list]:
    """The file's questions as the Hub `squad` columns (id, title, context, question, answers), first `limit`."""
    rows: dict[str, list] = {"id": [], "title": [], "context": [], "question": [], "answers": []}
    for article in json.loads(path.read_text(encoding="utf-8"))["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                rows["id"].append(qa["id"])
                rows["title"].append(article.get("title", ""))
                rows["context"].append(paragraph["context"])
                rows["question"].append(qa["question"])
                rows["answers"].append({"text": [a["text"] for a in qa["answers"]],
                                        "answer_start": [a["answer_start"] for a in qa["answers"]]})  # fmt: skip
    return {k: v[:limit] for k, v in rows.items()} if limit is not None else rows


def run_hf(path: Path, limit: int | None, tokenizer: Any, length: int, stride: int) -> Any:
    import datasets

    datasets.disable_progress_bars()
    ds = datasets.Dataset.from_dict(squad_columns(path, limit))
    return ds.map(
        hf_prepare_train_features, batched=True, remove_columns=ds.column_names,
        fn_kwargs={"tokenizer": tokenizer, "max_seq_length": length, "doc_stride": stride},
    )  # fmt: skip


# --------------------------------------------------------------------------------------------- qaflow


def run_qaflow(data: Path, output: Path, tokenizer: Any, length: int, stride: int) -> dict[str, Any]:
    cfg = QAFlowConfig()
    cfg.model.model_name_or_path = "minilm"
    cfg.features.max_seq_length, cfg.features.doc_stride = length, stride
    return featurize(cfg, data, output, tokenizer=tokenizer)


def int64_bytes(path: Path) -> tuple[int, int]:
    """Bytes of the same arrays saved (uncompressed .npz) as int64, and of the format-1 train.npz (int64 arrays
    plus int32 context offsets [N, L, 2], which format 2 leaves out of extractive training features)."""
    with np.load(path) as data:
        arrays = {k: data[k].astype(np.int64) for k in data.files}
    wide = io.BytesIO()
    np.savez(wide, **arrays)
    n, length = arrays["input_ids"].shape
    old = io.BytesIO()
    np.savez(old, **arrays, offsets=np.zeros((n, length, 2), dtype=np.int32))
    return wide.getbuffer().nbytes, old.getbuffer().nbytes


def check_identical(hf: Any, path: Path) -> int:
    ours = load_features(path)
    for name in COMPARED:
        mine = getattr(ours, name)
        theirs = np.asarray(hf.with_format("numpy")[name]) if name in hf.column_names else None
        if (mine is None) != (theirs is None) or (mine is not None and not np.array_equal(mine, theirs)):
            raise SystemExit(f"features differ: {name}")
    return len(ours)


def prepared_file(limit: int | None, workdir: Path) -> Path:
    """The questions in the SQuAD JSON layout qaflow's stage reads (the train file itself when no limit)."""
    if limit is None:
        return TRAIN
    cols = squad_columns(TRAIN, limit)
    paragraphs: list[dict[str, Any]] = []
    columns = (cols[k] for k in ("id", "context", "question", "answers"))
    for qid, context, question, answers in zip(*columns, strict=True):
        if not paragraphs or paragraphs[-1]["context"] != context:
            paragraphs.append({"context": context, "qas": []})
        spans = zip(answers["text"], answers["answer_start"], strict=True)
        answer_list = [{"text": text, "answer_start": start} for text, start in spans]
        paragraphs[-1]["qas"].append({"id": qid, "question": question, "answers": answer_list})
    out = workdir / "train.json"
    out.write_text(json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]}))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="first N questions (default: all)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per setting (>= 2)")
    parser.add_argument("--settings", default="384/128,128/48", help="max_seq_length/doc_stride, comma-separated")
    args = parser.parse_args(argv)
    if args.rounds < 2:
        parser.error("--rounds must be >= 2")
    if not TRAIN.is_file():
        print(f"skipped: {TRAIN} is absent (see shared/data/README.md)")
        return 0
    tokenizer = load_tokenizer("minilm")
    with tempfile.TemporaryDirectory(prefix="qaflow-bench-featurize-") as tmp:
        workdir = Path(tmp)
        data = prepared_file(args.limit, workdir)
        print(f"{data} ({'all' if args.limit is None else args.limit} questions), tokenizer minilm")
        for setting in args.settings.split(","):
            length, stride = (int(v) for v in setting.split("/"))
            ratios: list[float] = []
            for r in range(args.rounds):
                t0 = time.perf_counter()
                hf = run_hf(data, None, tokenizer, length, stride)
                t_hf = time.perf_counter() - t0
                output = workdir / f"train-{length}-{stride}.npz"
                t0 = time.perf_counter()
                run_qaflow(data, output, tokenizer, length, stride)
                t_qf = time.perf_counter() - t0
                n = check_identical(hf, output)
                ratios.append(t_hf / t_qf)
                print(f"{length}/{stride} round {r + 1}: {n} features identical; HF {t_hf:.2f} s, "
                      f"qaflow {t_qf:.2f} s, ratio {t_hf / t_qf:.2f}x", flush=True)  # fmt: skip
                del hf
            compact, (wide, old) = output.stat().st_size, int64_bytes(output)
            print(f"{length}/{stride}: median ratio {statistics.median(ratios):.2f}x; train.npz {compact:,} bytes; "
                  f"as int64 {wide:,} ({wide / compact:.1f}x); format 1 with offsets {old:,} ({old / compact:.1f}x)",
                  flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
