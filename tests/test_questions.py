"""Questions too long for a window (`features.question_policy`): found up front, and handled the same way in
training and prediction: an early error (default), truncation to `max_query_length` tokens, or a counted skip."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from transformers import AutoModelForQuestionAnswering

from tasks.core.checkpoints import load_tokenizer
from tasks.core.data import Example, load_dataset_file
from tasks.core.features import FeatureSettings, fit_questions, prepare_eval_features
from tasks.core.postprocess import NBestSettings
from tasks.core.specs import InferenceRecipe
from tasks.families.extractive import ExtractiveFamily
from tasks.pipeline.prediction import Predictor
from tasks.predict import UNANSWERED_NULL_ODDS
from tasks.train.backends.cpu import CPUBackend
from tests.tiny_models import SAMPLE_DEV_V2

WINDOWS = FeatureSettings(max_seq_length=96, doc_stride=32)


@pytest.fixture(scope="module")
def tokenizer(tiny_bert_dir: Path):
    return load_tokenizer(str(tiny_bert_dir))


def with_long_question(examples: list[Example], n_words: int = 90) -> list[Example]:
    """The sample, with its third question made far longer than a 96-token window allows."""
    long = replace(examples[2], question=" ".join(["which"] * n_words) + " " + examples[2].question)
    return [*examples[:2], long, *examples[3:]]


def test_default_policy_fails_before_any_model_work_and_names_the_question(tokenizer) -> None:
    examples = with_long_question(load_dataset_file(SAMPLE_DEV_V2, max_samples=8).examples)
    with pytest.raises(ValueError, match=rf"1 of 8 questions are too long .* \(first: '{examples[2].id}'"):
        fit_questions(examples, tokenizer, WINDOWS)
    fit = fit_questions(examples[:2], tokenizer, WINDOWS)  # questions that fit are left exactly as they are
    assert fit.examples == examples[:2] and fit.report() == {"questions_truncated": 0, "questions_skipped": 0}


def test_truncate_cuts_to_max_query_length_tokens(tokenizer) -> None:
    examples = with_long_question(load_dataset_file(SAMPLE_DEV_V2, max_samples=8).examples)
    fit = fit_questions(examples, tokenizer, replace(WINDOWS, question_policy="truncate", max_query_length=20))
    long = fit.examples[2]
    assert long.id in fit.truncated and len(tokenizer(long.question, add_special_tokens=False)["input_ids"]) == 20
    assert long.question == examples[2].question[: len(long.question)]  # a prefix, cut on a token boundary
    assert [ex.question for i, ex in enumerate(fit.examples) if ex.id not in fit.truncated] == [
        ex.question for ex in examples if ex.id not in fit.truncated
    ]
    prepare_eval_features(fit.examples, tokenizer, WINDOWS)  # now every question fits a window


def test_skip_leaves_the_question_out_and_prediction_answers_it_empty(tiny_bert_dir: Path, tokenizer, tmp_path) -> None:
    examples = with_long_question(load_dataset_file(SAMPLE_DEV_V2, max_samples=8).examples)
    windows = replace(WINDOWS, question_policy="skip")
    fit = fit_questions(examples, tokenizer, windows)
    assert fit.skipped == [examples[2].id] and len(fit.examples) == 7
    model = AutoModelForQuestionAnswering.from_pretrained(tiny_bert_dir).eval()
    predictor = Predictor(ExtractiveFamily(), model, tokenizer, CPUBackend())
    recipe = InferenceRecipe("extractive", windows, NBestSettings(version_2_with_negative=True), batch_size=8)
    run = predictor.predict(examples, recipe, tmp_path, save_raw=True)
    assert set(run.predictions) == {ex.id for ex in examples} and run.predictions[examples[2].id] == ""
    assert run.null_odds[examples[2].id] == UNANSWERED_NULL_ODDS
    assert run.metrics["predict_questions_skipped"] == 1.0
    nbest = json.loads(run.files["nbest"].read_text())
    assert nbest[examples[2].id] == [{"text": "", "probability": 1.0, "score": 0.0}]
