"""Streaming prediction: chunking changes nothing, raw shards re-post-process identically, memory stays flat."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForQuestionAnswering, AutoTokenizer

from tasks.core.data import load_dataset_file
from tasks.core.features import FeatureSettings
from tasks.core.postprocess import NBestSettings
from tasks.core.specs import InferenceRecipe
from tasks.families.extractive import ExtractiveFamily
from tasks.predict import postprocess_raw_dir, predict_examples
from tasks.train.backends.cpu import CPUBackend
from tests.conftest import REPO_ROOT

DEV = REPO_ROOT / "data" / "sample" / "squad-v1.1-sample-dev.json"
V2 = REPO_ROOT / "data" / "sample" / "squad-v2.0-sample-dev.json"
SETTINGS = FeatureSettings(max_seq_length=96, doc_stride=32)
EXTRACTIVE = ExtractiveFamily()


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_bert_dir: Path):
    torch.manual_seed(0)
    return AutoModelForQuestionAnswering.from_pretrained(tiny_bert_dir).eval(), AutoTokenizer.from_pretrained(
        tiny_bert_dir
    )


def run(model_and_tokenizer, examples, out: Path, nbest: NBestSettings, batch_size: int = 64, **kw):
    model, tokenizer = model_and_tokenizer
    recipe = InferenceRecipe("extractive", SETTINGS, nbest, batch_size=batch_size)
    return predict_examples(EXTRACTIVE, model, tokenizer, examples, recipe, out, backend=CPUBackend(), **kw)


def test_chunk_and_batch_sizes_do_not_change_answers(model_and_tokenizer, tmp_path: Path) -> None:
    examples = load_dataset_file(V2, max_samples=60).examples
    nbest = NBestSettings(version_2_with_negative=True)
    a = run(model_and_tokenizer, examples, tmp_path / "a", nbest, chunk_examples=7, batch_size=5)
    b = run(model_and_tokenizer, examples, tmp_path / "b", nbest, chunk_examples=1000, batch_size=64)
    assert a.predictions == b.predictions
    assert a.null_odds == pytest.approx(b.null_odds, abs=1e-4)
    nb_a = json.loads((tmp_path / "a" / "nbest_predictions.json").read_text())
    nb_b = json.loads((tmp_path / "b" / "nbest_predictions.json").read_text())
    assert list(nb_a) == [ex.id for ex in examples]
    assert [[e["text"] for e in nb_a[k]] for k in nb_a] == [[e["text"] for e in nb_b[k]] for k in nb_b]


def test_an_answer_does_not_depend_on_its_batch_neighbours(model_and_tokenizer, tmp_path: Path) -> None:
    examples = load_dataset_file(DEV, max_samples=40).examples
    shortest = min(examples, key=lambda ex: len(ex.context))
    nbest = NBestSettings(n_best_size=5)
    alone = run(model_and_tokenizer, [shortest], tmp_path / "alone", nbest, save_raw=False)
    batched = run(model_and_tokenizer, examples, tmp_path / "batched", nbest, batch_size=64, save_raw=False)
    assert alone.predictions[shortest.id] == batched.predictions[shortest.id]


def test_raw_shards_re_post_process_to_the_same_files(model_and_tokenizer, tmp_path: Path) -> None:
    examples = load_dataset_file(V2, max_samples=30).examples
    nbest = NBestSettings(version_2_with_negative=True)
    first = run(model_and_tokenizer, examples, tmp_path / "pred", nbest, chunk_examples=8)
    again = postprocess_raw_dir(first.files["raw"], examples, nbest, tmp_path / "again")
    assert again.predictions == first.predictions and again.null_odds == first.null_odds
    other = postprocess_raw_dir(
        first.files["raw"], examples, NBestSettings(version_2_with_negative=True, null_score_diff_threshold=1e9),
        tmp_path / "thresh",
    )  # fmt: skip
    assert all(text != "" for text in other.predictions.values())  # a huge threshold never picks "no answer"


MEMORY_SCRIPT = """
import sys, resource, torch
from pathlib import Path
from transformers import AutoModelForQuestionAnswering, AutoTokenizer
from tasks.core.data import load_dataset_file
from tasks.core.features import FeatureSettings
from tasks.core.postprocess import NBestSettings
from tasks.core.specs import InferenceRecipe
from tasks.families.extractive import ExtractiveFamily
from tasks.predict import predict_examples
from tasks.train.backends.cpu import CPUBackend
model_dir, n, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
examples = load_dataset_file("{train}").examples
examples = (examples * (n // len(examples) + 1))[:n]
examples = [type(e)(**{{**e.__dict__, "id": f"{{e.id}}-{{i}}"}}) for i, e in enumerate(examples)]
model = AutoModelForQuestionAnswering.from_pretrained(model_dir).eval()
recipe = InferenceRecipe("extractive", FeatureSettings(96, 32), NBestSettings(), batch_size=32)
run = predict_examples(ExtractiveFamily(), model, AutoTokenizer.from_pretrained(model_dir), examples, recipe, out,
                       chunk_examples=128, save_raw=True, backend=CPUBackend())
print(int(run.metrics["predict_features"]), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_kb(model_dir: Path, n: int, out: Path) -> tuple[int, int]:
    script = MEMORY_SCRIPT.format(train=REPO_ROOT / "data" / "sample" / "squad-v1.1-sample-train.json")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [sys.executable, "-c", script, str(model_dir), str(n), str(out)],
        env=env, capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    features, rss = proc.stdout.split()[-2:]
    return int(features), int(rss)


def test_resident_memory_stays_flat_when_features_grow_tenfold(tiny_bert_dir: Path, tmp_path: Path) -> None:
    small_features, small_rss = peak_rss_kb(tiny_bert_dir, 300, tmp_path / "small")
    big_features, big_rss = peak_rss_kb(tiny_bert_dir, 3000, tmp_path / "big")
    assert big_features >= 9 * small_features
    growth = big_rss / small_rss
    print(f"features {small_features} -> {big_features}; peak RSS {small_rss / 1024:.0f} -> {big_rss / 1024:.0f} MiB")
    assert growth < 1.15, f"peak RSS grew {growth:.2f}x for {big_features / small_features:.1f}x the features"


def test_batching_by_length_gives_the_in_order_logits_on_fewer_positions(model_and_tokenizer) -> None:
    from tasks.core.features import prepare_eval_features, row_batches
    from tasks.families.extractive import forward_logits

    model, tokenizer = model_and_tokenizer
    examples = load_dataset_file(DEV, max_samples=400).examples  # paragraphs of different lengths, in file order
    features = prepare_eval_features(examples, tokenizer, FeatureSettings(max_seq_length=384, doc_stride=128))
    cpu = CPUBackend()
    in_order = forward_logits(model, features, 16, cpu, by_length=False)
    by_length = forward_logits(model, features, 16, cpu)
    assert abs(in_order.start - by_length.start).max() < 1e-5 and abs(in_order.end - by_length.end).max() < 1e-5
    batches = row_batches(features.attention_mask, 16)
    assert sorted(i for b in batches for i in b) == list(range(len(features)))  # every window once
    lengths = features.attention_mask.sum(axis=1)

    def positions(groups: list) -> int:
        return sum(int(lengths[g].max()) * len(g) for g in groups)

    in_order_groups = row_batches(features.attention_mask, 16, by_length=False)
    assert [list(g) for g in in_order_groups] == [list(range(lo, min(lo + 16, len(features))))
                                                  for lo in range(0, len(features), 16)]  # fmt: skip
    assert positions(batches) < 0.9 * positions(in_order_groups)
