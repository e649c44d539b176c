"""Generative (encoder-decoder) QA: training and prediction (run_seq2seq_qa.py semantics).

Which checkpoints it fits and its training features are `tasks.families.seq2seq_features` (what the DVC
`featurize` stage imports):

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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForSeq2SeqLM, Seq2SeqTrainer, Seq2SeqTrainingArguments
from transformers.modeling_outputs import BaseModelOutput

from tasks.core.data import Example
from tasks.core.features import padding_band
from tasks.core.postprocess import Postprocessed
from tasks.core.progress import progress
from tasks.core.specs import InferenceRecipe
from tasks.families.seq2seq_features import (
    IGNORE_INDEX,
    Seq2SeqFeatures,
    Seq2SeqFeaturizer,
    overflowed,
    source_text,
)

# --------------------------------------------------------------------------------------------- training


class Seq2SeqCollator:
    """Rows -> {input_ids, attention_mask, labels}; `dynamic` drops the batch's all-padding columns."""

    def __init__(self, features: Seq2SeqFeatures, *, dynamic: bool, multiple_of: int = 1) -> None:
        self.features = features
        self.dynamic = dynamic
        self.multiple_of = multiple_of
        self.real_tokens = 0
        self.padded_tokens = 0
        self.target_tokens = 0

    def __call__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        idx = np.asarray(indices, dtype=np.int64)
        f = self.features
        mask = f.attention_mask[idx]
        labels = f.labels[idx]
        if self.dynamic:
            c0, c1 = padding_band(mask, self.multiple_of)
            label_cols = np.flatnonzero((labels != IGNORE_INDEX).any(axis=0))
            mask, labels = mask[:, c0:c1], labels[:, label_cols]
            input_ids = f.input_ids[idx][:, c0:c1]
        else:
            input_ids = f.input_ids[idx]
        self.real_tokens += int(mask.sum())
        self.padded_tokens += int(mask.size)
        self.target_tokens += int((labels != IGNORE_INDEX).sum())
        batch = {"input_ids": input_ids, "attention_mask": mask, "labels": labels}
        return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.int64)) for k, v in batch.items()}


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


@dataclass
class SourceBatch:
    """One chunk's tokenised sources, in batches of `batch_size` rows sorted longest first (less padding)."""

    rows: list[list[int]]
    order: list[int]  # row indices, longest first
    truncated: int  # sources cut at max_seq_length


@dataclass
class Generated:
    """Per example of a chunk (chunk order): the answer, its log-prob and (v2) null odds."""

    texts: list[str]
    log_prob: np.ndarray
    null_odds: np.ndarray | None


def encode_sources(examples: Sequence[Example], tokenizer: Any, max_seq_length: int) -> SourceBatch:
    enc = tokenizer([source_text(ex) for ex in examples], max_length=max_seq_length, truncation=True)
    rows = enc["input_ids"]
    order = np.argsort([-len(r) for r in rows], kind="stable").tolist()
    return SourceBatch(rows=rows, order=order, truncated=int(overflowed(enc).sum()))


def source_batches(sources: SourceBatch, batch_size: int) -> list[np.ndarray]:
    """Row indices in batches of `batch_size`, longest sources first."""
    order = np.asarray(sources.order, dtype=np.int64)
    return [order[b : b + batch_size] for b in range(0, len(order), batch_size)]


@torch.inference_mode()
def generate_answers(
    model: Any, tokenizer: Any, sources: SourceBatch, recipe: InferenceRecipe, device: torch.device,
    batches: Sequence[np.ndarray] | None = None,
) -> Generated:  # fmt: skip
    """Generate (greedy or beam) in batches; score the answers and, for v2, the empty answer.

    `batches`: only these batches of `source_batches` (a rank's share); the other rows stay "" with 0.0."""
    n = len(sources.rows)
    texts: list[str] = [""] * n
    log_prob = np.zeros(n, dtype=np.float64)
    v2 = recipe.nbest.version_2_with_negative
    odds = np.zeros(n, dtype=np.float64) if v2 else None
    gen = recipe.generation
    gen_kwargs = {"max_new_tokens": gen.max_new_tokens, "num_beams": gen.num_beams, "do_sample": False}
    side = getattr(tokenizer, "padding_side", "right")
    batches = source_batches(sources, recipe.batch_size) if batches is None else batches
    beams = f"{gen.num_beams} beam{'s' if gen.num_beams > 1 else ''}"
    bar = progress(sum(len(rows) for rows in batches), f"generate ({beams})", "questions", inner=True)
    for rows in batches:
        picked = [int(i) for i in rows]
        ids, mask = _pad([sources.rows[i] for i in picked], tokenizer.pad_token_id, side)
        batch_texts, batch_logp, batch_odds = _answer_batch(model, tokenizer, ids, mask, gen_kwargs, v2, device)
        for k, i in enumerate(picked):
            texts[i] = batch_texts[k]
            log_prob[i] = batch_logp[k]
            if odds is not None and batch_odds is not None:
                odds[i] = batch_odds[k]
        bar.update(len(picked))
    bar.close()
    return Generated(texts, log_prob, odds)


# --------------------------------------------------------------------------------------------- the family


class Seq2SeqFamily(Seq2SeqFeaturizer):
    """An encoder-decoder that generates the answer text (run_seq2seq_qa.py; `AutoModelForSeq2SeqLM`).

    Identity (`claims`, `check`) and training features are inherited from `Seq2SeqFeaturizer`.
    """

    trainer_class = Seq2SeqTrainer
    training_arguments_class = Seq2SeqTrainingArguments
    packing = None  # packs no question/answer pairs

    def load_model(self, path: str) -> Any:
        return AutoModelForSeq2SeqLM.from_pretrained(path, dtype=torch.float32)

    def collator(self, features: Seq2SeqFeatures, *, dynamic: bool, multiple_of: int = 1) -> Seq2SeqCollator:
        return Seq2SeqCollator(features, dynamic=dynamic, multiple_of=multiple_of)

    def train_metrics(
        self, features: Seq2SeqFeatures, collator: Seq2SeqCollator, runtime: float, world_size: int
    ) -> dict[str, float]:
        return {
            "train_truncated": float(features.truncated),
            "train_targets_truncated": float(features.targets_truncated),
            "train_target_tokens_per_second": collator.target_tokens * world_size / (runtime or 1.0),
        }

    def eval_features(self, examples: Sequence[Example], tokenizer: Any, recipe: InferenceRecipe) -> SourceBatch:
        return encode_sources(examples, tokenizer, recipe.windows.max_seq_length)

    def batches(self, features: SourceBatch, recipe: InferenceRecipe) -> list[np.ndarray]:
        return source_batches(features, recipe.batch_size)

    def forward(
        self, model: Any, features: SourceBatch, recipe: InferenceRecipe, device: Any, tokenizer: Any,
        batches: Sequence[np.ndarray] | None = None,
    ) -> Generated:  # fmt: skip
        return generate_answers(model, tokenizer, features, recipe, device, batches)

    def postprocess(
        self, examples: Sequence[Example], features: SourceBatch, outputs: Generated, recipe: InferenceRecipe
    ) -> Postprocessed:
        """One n-best entry per question: {"text", "probability", "score"} (score = sequence log-prob)."""
        predictions = {ex.id: outputs.texts[i] for i, ex in enumerate(examples)}
        nbest = {
            ex.id: [{"text": outputs.texts[i], "probability": float(np.exp(outputs.log_prob[i])),
                     "score": float(outputs.log_prob[i])}]
            for i, ex in enumerate(examples)
        }  # fmt: skip
        null_odds = None
        if outputs.null_odds is not None:
            null_odds = {ex.id: float(outputs.null_odds[i]) for i, ex in enumerate(examples)}
        return Postprocessed(predictions=predictions, nbest=nbest, null_odds=null_odds)

    def raw_shard(self, examples: Sequence[Example], features: SourceBatch, outputs: Generated) -> None:
        return None

    def counts(self, features: SourceBatch) -> dict[str, float]:
        return {"features": float(len(features.rows)), "truncated": float(features.truncated)}
