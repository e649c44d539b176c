"""`train.packing`: windows packed into full-width rows compute, lose and learn exactly as each window alone.

Layout (`tasks.core.packing`): every real token and label lands in its window's span, no two windows overlap.
Model side (`tasks.families.span_packing`): a packed window's logits equal the window run alone, its loss is
run_qa's span loss with each softmax over the window's own tokens, and so are the gradients; models that cannot
pack (no 4D mask, their own relative positions) are refused with one line; training packs and saves a usable model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional
from transformers import AutoModelForQuestionAnswering, BertConfig, BertForQuestionAnswering

from flows.cli import main
from tasks.core.checkpoints import load_tokenizer
from tasks.core.config import ConfigError, QAFlowConfig, validate
from tasks.core.data import load_dataset_file
from tasks.core.features import Features, collate
from tasks.core.layout import TrainPaths
from tasks.core.model_spec import ModelSpec
from tasks.core.packing import PAD_SEGMENT, first_fit_decreasing, pack_batch, real_spans, static_row_counts
from tasks.families.beam import BeamFamily
from tasks.families.registry import resolve_family
from tasks.families.span_packing import check_packing, packed_forward, span_loss
from tasks.pipeline.featurize import build_train_features
from tasks.train.backends.cpu import CPUBackend
from tasks.train.backends.cuda import CUDABackend
from tasks.train.batching import packed_row_counts, packing_support
from tasks.train.trainer import run_trainer
from tests.conftest import REPO_ROOT

SAMPLE_TRAIN = REPO_ROOT / "data" / "sample" / "squad-v1.1-sample-train.json"
WIDTH = 384  # SQuAD windows at 384/128: about half padding, so rows hold several


@pytest.fixture(scope="module")
def features(tiny_bert_dir: Path) -> Features:
    cfg = QAFlowConfig()
    cfg.features.max_seq_length, cfg.features.doc_stride = WIDTH, 128
    examples = load_dataset_file(SAMPLE_TRAIN, max_samples=48).examples
    family = resolve_family("auto", tiny_bert_dir)
    return build_train_features(cfg, family, examples, load_tokenizer(str(tiny_bert_dir)))


def test_first_fit_decreasing_places_every_window_once_within_its_row() -> None:
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 100, size=40)
    layout = first_fit_decreasing(lengths, 100)
    taken = np.zeros((layout.n_rows, 100), dtype=int)
    for r, c, n in zip(layout.row, layout.column, lengths, strict=True):
        taken[r, c : c + n] += 1
    assert taken.max() == 1 and taken.sum() == lengths.sum()  # no overlap, nothing lost
    assert layout.n_rows < len(lengths)  # short windows share rows
    assert first_fit_decreasing(lengths, 100, row_counts=(64, 8)).n_rows == 64  # the first count that holds them
    assert first_fit_decreasing(lengths, 100, row_counts=(3,)).n_rows == layout.n_rows  # none holds them: exact
    assert first_fit_decreasing(np.array([100, 100]), 100).n_rows == 2
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 100\]"):
        first_fit_decreasing(np.array([101]), 100)


def test_pack_batch_keeps_every_token_type_position_and_label(features: Features) -> None:
    idx = np.arange(24)
    packed = pack_batch(features, idx, width=WIDTH, position_offset=2)
    plain = collate(features, idx, dynamic=False)
    assert packed["input_ids"].shape[0] < len(idx)  # fewer rows than windows
    first, length = real_spans(features.attention_mask[idx])
    for k in range(len(idx)):
        r, c, n = packed["window_row"][k], packed["window_column"][k], packed["window_length"][k]
        assert n == length[k]
        own = slice(c, c + n)
        assert np.array_equal(packed["input_ids"][r, own], plain["input_ids"][k, :n])
        assert np.array_equal(packed["token_type_ids"][r, own], plain["token_type_ids"][k, :n])
        assert np.array_equal(packed["position_ids"][r, own], 2 + np.arange(n))
        assert (packed["segment_ids"][r, own] == k + 1).all()
        for label in ("start_positions", "end_positions"):  # the label points at the same token
            assert packed["input_ids"][r, c + packed[label][k]] == plain["input_ids"][k, plain[label][k]]
    assert (packed["segment_ids"] == PAD_SEGMENT).sum() == packed["input_ids"].size - length.sum()


def test_pack_batch_reads_left_padded_windows() -> None:
    ids = np.array([[0, 0, 5, 6, 7], [0, 8, 9, 10, 11]], dtype=np.int32)
    mask = (ids > 0).astype(np.uint8)
    labels = np.array([3, 4], dtype=np.int32)  # columns of tokens 6 and 11 in the stored (left-padded) rows
    none = np.zeros(2, dtype=np.int32)
    left = Features(ids, mask, None, none, none, None, labels, labels)
    packed = pack_batch(left, np.arange(2), width=8)
    for k, token in enumerate((6, 11)):
        r, c = packed["window_row"][k], packed["window_column"][k]
        assert packed["input_ids"][r, c + packed["start_positions"][k]] == token
    assert "token_type_ids" not in packed


def _alone_logits(model: torch.nn.Module, features: Features, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    n = int(features.attention_mask[k].sum())
    out = model(
        input_ids=torch.from_numpy(features.input_ids[k : k + 1, :n].astype(np.int64)),
        token_type_ids=torch.from_numpy(features.token_type_ids[k : k + 1, :n].astype(np.int64)),
    )
    return out.start_logits[0], out.end_logits[0]


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_windows_compute_as_if_alone(tiny_bert_dir: Path, features: Features, attention: str) -> None:
    model = AutoModelForQuestionAnswering.from_pretrained(str(tiny_bert_dir), attn_implementation=attention).eval()
    idx = np.arange(16)
    inputs = {k: torch.from_numpy(v) for k, v in pack_batch(features, idx, width=WIDTH).items()}
    assert inputs["input_ids"].shape[0] < len(idx)
    with torch.no_grad():
        start, end = packed_forward(model, inputs, attention)
        for k in range(len(idx)):
            n = int(inputs["window_length"][k])
            alone_start, alone_end = _alone_logits(model, features, k)
            torch.testing.assert_close(start[k, :n], alone_start, atol=2e-5, rtol=1e-4)
            torch.testing.assert_close(end[k, :n], alone_end, atol=2e-5, rtol=1e-4)
            assert (start[k, n:] == torch.finfo(start.dtype).min).all()  # nothing past the window competes


def test_packed_loss_and_gradients_are_the_windows_own(tiny_bert_dir: Path, features: Features) -> None:
    model = AutoModelForQuestionAnswering.from_pretrained(str(tiny_bert_dir)).eval()  # dropout off: comparable
    idx = np.arange(12)
    inputs = {k: torch.from_numpy(v) for k, v in pack_batch(features, idx, width=WIDTH).items()}
    packed_loss = span_loss(*packed_forward(model, inputs, "sdpa"), inputs)
    packed_grads = torch.autograd.grad(packed_loss, list(model.parameters()), allow_unused=True)
    losses = []
    for k in range(len(idx)):
        start, end = _alone_logits(model, features, k)
        s, e = inputs["start_positions"][k : k + 1], inputs["end_positions"][k : k + 1]
        losses.append((functional.cross_entropy(start[None], s) + functional.cross_entropy(end[None], e)) / 2)
    alone_loss = torch.stack(losses).mean()
    alone_grads = torch.autograd.grad(alone_loss, list(model.parameters()), allow_unused=True)
    torch.testing.assert_close(packed_loss, alone_loss, atol=1e-5, rtol=1e-5)
    compared = 0
    for packed_grad, alone_grad in zip(packed_grads, alone_grads, strict=True):
        if alone_grad is not None:
            torch.testing.assert_close(packed_grad, alone_grad, atol=1e-5, rtol=1e-4)
            compared += 1
    assert compared > 10


def test_check_refuses_models_whose_windows_would_see_each_other() -> None:
    from transformers import DebertaV2Config, DebertaV2ForQuestionAnswering

    small = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
    assert check_packing(BertForQuestionAnswering(BertConfig(**small)), 64) == 0
    deberta = DebertaV2ForQuestionAnswering._from_config(DebertaV2Config(**small), attn_implementation="eager")
    with pytest.raises(ValueError, match="train.packing: deberta-v2") as caught:
        check_packing(deberta, 64)
    assert "\n" not in str(caught.value)


def test_families_that_cannot_pack_and_the_ipu_stop_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError, match="the beam family cannot pack"):
        packing_support(BeamFamily())
    out = tmp_path / "run"
    (tmp_path / "params.yaml").write_text("train: {}\n")
    code = main(["train", "--packing", "--backend", "ipu", "--output_dir", str(out),
                 "--params", str(tmp_path / "params.yaml")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "train.packing" in err[0] and "IPU" in err[0]
    assert not (out / "train_features.npz").exists()


def test_rows_round_up_only_where_shapes_cost(features: Features) -> None:
    t = QAFlowConfig().train
    t.per_device_train_batch_size = 16
    assert packed_row_counts(t, CPUBackend(), features) == ()  # exact: every batch as few rows as it needs
    counts = packed_row_counts(t, CUDABackend(), features)
    assert len(counts) == 2 and counts[-1] == 16 and counts[0] < 16  # two shapes: the typical rows, and the batch
    t.torch_compile = True
    assert packed_row_counts(t, CPUBackend(), features) == counts
    t.torch_compile_dynamic = True
    assert packed_row_counts(t, CPUBackend(), features) == ()  # one graph with a symbolic row count


def test_static_row_counts_hold_nearly_every_batch(features: Features) -> None:
    lengths = real_spans(features.attention_mask)[1]
    typical, batch = static_row_counts(lengths, 16, WIDTH, quantile=0.99, seed=3)
    rng = np.random.default_rng(7)
    needed = [first_fit_decreasing(rng.choice(lengths, 16, replace=False), WIDTH).n_rows for _ in range(300)]
    assert batch == 16 and max(needed) <= 16
    assert np.mean(np.asarray(needed) <= typical) >= 0.95  # the typical count holds (almost) all batches
    packed = pack_batch(features, np.arange(16), width=WIDTH, row_counts=(typical, batch))
    assert packed["input_ids"].shape[0] in (typical, batch)


def _train(model_dir: Path, features: Features, out: Path, **train: object) -> dict[str, float]:
    cfg = QAFlowConfig()
    cfg.model.model_name_or_path = str(model_dir)
    cfg.features.pad_to_max_length = False
    for key, value in {"max_steps": 4, "per_device_train_batch_size": 24, "save_strategy": "no",
                       "logging_steps": 100, "learning_rate": 1e-3, **train}.items():  # fmt: skip
        setattr(cfg.train, key, value)
    validate(cfg)
    family = resolve_family("auto", model_dir)
    result = run_trainer(family, ModelSpec.from_config(cfg), cfg.train, features, backend=CPUBackend(),
                         paths=TrainPaths(out), dynamic_padding=True)  # fmt: skip
    return result.metrics


def padding_share(m: dict[str, float]) -> float:
    return 1 - m["train_tokens_per_second"] / m["train_padded_tokens_per_second"]


def test_packed_training_learns_on_fewer_padded_tokens_and_saves_a_plain_model(
    tiny_bert_dir: Path, features: Features, tmp_path: Path
) -> None:
    dynamic = _train(tiny_bert_dir, features, tmp_path / "dynamic")
    packed = _train(tiny_bert_dir, features, tmp_path / "packed", packing=True, gradient_accumulation_steps=2)

    assert padding_share(packed) < padding_share(dynamic) - 0.05
    assert np.isfinite(packed["train_loss"]) and packed["train_loss"] > 0
    reloaded = AutoModelForQuestionAnswering.from_pretrained(str(tmp_path / "packed"))
    before = AutoModelForQuestionAnswering.from_pretrained(str(tiny_bert_dir))
    assert not torch.equal(reloaded.qa_outputs.weight, before.qa_outputs.weight)  # it trained


def test_a_label_past_its_window_is_ignored_as_the_models_own_loss_ignores_it(
    tiny_bert_dir: Path, features: Features
) -> None:
    model = AutoModelForQuestionAnswering.from_pretrained(str(tiny_bert_dir)).eval()
    idx = np.arange(6)
    batch = pack_batch(features, idx, width=WIDTH)
    inputs = {k: torch.from_numpy(v) for k, v in batch.items()}
    with torch.no_grad():
        start, end = packed_forward(model, inputs, "sdpa")
        clean = span_loss(start, end, inputs)
        past = dict(inputs, start_positions=inputs["start_positions"].clone())
        past["start_positions"][0] = WIDTH - 1  # run_qa's label for an answer starting after the last token
        assert int(past["start_positions"][0]) >= int(inputs["window_length"][0])
        got = span_loss(start, end, past)
        kept = torch.arange(len(idx)) != 0
        expected = (functional.cross_entropy(start[kept].float(), inputs["start_positions"][kept])
                    + functional.cross_entropy(end.float(), inputs["end_positions"])) / 2  # fmt: skip
    assert torch.isfinite(got) and torch.isclose(got, expected, atol=1e-6)
    assert not torch.isclose(got, clean)
