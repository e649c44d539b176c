"""Generative QA with a tiny random T5 and a tokenizer trained here: features, training, prediction."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from tasks.core.config import QAFlowConfig
from tasks.core.data import Answer, Example, QADataset, load_dataset_file, to_squad_json
from tasks.core.metrics import score
from tasks.families.seq2seq import Seq2SeqCollator, _empty_answer_ids, _score_sequences
from tasks.families.seq2seq_features import IGNORE_INDEX, prepare_seq2seq_train, source_text, target_text
from tests.family_helpers import TRAIN_METRIC_KEYS, load_model, predict, seq2seq_recipe, train
from tests.tiny_models import SAMPLE_DEV_V1, SAMPLE_DEV_V2, SAMPLE_TRAIN, cached_model_dir

MAX_SEQ = 96
MAX_ANSWER = 12


@pytest.fixture(scope="session")
def t5_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_model_dir("t5", tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def tokenizer(t5_dir: Path):
    return AutoTokenizer.from_pretrained(t5_dir)


@pytest.fixture(scope="module")
def v2_examples() -> list[Example]:
    """Answerable and unanswerable questions, interleaved as in the file."""
    return load_dataset_file(SAMPLE_DEV_V2, max_samples=24).examples


def config_for(model_dir: Path, out: Path, **train: object) -> QAFlowConfig:
    cfg = QAFlowConfig()
    cfg.model.model_name_or_path = str(model_dir)
    cfg.train.output_dir = str(out)
    cfg.features.max_seq_length = MAX_SEQ
    cfg.features.pad_to_max_length = False
    for key, value in {
        "per_device_train_batch_size": 8,
        "learning_rate": 3e-3,
        "logging_steps": 1,
        "save_steps": 4,
        "max_steps": 8,
        **train,
    }.items():
        setattr(cfg.train, key, value)
    return cfg


def test_source_and_target_text() -> None:
    ex = Example("q1", "t", "The cat sat.", "   Who sat?", (Answer("The cat", 0),))
    assert source_text(ex) == "question: Who sat? context: The cat sat."
    assert target_text(ex) == "The cat"
    assert target_text(replace(ex, answers=(), is_impossible=True)) == ""


def test_prepare_labels_ignore_padding_and_empty_target(tokenizer, v2_examples: list[Example]) -> None:
    feats = prepare_seq2seq_train(v2_examples, tokenizer, MAX_SEQ, MAX_ANSWER)
    assert feats.input_ids.shape == (len(v2_examples), MAX_SEQ) and feats.labels.shape == (
        len(v2_examples),
        MAX_ANSWER,
    )
    assert not (feats.labels == tokenizer.pad_token_id).any()  # every pad became -100
    eos = tokenizer.eos_token_id
    for ex, row in zip(v2_examples, feats.labels, strict=True):
        kept = row[row != IGNORE_INDEX]
        assert (row[len(kept) :] == IGNORE_INDEX).all()  # -100 only after the target
        if ex.is_impossible:
            assert kept.tolist() == [eos]  # "" -> just </s>
        else:
            expected = tokenizer(text_target=ex.answers[0].text, max_length=MAX_ANSWER, truncation=True)["input_ids"]
            assert kept.tolist() == expected and kept[-1] == eos
    assert any(ex.is_impossible for ex in v2_examples) and not all(ex.is_impossible for ex in v2_examples)


def test_prepare_counts_truncated_sources(tokenizer) -> None:
    examples = load_dataset_file(SAMPLE_TRAIN, max_samples=40).examples
    lengths = [len(ids) for ids in tokenizer([source_text(ex) for ex in examples])["input_ids"]]
    limit = int(np.median(lengths))  # about half are cut
    feats = prepare_seq2seq_train(examples, tokenizer, limit, MAX_ANSWER, batch_size=16)
    assert feats.truncated == sum(n > limit for n in lengths) > 0
    assert feats.report()["truncated"] == feats.truncated
    cut = int(np.argmax(np.array(lengths) > limit))
    assert feats.attention_mask[cut].all() and feats.input_ids[cut, -1] == tokenizer.eos_token_id
    assert prepare_seq2seq_train(examples, tokenizer, max(lengths), MAX_ANSWER).truncated == 0


def test_collator_trims_padding_columns(tokenizer, v2_examples: list[Example]) -> None:
    feats = prepare_seq2seq_train(v2_examples, tokenizer, 512, MAX_ANSWER)
    full = Seq2SeqCollator(feats, dynamic=False)([0, 1])
    trimmed = Seq2SeqCollator(feats, dynamic=True)([0, 1])
    width = int(feats.attention_mask[[0, 1]].sum(axis=1).max())
    assert full["input_ids"].shape[1] == 512 and trimmed["input_ids"].shape[1] == width
    assert torch.equal(trimmed["input_ids"], full["input_ids"][:, :width])
    n_label = int((feats.labels[[0, 1]] != IGNORE_INDEX).sum(axis=1).max())
    assert torch.equal(trimmed["labels"], full["labels"][:, :n_label])


def test_train_changes_weights_and_reports_extractive_metric_keys(t5_dir: Path, tokenizer, tmp_path: Path) -> None:
    examples = load_dataset_file(SAMPLE_TRAIN, max_samples=32).examples
    feats = prepare_seq2seq_train(examples, tokenizer, MAX_SEQ, MAX_ANSWER)
    cfg = config_for(t5_dir, tmp_path, max_steps=8)
    result = train("seq2seq", cfg, feats, tmp_path)
    assert set(TRAIN_METRIC_KEYS) <= set(result.metrics)
    assert result.metrics["train_truncated"] == feats.truncated > 0
    losses = [h["loss"] for h in result.log_history if "loss" in h]
    assert len(losses) == 8 and all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    before, after = load_file(t5_dir / "model.safetensors"), load_file(result.model_dir / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert AutoTokenizer.from_pretrained(result.model_dir)("hello")["input_ids"] == tokenizer("hello")["input_ids"]
    # a longer run in the same output directory resumes from the last complete checkpoint
    again = train("seq2seq", config_for(t5_dir, tmp_path, max_steps=10), feats, tmp_path)
    assert again.resumed_from is not None and again.resumed_from.endswith("checkpoint-8")


def test_sequence_scores_match_generate(t5_dir: Path, tokenizer, v2_examples: list[Example]) -> None:
    model = load_model("seq2seq", t5_dir).eval()
    enc = tokenizer(
        [source_text(ex) for ex in v2_examples[:6]],
        max_length=MAX_SEQ,
        truncation=True,
        padding=True,
        return_tensors="pt",
    )
    eos = tokenizer.eos_token_id
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=5, do_sample=False, output_scores=True, return_dict_in_generate=True)
        steps = model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
        encoder = model.get_encoder()(**enc)
        seq_logp = _score_sequences(model, encoder, enc["attention_mask"], out.sequences, eos)
        empty = torch.tensor([_empty_answer_ids(model, tokenizer)] * len(out.sequences))
        empty_logp = _score_sequences(model, encoder, enc["attention_mask"], empty, eos)
    assert empty[0].tolist() == [tokenizer.pad_token_id, eos]  # T5: decoder start, </s>
    generated = out.sequences[:, 1:]
    upto_eos = (generated == eos).long().cumsum(1) - (generated == eos).long() == 0
    expected = (steps * upto_eos).sum(1).double().numpy()
    np.testing.assert_allclose(seq_logp, expected, atol=1e-4)
    first_step = torch.log_softmax(out.scores[0], dim=-1)[:, eos].double().numpy()
    np.testing.assert_allclose(empty_logp, first_step, atol=1e-4)


def test_predict_v1_scores_in_extractive_format(t5_dir: Path, tokenizer, tmp_path: Path) -> None:
    dataset = load_dataset_file(SAMPLE_DEV_V1, max_samples=12)
    model = load_model("seq2seq", t5_dir)
    recipe = seq2seq_recipe(MAX_SEQ, 6, 2, 5)
    run = predict("seq2seq", model, tokenizer, dataset.examples, recipe, tmp_path, chunk_examples=7, save_raw=False)
    ids = [ex.id for ex in dataset.examples]
    assert list(run.predictions) == ids and run.null_odds is None
    assert json.loads((tmp_path / "predictions.json").read_text()) == run.predictions
    assert not (tmp_path / "null_odds.json").exists()
    nbest = json.loads(run.files["nbest"].read_text())
    assert [nbest[i][0]["text"] for i in ids] == [run.predictions[i] for i in ids]
    assert all(0.0 <= nbest[i][0]["probability"] <= 1.0 for i in ids)
    assert run.metrics["predict_truncated"] > 0 and run.metrics["predict_features"] == len(ids)
    metrics = score(to_squad_json(dataset), run.predictions)
    assert set(metrics) == {"exact_match", "f1"}


def test_train_and_predict_v2_empty_generation_is_no_answer(t5_dir: Path, tokenizer, tmp_path: Path) -> None:
    """After learning that unanswerable questions map to "", empty generations score as no-answer."""
    examples = load_dataset_file(SAMPLE_DEV_V2, max_samples=200).examples
    train_ex = [ex for ex in examples if ex.is_impossible][:48]
    feats = prepare_seq2seq_train(train_ex, tokenizer, MAX_SEQ, MAX_ANSWER)
    result = train(
        "seq2seq", config_for(t5_dir, tmp_path / "train", max_steps=6, learning_rate=1e-2), feats, tmp_path / "train"
    )
    model = load_model("seq2seq", result.model_dir)
    dev = QADataset(examples[:16], "2.0", "sample")
    recipe = seq2seq_recipe(MAX_SEQ, 6, 1, 8, v2=True)
    run = predict("seq2seq", model, tokenizer, dev.examples, recipe, tmp_path / "pred", save_raw=False)
    assert run.null_odds is not None and set(run.null_odds) == set(run.predictions)
    assert json.loads(run.files["null_odds"].read_text()) == run.null_odds
    empty = [qid for qid, text in run.predictions.items() if text == ""]
    assert empty, "the model trained on unanswerable questions should generate empty answers"
    # greedy chose </s> first, so the empty answer is at least as likely as any non-empty one
    assert all(run.null_odds[qid] >= 0 for qid in empty)
    metrics = score(to_squad_json(dev), run.predictions, run.null_odds)
    assert list(metrics)[:3] == ["exact", "f1", "total"]
    assert {
        "HasAns_exact",
        "NoAns_exact",
        "best_exact",
        "best_exact_thresh",
        "best_f1",
        "best_f1_thresh",
    } <= set(metrics)
    impossible = {ex.id for ex in dev.examples if ex.is_impossible}
    correct_null = sum(1 for qid in empty if qid in impossible)
    assert metrics["NoAns_exact"] >= 100.0 * correct_null / len(impossible) - 1e-9
