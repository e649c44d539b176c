"""What a feature is and the settings that shape it: `Features` (the arrays, one row per window), `FeatureSettings`
(the windows `cfg.features` asks for) and `Plan` (the settings resolved against one fast tokenizer).

Storage dtypes are compact (`IDS_DTYPE`, `MASK_DTYPE`, `INDEX_DTYPE`); `collate` gives int64.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from tasks.core.config import QAFlowConfig

logger = logging.getLogger(__package__)  # "tasks.core.features", as before the package was split

NO_OFFSET = -1  # offsets value for tokens outside the context (run_qa.py's `None`)
IDS_DTYPE = np.int32  # token ids: any vocabulary below 2**31 (uint16 would break vocabularies above 65,535)
MASK_DTYPE = np.uint8  # attention mask; token type ids too when they fit (else IDS_DTYPE)
INDEX_DTYPE = np.int32  # example_index, cls_index, start/end positions


@dataclass(frozen=True)
class FeatureSettings:
    max_seq_length: int = 384
    doc_stride: int = 128
    pad_to_max_length: bool = True
    question_policy: str = "error"  # a question too long for a window: error | truncate | skip (fit_questions)
    max_query_length: int = 64  # question tokens kept by the `truncate` policy


def feature_settings(cfg: QAFlowConfig) -> FeatureSettings:
    """The windows `cfg.features` asks for."""
    f = cfg.features
    return FeatureSettings(f.max_seq_length, f.doc_stride, f.pad_to_max_length, f.question_policy, f.max_query_length)


@dataclass
class Features:
    """Tokenised windows, one row per feature, in the order run_qa.py produces them.

    Arrays are always stored padded to `max_seq_length` (padding side as the tokenizer's); dynamic padding is
    applied per batch at collation time by trimming all-padding columns, so counts/order/ids never change.
    """

    input_ids: np.ndarray  # int32 [N, L] (int64 in format-1 files; `collate` gives int64)
    attention_mask: np.ndarray  # uint8 [N, L]
    token_type_ids: np.ndarray | None  # uint8 [N, L] or None when the tokenizer has none
    example_index: np.ndarray  # int32 [N]: index into the example list the features were built from
    cls_index: np.ndarray  # int32 [N]: position of the CLS token in each row
    offsets: np.ndarray | None  # int32 [N, L, 2]: char span in the context; (-1, -1) outside; None: not kept
    start_positions: np.ndarray | None  # int32 [N]: training label (cls_index when no answer in window)
    end_positions: np.ndarray | None  # int32 [N]

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


ARRAY_FIELDS = (
    "input_ids",
    "attention_mask",
    "token_type_ids",
    "example_index",
    "cls_index",
    "offsets",
    "start_positions",
    "end_positions",
)


@dataclass(frozen=True)
class Plan:
    """Resolved, picklable parameters of one preparation run."""

    max_length: int
    stride: int
    pad_on_right: bool
    train: bool
    batch_size: int
    offsets: bool  # keep the context offsets (eval features, or training features a family reads them from)


def require_fast_tokenizer(tokenizer: Any) -> None:
    """Raise `ValueError` unless `tokenizer` is a Hugging Face fast (Rust-backed) tokenizer."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"a fast tokenizer is required, got {type(tokenizer).__name__} (is_fast=False): sliding-window "
            "QA features need the offset mappings and sequence ids that only fast (tokenizers-backed) "
            "tokenizers return; load one with AutoTokenizer.from_pretrained(..., use_fast=True)"
        )


def effective_max_length(tokenizer: Any, settings: FeatureSettings) -> int:
    """`min(max_seq_length, tokenizer.model_max_length)`, warning when it clips (as run_qa.py does)."""
    model_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(model_max, int) and settings.max_seq_length > model_max:
        logger.warning(
            "max_seq_length=%d is larger than the maximum length for the model (%d); using max_seq_length=%d",
            settings.max_seq_length,
            model_max,
            model_max,
        )
        return model_max
    return settings.max_seq_length


def make_plan(tokenizer: Any, settings: FeatureSettings, *, train: bool, batch_size: int, offsets: bool = True) -> Plan:
    require_fast_tokenizer(tokenizer)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    max_length = effective_max_length(tokenizer, settings)
    if max_length < 1:
        raise ValueError(f"max_seq_length must be >= 1, got {settings.max_seq_length}")
    if not 0 <= settings.doc_stride < max_length:
        raise ValueError(f"doc_stride must be in [0, {max_length}) (the max length), got {settings.doc_stride}")
    return Plan(
        max_length=max_length,
        stride=settings.doc_stride,
        pad_on_right=tokenizer.padding_side == "right",
        train=train,
        batch_size=batch_size,
        offsets=offsets,
    )
