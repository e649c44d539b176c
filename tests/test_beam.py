"""XLNet beam-search QA with a tiny random XLNet and a tokenizer trained here."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from tasks.core.config import QAFlowConfig
from tasks.core.data import Example, QADataset, load_dataset_file, to_squad_json
from tasks.core.features import NO_OFFSET, Features, FeatureSettings, prepare_eval_features, prepare_train_features
from tasks.core.metrics import score
from tasks.core.postprocess import NBestSettings
from tasks.core.specs import InferenceRecipe
from tasks.families.beam import (
    BeamCollator,
    beam_p_mask,
    forward_beam,
    is_impossible,
    postprocess_beam,
    start_major,
)
from tasks.train.backends.cpu import CPUBackend
from tests.family_helpers import TRAIN_METRIC_KEYS, load_model, predict, train
from tests.tiny_models import SAMPLE_DEV_V1, SAMPLE_DEV_V2, cached_model_dir

SETTINGS = FeatureSettings(max_seq_length=128, doc_stride=48)


@pytest.fixture(scope="session")
def xlnet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_model_dir("xlnet", tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def tokenizer(xlnet_dir: Path):
    return AutoTokenizer.from_pretrained(xlnet_dir)


@pytest.fixture(scope="module")
def v2_examples() -> list[Example]:
    return load_dataset_file(SAMPLE_DEV_V2, max_samples=30).examples


# --------------------------------------------------------------------------------------------- features


def test_tokenizer_is_xlnet_style(tokenizer) -> None:
    assert tokenizer.is_fast and tokenizer.padding_side == "left"
    enc = tokenizer("a context", "a question", padding="max_length", max_length=16)
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"])
    assert tokens[0] == "<pad>" and tokens[-2:] == ["<sep>", "<cls>"]


def test_p_mask_marks_exactly_context_and_cls(tokenizer, v2_examples: list[Example]) -> None:
    feats = prepare_eval_features(v2_examples, tokenizer, SETTINGS)
    p_mask = beam_p_mask(feats)
    assert p_mask.dtype == np.float32 and p_mask.shape == feats.input_ids.shape
    assert (feats.input_ids[np.arange(len(feats)), feats.cls_index] == tokenizer.cls_token_id).all()
    # independent check on the tokenizer's own encoding: context = sequence 0 (XLNet puts the context first)
    ex = v2_examples[0]
    enc = tokenizer(
        ex.context,
        ex.question.lstrip(),
        truncation="only_first",
        max_length=128,
        stride=48,
        return_overflowing_tokens=True,
        padding="max_length",
        return_special_tokens_mask=True,
    )
    for row in range(int((feats.example_index == 0).sum())):
        seq = enc.sequence_ids(row)
        special = enc["special_tokens_mask"][row]
        expected = [0.0 if (s == 0 and not sp) else 1.0 for s, sp in zip(seq, special, strict=True)]
        expected[seq.index(None, len(seq) - 1)] = 0.0  # the CLS token (last)
        np.testing.assert_array_equal(p_mask[row], expected)


def test_is_impossible_follows_window_labels(tokenizer, v2_examples: list[Example]) -> None:
    feats = prepare_train_features(v2_examples, tokenizer, SETTINGS)
    flags = is_impossible(feats)
    labelled_cls = feats.start_positions == feats.cls_index
    np.testing.assert_array_equal(flags, labelled_cls.astype(np.float32))
    unanswerable = np.array([v2_examples[i].is_impossible for i in feats.example_index])
    assert (flags[unanswerable] == 1.0).all() and (flags[~unanswerable] == 0.0).any()
    with pytest.raises(ValueError, match="training features"):
        is_impossible(prepare_eval_features(v2_examples[:2], tokenizer, SETTINGS))


def test_collator_shifts_positions_when_trimming_left_padding(tokenizer, v2_examples: list[Example]) -> None:
    short = [ex for ex in v2_examples if len(ex.context) < 400][:3] or v2_examples[:3]
    feats = prepare_train_features(short, tokenizer, FeatureSettings(max_seq_length=256, doc_stride=64))
    rows = list(range(min(3, len(feats))))
    full = BeamCollator(feats, dynamic=False)(rows)
    trimmed = BeamCollator(feats, dynamic=True)(rows)
    shift = full["input_ids"].shape[1] - trimmed["input_ids"].shape[1]
    assert shift > 0
    np.testing.assert_array_equal(trimmed["cls_index"].numpy(), full["cls_index"].numpy() - shift)
    np.testing.assert_array_equal(trimmed["start_positions"].numpy(), full["start_positions"].numpy() - shift)
    assert torch.equal(trimmed["p_mask"], full["p_mask"][:, shift:])
    picked = trimmed["input_ids"][torch.arange(len(rows)), trimmed["cls_index"]]
    assert (picked == tokenizer.cls_token_id).all()
    assert trimmed["p_mask"].dtype == torch.float32 and trimmed["is_impossible"].dtype == torch.float32


# --------------------------------------------------------------------------------------------- model layout


def test_start_major_pairs_each_start_with_its_own_end_candidates(xlnet_dir: Path, tokenizer, v2_examples) -> None:
    """The reordered end candidates of start beam i are the top ends computed for start i."""
    model = load_model("beam", xlnet_dir).eval()
    feats = prepare_eval_features(v2_examples[:4], tokenizer, SETTINGS)
    out = forward_beam(model, feats, batch_size=8, backend=CPUBackend())
    s, e = model.config.start_n_top, model.config.end_n_top
    inputs = {
        "input_ids": torch.from_numpy(feats.input_ids),
        "attention_mask": torch.from_numpy(feats.attention_mask),
        "token_type_ids": torch.from_numpy(feats.token_type_ids),
    }
    p_mask = torch.from_numpy(beam_p_mask(feats))
    with torch.inference_mode():
        hidden = model.transformer(**inputs).last_hidden_state
        for i in range(s):
            start = torch.from_numpy(out.start_top_index[:, i])
            logits = model.end_logits(hidden, start_positions=start, p_mask=p_mask)
            dist = torch.softmax(logits, dim=-1).numpy()
            top = np.sort(dist, axis=1)[:, ::-1][:, :e]
            got = out.end_top_index[:, i * e : (i + 1) * e]
            # the returned ends are start i's top-e in order (up to near-ties: trimmed batch numerics)
            np.testing.assert_allclose(np.take_along_axis(dist, got, axis=1), top, atol=1e-5)
            np.testing.assert_allclose(out.end_top_log_probs[:, i * e : (i + 1) * e], top, atol=1e-5)
            assert (got == np.argsort(-dist, axis=1, kind="stable")[:, :e]).mean() > 0.9
    model_layout = np.arange(2 * 3).reshape(1, 6)  # [j * S + i] for S=2 starts, E=3 ends
    np.testing.assert_array_equal(start_major(model_layout, 2, 3), [[0, 2, 4, 1, 3, 5]])


# ------------------------------------------------------------------------------------------ post-processing


def reference_beam(examples, features, slp, si, elp, ei, cls, n_best, max_len, v2):
    """utils_qa.postprocess_qa_predictions_with_beam_search as a plain loop (offsets (-1, -1) = None)."""
    per_example = defaultdict(list)
    for f, x in enumerate(features.example_index.tolist()):
        per_example[x].append(f)
    s, e = si.shape[1], ei.shape[1] // si.shape[1]
    answers, odds, nbest = {}, {}, {}
    for x, ex in enumerate(examples):
        min_null, prelim = None, []
        for f in per_example[x]:
            off = features.offsets[f]
            if min_null is None or cls[f] < min_null:
                min_null = cls[f]
            for i in range(s):
                for j in range(e):
                    a, b = int(si[f, i]), int(ei[f, i * e + j])
                    if a >= len(off) or b >= len(off) or off[a][0] < 0 or off[b][0] < 0:
                        continue
                    if b < a or b - a + 1 > max_len:
                        continue
                    prelim.append({"offsets": (off[a][0], off[b][1]), "score": slp[f, i] + elp[f, i * e + j]})
        preds = sorted(prelim, key=lambda p: p["score"], reverse=True)[:n_best]
        texts = [ex.context[p["offsets"][0] : p["offsets"][1]] for p in preds]
        scores = [p["score"] for p in preds]
        if not preds:
            min_null, texts, scores = -2e-6, [""], [-2e-6]
        probs = np.exp(np.array(scores, dtype=np.float64) - max(scores))
        answers[ex.id] = texts[0]
        nbest[ex.id] = list(zip(texts, scores, probs / probs.sum(), strict=True))
        if v2:
            odds[ex.id] = float(min_null)
    return answers, odds, nbest


def handmade() -> tuple[list[Example], Features]:
    """Two examples; example 0 has two windows. Context tokens are 4-letter words at columns 1..6."""
    examples = [Example(f"q{k}", "t", "aaaa bbbb cccc dddd eeee ffff", "?") for k in range(3)]
    n, width = 4, 10
    offsets = np.full((n, width, 2), NO_OFFSET, dtype=np.int32)
    for col, start in enumerate(range(0, 30, 5), start=1):
        offsets[:, col] = (start, start + 4)
    offsets[3] = NO_OFFSET  # example 2's window has no context at all
    ids = np.zeros((n, width), dtype=np.int64)
    features = Features(
        ids, np.ones_like(ids), None, np.array([0, 1, 0, 2]), np.full(n, width - 1), offsets, None, None
    )
    return examples, features


def test_postprocess_handmade_top_k() -> None:
    examples, features = handmade()
    # S = 2 start beams, E = 2 ends each, start-major
    slp = np.array([[0.5, 0.3], [0.6, 0.2], [0.9, 0.1], [0.5, 0.5]], dtype=np.float32)
    si = np.array([[1, 3], [2, 8], [4, 1], [1, 2]])
    elp = np.array(
        [[0.4, 0.1, 0.2, 0.7], [0.5, 0.5, 0.9, 0.9], [0.8, 0.3, 0.6, 0.2], [0.9, 0.9, 0.9, 0.9]],
        dtype=np.float32,
    )
    ei = np.array([[2, 6, 0, 4], [3, 1, 8, 8], [6, 4, 6, 3], [1, 2, 3, 4]])
    cls = np.array([2.0, -1.0, 0.5, 3.0], dtype=np.float32)
    post = postprocess_beam(
        examples,
        features,
        slp,
        si,
        elp,
        ei,
        cls,
        n_best_size=3,
        max_answer_length=3,
        version_2_with_negative=True,
    )
    # q0 (rows 0, 2): (1,2) 0.9 ok; (1,6) too long; (3,0) end<start; (3,4) 1.0 ok; (4,6) 1.7 ok; (4,4) 1.2 ok;
    # (1,6) too long; (1,3) 0.3 ok -> top 3: (4,6), (4,4), (3,4)
    q0 = post.nbest["q0"]
    assert [p["text"] for p in q0] == ["dddd eeee ffff", "dddd", "cccc dddd"]
    np.testing.assert_allclose([p["score"] for p in q0], [1.7, 1.2, 1.0], rtol=1e-6)
    probs = np.exp(np.array([1.7, 1.2, 1.0]) - 1.7)
    np.testing.assert_allclose([p["probability"] for p in q0], probs / probs.sum(), rtol=1e-5)
    assert q0[0]["offsets"] == [15, 29] and q0[0]["start_logit"] == pytest.approx(0.9)
    assert post.predictions["q0"] == "dddd eeee ffff"
    assert post.null_odds["q0"] == pytest.approx(0.5)  # min cls over its two windows
    # q1: (2,3) ok; (2,1) end<start; (8,8) is outside the context (offsets -1) -> one candidate
    assert [p["text"] for p in post.nbest["q1"]] == ["bbbb cccc"] and post.null_odds["q1"] == pytest.approx(-1.0)
    # q2: no context token in its window -> the "" filler, null score -2e-6 (utils_qa.py)
    assert post.predictions["q2"] == "" and post.nbest["q2"][0]["score"] == pytest.approx(-2e-6)
    assert post.null_odds["q2"] == pytest.approx(-2e-6)
    v1 = postprocess_beam(examples, features, slp, si, elp, ei, cls, n_best_size=3, max_answer_length=3)
    assert v1.null_odds is None and v1.predictions == post.predictions
    # indexes beyond the offsets array are skipped, not an error
    si_far = si.copy()
    si_far[0, 1] = 99
    far = postprocess_beam(examples, features, slp, si_far, elp, ei, cls, n_best_size=20, max_answer_length=30)
    assert "cccc dddd" not in [p["text"] for p in far.nbest["q0"]]


def test_postprocess_matches_reference_loop_on_random_outputs() -> None:
    rng = np.random.default_rng(0)
    examples, base = handmade()
    n, width, s, e = 40, 10, 4, 3
    example_index = np.sort(rng.integers(0, 3, n))
    example_index[:3] = [0, 1, 2]
    example_index.sort()
    offsets = np.repeat(base.offsets[:1], n, axis=0)
    offsets[rng.random((n, width)) < 0.2] = NO_OFFSET
    feats = Features(
        np.zeros((n, width), np.int64),
        np.ones((n, width), np.int64),
        None,
        example_index,
        np.full(n, width - 1),
        offsets,
        None,
        None,
    )
    slp = rng.random((n, s)).astype(np.float32).round(1)  # rounded: many ties, to check the order of equals
    si = rng.integers(0, width + 2, (n, s))
    elp = rng.random((n, s * e)).astype(np.float32).round(1)
    ei = rng.integers(0, width + 2, (n, s * e))
    cls = rng.normal(size=n).astype(np.float32)
    for v2 in (False, True):
        post = postprocess_beam(
            examples,
            feats,
            slp,
            si,
            elp,
            ei,
            cls,
            n_best_size=5,
            max_answer_length=4,
            version_2_with_negative=v2,
        )
        answers, odds, nbest = reference_beam(examples, feats, slp, si, elp, ei, cls, 5, 4, v2)
        assert post.predictions == answers
        assert (post.null_odds or {}) == pytest.approx(odds)
        for qid, entries in nbest.items():
            got = post.nbest[qid]
            assert [p["text"] for p in got] == [t for t, _, _ in entries]
            np.testing.assert_allclose([p["score"] for p in got], [sc for _, sc, _ in entries], rtol=1e-6)
            np.testing.assert_allclose([p["probability"] for p in got], [pr for _, _, pr in entries], rtol=1e-6)
    shuffled = np.random.default_rng(1).permutation(n)  # features in any order: same result
    feats_shuffled = Features(
        feats.input_ids[shuffled],
        feats.attention_mask[shuffled],
        None,
        example_index[shuffled],
        feats.cls_index[shuffled],
        offsets[shuffled],
        None,
        None,
    )
    order = np.argsort(example_index[shuffled], kind="stable")
    again = postprocess_beam(
        examples,
        feats_shuffled,
        slp[shuffled],
        si[shuffled],
        elp[shuffled],
        ei[shuffled],
        cls[shuffled],
        n_best_size=5,
        max_answer_length=4,
    )
    grouped = reference_beam(
        examples,
        Features(None, None, None, example_index[shuffled][order], None, offsets[shuffled][order], None, None),
        slp[shuffled][order],
        si[shuffled][order],
        elp[shuffled][order],
        ei[shuffled][order],
        cls[shuffled][order],
        5,
        4,
        False,
    )
    assert again.predictions == grouped[0]


def test_postprocess_rejects_bad_shapes() -> None:
    examples, features = handmade()
    slp = np.zeros((4, 2), np.float32)
    si = np.ones((4, 2), np.int64)
    with pytest.raises(ValueError, match="end top-k"):
        postprocess_beam(examples, features, slp, si, np.zeros((4, 3)), np.ones((4, 3)), np.zeros(4))
    with pytest.raises(ValueError, match="expected 2 x 5"):
        postprocess_beam(examples, features, slp, si, np.zeros((4, 4)), np.ones((4, 4)), np.zeros(4), end_n_top=5)
    with pytest.raises(ValueError, match="cls_logits"):
        postprocess_beam(examples, features, slp, si, np.zeros((4, 4)), np.ones((4, 4)), np.zeros(3))


# ------------------------------------------------------------------------------------------ train + predict


def test_train_beam_changes_weights_and_reports_extractive_metric_keys(xlnet_dir: Path, tokenizer, tmp_path) -> None:
    examples = load_dataset_file(SAMPLE_DEV_V2, max_samples=40).examples
    feats = prepare_train_features(examples, tokenizer, SETTINGS)
    cfg = QAFlowConfig()
    cfg.model.model_name_or_path = str(xlnet_dir)
    cfg.features.pad_to_max_length = False
    for key, value in {
        "max_steps": 8,
        "per_device_train_batch_size": 8,
        "learning_rate": 3e-3,
        "logging_steps": 1,
        "save_steps": 4,
    }.items():
        setattr(cfg.train, key, value)
    result = train("beam", cfg, feats, tmp_path)
    assert set(TRAIN_METRIC_KEYS) <= set(result.metrics)
    assert 0 < result.metrics["train_impossible_fraction"] < 1
    losses = [h["loss"] for h in result.log_history if "loss" in h]
    assert len(losses) == 8 and all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    before, after = (
        load_file(xlnet_dir / "model.safetensors"),
        load_file(result.model_dir / "model.safetensors"),
    )
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert "answer_class.dense_1.weight" in after  # the beam head (answerability) was kept and saved
    assert type(load_model("beam", result.model_dir)).__name__ == "XLNetForQuestionAnswering"


@pytest.mark.parametrize("v2", [False, True])
def test_predict_beam_scores_in_extractive_format(xlnet_dir: Path, tokenizer, tmp_path: Path, v2: bool) -> None:
    dataset = load_dataset_file(SAMPLE_DEV_V2 if v2 else SAMPLE_DEV_V1, max_samples=20)
    model = load_model("beam", xlnet_dir)
    settings = NBestSettings(n_best_size=10, max_answer_length=20, version_2_with_negative=v2)
    recipe = InferenceRecipe("beam", SETTINGS, settings, batch_size=16)
    run = predict("beam", model, tokenizer, dataset.examples, recipe, tmp_path / "a", chunk_examples=7)
    ids = [ex.id for ex in dataset.examples]
    assert sorted(run.predictions) == sorted(ids)
    nbest = json.loads(run.files["nbest"].read_text())
    assert all(nbest[i][0]["text"] == run.predictions[i] for i in ids)
    assert all(len(nbest[i]) <= 10 and abs(sum(p["probability"] for p in nbest[i]) - 1) < 1e-6 for i in ids)
    whole = predict("beam", model, tokenizer, dataset.examples, replace(recipe, batch_size=5), tmp_path / "b")
    assert whole.predictions == run.predictions  # chunking and batch size do not change answers
    metrics = score(
        to_squad_json(QADataset(dataset.examples, dataset.version, "sample")), run.predictions, run.null_odds
    )
    if not v2:
        assert run.null_odds is None and set(metrics) == {"exact_match", "f1"}
        return
    assert json.loads(run.files["null_odds"].read_text()) == run.null_odds
    feats = prepare_eval_features(dataset.examples, tokenizer, SETTINGS)
    out = forward_beam(model, feats, 16, CPUBackend())
    for k, ex in enumerate(dataset.examples):
        assert run.null_odds[ex.id] == pytest.approx(float(out.cls_logits[feats.example_index == k].min()), abs=1e-5)
    assert list(metrics)[:3] == ["exact", "f1", "total"]
    assert {"HasAns_f1", "NoAns_f1", "best_exact", "best_f1_thresh"} <= set(metrics)
