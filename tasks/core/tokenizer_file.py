"""A checkpoint's fast tokenizer read with `tokenizers` alone, to count windows without transformers or torch.

`qaflow data inspect` counts the features a dataset gives at some window settings. Loading the tokenizer through
transformers imports torch (its config module does): seconds of a command that uses neither. So the count reads
`tokenizer.json` (and `model_max_length`, `truncation_side` from `tokenizer_config.json`) and runs the Rust
truncation transformers sets up for run_qa.py's call: question + context pairs cut `only_second` at the effective
max length with the doc stride, one window per overflow. The pair order (XLNet puts the context first) does not
change the count. `tests/test_features.py` checks it equal to `count_features` through transformers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from tasks.core.data import Example
from tasks.core.features import FeatureSettings, effective_max_length, leaves_no_window
from tasks.core.model_spec import require_checkpoint

TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"


@dataclass
class TokenizerFile:
    """The Rust tokenizer of a checkpoint directory and the settings transformers reads beside it."""

    backend: Tokenizer
    model_max_length: int | None = None
    truncation_side: str = "right"
    split_special_tokens: bool = False


def read_tokenizer_file(name_or_path: str) -> TokenizerFile | None:
    """The checkpoint's `tokenizer.json`, or None when it has none (a hub id, or a slow tokenizer only)."""
    directory = Path(require_checkpoint(name_or_path))
    if not (directory / TOKENIZER_FILE).is_file():
        return None
    config_path = directory / CONFIG_FILE
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    max_length = config.get("model_max_length")
    return TokenizerFile(
        backend=Tokenizer.from_file(str(directory / TOKENIZER_FILE)),
        model_max_length=max_length if isinstance(max_length, int) else None,
        truncation_side=config.get("truncation_side", "right"),
        split_special_tokens=bool(config.get("split_special_tokens", False)),
    )


def count_windows(
    examples: Sequence[Example], tokenizer: TokenizerFile, settings: FeatureSettings, *, batch_size: int = 1000
) -> int:
    """Number of features (windows) the examples give: `count_features` without transformers."""
    max_length = effective_max_length(tokenizer, settings)
    if not 0 <= settings.doc_stride < max_length:
        raise ValueError(f"doc_stride must be in [0, {max_length}) (the max length), got {settings.doc_stride}")
    pairs = Tokenizer.from_str(tokenizer.backend.to_str())  # a copy: truncation is set on the object
    pairs.no_padding()
    pairs.encode_special_tokens = tokenizer.split_special_tokens
    pairs.enable_truncation(
        max_length, stride=settings.doc_stride, strategy="only_second", direction=tokenizer.truncation_side
    )
    total = 0
    for start in range(0, len(examples), batch_size):
        batch = examples[start : start + batch_size]
        try:
            encodings = pairs.encode_batch([(ex.question.lstrip(), ex.context) for ex in batch])
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # the Rust side panics (a BaseException) on a pair whose question leaves no room
            raise _too_long(batch, tokenizer, max_length, settings.doc_stride) or ValueError(
                f"tokenizing {len(batch)} examples failed: {exc}"
            ) from exc
        total += sum(1 + len(encoding.overflowing) for encoding in encodings)
    return total


def _too_long(batch: Sequence[Example], tokenizer: TokenizerFile, max_length: int, stride: int) -> ValueError | None:
    """The error naming the first example whose question leaves no window (as `count_features` names it)."""
    room = max_length - tokenizer.backend.num_special_tokens_to_add(is_pair=True)
    for ex in batch:
        n_question = len(tokenizer.backend.encode(ex.question.lstrip(), add_special_tokens=False).ids)
        n_context = len(tokenizer.backend.encode(ex.context, add_special_tokens=False).ids)
        if leaves_no_window(n_question, n_context, room, stride):
            return ValueError(
                f"example {ex.id!r}: its question has {n_question} tokens, which leaves {room - n_question} context "
                f"tokens per window; that must exceed doc_stride={stride} (max_seq_length={max_length}). Raise "
                "max_seq_length or lower doc_stride."
            )
    return None
