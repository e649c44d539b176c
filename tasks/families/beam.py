"""XLNet beam-search QA (run_qa_beam_search.py semantics): features, training, post-processing, prediction.

Features are the extractive sliding windows of `tasks.core.features` (XLNet pads on the left, so each window is
`context <sep> question <sep> <cls>`, CLS last) plus what the beam head needs, derived without re-tokenising:

* `cls_index` — already in `Features`.
* `p_mask` — 1.0 for tokens that cannot be in an answer, 0.0 for context tokens (offsets != (-1, -1)) and for
  the CLS token (run_qa_beam_search.py sets `p_mask[cls_index] = 0` so "no answer" stays reachable).
* `is_impossible` (training) — 1.0 where the window is labelled (cls, cls), i.e. the window lacks the answer.

Post-processing (`postprocess_beam`) follows `postprocess_qa_predictions_with_beam_search` of HF's
utils_qa.py: per example, the null score is the minimum `cls_logits` over its features; candidates are the top
`start_n_top` starts x top `end_n_top` ends of every feature, skipping ends/starts outside the context or the
offsets array, `end < start` and spans longer than `max_answer_length`; score = start log-prob + end log-prob
(the model's "log probs" are softmax probabilities, as in transformers); stable sort by score, keep
`n_best_size`; no candidate -> one "" entry with score -2e-6 and the null score set to -2e-6 (as utils_qa.py);
probabilities = softmax of the kept scores (in float64). The answer is always the best span, also for v2 (as
HF): "no answer" is decided by the v2 scorer from `null_odds` (= the min cls logit; `null_odds.json`), by its
threshold (`exact`/`f1`, default 1.0) or the best one (`best_exact`/`best_f1`). n-best entries use qaflow's
keys: `start_logit`/`end_logit` hold the start/end log-probs.

End layout: `postprocess_beam` reads the end candidates of start beam i at
`end_top_index[:, i * end_n_top + j]` (utils_qa.py's indexing). `XLNetForQuestionAnswering` returns them
end-major (`[:, j * start_n_top + i]`, from `topk(dim=1).view`), so `forward_beam` reorders them with
`start_major` first; utils_qa.py does not, which pairs starts with ends of another start beam whenever
start_n_top > 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import XLNetForQuestionAnswering

from tasks.core.checkpoints import describe, load_checkpoint_config
from tasks.core.data import Example
from tasks.core.features import Features, padding_band
from tasks.core.postprocess import Postprocessed
from tasks.core.progress import progress
from tasks.core.specs import InferenceRecipe
from tasks.families.beam_features import BeamFeaturizer, is_beam_capable
from tasks.families.extractive import ExtractiveFamily, FeatureCollator, inference_pad_multiple, model_inputs

NO_CANDIDATE_SCORE = -2e-6  # utils_qa.py's score (and null score) when an example has no valid span
NO_CANDIDATE_LOGIT = -1e-6


# --------------------------------------------------------------------------------------------- features


def beam_p_mask(features: Features) -> np.ndarray:
    """float32 [N, L]: 0.0 for context tokens and each row's CLS token, 1.0 elsewhere."""
    if features.offsets is None:
        raise ValueError("features have no offsets; p_mask is derived from the context offsets")
    p_mask = np.where(features.offsets[:, :, 0] >= 0, np.float32(0.0), np.float32(1.0))
    p_mask[np.arange(len(features)), features.cls_index] = 0.0
    return p_mask


def is_impossible(features: Features) -> np.ndarray:
    """float32 [N]: 1.0 where a training window is labelled (cls, cls) (its example has no answer in it)."""
    if features.start_positions is None or features.end_positions is None:
        raise ValueError("training features (with start/end positions) are needed for is_impossible")
    impossible = (features.start_positions == features.cls_index) & (features.end_positions == features.cls_index)
    return impossible.astype(np.float32)


class BeamCollator(FeatureCollator):
    """`FeatureCollator` batches plus the beam head's `cls_index`, `p_mask`, (training) `is_impossible`."""

    def __init__(self, features: Features, *, dynamic: bool, multiple_of: int = 1) -> None:
        super().__init__(features, dynamic=dynamic, multiple_of=multiple_of)
        self.p_mask = beam_p_mask(features)
        self.impossible = is_impossible(features) if features.start_positions is not None else None

    def __call__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        batch = super().__call__(indices)
        idx = np.asarray(indices, dtype=np.int64)
        mask = self.features.attention_mask[idx]
        c0, c1 = padding_band(mask, self.multiple_of) if self.dynamic else (0, mask.shape[1])
        batch["cls_index"] = torch.from_numpy(self.features.cls_index[idx].astype(np.int64) - c0)
        batch["p_mask"] = torch.from_numpy(np.ascontiguousarray(self.p_mask[idx][:, c0:c1]))
        if self.impossible is not None:
            batch["is_impossible"] = torch.from_numpy(self.impossible[idx])
        return batch


# --------------------------------------------------------------------------------------------- model outputs


@dataclass
class BeamOutputs:
    """The eval-mode outputs of `XLNetForQuestionAnswering` for N features, end candidates start-major."""

    start_top_log_probs: np.ndarray  # float32 [N, S]
    start_top_index: np.ndarray  # int64 [N, S], column in the stored (padded) feature row
    end_top_log_probs: np.ndarray  # float32 [N, S * E]; [:, i * E + j] = j-th best end for start beam i
    end_top_index: np.ndarray  # int64 [N, S * E]
    cls_logits: np.ndarray  # float32 [N]
    start_n_top: int | None = None  # the model config's beam sizes (checked by post-processing)
    end_n_top: int | None = None


def start_major(end_top: np.ndarray, start_n_top: int, end_n_top: int) -> np.ndarray:
    """Reorder the model's end-major layout `[:, j * start_n_top + i]` to `[:, i * end_n_top + j]`."""
    n = end_top.shape[0]
    if end_top.shape[1] != start_n_top * end_n_top:
        raise ValueError(f"end top-k has {end_top.shape[1]} columns, expected {start_n_top} x {end_n_top}")
    return end_top.reshape(n, end_n_top, start_n_top).transpose(0, 2, 1).reshape(n, start_n_top * end_n_top)


def beam_batches(features: Features, batch_size: int) -> list[np.ndarray]:
    """Rows in batches of `batch_size`, in feature order."""
    n = len(features)
    return [np.arange(lo, min(lo + batch_size, n)) for lo in range(0, n, batch_size)]


@torch.inference_mode()
def forward_beam(
    model: Any, features: Features, batch_size: int, device: torch.device,
    batches: Sequence[np.ndarray] | None = None,
) -> BeamOutputs:  # fmt: skip
    """The beam head over all features in batches (padding trimmed per batch; indexes mapped back).

    `batches`: only these batches of `beam_batches` (a rank's share); the other rows stay zero."""
    start_n_top, end_n_top = int(model.config.start_n_top), int(model.config.end_n_top)
    p_mask = beam_p_mask(features)
    n, s, se = len(features), start_n_top, start_n_top * end_n_top
    out_arrays = BeamOutputs(
        np.zeros((n, s), np.float32), np.zeros((n, s), np.int64), np.zeros((n, se), np.float32),
        np.zeros((n, se), np.int64), np.zeros(n, np.float32), start_n_top, end_n_top,
    )  # fmt: skip
    batches = beam_batches(features, batch_size) if batches is None else batches
    bar = progress(sum(len(rows) for rows in batches), "beam search", "windows", inner=True)
    for rows in batches:
        c0, c1 = padding_band(features.attention_mask[rows], inference_pad_multiple(device))
        batch = model_inputs(features, rows, c0, c1, device)
        batch["cls_index"] = torch.from_numpy(features.cls_index[rows].astype(np.int64) - c0).to(device)
        batch["p_mask"] = torch.from_numpy(np.ascontiguousarray(p_mask[rows, c0:c1])).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = model(**batch)
        out_arrays.start_top_log_probs[rows] = out.start_top_log_probs.float().cpu().numpy()
        out_arrays.start_top_index[rows] = out.start_top_index.cpu().numpy().astype(np.int64) + c0
        end_lp, end_idx = out.end_top_log_probs.float().cpu().numpy(), out.end_top_index.cpu().numpy()
        out_arrays.end_top_log_probs[rows] = start_major(end_lp, start_n_top, end_n_top)
        out_arrays.end_top_index[rows] = start_major(end_idx.astype(np.int64) + c0, start_n_top, end_n_top)
        out_arrays.cls_logits[rows] = out.cls_logits.float().cpu().numpy().reshape(-1)
        bar.update(len(rows))
    bar.close()
    return out_arrays


# ------------------------------------------------------------------------------------------ post-processing


def _check_beam_shapes(
    n: int, start_lp: np.ndarray, start_idx: np.ndarray, end_lp: np.ndarray, end_idx: np.ndarray,
    cls: np.ndarray,
    start_n_top: int | None, end_n_top: int | None,
) -> tuple[int, int]:  # fmt: skip
    if start_lp.ndim != 2 or start_lp.shape != start_idx.shape or start_lp.shape[0] != n:
        raise ValueError(f"start top-k arrays must be [{n}, start_n_top], got {start_lp.shape} and {start_idx.shape}")
    s = start_n_top or start_lp.shape[1]
    if start_lp.shape[1] != s:
        raise ValueError(f"start top-k arrays have {start_lp.shape[1]} columns, start_n_top is {s}")
    if end_lp.ndim != 2 or end_lp.shape != end_idx.shape or end_lp.shape[0] != n or end_lp.shape[1] % s:
        raise ValueError(
            f"end top-k arrays must be [{n}, start_n_top * end_n_top], got {end_lp.shape}, {end_idx.shape}"
        )
    e = end_n_top or end_lp.shape[1] // s
    if end_lp.shape[1] != s * e:
        raise ValueError(f"end top-k arrays have {end_lp.shape[1]} columns, expected {s} x {e}")
    if cls.shape != (n,):
        raise ValueError(f"cls_logits must have shape [{n}], got {cls.shape}")
    return s, e


def _candidates(
    offsets: np.ndarray, start_lp: np.ndarray, start_idx: np.ndarray, end_lp: np.ndarray, end_idx: np.ndarray,
    s: int, e: int, max_answer_length: int,
) -> tuple[np.ndarray, ...]:  # fmt: skip
    """Valid spans over all features, in generation order (feature, start rank, end rank)."""
    n, width = offsets.shape[:2]
    si = np.broadcast_to(start_idx[:, :, None], (n, s, e))
    ei = end_idx.reshape(n, s, e)
    rows = np.broadcast_to(np.arange(n)[:, None, None], (n, s, e))
    in_range = (si >= 0) & (si < width) & (ei >= 0) & (ei < width)
    s_safe, e_safe = np.where(in_range, si, 0), np.where(in_range, ei, 0)
    s_char = offsets[rows, s_safe, 0].astype(np.int64)
    e_char = offsets[rows, e_safe, 1].astype(np.int64)
    in_context = in_range & (s_char >= 0) & (offsets[rows, e_safe, 0] >= 0)
    valid = in_context & (ei >= si) & (ei - si + 1 <= max_answer_length)
    start_v = np.broadcast_to(start_lp[:, :, None], (n, s, e))
    end_v = end_lp.reshape(n, s, e)
    flat = np.flatnonzero(valid)  # row-major = generation order
    pick = lambda a: np.asarray(a).reshape(-1)[flat]  # noqa: E731
    return pick(rows), pick(start_v), pick(end_v), pick(start_v + end_v), pick(s_char), pick(e_char)


def postprocess_beam(
    examples: Sequence[Example],
    features: Features,
    start_top_log_probs: np.ndarray,
    start_top_index: np.ndarray,
    end_top_log_probs: np.ndarray,
    end_top_index: np.ndarray,
    cls_logits: np.ndarray,
    *,
    n_best_size: int = 20,
    max_answer_length: int = 30,
    version_2_with_negative: bool = False,
    start_n_top: int | None = None,
    end_n_top: int | None = None,
) -> Postprocessed:
    """Answers, n-best lists and (v2) null odds from beam outputs (start-major ends); see the module doc.

    `start_n_top`/`end_n_top` default to what the array shapes imply; pass the model config's to check them.
    Features may come in any order (each example's features keep their relative order).
    """
    if n_best_size < 1 or max_answer_length < 1:
        raise ValueError("n_best_size and max_answer_length must be >= 1")
    if features.offsets is None:
        raise ValueError("features have no offsets (eval features are needed)")
    n = len(features)
    start_lp, end_lp = np.asarray(start_top_log_probs), np.asarray(end_top_log_probs)
    start_idx = np.asarray(start_top_index, dtype=np.int64)
    end_idx = np.asarray(end_top_index, dtype=np.int64)
    cls = np.asarray(cls_logits).reshape(-1)
    s, e = _check_beam_shapes(n, start_lp, start_idx, end_lp, end_idx, cls, start_n_top, end_n_top)
    ei = np.asarray(features.example_index, dtype=np.int64)
    if n and (ei.min() < 0 or ei.max() >= len(examples)):
        raise ValueError(f"example_index must be in [0, {len(examples)})")
    order = np.argsort(ei, kind="stable")  # group each example's features, keeping their order
    rows, s_v, e_v, score, s_char, e_char = _candidates(
        features.offsets[order], start_lp[order], start_idx[order], end_lp[order], end_idx[order], s, e,
        max_answer_length,
    )  # fmt: skip
    cand_example = ei[order][rows]
    ranked = np.lexsort((-score, cand_example))  # by example, then score descending; ties keep generation order
    bounds = np.searchsorted(cand_example[ranked], np.arange(len(examples) + 1))
    feat_bounds = np.searchsorted(ei[order], np.arange(len(examples) + 1))
    cls_sorted = cls[order]
    predictions: dict[str, str] = {}
    nbest: dict[str, list[dict[str, Any]]] = {}
    null_odds: dict[str, float] = {}
    for x, example in enumerate(examples):
        if feat_bounds[x] == feat_bounds[x + 1]:
            raise ValueError(f"example {example.id!r} has no features")
        kept = ranked[bounds[x] : bounds[x + 1]][:n_best_size]
        min_null = float(cls_sorted[feat_bounds[x] : feat_bounds[x + 1]].min())
        entries = [
            {
                "text": example.context[s_char[c] : e_char[c]],
                "score": float(score[c]),
                "start_logit": float(s_v[c]),
                "end_logit": float(e_v[c]),
                "offsets": [int(s_char[c]), int(e_char[c])],
            }
            for c in kept.tolist()
        ]
        if not entries:
            min_null = NO_CANDIDATE_SCORE
            entries = [{"text": "", "score": NO_CANDIDATE_SCORE, "start_logit": NO_CANDIDATE_LOGIT,
                        "end_logit": NO_CANDIDATE_LOGIT, "offsets": [0, 0]}]  # fmt: skip
        scores = np.array([p["score"] for p in entries], dtype=np.float64)
        probs = np.exp(scores - scores.max())
        probs /= probs.sum()
        nbest[example.id] = [
            {
                "text": p["text"],
                "probability": float(prob),
                **{k: p[k] for k in ("score", "start_logit", "end_logit", "offsets")},
            }
            for p, prob in zip(entries, probs, strict=True)
        ]
        predictions[example.id] = entries[0]["text"]
        if version_2_with_negative:
            null_odds[example.id] = min_null
    return Postprocessed(predictions=predictions, nbest=nbest, null_odds=null_odds if version_2_with_negative else None)


# --------------------------------------------------------------------------------------------- the family


class BeamFamily(BeamFeaturizer, ExtractiveFamily):
    """XLNet with the beam-search head (run_qa_beam_search.py), loaded as `XLNetForQuestionAnswering`.

    transformers 5 maps `AutoModelForQuestionAnswering` to `XLNetForQuestionAnsweringSimple`, which drops that
    head, so the class is named explicitly. `null_score_diff_threshold` is not used: the answer is always the best
    span and "no answer" is decided by the v2 scorer from the null odds. Identity and training features come from
    `BeamFeaturizer` (the extractive windows with offsets); eval features are the extractive windows (inherited);
    p_mask and is_impossible are derived from them at collation.
    """

    packing = None  # the beam head's loss needs p_mask / cls_index / is_impossible per padded row

    def load_model(self, path: str) -> Any:
        config = load_checkpoint_config(path)
        if not is_beam_capable(config):
            raise ValueError(f"{describe(config, path)}: model_family 'beam' needs an XLNet checkpoint")
        return XLNetForQuestionAnswering.from_pretrained(path, dtype=torch.float32)

    def collator(self, features: Features, *, dynamic: bool, multiple_of: int = 1) -> BeamCollator:
        return BeamCollator(features, dynamic=dynamic, multiple_of=multiple_of)

    def train_metrics(self, features: Any, collator: Any, runtime: float, world_size: int) -> dict[str, float]:
        impossible = collator.impossible
        fraction = float(impossible.mean()) if impossible is not None and len(impossible) else 0.0
        return {"train_impossible_fraction": fraction}

    def batches(self, features: Features, recipe: InferenceRecipe) -> list[np.ndarray]:
        return beam_batches(features, recipe.batch_size)

    def forward(
        self, model: Any, features: Features, recipe: InferenceRecipe, device: Any, tokenizer: Any,
        batches: Sequence[np.ndarray] | None = None,
    ) -> BeamOutputs:  # fmt: skip
        return forward_beam(model, features, recipe.batch_size, device, batches)

    def postprocess(
        self, examples: Sequence[Example], features: Features, outputs: BeamOutputs, recipe: InferenceRecipe
    ) -> Postprocessed:
        return postprocess_beam(
            examples, features, outputs.start_top_log_probs, outputs.start_top_index, outputs.end_top_log_probs,
            outputs.end_top_index, outputs.cls_logits, n_best_size=recipe.nbest.n_best_size,
            max_answer_length=recipe.nbest.max_answer_length,
            version_2_with_negative=recipe.nbest.version_2_with_negative,
            start_n_top=outputs.start_n_top, end_n_top=outputs.end_n_top,
        )  # fmt: skip

    def raw_shard(self, examples: Sequence[Example], features: Features, outputs: BeamOutputs) -> None:
        return None
