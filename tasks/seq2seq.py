"""Generative (encoder-decoder) QA: features, training and prediction (run_seq2seq_qa.py semantics).

* Source text: `question: {question} context: {context}` (question lstripped), truncated to `max_seq_length`
  tokens; truncated sources are counted (`Seq2SeqFeatures.truncated`, `train_truncated` / `predict_truncated`
  metrics): their answer may be cut off.
* Target: the first answer's text, or "" for an unanswerable (v2) question, truncated to `max_answer_length`
  tokens. Labels are padded with -100 so the loss ignores padding.
* Prediction: batched `generate` (greedy or `num_beams`, at most `val_max_answer_length` new tokens) in chunks
  of examples (bounded memory), sources sorted by length within a chunk to limit padding. Writes
  `predictions.json`, a one-entry-per-question `nbest_predictions.json` ({"text", "probability", "score"}:
  score = the answer's sequence log-probability, probability = its exp) and, for v2, `null_odds.json`.
* v2 null odds: an empty generation means "no answer" (prediction ""). For every question,
  `null_odds = log p(empty answer) - log p(best non-empty answer)` under the model (a log-odds; > 0 means the
  empty answer is more likely). p(empty) is the probability of the tokenised "" target (T5: `</s>` as the
  first decoded token). The best non-empty answer is the generated one, or, where the generation is empty, a
  second generation with `</s>` suppressed at the first step. The official v2 scorer's best threshold then
  works as for extractive models.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import set_seed

from tasks.config import QAFlowConfig
from tasks.data import Example
from tasks.io import atomic_path, write_json_atomic
from tasks.predict import PredictionRun, speed_metrics
from tasks.train.common import TrainResult

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


def _overflowed(encoding: Any) -> np.ndarray:
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
        truncated += int(_overflowed(src).sum())
        targets_truncated += int(_overflowed(tgt).sum())
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


# --------------------------------------------------------------------------------------------- training


class Seq2SeqCollator:
    """Rows -> {input_ids, attention_mask, labels}; `dynamic` drops the batch's all-padding columns."""

    def __init__(self, features: Seq2SeqFeatures, *, dynamic: bool) -> None:
        self.features = features
        self.dynamic = dynamic
        self.real_tokens = 0
        self.padded_tokens = 0
        self.target_tokens = 0

    def __call__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        idx = np.asarray(indices, dtype=np.int64)
        f = self.features
        mask = f.attention_mask[idx]
        labels = f.labels[idx]
        if self.dynamic:
            cols = np.flatnonzero(mask.any(axis=0))
            label_cols = np.flatnonzero((labels != IGNORE_INDEX).any(axis=0))
            mask, labels = mask[:, cols], labels[:, label_cols]
            input_ids = f.input_ids[idx][:, cols]
        else:
            input_ids = f.input_ids[idx]
        self.real_tokens += int(mask.sum())
        self.padded_tokens += int(mask.size)
        self.target_tokens += int((labels != IGNORE_INDEX).sum())
        batch = {"input_ids": input_ids, "attention_mask": mask, "labels": labels}
        return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.int64)) for k, v in batch.items()}


def seq2seq_training_arguments(cfg: QAFlowConfig, backend: str, checkpoints_dir: Path) -> Any:
    """`Seq2SeqTrainingArguments` with exactly the settings extractive training uses."""
    from transformers import Seq2SeqTrainingArguments, TrainingArguments

    from tasks.train.torch_backend import training_arguments

    base = training_arguments(cfg, backend, checkpoints_dir)
    kwargs = {f.name: getattr(base, f.name) for f in dataclasses.fields(TrainingArguments) if f.init}
    return Seq2SeqTrainingArguments(**kwargs)


def train_seq2seq(cfg: QAFlowConfig, features: Seq2SeqFeatures, backend: str, output_dir: Path) -> TrainResult:
    """Fine-tune an encoder-decoder with `Seq2SeqTrainer` (resumes from the last complete checkpoint).

    Metrics: those of extractive training plus `train_truncated`, `train_targets_truncated` and
    `train_target_tokens_per_second`.
    """
    from transformers import Seq2SeqTrainer

    from tasks.family import load_model
    from tasks.models import load_tokenizer
    from tasks.train.torch_backend import run_trainer

    output_dir = Path(output_dir)
    tokenizer = load_tokenizer(cfg.model.tokenizer_name or cfg.model.model_name_or_path)
    set_seed(cfg.train.seed)  # a freshly initialised head depends on the seed, as in run_qa.py
    model = load_model("seq2seq", cfg.model.model_name_or_path)
    args = seq2seq_training_arguments(cfg, backend, output_dir / "checkpoints")
    collator = Seq2SeqCollator(features, dynamic=not cfg.features.pad_to_max_length)
    result = run_trainer(
        cfg,
        backend=backend,
        output_dir=output_dir,
        model=model,
        tokenizer=tokenizer,
        args=args,
        trainer_cls=Seq2SeqTrainer,
        n_rows=len(features),
        collator=collator,
        extra_metrics={
            "train_truncated": features.truncated,
            "train_targets_truncated": features.targets_truncated,
        },
    )
    runtime = result.metrics.get("train_runtime") or 1.0
    result.metrics["train_target_tokens_per_second"] = collator.target_tokens * args.world_size / runtime
    return result


# --------------------------------------------------------------------------------------------- prediction


@dataclass
class _Generated:
    texts: list[str]
    log_prob: np.ndarray  # float64 [B]: log p(generated sequence)
    empty_log_prob: np.ndarray  # float64 [B]: log p(</s> first) = log p(empty answer)


def _pad(rows: list[list[int]], pad_id: int, side: str) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        sl = slice(width - len(r), width) if side == "left" else slice(0, len(r))
        ids[i, sl] = r
        mask[i, sl] = 1
    return ids, mask


def _score_sequences(model: Any, encoder_outputs: Any, mask: torch.Tensor, sequences: torch.Tensor, eos: int):
    """log p(sequence) per row, teacher-forced, up to and including its first </s> (decoder start excluded)."""
    logits = model(encoder_outputs=encoder_outputs, attention_mask=mask, decoder_input_ids=sequences[:, :-1]).logits
    logp = torch.log_softmax(logits.float(), dim=-1)
    targets = sequences[:, 1:]
    token_logp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    is_eos = targets == eos
    after_eos = (is_eos.cumsum(dim=1) - is_eos.long()) > 0  # positions after the first </s>
    return token_logp.masked_fill(after_eos, 0.0).sum(dim=1).double().cpu().numpy()


def _empty_answer_ids(model: Any, tokenizer: Any) -> list[int]:
    """Decoder ids of the empty answer: the decoder start token, then the tokenised "" target (T5: `</s>`)."""
    start = getattr(model.generation_config, "decoder_start_token_id", None)
    if start is None:
        start = model.config.decoder_start_token_id
    return [int(start), *tokenizer(text_target="")["input_ids"]]


def _generate(
    model: Any,
    tokenizer: Any,
    input_ids: torch.Tensor,
    mask: torch.Tensor,
    gen_kwargs: dict[str, Any],
    **extra: Any,
) -> _Generated:
    """Generate answers for one batch and score them and the empty answer (the encoder runs once)."""
    from transformers.modeling_outputs import BaseModelOutput

    encoder_outputs = model.get_encoder()(input_ids=input_ids, attention_mask=mask, return_dict=True)
    # generate expands the encoder states for beam search in place: give it its own output object
    own = BaseModelOutput(last_hidden_state=encoder_outputs.last_hidden_state)
    sequences = model.generate(encoder_outputs=own, attention_mask=mask, **gen_kwargs, **extra)
    if not isinstance(sequences, torch.Tensor):  # a ModelOutput when return_dict_in_generate is configured
        sequences = sequences.sequences
    texts = [t.strip() for t in tokenizer.batch_decode(sequences, skip_special_tokens=True)]
    eos = tokenizer.eos_token_id
    seq_logp = _score_sequences(model, encoder_outputs, mask, sequences, eos)
    empty = torch.tensor([_empty_answer_ids(model, tokenizer)], device=sequences.device)
    empty_logp = _score_sequences(model, encoder_outputs, mask, empty.expand(len(texts), -1), eos)
    return _Generated(texts, seq_logp, empty_logp)


def _subset_encoder_inputs(input_ids: torch.Tensor, mask: torch.Tensor, rows: list[int]) -> tuple[torch.Tensor, ...]:
    index = torch.as_tensor(rows, device=input_ids.device)
    return input_ids.index_select(0, index), mask.index_select(0, index)


def _answer_batch(
    model: Any,
    tokenizer: Any,
    ids: np.ndarray,
    mask: np.ndarray,
    gen_kwargs: dict[str, Any],
    v2: bool,
    device: Any,
) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """Answers, their log-probs and (v2) null odds for one padded batch."""
    input_ids = torch.from_numpy(ids).to(device)
    attention = torch.from_numpy(mask).to(device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        gen = _generate(model, tokenizer, input_ids, attention, gen_kwargs)
        if not v2:
            return gen.texts, gen.log_prob, None
        best_nonempty = gen.log_prob.copy()
        empty_rows = [i for i, t in enumerate(gen.texts) if t == ""]
        if empty_rows:
            sub_ids, sub_mask = _subset_encoder_inputs(input_ids, attention, empty_rows)
            alt = _generate(
                model,
                tokenizer,
                sub_ids,
                sub_mask,
                gen_kwargs,
                begin_suppress_tokens=[tokenizer.eos_token_id],
            )
            best_nonempty[empty_rows] = alt.log_prob
    return gen.texts, gen.log_prob, gen.empty_log_prob - best_nonempty


@torch.inference_mode()
def predict_seq2seq(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    max_seq_length: int,
    val_max_answer_length: int,
    num_beams: int,
    batch_size: int,
    out_dir: Path,
    *,
    version_2_with_negative: bool = False,
    chunk_examples: int = 256,
    device: torch.device | None = None,
) -> PredictionRun:
    """Generate an answer per example (batched, in chunks); write predictions, n-best, (v2) null odds."""
    if val_max_answer_length < 1 or num_beams < 1 or batch_size < 1:
        raise ValueError("val_max_answer_length, num_beams and batch_size must be >= 1")
    device = device or next(model.parameters()).device
    model.eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    gen_kwargs = {"max_new_tokens": val_max_answer_length, "num_beams": num_beams, "do_sample": False}
    side = getattr(tokenizer, "padding_side", "right")
    predictions: dict[str, str] = {}
    nbest: dict[str, list[dict[str, Any]]] = {}
    null_odds: dict[str, float] = {}
    truncated = 0
    model_seconds = 0.0
    t0 = time.perf_counter()
    for lo in range(0, len(examples), chunk_examples):
        chunk = examples[lo : lo + chunk_examples]
        enc = tokenizer([source_text(ex) for ex in chunk], max_length=max_seq_length, truncation=True)
        truncated += int(_overflowed(enc).sum())
        rows = enc["input_ids"]
        order = np.argsort([-len(r) for r in rows], kind="stable")  # longest first: less padding per batch
        for b in range(0, len(order), batch_size):
            picked = order[b : b + batch_size].tolist()
            ids, mask = _pad([rows[i] for i in picked], tokenizer.pad_token_id, side)
            m0 = time.perf_counter()
            texts, logp, odds = _answer_batch(model, tokenizer, ids, mask, gen_kwargs, version_2_with_negative, device)
            model_seconds += time.perf_counter() - m0
            for k, i in enumerate(picked):
                qid = chunk[i].id
                predictions[qid] = texts[k]
                nbest[qid] = [{"text": texts[k], "probability": float(np.exp(logp[k])), "score": float(logp[k])}]
                if odds is not None:
                    null_odds[qid] = float(odds[k])
    predictions = {ex.id: predictions[ex.id] for ex in examples}  # example order, as the extractive writer
    files = {
        "predictions": write_json_atomic(predictions, out_dir / "predictions.json", indent=2),
        "nbest": write_json_atomic({ex.id: nbest[ex.id] for ex in examples}, out_dir / "nbest_predictions.json"),
    }
    odds_out = None
    if version_2_with_negative:
        odds_out = {ex.id: null_odds[ex.id] for ex in examples}
        files["null_odds"] = write_json_atomic(odds_out, out_dir / "null_odds.json", indent=2)
    metrics = speed_metrics(len(examples), len(examples), time.perf_counter() - t0, model_seconds)
    metrics["predict_truncated"] = float(truncated)
    return PredictionRun(predictions=predictions, null_odds=odds_out, files=files, metrics=metrics)
