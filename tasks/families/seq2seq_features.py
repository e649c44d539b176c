"""Generative (encoder-decoder) QA, featurize side: which checkpoints it fits, and its training pairs.

Source text `question: {question} context: {context}` (question lstripped), truncated to `max_seq_length` tokens
(counted); target the first answer's text, or "" for an unanswerable (v2) question, truncated to
`max_answer_length` tokens; labels padded with -100 so the loss ignores padding (run_seq2seq_qa.py semantics).
The model side (collator, generation, null odds) is `tasks.families.seq2seq`, which extends this class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tasks.core.checkpoints import describe, has_span_head
from tasks.core.data import Example
from tasks.core.featurizer import TrainFeatureSpec
from tasks.core.io import atomic_path
from tasks.core.progress import progress

IGNORE_INDEX = -100
FEATURES_FORMAT = "qaflow-seq2seq-features/1"


def source_text(example: Example) -> str:
    """run_seq2seq_qa.py's input: `question: {question} context: {context}` (question lstripped)."""
    return f"question: {example.question.lstrip()} context: {example.context}"


def target_text(example: Example) -> str:
    """The first answer's text, or "" for a question without an answer."""
    return example.answers[0].text if example.answers and not example.is_impossible else ""


@dataclass
class Seq2SeqFeatures:
    """Tokenised sources and targets, one row per example, stored padded (collation may trim padding)."""

    input_ids: np.ndarray  # int64 [N, max_seq_length]
    attention_mask: np.ndarray  # int64 [N, max_seq_length]
    labels: np.ndarray  # int64 [N, max_answer_length]; padding is IGNORE_INDEX (-100)
    truncated: int  # sources longer than max_seq_length (cut at the end)
    targets_truncated: int = 0  # answers longer than max_answer_length

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def report(self) -> dict[str, int]:
        return {
            "examples": len(self),
            "truncated": self.truncated,
            "targets_truncated": self.targets_truncated,
        }


def overflowed(encoding: Any) -> np.ndarray:
    """Per row: did truncation cut tokens off (fast-tokenizer `Encoding.overflowing`)?"""
    return np.array([bool(e.overflowing) for e in encoding.encodings], dtype=bool)


def _rows(values: list[list[int]], width: int) -> np.ndarray:
    out = np.asarray(values, dtype=np.int64)
    if out.ndim != 2 or out.shape[1] != width:
        raise RuntimeError(f"tokenizer returned rows not padded to {width}")
    return out


def prepare_seq2seq_train(
    examples: Sequence[Example],
    tokenizer: Any,
    max_seq_length: int,
    max_answer_length: int,
    *,
    batch_size: int = 1000,
) -> Seq2SeqFeatures:
    """Sources, attention masks and -100-padded labels for training; counts truncated sources/targets."""
    if max_seq_length < 2 or max_answer_length < 1:
        raise ValueError(
            f"need max_seq_length >= 2 and max_answer_length >= 1, got {max_seq_length}, {max_answer_length}"
        )
    if tokenizer.pad_token_id is None:
        raise ValueError(f"tokenizer {type(tokenizer).__name__} has no pad token; seq2seq training needs one")
    ids, masks, labels = [], [], []
    truncated = targets_truncated = 0
    bar = progress(len(examples), "featurize train", "examples")
    for lo in range(0, len(examples), batch_size):
        batch = examples[lo : lo + batch_size]
        src = tokenizer(
            [source_text(ex) for ex in batch],
            max_length=max_seq_length,
            truncation=True,
            padding="max_length",
        )
        tgt = tokenizer(
            text_target=[target_text(ex) for ex in batch],
            max_length=max_answer_length,
            truncation=True,
            padding="max_length",
        )
        ids.append(_rows(src["input_ids"], max_seq_length))
        masks.append(_rows(src["attention_mask"], max_seq_length))
        lab = _rows(tgt["input_ids"], max_answer_length)
        labels.append(np.where(lab == tokenizer.pad_token_id, IGNORE_INDEX, lab))
        truncated += int(overflowed(src).sum())
        targets_truncated += int(overflowed(tgt).sum())
        bar.update(len(batch))
    bar.close()
    if not ids:
        empty = np.zeros((0, max_seq_length), dtype=np.int64)
        return Seq2SeqFeatures(empty, empty.copy(), np.zeros((0, max_answer_length), dtype=np.int64), 0)
    return Seq2SeqFeatures(
        input_ids=np.concatenate(ids),
        attention_mask=np.concatenate(masks),
        labels=np.concatenate(labels),
        truncated=truncated,
        targets_truncated=targets_truncated,
    )


def save_seq2seq_features(features: Seq2SeqFeatures, path: str | Path) -> Path:
    """Write the arrays and counts to one `.npz` atomically; returns the path."""
    with atomic_path(path) as tmp, open(tmp, "xb") as handle:
        np.savez(
            handle,
            format=np.array(FEATURES_FORMAT),
            input_ids=features.input_ids,
            attention_mask=features.attention_mask,
            labels=features.labels,
            truncated=np.array(features.truncated),
            targets_truncated=np.array(features.targets_truncated),
        )
    return Path(path)


def load_seq2seq_features(path: str | Path) -> Seq2SeqFeatures:
    """Read a file written by `save_seq2seq_features`."""
    with np.load(path, allow_pickle=False) as data:
        if "format" not in data.files or str(data["format"]) != FEATURES_FORMAT:
            raise ValueError(f"{path}: not a qaflow seq2seq features file ({FEATURES_FORMAT})")
        return Seq2SeqFeatures(
            input_ids=data["input_ids"],
            attention_mask=data["attention_mask"],
            labels=data["labels"],
            truncated=int(data["truncated"]),
            targets_truncated=int(data["targets_truncated"]),
        )


class Seq2SeqFeaturizer:
    """Encoder-decoders that generate the answer text (T5, BART for generation)."""

    name = "seq2seq"
    windowed = False  # one source per question, truncated at max_seq_length (counted)

    def claims(self, config: Any) -> bool:
        return bool(getattr(config, "is_encoder_decoder", False)) and not has_span_head(config)

    def check(self, config: Any, where: str, inferred: str) -> None:
        raise ValueError(
            f"{describe(config, where)} is not an encoder-decoder; model_family 'seq2seq' needs one that generates "
            f"text (e.g. T5) — use model_family: {inferred}"
        )

    def train_features(self, examples: Sequence[Example], tokenizer: Any, spec: TrainFeatureSpec) -> Seq2SeqFeatures:
        return prepare_seq2seq_train(examples, tokenizer, spec.windows.max_seq_length, spec.max_answer_length)

    def save_train_features(self, features: Seq2SeqFeatures, path: Path) -> Path:
        return save_seq2seq_features(features, path)

    def load_train_features(self, path: Path) -> Seq2SeqFeatures:
        return load_seq2seq_features(path)
