"""XLNet beam-search QA, featurize side: which checkpoints it fits; its training windows are the extractive ones.

Training windows keep their context offsets (`train_offsets`): the beam head's `p_mask` is derived from them at
collation (`tasks.families.beam`, which extends this class with the model side).
"""

from __future__ import annotations

from typing import Any

from tasks.core.checkpoints import architectures, describe, has_span_head
from tasks.families.extractive_features import ExtractiveFeaturizer

BEAM_ARCHITECTURE = "XLNetForQuestionAnswering"


def is_beam_capable(config: Any) -> bool:
    """XLNet-style config with the beam sizes the beam-search head needs."""
    return (
        getattr(config, "model_type", None) == "xlnet"
        and getattr(config, "start_n_top", None) is not None
        and getattr(config, "end_n_top", None) is not None
    )


class BeamFeaturizer(ExtractiveFeaturizer):
    """XLNet checkpoints fine-tuned with the beam-search head; the extractive windows with their offsets."""

    name = "beam"
    train_offsets = True  # p_mask (context tokens) is derived from the offsets at collation

    def claims(self, config: Any) -> bool:
        return is_beam_capable(config) and BEAM_ARCHITECTURE in architectures(config)

    def check(self, config: Any, where: str, inferred: str) -> None:
        if inferred == "seq2seq":
            raise ValueError(
                f"checkpoint {where} is an encoder-decoder ({getattr(config, 'model_type', '?')}); model_family "
                "'beam' needs an XLNet beam-search head — use model_family: seq2seq"
            )
        if not is_beam_capable(config):
            raise ValueError(
                f"{describe(config, where)} has no XLNet beam-search head; model_family 'beam' needs an XLNet "
                f"checkpoint (config with start_n_top/end_n_top) — use model_family: {inferred}"
            )
        if has_span_head(config):  # a fine-tuned ...Simple: its span head would be lost
            raise ValueError(
                f"{describe(config, where)} was fine-tuned with a simple span head; 'beam' would discard it — use "
                f"model_family: {inferred}"
            )
