"""Error slices: per-question EM/F1 grouped by question word, answer length, context length, answerability, article.

Pure functions over examples and per-question scores (`tasks.core.metrics.per_question_scores`). Every question
falls in exactly one slice of each dimension, so within a dimension the question-count-weighted mean of the
slices' EM/F1 is the overall EM/F1.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

from tasks.core.data import Example
from tasks.core.metrics import normalize_answer

QUESTION_WORDS = ("what", "who", "when", "where", "why", "how", "which")
ANSWER_LENGTHS = ((1, "1 word"), (3, "2-3 words"), (6, "4-6 words"), (None, "7+ words"))
CONTEXT_LENGTHS = ((100, "<=100 words"), (150, "101-150 words"), (200, "151-200 words"), (None, ">200 words"))
_WORD = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class SliceRow:
    """One slice: `count` questions, their mean exact match and F1 in percent."""

    dimension: str
    slice: str
    count: int
    exact: float
    f1: float

    def to_dict(self) -> dict[str, str | int | float]:
        return asdict(self)


def question_word(question: str) -> str:
    """The first of what/who/when/where/why/how/which among the question's words, else "other"."""
    for word in _WORD.findall(question.lower()):
        if word in QUESTION_WORDS:
            return word
    return "other"


def _bucket(n: int, buckets: Sequence[tuple[int | None, str]]) -> str:
    return next(label for limit, label in buckets if limit is None or n <= limit)


def answer_length(example: Example) -> str:
    """Words of the shortest gold answer (normalised as the scorer does); "no answer" when unanswerable."""
    lengths = [len(normalize_answer(a.text).split()) for a in example.answers]
    lengths = [n for n in lengths if n > 0]
    return _bucket(min(lengths), ANSWER_LENGTHS) if lengths else "no answer"


def context_length(example: Example) -> str:
    return _bucket(len(example.context.split()), CONTEXT_LENGTHS)


def answerability(example: Example) -> str:
    return "unanswerable" if example.is_impossible or not example.answers else "answerable"


def article(example: Example) -> str:
    return example.title or "(untitled)"


DIMENSIONS: dict[str, Callable[[Example], str]] = {
    "question word": lambda ex: question_word(ex.question),
    "answer length": answer_length,
    "context length": context_length,
    "answerable": answerability,
    "article": article,
}


def slice_table(
    examples: Sequence[Example], scores: Mapping[str, tuple[float, float]], dimensions: Sequence[str] = ()
) -> list[SliceRow]:
    """One row per (dimension, slice) over the scored examples; slices in first-seen order within a dimension.

    `scores` maps question id to (exact, F1) in [0, 1]; examples without a score are refused (they would make the
    slices disagree with the overall metric).
    """
    missing = [ex.id for ex in examples if ex.id not in scores]
    if missing:
        raise ValueError(f"no score for {len(missing)} question(s), e.g. {missing[0]!r}")
    rows: list[SliceRow] = []
    for dim in dimensions or tuple(DIMENSIONS):
        key = DIMENSIONS[dim]
        groups: dict[str, list[tuple[float, float]]] = {}
        for ex in examples:
            groups.setdefault(key(ex), []).append(scores[ex.id])
        for name, vals in groups.items():
            n = len(vals)
            rows.append(
                SliceRow(dim, name, n, 100.0 * sum(e for e, _ in vals) / n, 100.0 * sum(f for _, f in vals) / n)
            )
    return rows


def weighted_mean(rows: Sequence[SliceRow], dimension: str, metric: str = "f1") -> float:
    """The question-count-weighted mean of `metric` over one dimension's slices (= the overall metric)."""
    mine = [r for r in rows if r.dimension == dimension]
    return sum(getattr(r, metric) * r.count for r in mine) / sum(r.count for r in mine)


def compare_slices(
    a: Sequence[Mapping[str, object]], b: Sequence[Mapping[str, object]], metric: str = "f1"
) -> list[dict[str, object]]:
    """Side-by-side rows (dimension, slice, count, metric of a, of b, b - a) for slices in either table."""

    def index(rows: Sequence[Mapping[str, object]]) -> dict[tuple[str, str], Mapping[str, object]]:
        return {(str(r["dimension"]), str(r["slice"])): r for r in rows}

    ia, ib = index(a), index(b)
    out = []
    for key in [*ia, *(k for k in ib if k not in ia)]:
        ra, rb = ia.get(key), ib.get(key)
        va = float(ra[metric]) if ra is not None else None  # type: ignore[arg-type]
        vb = float(rb[metric]) if rb is not None else None  # type: ignore[arg-type]
        count = (rb or ra or {}).get("count")
        delta = vb - va if va is not None and vb is not None else None
        out.append({"dimension": key[0], "slice": key[1], "count": count, "a": va, "b": vb, "delta": delta})
    return out
