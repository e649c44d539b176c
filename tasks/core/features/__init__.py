"""Sliding-window feature preparation for extractive QA (run_qa.py semantics).

`prepare_train_features` / `prepare_eval_features` reproduce the Hugging Face `run_qa.py` preparation
exactly (feature count and order, input ids, token type ids, attention mask, start/end labels, context
offsets) for the same fast tokenizer and settings, but build numpy arrays from whole tokenizer batches.

Speed: the tokenizer returns windows unpadded and numpy pads them; for question-first `TemplateProcessing`
tokenizers each distinct context is encoded once and shared by its questions (`windows`), with the same values as
the one tokenizer call (tested against it). Storage: compact dtypes (format 2); `collate` gives int64; format-1
(int64) files still load.

Padding: arrays are always stored padded to the effective max length. `pad_to_max_length=False` only changes
collation (`collate(..., dynamic=True)` trims the all-padding columns of each batch), so counts, order, ids
and labels are the same either way; labels are shifted when left padding is trimmed.

The rooms, in the order a feature passes through them: `settings` (Features, FeatureSettings, the resolved plan),
`questions` (too-long questions), `windows` (tokenisation), `arrays` (one batch as padded arrays with labels),
`prepare` (the entry points), `batches` (collation for the models), `storage` (.npz files). This package
re-exports the public names, so callers import from `tasks.core.features`.

Imports only `tasks.core.{config, data, io, progress}` of qaflow.
"""

from tasks.core.features.batches import collate, padding_band, row_batches
from tasks.core.features.prepare import count_features, prepare_eval_features, prepare_train_features
from tasks.core.features.questions import QuestionFit, fit_questions, leaves_no_window
from tasks.core.features.settings import (
    IDS_DTYPE,
    INDEX_DTYPE,
    MASK_DTYPE,
    NO_OFFSET,
    Features,
    FeatureSettings,
    effective_max_length,
    feature_settings,
    require_fast_tokenizer,
)
from tasks.core.features.storage import load_features, save_features

__all__ = [
    "IDS_DTYPE",
    "INDEX_DTYPE",
    "MASK_DTYPE",
    "NO_OFFSET",
    "FeatureSettings",
    "Features",
    "QuestionFit",
    "collate",
    "count_features",
    "effective_max_length",
    "feature_settings",
    "fit_questions",
    "leaves_no_window",
    "load_features",
    "padding_band",
    "prepare_eval_features",
    "prepare_train_features",
    "require_fast_tokenizer",
    "row_batches",
    "save_features",
]
