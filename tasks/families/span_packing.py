"""Packed span training (`train.packing`): the model side of `tasks.core.packing` for extractive models.

Several windows share one row; each must compute exactly as if alone. Three things make it so:

* a block-diagonal attention mask built on the device from `segment_ids`: a token attends to the tokens of its
  own window only (padding attends to padding, so no softmax row is empty);
* `position_ids` restarting at every window (plus the model's own offset: RoBERTa-style embeddings count from
  `padding_idx + 1`);
* the loss per window: each window's start/end logits are cut out of its row and the softmax runs over that
  window's own tokens, then the mean over windows, as run_qa's `(CE(start) + CE(end)) / 2` over a batch.

`SpanPacking.check` verifies the first two on the loaded model before any training (a few synthetic windows,
packed vs alone); a model that cannot take a 4D mask or per-window positions stops with one line. Only training
packs: the saved model is a plain `AutoModelForQuestionAnswering`, and prediction is unchanged.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.nn import functional
from transformers import Trainer

from tasks.core.features import Features
from tasks.core.packing import pack_batch

WINDOW_KEYS = ("segment_ids", "window_row", "window_column", "window_length", "start_positions", "end_positions")
MASK_FORMS = ("sdpa", "eager")  # attention implementations that take a 4D mask: boolean (sdpa), additive (eager)
IGNORED_LABEL = -100  # cross_entropy's ignore_index for labels outside their window
CHECK_TOLERANCE = 1e-4  # max |logit difference| between a packed window and the window alone (fp32, eval mode)


class PackedSpanCollator:
    """Packs the windows of a batch of feature indices into rows (`tasks.core.packing.pack_batch`), as tensors.

    `real_tokens` / `padded_tokens` count the batches' real tokens and all row positions (throughput figures).
    """

    def __init__(self, features: Features, *, row_counts: Sequence[int] = (), position_offset: int = 0) -> None:
        self.features = features
        self.width = int(features.input_ids.shape[1])
        self.row_counts = tuple(row_counts)
        self.position_offset = position_offset
        self.real_tokens = 0
        self.padded_tokens = 0

    def __call__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        batch = pack_batch(
            self.features, np.asarray(indices), width=self.width, row_counts=self.row_counts,
            position_offset=self.position_offset,
        )  # fmt: skip
        self.real_tokens += int(batch["window_length"].sum())
        self.padded_tokens += int(batch["input_ids"].size)
        return {k: torch.from_numpy(v) for k, v in batch.items()}


def block_diagonal_mask(segment_ids: torch.Tensor, attn_implementation: str, dtype: torch.dtype) -> torch.Tensor:
    """[R, 1, W, W] mask letting each token see its own segment only: boolean for sdpa, additive for eager."""
    same = segment_ids[:, None, :, None] == segment_ids[:, None, None, :]
    if attn_implementation == "eager":
        return torch.zeros(same.shape, dtype=dtype, device=same.device).masked_fill(~same, torch.finfo(dtype).min)
    return same


def window_logits(logits: torch.Tensor, row: torch.Tensor, column: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """[S, W] logits of each window from its first token; positions past its length hold the dtype's minimum."""
    width = logits.shape[1]
    offsets = torch.arange(width, device=logits.device)
    columns = (column[:, None] + offsets).clamp(max=width - 1)
    picked = logits[row[:, None], columns]
    return picked.masked_fill(offsets >= length[:, None], torch.finfo(picked.dtype).min)


def packed_forward(model: Any, inputs: dict[str, torch.Tensor], attn_implementation: str) -> tuple[Any, Any]:
    """The model over packed rows: start and end logits per window ([S, W] each)."""
    mask_dtype = next(model.parameters()).dtype
    mask = block_diagonal_mask(inputs["segment_ids"], attn_implementation, mask_dtype)
    model_inputs = {k: v for k, v in inputs.items() if k not in WINDOW_KEYS}
    out = model(**model_inputs, attention_mask=mask)
    where = (inputs["window_row"], inputs["window_column"], inputs["window_length"])
    return window_logits(out.start_logits, *where), window_logits(out.end_logits, *where)


def span_loss(start: torch.Tensor, end: torch.Tensor, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """run_qa's span loss, each window's softmax over its own tokens: (CE(start) + CE(end)) / 2, mean over windows.

    A label past its window's real tokens is ignored, as the models' own loss ignores one past the batch width:
    run_qa's labelling puts a few on padding (2 of SQuAD v1.1 train's 88,524 windows at 384/128 start at 383).
    """
    length = inputs["window_length"]

    def within(labels: torch.Tensor) -> torch.Tensor:
        return labels.masked_fill((labels < 0) | (labels >= length), IGNORED_LABEL)

    return (
        functional.cross_entropy(start.float(), within(inputs["start_positions"]), ignore_index=IGNORED_LABEL)
        + functional.cross_entropy(end.float(), within(inputs["end_positions"]), ignore_index=IGNORED_LABEL)
    ) / 2


class PackedSpanTrainer(Trainer):
    """A Trainer whose batches are packed windows (`PackedSpanCollator`); the loss is computed per window."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.attn_implementation = attention_form(self.model)
        self.model_accepts_loss_kwargs = False  # the loss is a per-batch mean: the Trainer scales it for accumulation
        self.loss_is_scaled_for_ga = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001, ANN201
        start, end = packed_forward(model, inputs, self.attn_implementation)
        loss = span_loss(start, end, inputs)
        return (loss, {"start_logits": start, "end_logits": end}) if return_outputs else loss


def attention_form(model: Any) -> str:
    """The model's attention implementation, when it takes a 4D mask (else ValueError)."""
    config = model.config
    impl = getattr(config, "_attn_implementation", None) or "eager"
    if impl not in MASK_FORMS:
        raise ValueError(
            f"train.packing: {config.model_type} uses {impl!r} attention, which takes no block-diagonal mask; "
            f"load it with one of {', '.join(MASK_FORMS)} or train without --packing"
        )
    return impl


def position_offset(model: Any) -> int:
    """Where a window's positions start when it runs alone: `padding_idx + 1` for RoBERTa-style embeddings."""
    embeddings = getattr(model.base_model, "embeddings", None)
    padding_idx = getattr(embeddings, "padding_idx", None)
    return int(padding_idx) + 1 if isinstance(padding_idx, int) else 0


def _probe_features(model: Any, width: int) -> Features:
    """Three synthetic windows (two fit one row) with question/context token types, right-padded to `width`."""
    config = model.config
    lengths = [min(width, n) for n in (max(width // 2, 2), max(width // 3, 2), 2)]
    generator = np.random.default_rng(0)
    ids = np.zeros((3, width), dtype=np.int64)
    types = np.zeros((3, width), dtype=np.int64)
    mask = np.zeros((3, width), dtype=np.uint8)
    for i, n in enumerate(lengths):
        ids[i, :n] = generator.integers(1, min(config.vocab_size, 1000), size=n)
        types[i, n // 2 : n] = 1 if getattr(config, "type_vocab_size", 1) > 1 else 0
        mask[i, :n] = 1
    zeros = np.zeros(3, dtype=np.int64)
    return Features(ids, mask, types, zeros, zeros, None, zeros, zeros)


@torch.no_grad()
def check_packing(model: Any, width: int) -> int:
    """Packed windows must compute as if alone on this model: the position offset to use, else ValueError."""
    if "position_ids" not in inspect.signature(model.forward).parameters:
        raise ValueError(f"train.packing: {model.config.model_type} takes no position_ids; train without --packing")
    impl = attention_form(model)
    offset = position_offset(model)
    features = _probe_features(model, width)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        packed = pack_batch(features, np.arange(3), width=width, position_offset=offset)
        inputs = {k: torch.from_numpy(v).to(device) for k, v in packed.items()}
        start, end = packed_forward(model, inputs, impl)
        worst = 0.0
        for k in range(3):
            n = int(features.attention_mask[k].sum())
            alone = model(
                input_ids=torch.from_numpy(features.input_ids[k : k + 1, :n]).to(device),
                token_type_ids=torch.from_numpy(features.token_type_ids[k : k + 1, :n]).to(device),
            )
            worst = max(worst, float((start[k, :n] - alone.start_logits[0]).abs().max()),
                        float((end[k, :n] - alone.end_logits[0]).abs().max()))  # fmt: skip
    except (TypeError, RuntimeError) as exc:
        raise ValueError(f"train.packing: {model.config.model_type} cannot run packed windows ({exc})") from exc
    finally:
        model.train(was_training)
    if not worst <= CHECK_TOLERANCE:
        raise ValueError(
            f"train.packing: {model.config.model_type} computes packed windows differently from windows alone "
            f"(max logit difference {worst:.2g}); train without --packing"
        )
    return offset


class SpanPacking:
    """`train.packing` for the extractive family: the check, the collator and the Trainer class."""

    trainer_class = PackedSpanTrainer

    def check(self, model: Any, width: int) -> int:
        return check_packing(model, width)

    def collator(self, features: Features, *, row_counts: Sequence[int], position_offset: int) -> PackedSpanCollator:
        return PackedSpanCollator(features, row_counts=row_counts, position_offset=position_offset)
