"""Datasets by article: the deterministic train/eval split, nested SQuAD JSON out, and the summary counts."""

from __future__ import annotations

import hashlib
from typing import Any

from tasks.core.data.examples import Answer, Example, QADataset


def _article_key(example: Example) -> str:
    """The article an example belongs to: its title, or its context when it has no title."""
    return example.title if example.title else "\x00context\x00" + example.context


def split_by_article(dataset: QADataset, eval_fraction: float, seed: int) -> tuple[QADataset, QADataset]:
    """Deterministic (train, eval) split keeping every article on one side; order is preserved within each.

    Articles are ordered by a hash of (seed, title) and taken into eval while that brings the eval share of
    questions closer to `eval_fraction` (at least one article on each side). `skipped` is not carried over.
    """
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be between 0 and 1 (exclusive), got {eval_fraction}")
    sizes: dict[str, int] = {}
    for ex in dataset.examples:
        key = _article_key(ex)
        sizes[key] = sizes.get(key, 0) + 1
    if len(sizes) < 2:
        raise ValueError(f"{dataset.source}: cannot split by article: it has {len(sizes)} article(s)")

    def rank(key: str) -> str:
        return hashlib.sha256(f"{seed}\x00{key}".encode()).hexdigest()

    target = eval_fraction * len(dataset.examples)
    eval_keys: set[str] = set()
    count = 0
    for key in sorted(sizes, key=rank)[: len(sizes) - 1]:
        if eval_keys and (count >= target or abs(count + sizes[key] - target) > abs(count - target)):
            break
        eval_keys.add(key)
        count += sizes[key]
    train = [ex for ex in dataset.examples if _article_key(ex) not in eval_keys]
    evals = [ex for ex in dataset.examples if _article_key(ex) in eval_keys]
    tag = f"split by article, seed {seed}, eval_fraction {eval_fraction}"
    return (
        QADataset(train, dataset.version, f"{dataset.source} [train; {tag}]"),
        QADataset(evals, dataset.version, f"{dataset.source} [eval; {tag}]"),
    )


def _answers_json(answers: tuple[Answer, ...]) -> list[dict[str, Any]]:
    return [{"text": a.text, "answer_start": a.answer_start} for a in answers]


def to_squad_json(dataset: QADataset) -> dict[str, Any]:
    """Nested SQuAD JSON (version "1.1" or "v2.0"); consecutive examples sharing a title/context are grouped.

    Order is preserved exactly, so loading the result gives back the same examples and version.
    """
    v2 = dataset.version == "2.0"
    articles: list[dict[str, Any]] = []
    for ex in dataset.examples:
        if not articles or articles[-1]["title"] != ex.title:
            articles.append({"title": ex.title, "paragraphs": []})
        paragraphs = articles[-1]["paragraphs"]
        if not paragraphs or paragraphs[-1]["context"] != ex.context:
            paragraphs.append({"context": ex.context, "qas": []})
        qa: dict[str, Any] = {"id": ex.id, "question": ex.question, "answers": _answers_json(ex.answers)}
        if v2:
            qa["is_impossible"] = ex.is_impossible
        if ex.plausible_answers:
            qa["plausible_answers"] = _answers_json(ex.plausible_answers)
        paragraphs[-1]["qas"].append(qa)
    return {"version": "v2.0" if v2 else "1.1", "data": articles}


def dataset_summary(dataset: QADataset) -> dict[str, Any]:
    """Counts for reports: articles, questions, answerable, unanswerable, version, skipped."""
    unanswerable = sum(1 for ex in dataset.examples if ex.is_impossible)
    return {
        "articles": len({_article_key(ex) for ex in dataset.examples}),
        "questions": len(dataset.examples),
        "answerable": len(dataset.examples) - unanswerable,
        "unanswerable": unanswerable,
        "version": dataset.version,
        "skipped": len(dataset.skipped),
        "answers_trimmed": dataset.answers_trimmed,
    }
