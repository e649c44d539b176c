"""The plain per-example, per-feature, per-candidate n-best loop (run_qa.py's `utils_qa` algorithm).

Test and benchmark oracle for the vectorised `tasks.core.postprocess.postprocess_predictions`: both must give
identical answers, null odds, n-best order, texts, offsets and scores. It lives with the tests because production
code never runs it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from tasks.core.data import Example
from tasks.core.postprocess import NBestSettings, Postprocessed, check_logit_pair, check_meta, check_unique_ids


def reference_postprocess(
    examples: Sequence[Example],
    example_index: np.ndarray,
    offsets: np.ndarray,
    cls_index: np.ndarray,
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    settings: NBestSettings,
) -> Postprocessed:
    """The plain per-example, per-feature, per-candidate loop (run_qa.py's algorithm); the test/benchmark oracle."""
    check_unique_ids(examples)
    ei, off, cls = check_meta(len(examples), example_index, offsets, cls_index)
    all_start, all_end = check_logit_pair(start_logits, end_logits, cls)
    n, max_len = settings.n_best_size, settings.max_answer_length
    v2 = settings.version_2_with_negative
    features_per_example: dict[int, list[int]] = defaultdict(list)
    for i, e in enumerate(ei.tolist()):
        features_per_example[e].append(i)

    predictions: dict[str, str] = {}
    nbest: dict[str, list[dict[str, Any]]] = {}
    null_odds: dict[str, float] = {}
    for ex_i, example in enumerate(examples):
        if not features_per_example[ex_i]:
            raise ValueError(f"example {example.id!r} has no features")
        min_null: dict[str, Any] | None = None
        prelim: list[dict[str, Any]] = []
        for f in features_per_example[ex_i]:
            sl, el, om, c = all_start[f], all_end[f], off[f], int(cls[f])
            null = sl[c] + el[c]
            if min_null is None or min_null["score"] > null:
                min_null = {"offsets": (0, 0), "score": null, "start_logit": sl[c], "end_logit": el[c]}
            start_indexes = np.argsort(sl)[-1 : -n - 1 : -1].tolist()
            end_indexes = np.argsort(el)[-1 : -n - 1 : -1].tolist()
            for s in start_indexes:
                for e in end_indexes:
                    if s >= len(om) or e >= len(om) or om[s][0] < 0 or om[e][0] < 0:
                        continue
                    if e < s or e - s + 1 > max_len:
                        continue
                    prelim.append(
                        {
                            "offsets": (int(om[s][0]), int(om[e][1])),
                            "score": sl[s] + el[e],
                            "start_logit": sl[s],
                            "end_logit": el[e],
                        }
                    )
        assert min_null is not None
        if v2:
            prelim.append(min_null)
        preds = sorted(prelim, key=lambda p: p["score"], reverse=True)[:n]
        if v2 and not any(p["offsets"] == (0, 0) for p in preds):
            preds.append(min_null)
        context = example.context
        preds = [dict(p, text=context[p["offsets"][0] : p["offsets"][1]]) for p in preds]
        if not preds or (len(preds) == 1 and preds[0]["text"] == ""):
            preds.insert(0, {"offsets": (0, 0), "text": "empty", "start_logit": 0.0, "end_logit": 0.0, "score": 0.0})
        scores = np.array([p["score"] for p in preds])
        exp_scores = np.exp(scores - np.max(scores))
        probs = exp_scores / exp_scores.sum()
        nbest[example.id] = [
            {
                "text": p["text"],
                "probability": float(prob),
                "score": float(p["score"]),
                "start_logit": float(p["start_logit"]),
                "end_logit": float(p["end_logit"]),
                "offsets": [int(p["offsets"][0]), int(p["offsets"][1])],
            }
            for p, prob in zip(preds, probs, strict=True)
        ]
        if not v2:
            predictions[example.id] = preds[0]["text"]
            continue
        best = next((p for p in preds if p["text"] != ""), None)
        zero = all_start.dtype.type(0)
        best_start, best_end = (best["start_logit"], best["end_logit"]) if best else (zero, zero)
        score_diff = min_null["score"] - best_start - best_end
        null_odds[example.id] = float(score_diff)
        predictions[example.id] = (
            "" if best is None or score_diff > settings.null_score_diff_threshold else best["text"]
        )
    return Postprocessed(predictions=predictions, nbest=nbest, null_odds=null_odds if v2 else None)
