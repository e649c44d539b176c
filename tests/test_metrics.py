"""Tests for tasks.core.metrics (official SQuAD EM/F1) and the evaluate module in tasks/core/metrics_module.

Expected values are worked out by hand in the comments; the real-data checks recompute scores with an
independent implementation (different tokenisation code, F1 as 2*overlap/(|pred|+|gold|), math.fsum).
"""

from __future__ import annotations

import json
import logging
import math
import re
import string
from collections import Counter
from pathlib import Path

import pytest

from tasks.core.metrics import (
    MetricsError,
    compute_exact,
    compute_f1,
    detect_version,
    exact_match_score,
    f1_score,
    get_tokens,
    normalize_answer,
    score,
    squad_v1_score,
    squad_v2_score,
)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
MODULE_DIR = REPO / "tasks" / "core" / "metrics_module"
_skip_no_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared/data absent")


def needs_shared(fn):
    """Mark a test that reads ../shared/data (skipped with a reason where it is absent)."""
    return pytest.mark.shared_data(_skip_no_shared(fn))


def _dataset(qas: list[dict], version: str | None = "1.1") -> dict:
    d: dict = {"data": [{"title": "t", "paragraphs": [{"context": "c", "qas": qas}]}]}
    if version is not None:
        d["version"] = version
    return d


def _qa(qid: str, *answers: str, **extra) -> dict:
    return {"id": qid, "question": "?", "answers": [{"text": a, "answer_start": 0} for a in answers], **extra}


# normalisation


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("The Cat", "cat"),
        ("theater", "theater"),  # an article only as a whole word
        ("The theater", "theater"),
        ("an apple a day, the end", "apple day end"),
        ("anthem Athens", "anthem athens"),
        ("A.B", "ab"),  # punctuation goes before articles: "a.b" -> "ab", not "b"
        ("the-end", "theend"),
        ("  a\t b\n\nc  ", "b c"),
        ("\u201chello,\u201d she said.", "\u201chello\u201d she said"),  # only ASCII punctuation is removed
        ("l\u2019the", "l\u2019"),  # ’ is not punctuation here but is a word boundary
        ("\u00c9COLE na\u00efve", "\u00e9cole na\u00efve"),
        ("x_y 1,000", "xy 1000"),
        ("", ""),
        ("the a an", ""),
    ],
)
def test_normalize_answer(raw: str, expected: str) -> None:
    assert normalize_answer(raw) == expected


def test_get_tokens() -> None:
    assert get_tokens("") == []
    assert get_tokens("   ") == []
    assert get_tokens("The big, red dog") == ["big", "red", "dog"]


# per-answer scores


def test_v1_pair_scores() -> None:
    assert f1_score("the cat sat", "cat sat on mat") == pytest.approx(2 / 3)  # P=1, R=1/2
    assert f1_score("cat cat cat", "cat") == pytest.approx(0.5)  # overlap counts multiplicity: P=1/3, R=1
    assert f1_score("dog", "cat") == 0
    assert f1_score("", "cat") == 0
    # v1 quirk: both sides normalise to nothing -> EM is 1 but F1 is 0
    assert exact_match_score("", "the") is True
    assert f1_score("", "the") == 0
    assert exact_match_score("\u201ccat\u201d", "cat") is False
    assert exact_match_score('"Cat"', "cat") is True


def test_v2_pair_scores() -> None:
    assert compute_exact("cat", "The cat!") == 1
    assert compute_f1("big red dog", "red dog") == pytest.approx(0.8)  # P=1, R=2/3
    # v2 rule: an empty side gives F1 = 1 only when both are empty
    assert compute_f1("", "") == 1
    assert compute_f1("", "the") == 1
    assert compute_f1("", "cat") == 0
    assert compute_f1("cat", "") == 0
    assert compute_f1("\u201ccat\u201d", "cat") == 0


# SQuAD v1.1


def test_v1_dataset_score(caplog: pytest.LogCaptureFixture) -> None:
    data = _dataset(
        [
            _qa("q1", "Denver Broncos", "the Denver Broncos"),  # "Broncos": EM 0, F1 2/3
            _qa("q2", "Carolina"),  # no prediction: 0, still counted
            _qa("q3", "Santa Clara"),  # "Santa Clara, California": P=2/3, R=1 -> F1 0.8
            _qa("q4", "February 7, 2016"),  # exact after normalisation
        ]
    )
    preds = {"q1": "Broncos", "q3": "Santa Clara, California", "q4": "february 7 2016", "extra": "ignored"}
    with caplog.at_level(logging.WARNING, logger="tasks.core.metrics"):
        result = squad_v1_score(data, preds)
    assert list(result) == ["exact_match", "f1"]
    assert result["exact_match"] == pytest.approx(25.0, abs=1e-12)
    assert result["f1"] == pytest.approx(100 * (2 / 3 + 0.8 + 1) / 4, abs=1e-12)
    assert "q2" in caplog.text and "1 unanswered" in caplog.text


def test_v1_max_over_ground_truths() -> None:
    # EM from no gold; F1 best against the second gold (P=1, R=2/3 -> 0.8, vs 2/3 against "Denver")
    data = _dataset([_qa("q", "Denver", "Denver Broncos team")])
    result = squad_v1_score(data, {"q": "Denver Broncos"})
    assert result == {"exact_match": 0.0, "f1": pytest.approx(80.0)}
    assert squad_v1_score(data, {"q": "denver"}) == {"exact_match": 100.0, "f1": 100.0}


def test_v1_empty_and_unicode_predictions() -> None:
    data = _dataset([_qa("q1", "cat"), _qa("q2", "the"), _qa("q3", '"cat"')])
    # q1 "" -> 0/0; q2 "" vs "the" -> EM 1, F1 0; q3 "“cat”" keeps its curly quotes -> 0/0
    result = squad_v1_score(data, {"q1": "", "q2": "", "q3": "\u201ccat\u201d"})
    assert result["exact_match"] == pytest.approx(100 / 3)
    assert result["f1"] == 0.0


def test_v1_rejects_unscorable_dataset() -> None:
    with pytest.raises(MetricsError, match="'q1'.*answers is empty"):
        squad_v1_score(_dataset([_qa("q1")]), {"q1": "x"})
    with pytest.raises(MetricsError, match="no questions"):
        squad_v1_score(_dataset([]), {})


# SQuAD v2.0

V2_QAS = [
    _qa("h1", "cat", is_impossible=False),
    _qa("h2", "big red dog", is_impossible=False),
    _qa("n1", is_impossible=True),
    _qa("n2", is_impossible=True),
    _qa("h3", "the", "a", is_impossible=False),  # answers normalise to nothing: gold is [""], but still HasAns
]
V2_PREDS = {"h1": "cat", "h2": "red dog", "n1": "", "n2": "something", "h3": ""}
# raw exact: h1 1, h2 0, n1 1, n2 0, h3 1      raw F1: h1 1, h2 0.8, n1 1, n2 0, h3 1


def test_v2_without_na_probs() -> None:
    result = squad_v2_score(_dataset(V2_QAS, "v2.0"), V2_PREDS)
    assert list(result) == [
        "exact", "f1", "total",
        "HasAns_exact", "HasAns_f1", "HasAns_total",
        "NoAns_exact", "NoAns_f1", "NoAns_total",
    ]  # fmt: skip
    expected = {
        "exact": 60.0,
        "f1": 100 * 3.8 / 5,
        "total": 5,
        "HasAns_exact": 100 * 2 / 3,
        "HasAns_f1": 100 * 2.8 / 3,
        "HasAns_total": 3,
        "NoAns_exact": 50.0,
        "NoAns_f1": 50.0,
        "NoAns_total": 2,
    }
    assert result == pytest.approx(expected, abs=1e-12)
    assert isinstance(result["total"], int)


def test_v2_na_prob_threshold_and_best_thresholds() -> None:
    na = {"h1": 0.1, "h2": 0.6, "n1": 0.9, "n2": 0.7, "h3": 0.2, "not-in-data": 0.05}
    result = squad_v2_score(_dataset(V2_QAS, "v2.0"), V2_PREDS, na_probs=na, na_prob_thresh=0.5)
    # above 0.5 -> "no answer": h2 becomes 0 (has an answer), n1 and n2 become 1
    assert result["exact"] == pytest.approx(80.0) and result["f1"] == pytest.approx(80.0)
    assert result["HasAns_exact"] == pytest.approx(200 / 3) and result["HasAns_f1"] == pytest.approx(200 / 3)
    assert result["NoAns_exact"] == 100.0 and result["NoAns_f1"] == 100.0
    # best threshold walks qids by na_prob from score = #NoAns = 2, on raw scores:
    # exact: h1 +1=3 (0.1), h3 +1=4 (0.2), h2 +0=4, n2 -1 (non-empty pred)=3, n1 0=3 -> 4/5 at 0.2
    # F1:    h1 +1=3, h3 +1=4, h2 +0.8=4.8 (0.6), n2 -1=3.8, n1 0=3.8 -> 4.8/5 at 0.6
    assert list(result)[-4:] == ["best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"]
    assert result["best_exact"] == pytest.approx(80.0) and result["best_exact_thresh"] == 0.2
    assert result["best_f1"] == pytest.approx(96.0) and result["best_f1_thresh"] == 0.6


def test_v2_threshold_is_strictly_greater() -> None:
    data = _dataset([_qa("h1", "cat", is_impossible=False)], "v2.0")
    assert squad_v2_score(data, {"h1": "cat"}, {"h1": 0.5}, na_prob_thresh=0.5)["exact"] == 100.0
    assert squad_v2_score(data, {"h1": "cat"}, {"h1": 0.51}, na_prob_thresh=0.5)["exact"] == 0.0
    # without na_probs every probability is 0.0, so a negative threshold turns every answer into "no answer"
    assert squad_v2_score(data, {"h1": "cat"}, na_prob_thresh=-0.1)["exact"] == 0.0


@pytest.mark.parametrize(
    ("na_probs", "best_exact", "best_thresh"),
    [
        # equal probabilities keep the na_probs dict order (stable sort); only a strict gain moves the best:
        ({"n1": 0.5, "h1": 0.5}, 50.0, 0.0),  # 1 -> n1: 0 -> h1: 1 (ties the start, no update)
        ({"h1": 0.5, "n1": 0.5}, 100.0, 0.5),  # 1 -> h1: 2 (best, 0.5) -> n1: 1
    ],
)
def test_v2_best_threshold_ties(na_probs: dict, best_exact: float, best_thresh: float) -> None:
    data = _dataset([_qa("h1", "x", is_impossible=False), _qa("n1", is_impossible=True)], "v2.0")
    result = squad_v2_score(data, {"h1": "x", "n1": "y"}, na_probs=na_probs)
    assert (result["best_exact"], result["best_exact_thresh"]) == (best_exact, best_thresh)
    assert (result["best_f1"], result["best_f1_thresh"]) == (best_exact, best_thresh)


def test_v2_whitespace_prediction_on_no_answer() -> None:
    # " " normalises to "" (scores 1 on a NoAns question) but is a non-empty string: the best-threshold walk
    # counts it -1, so h1 (+1) only returns to the starting score 1 -> best 1/2 at 0.0
    data = _dataset([_qa("n1", is_impossible=True), _qa("h1", "cat", is_impossible=False)], "v2.0")
    result = squad_v2_score(data, {"n1": " ", "h1": "cat"}, na_probs={"n1": 0.5, "h1": 0.9})
    assert result["NoAns_exact"] == 100.0 and result["NoAns_f1"] == 100.0
    assert (result["best_exact"], result["best_exact_thresh"]) == (50.0, 0.0)


def test_v2_gold_answers_that_normalise_to_nothing_are_dropped() -> None:
    data = _dataset([_qa("h", "the", "cat", is_impossible=False)], "v2.0")
    assert squad_v2_score(data, {"h": ""})["exact"] == 0.0  # gold is ["cat"] only
    assert squad_v2_score(data, {"h": "a cat"})["exact"] == 100.0


def test_v2_only_answerable_has_no_noans_keys() -> None:
    result = squad_v2_score(_dataset([_qa("h1", "cat", is_impossible=False)], "v2.0"), {"h1": "cat"})
    assert list(result) == ["exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total"]


def test_v2_missing_prediction_raises_naming_ids() -> None:
    data = _dataset(V2_QAS, "v2.0")
    preds = {k: v for k, v in V2_PREDS.items() if k not in ("h2", "n1")}
    with pytest.raises(ValueError, match=r"2 question\(s\): 'h2', 'n1'"):
        squad_v2_score(data, preds)


def test_v2_na_probs_must_cover_every_question() -> None:
    with pytest.raises(MetricsError, match=r"na_probs: missing .* 'n2'"):
        squad_v2_score(_dataset(V2_QAS, "v2.0"), V2_PREDS, na_probs={k: 0.0 for k in V2_PREDS if k != "n2"})


# input validation


@pytest.mark.parametrize(
    ("preds", "pattern"),
    [
        (["a"], "predictions: expected a JSON object"),
        ({"h1": None}, r"predictions\['h1'\]: answer text must be a string, got NoneType"),
        ({"h1": "cat", "n1": 3}, r"predictions\['n1'\]: answer text must be a string, got int"),
        ({"h1": ["cat"]}, r"predictions\['h1'\]"),
        ({1: "cat"}, "predictions: question id 1 must be a string"),
    ],
)
def test_bad_predictions(preds: object, pattern: str) -> None:
    for scorer in (squad_v1_score, squad_v2_score):
        with pytest.raises(MetricsError, match=pattern):
            scorer(_dataset([_qa("h1", "cat")]), preds)


@pytest.mark.parametrize(
    ("na_probs", "pattern"),
    [
        ({"h1": "0.5"}, r"na_probs\['h1'\]: no-answer probability must be a number"),
        ({"h1": True}, r"na_probs\['h1'\]"),
        ({"h1": None}, r"na_probs\['h1'\]"),
        ([0.5], "na_probs: expected a JSON object"),
    ],
)
def test_bad_na_probs(na_probs: object, pattern: str) -> None:
    with pytest.raises(MetricsError, match=pattern):
        squad_v2_score(_dataset([_qa("h1", "cat")], "v2.0"), {"h1": "cat"}, na_probs=na_probs)


def test_int_na_probs_and_bad_threshold() -> None:
    data = _dataset([_qa("h1", "cat")], "v2.0")
    assert squad_v2_score(data, {"h1": "cat"}, na_probs={"h1": 0})["best_exact_thresh"] == 0
    np = pytest.importorskip("numpy")
    thresh = squad_v2_score(data, {"h1": "cat"}, na_probs={"h1": np.float32(0.25)})["best_exact_thresh"]
    assert type(thresh) is float and thresh == 0.25
    with pytest.raises(MetricsError, match="na_prob_thresh"):
        squad_v2_score(data, {"h1": "cat"}, na_prob_thresh="1.0")
    with pytest.raises(MetricsError, match="na_prob_thresh"):
        squad_v2_score(data, {"h1": "cat"}, na_prob_thresh=float("nan"))


@pytest.mark.parametrize(
    ("dataset", "pattern"),
    [
        ({"version": "1.1"}, "'data' list"),
        ({"data": [{"title": "t"}]}, r"data\[0\]\.paragraphs"),
        ({"data": [{"paragraphs": [{"qas": [{"answers": []}]}]}]}, r"qas\[0\]\.id"),
        ({"data": [{"paragraphs": [{"qas": [{"id": "q", "answers": [{"text": 1}]}]}]}]}, r"'q'.*text"),
    ],
)
def test_bad_dataset(dataset: dict, pattern: str) -> None:
    with pytest.raises(MetricsError, match=pattern):
        squad_v2_score(dataset, {})


# version detection and dispatch


@pytest.mark.parametrize(
    ("dataset", "version"),
    [
        ({"version": "1.1", "data": []}, "1.1"),
        ({"version": "v2.0", "data": []}, "2.0"),
        ({"version": "2.0", "data": []}, "2.0"),
        (_dataset([_qa("q", "a", is_impossible=False)], None), "2.0"),
        (_dataset([_qa("q", "a")], None), "1.1"),
        ({"data": []}, "1.1"),
    ],
)
def test_detect_version(dataset: dict, version: str) -> None:
    assert detect_version(dataset) == version


def test_detect_version_rejects_unknown() -> None:
    with pytest.raises(MetricsError, match="unsupported SQuAD version '3.0'"):
        detect_version({"version": "3.0", "data": []})


def test_score_dispatches_on_version() -> None:
    qas = [_qa("q", "cat")]
    assert list(score(_dataset(qas, "1.1"), {"q": "cat"})) == ["exact_match", "f1"]
    assert list(score(_dataset(qas, "v2.0"), {"q": "cat"}))[:3] == ["exact", "f1", "total"]
    assert score(_dataset(qas, "v2.0"), {"q": "cat"}, na_probs={"q": 0.2})["best_f1_thresh"] == 0.2
    with pytest.raises(MetricsError, match="only meaningful for SQuAD v2.0"):
        score(_dataset(qas, "1.1"), {"q": "cat"}, na_probs={"q": 0.2})


# real data: perfect predictions, and a nontrivial prediction set checked independently

_PUNCT_TABLE = str.maketrans("", "", string.punctuation)
_ARTICLE = re.compile(r"\b(?:a|an|the)\b")


def _tokens(s: str) -> list[str]:
    return _ARTICLE.sub(" ", s.lower().translate(_PUNCT_TABLE)).split()


def _independent_f1(pred: list[str], gold: list[str]) -> float:
    overlap = sum((Counter(pred) & Counter(gold)).values())
    return 2 * overlap / (len(pred) + len(gold)) if overlap else 0.0


def _questions(data: dict) -> list[tuple[dict, dict]]:
    return [(p, qa) for a in data["data"] for p in a["paragraphs"] for qa in p["qas"]]


def _first_three_words(data: dict) -> dict[str, str]:
    return {qa["id"]: " ".join(p["context"].split()[:3]) for p, qa in _questions(data)}


@pytest.fixture(scope="module")
def dev_v1() -> dict:
    return json.loads((SHARED / "squad-v1.1" / "dev-v1.1.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def dev_v2() -> dict:
    return json.loads((SHARED / "squad-v2.0" / "dev-v2.0.json").read_text(encoding="utf-8"))


@needs_shared
def test_real_v1_perfect_and_first_three_words(dev_v1: dict) -> None:
    perfect = {qa["id"]: qa["answers"][0]["text"] for _, qa in _questions(dev_v1)}
    assert squad_v1_score(dev_v1, perfect) == {"exact_match": 100.0, "f1": 100.0}

    preds = _first_three_words(dev_v1)
    result = squad_v1_score(dev_v1, preds)
    ems, f1s = [], []
    for _, qa in _questions(dev_v1):
        pred = _tokens(preds[qa["id"]])
        golds = [_tokens(a["text"]) for a in qa["answers"]]
        ems.append(max(float(pred == g) for g in golds))
        f1s.append(max(_independent_f1(pred, g) for g in golds))
    assert len(ems) == 10570
    assert result["exact_match"] == pytest.approx(100 * math.fsum(ems) / len(ems), abs=1e-9)
    assert result["f1"] == pytest.approx(100 * math.fsum(f1s) / len(f1s), abs=1e-9)
    # pinned (equal to the official evaluate-v1.1.py on the same predictions)
    assert result == pytest.approx({"exact_match": 0.9176915799432356, "f1": 5.857416003954141}, abs=1e-9)


@needs_shared
def test_real_v2_perfect(dev_v2: dict) -> None:
    perfect = {qa["id"]: (qa["answers"][0]["text"] if qa["answers"] else "") for _, qa in _questions(dev_v2)}
    result = squad_v2_score(dev_v2, perfect)
    assert (result["exact"], result["f1"], result["total"]) == (100.0, 100.0, 11873)
    assert (result["HasAns_total"], result["NoAns_total"]) == (5928, 5945)
    assert result["HasAns_f1"] == result["NoAns_f1"] == 100.0


@needs_shared
def test_real_v2_first_three_words(dev_v2: dict) -> None:
    preds = _first_three_words(dev_v2)
    result = squad_v2_score(dev_v2, preds)
    ems: dict[bool, list[float]] = {True: [], False: []}
    f1s: dict[bool, list[float]] = {True: [], False: []}
    for _, qa in _questions(dev_v2):
        pred = _tokens(preds[qa["id"]])
        golds = [g for g in (_tokens(a["text"]) for a in qa["answers"]) if g] or [[]]
        has_ans = bool(qa["answers"])
        ems[has_ans].append(max(float(pred == g) for g in golds))
        f1s[has_ans].append(max(_independent_f1(pred, g) if g and pred else float(g == pred) for g in golds))
    for key, flag in (("HasAns", True), ("NoAns", False)):
        assert result[f"{key}_exact"] == pytest.approx(100 * math.fsum(ems[flag]) / len(ems[flag]), abs=1e-9)
        assert result[f"{key}_f1"] == pytest.approx(100 * math.fsum(f1s[flag]) / len(f1s[flag]), abs=1e-9)
    assert result["f1"] == pytest.approx(100 * math.fsum(f1s[True] + f1s[False]) / 11873, abs=1e-9)
    assert result["exact"] == pytest.approx(0.5390381537943233, abs=1e-9)
    assert result["f1"] == pytest.approx(3.003024872667285, abs=1e-9)


@needs_shared
def test_real_v2_na_probs_pinned(dev_v2: dict) -> None:
    # mixed predictions and hash-derived no-answer probabilities (1000 buckets: many ties in the walk);
    # pinned values equal the official evaluate-v2.0.py output for the same files with --na-prob-thresh 0.5
    first3 = _first_three_words(dev_v2)
    preds, na_probs = {}, {}
    for _, qa in _questions(dev_v2):
        qid = qa["id"]
        h = int(qid[-3:], 16)
        if qa["answers"]:
            preds[qid] = qa["answers"][0]["text"] if h % 3 else first3[qid]
        else:
            preds[qid] = "" if h % 2 else first3[qid]
        na_probs[qid] = (int(qid[-4:], 16) % 1000) / 1000
    result = squad_v2_score(dev_v2, preds, na_probs=na_probs, na_prob_thresh=0.5)
    expected = {
        "exact": 49.49886296639434,
        "f1": 49.94047427234181,
        "total": 11873,
        "HasAns_exact": 29.74021592442645,
        "HasAns_f1": 30.62470496550509,
        "HasAns_total": 5928,
        "NoAns_exact": 69.20100925147183,
        "NoAns_f1": 69.20100925147183,
        "NoAns_total": 5945,
        "best_exact": 56.80956792722985,
        "best_exact_thresh": 0.997,
        "best_f1": 57.68542482290793,
        "best_f1_thresh": 0.997,
    }
    assert list(result) == list(expected)
    assert result == pytest.approx(expected, abs=1e-9)


# the Hugging Face `evaluate` module (tasks/core/metrics_module)


@pytest.fixture(scope="module")
def load_metric(tmp_path_factory: pytest.TempPathFactory):
    """evaluate.load with its module cache in a temporary directory; metric data kept in memory."""
    evaluate = pytest.importorskip("evaluate")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(evaluate.config, "HF_MODULES_CACHE", tmp_path_factory.mktemp("hf_modules"))
        yield lambda path, **kw: evaluate.load(str(path), keep_in_memory=True, **kw)


def _hf_inputs(qas: list[dict], preds: dict[str, str], na_probs: dict[str, float] | None = None):
    predictions = [
        {"id": k, "prediction_text": v, **({"no_answer_probability": na_probs[k]} if na_probs else {})}
        for k, v in preds.items()
    ]
    references = [
        {
            "id": qa["id"],
            "answers": {
                "text": [a["text"] for a in qa["answers"]],
                "answer_start": [a["answer_start"] for a in qa["answers"]],
            },
        }
        for qa in qas
    ]
    return predictions, references


V1_QAS = [_qa("q1", "Denver Broncos", "the Denver Broncos"), _qa("q3", "Santa Clara"), _qa("q4", "cat")]
V1_PREDS = {"q1": "Broncos", "q3": "Santa Clara, California", "q4": "The cat."}


def test_evaluate_module_v1_by_script_path(load_metric) -> None:
    metric = load_metric(MODULE_DIR / "qaflow_squad.py", config_name="v1")
    predictions, references = _hf_inputs(V1_QAS, V1_PREDS)
    result = metric.compute(predictions=predictions, references=references)
    assert result == squad_v1_score(_dataset(V1_QAS), V1_PREDS)
    assert result == pytest.approx({"exact_match": 100 / 3, "f1": 100 * (2 / 3 + 0.8 + 1) / 3})


def test_evaluate_module_v2_by_folder_path(load_metric) -> None:
    metric = load_metric(MODULE_DIR, config_name="v2")
    data = _dataset(V2_QAS, "v2.0")
    predictions, references = _hf_inputs(V2_QAS, V2_PREDS)
    assert metric.compute(predictions=predictions, references=references) == squad_v2_score(data, V2_PREDS)

    na = {"h1": 0.1, "h2": 0.6, "n1": 0.9, "n2": 0.7, "h3": 0.2}
    predictions, references = _hf_inputs(V2_QAS, V2_PREDS, na)
    result = metric.compute(predictions=predictions, references=references, no_answer_threshold=0.5)
    assert result == squad_v2_score(data, V2_PREDS, na_probs=na, na_prob_thresh=0.5)
    assert result["best_f1_thresh"] == 0.6


def test_evaluate_module_keeps_probabilities_in_float64(load_metric) -> None:
    # float32 storage would turn 0.1 into 0.10000000149 > 0.1 and flip the thresholded answer
    metric = load_metric(MODULE_DIR / "qaflow_squad.py", config_name="v2")
    qas = [_qa("h1", "cat", is_impossible=False)]
    predictions, references = _hf_inputs(qas, {"h1": "cat"}, {"h1": 0.1})
    result = metric.compute(predictions=predictions, references=references, no_answer_threshold=0.1)
    assert result["exact"] == 100.0
    assert result["best_exact_thresh"] == 0.1


def test_evaluate_module_errors(load_metric) -> None:
    path = MODULE_DIR / "qaflow_squad.py"
    with pytest.raises(ValueError, match=r"config_name must be one of \['v1', 'v2'\]"):
        load_metric(path)
    predictions, references = _hf_inputs(V2_QAS, V2_PREDS, {k: 0.5 for k in V2_PREDS})
    del predictions[1]["no_answer_probability"]
    with pytest.raises(MetricsError, match="every prediction or for none"):
        load_metric(path, config_name="v2").compute(predictions=predictions, references=references)
    # evaluate itself requires as many predictions as references: here one prediction has an unknown id
    predictions, references = _hf_inputs(V2_QAS, {("zz" if k == "n2" else k): v for k, v in V2_PREDS.items()})
    with pytest.raises(ValueError, match="missing prediction for 1 question.*'n2'"):
        load_metric(path, config_name="v2").compute(predictions=predictions, references=references)
    predictions, references = _hf_inputs(V1_QAS, V1_PREDS)
    with pytest.raises(MetricsError, match="duplicate prediction for id 'q1'"):
        load_metric(path, config_name="v1").compute(
            predictions=predictions + predictions[:1], references=references + references[:1]
        )


@needs_shared
def test_evaluate_module_real_v1(load_metric, dev_v1: dict) -> None:
    qas = [qa for _, qa in _questions(dev_v1)]
    preds = _first_three_words(dev_v1)
    predictions, references = _hf_inputs(qas, preds)
    result = load_metric(MODULE_DIR, config_name="v1").compute(predictions=predictions, references=references)
    assert result == squad_v1_score(dev_v1, preds)
