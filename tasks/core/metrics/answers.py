"""The official per-answer definitions: answer normalisation (lower case, no punctuation, no articles, single
spaces) and exact match / token F1 of one prediction against one gold answer, as v1.1 (`exact_match_score`,
`f1_score`) and v2.0 (`compute_exact`, `compute_f1`, where empty answers count) define them."""

from __future__ import annotations

import re
import string
from collections import Counter

_PUNCT = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(s: str) -> str:
    """Lower-case, drop ASCII punctuation, drop articles a/an/the, collapse whitespace (official order)."""
    text = s.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def get_tokens(s: str) -> list[str]:
    """v2.0 tokens: [] for an empty string, else the normalised text split on whitespace."""
    if not s:
        return []
    return normalize_answer(s).split()


def _token_f1(num_same: int, n_pred: int, n_gold: int) -> float:
    precision = 1.0 * num_same / n_pred
    recall = 1.0 * num_same / n_gold
    return (2 * precision * recall) / (precision + recall)


def exact_match_score(prediction: str, ground_truth: str) -> bool:
    """v1.1 exact match of one prediction against one gold answer."""
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def f1_score(prediction: str, ground_truth: str) -> float:
    """v1.1 token F1 (0 when no token overlaps, including when either side normalises to nothing)."""
    pred_toks = normalize_answer(prediction).split()
    gold_toks = normalize_answer(ground_truth).split()
    num_same = sum((Counter(pred_toks) & Counter(gold_toks)).values())
    if num_same == 0:
        return 0
    return _token_f1(num_same, len(pred_toks), len(gold_toks))


def compute_exact(a_gold: str, a_pred: str) -> int:
    """v2.0 exact match (0/1)."""
    return int(normalize_answer(a_gold) == normalize_answer(a_pred))


def compute_f1(a_gold: str, a_pred: str) -> float:
    """v2.0 token F1: if either side has no tokens, F1 is 1 when both have none, else 0."""
    gold_toks = get_tokens(a_gold)
    pred_toks = get_tokens(a_pred)
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        return int(gold_toks == pred_toks)
    num_same = sum((Counter(gold_toks) & Counter(pred_toks)).values())
    if num_same == 0:
        return 0
    return _token_f1(num_same, len(pred_toks), len(gold_toks))
