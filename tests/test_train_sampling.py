"""Fewer padded tokens in training: `padding_band` / `collate(multiple_of=)` (batch widths rounded as run_qa's
`pad_to_multiple_of`) and `train.group_by_length` (transformers' LengthGroupedSampler over the feature lengths)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flows.cli import main
from tasks.core.checkpoints import load_tokenizer
from tasks.core.config import ConfigError, QAFlowConfig, validate
from tasks.core.data import load_dataset_file
from tasks.core.features import Features, collate, padding_band
from tasks.core.layout import TrainPaths
from tasks.core.model_spec import ModelSpec
from tasks.families.registry import resolve_family
from tasks.pipeline.featurize import build_train_features
from tasks.train.backends.cpu import CPUBackend
from tasks.train.backends.cuda import CUDABackend
from tasks.train.batching import pad_multiple, row_lengths
from tasks.train.trainer import run_trainer
from tests.conftest import REPO_ROOT

SAMPLE_TRAIN = REPO_ROOT / "data" / "sample" / "squad-v1.1-sample-train.json"


def _mask(rows: list[tuple[int, int]], width: int) -> np.ndarray:
    mask = np.zeros((len(rows), width), dtype=np.uint8)
    for i, (lo, hi) in enumerate(rows):
        mask[i, lo:hi] = 1
    return mask


def test_padding_band_rounds_up_over_padding_and_never_past_the_stored_width() -> None:
    right = _mask([(0, 37), (0, 20)], 64)
    assert padding_band(right) == (0, 37)
    assert padding_band(right, 8) == (0, 40)
    assert padding_band(right, 48) == (0, 48)
    assert padding_band(right, 100) == (0, 64)  # capped at the stored width
    left = _mask([(27, 64), (44, 64)], 64)  # left padding (XLNet): the band grows leftwards
    assert padding_band(left) == (27, 64)
    assert padding_band(left, 8) == (24, 64)
    assert padding_band(_mask([(0, 0)], 16), 8) == (0, 16)  # nothing real: the whole width


@pytest.fixture(scope="module")
def train_features(tiny_bert_dir: Path) -> Features:
    cfg = QAFlowConfig()
    cfg.features.max_seq_length, cfg.features.doc_stride = 128, 48
    family = resolve_family("auto", tiny_bert_dir)
    examples = load_dataset_file(SAMPLE_TRAIN, max_samples=64).examples
    return build_train_features(cfg, family, examples, load_tokenizer(str(tiny_bert_dir)))


def test_collate_multiple_of_keeps_every_token_and_label(train_features: Features) -> None:
    idx = np.arange(0, 12)
    tight = collate(train_features, idx, dynamic=True)
    rounded = collate(train_features, idx, dynamic=True, multiple_of=16)
    width = rounded["input_ids"].shape[1]
    assert width % 16 == 0 and tight["input_ids"].shape[1] <= width < tight["input_ids"].shape[1] + 16
    n = tight["input_ids"].shape[1]
    for name in ("input_ids", "attention_mask", "token_type_ids"):
        assert np.array_equal(rounded[name][:, :n], tight[name])
    assert not rounded["attention_mask"][:, n:].any()  # the added columns are padding
    assert np.array_equal(rounded["start_positions"], tight["start_positions"])
    rows = np.arange(len(idx))
    answer = rounded["input_ids"][rows, rounded["start_positions"]]
    assert np.array_equal(answer, train_features.input_ids[idx, train_features.start_positions[idx]])


def test_pad_multiple_is_run_qas_8_under_cuda_half_precision_unless_set() -> None:
    t = QAFlowConfig().train
    assert pad_multiple(t, CPUBackend()) == 1
    t.bf16 = True
    assert pad_multiple(t, CUDABackend()) == 8 and pad_multiple(t, CPUBackend()) == 1
    t.torch_compile = True  # static shapes: each new width would be a recompile
    assert pad_multiple(t, CPUBackend()) == 64 and pad_multiple(t, CUDABackend()) == 64
    t.torch_compile_dynamic = True
    assert pad_multiple(t, CUDABackend()) == 8
    t.pad_to_multiple_of = 16
    assert pad_multiple(t, CPUBackend()) == 16


def test_group_by_length_needs_dynamic_padding(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = QAFlowConfig()
    cfg.train.group_by_length = True
    with pytest.raises(ConfigError, match="group_by_length: needs features.pad_to_max_length false"):
        validate(cfg)
    cfg.features.pad_to_max_length = False
    validate(cfg)
    code = main(["train", "--group_by_length", "--params", str(tmp_path / "none.yaml")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "group_by_length" in err[0]


def _train(tiny_bert_dir: Path, features: Features, out: Path, **train: object) -> dict[str, float]:
    cfg = QAFlowConfig()
    cfg.model.model_name_or_path = str(tiny_bert_dir)
    cfg.features.pad_to_max_length = False
    for key, value in {"max_steps": 6, "per_device_train_batch_size": 8, "save_strategy": "no",
                       "logging_steps": 100, **train}.items():  # fmt: skip
        setattr(cfg.train, key, value)
    validate(cfg)
    result = run_trainer(
        resolve_family("auto", tiny_bert_dir), ModelSpec.from_config(cfg), cfg.train, features,
        backend=CPUBackend(), paths=TrainPaths(out), dynamic_padding=True,
    )  # fmt: skip
    return result.metrics


def test_group_by_length_trains_on_fewer_padded_tokens(tiny_bert_dir: Path, train_features: Features,
                                                       tmp_path: Path) -> None:  # fmt: skip
    lengths = row_lengths(train_features)
    assert lengths.min() < lengths.max()  # the sample's windows differ in length: grouping has work to do
    plain = _train(tiny_bert_dir, train_features, tmp_path / "plain")
    grouped = _train(tiny_bert_dir, train_features, tmp_path / "grouped", group_by_length=True)
    rounded = _train(tiny_bert_dir, train_features, tmp_path / "rounded", group_by_length=True,
                     pad_to_multiple_of=32)  # fmt: skip

    def padding_share(m: dict[str, float]) -> float:
        return 1 - m["train_tokens_per_second"] / m["train_padded_tokens_per_second"]

    assert padding_share(grouped) < padding_share(plain)
    assert padding_share(grouped) <= padding_share(rounded) + 1e-9  # the shares are ratios of rates: float noise
    assert all(np.isfinite(m["train_loss"]) for m in (plain, grouped, rounded))


def test_length_grouped_sampler_visits_every_row_once_in_batches_of_similar_length(
    tiny_bert_dir: Path, train_features: Features, tmp_path: Path
) -> None:
    from transformers import Trainer, TrainingArguments

    from tasks.train.batching import IndexDataset, length_grouped

    lengths = row_lengths(train_features)
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, use_cpu=True, report_to="none")
    trainer_class = length_grouped(Trainer, lengths)
    model = resolve_family("auto", tiny_bert_dir).load_model(str(tiny_bert_dir))
    trainer = trainer_class(model=model, args=args, train_dataset=IndexDataset(len(lengths)))
    order = list(trainer._get_train_sampler())
    assert sorted(order) == list(range(len(lengths)))
    batches = [lengths[order[i : i + 4]] for i in range(0, len(order), 4)]
    grouped_padding = sum(len(b) * b.max() - b.sum() for b in batches)
    shuffled = np.random.default_rng(0).permutation(len(lengths))
    random_padding = sum(len(b) * b.max() - b.sum() for b in (lengths[shuffled[i : i + 4]]
                                                              for i in range(0, len(order), 4)))  # fmt: skip
    assert grouped_padding < random_padding


def test_compiling_states_transformers_tf32_through_the_api_inductor_reads() -> None:
    """TrainingArguments(torch_compile=True) sets TF32 with torch.backends.fp32_precision; max-autotune then reads
    torch.get_float32_matmul_precision(), which raised on the mix (the H200 run of 2026-12-04)."""
    import torch

    from tasks.train.trainer import configure_compile

    if not hasattr(torch.backends, "fp32_precision"):
        pytest.skip("this torch has no fp32_precision API")
    before = torch.get_float32_matmul_precision()
    try:
        torch.backends.fp32_precision = "tf32"  # what transformers' enable_tf32(True) does on torch >= 2.9
        with pytest.raises(RuntimeError, match="mix of the legacy and new APIs"):
            torch.get_float32_matmul_precision()
        configure_compile(QAFlowConfig().train)
        assert torch.get_float32_matmul_precision() == "high"  # TF32, readable by Inductor
        assert torch.backends.cuda.matmul.fp32_precision == "tf32"
    finally:
        torch.backends.fp32_precision = "none"
        torch.set_float32_matmul_precision(before)
