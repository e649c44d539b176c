"""The lean training step (tasks/train/lean_step.py): no host-device sync inside a step, throughput counters that
survive DataLoader worker processes, fused AdamW."""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from tasks.core.checkpoints import load_tokenizer
from tasks.core.config import QAFlowConfig, validate
from tasks.core.data import load_dataset_file
from tasks.core.features import Features
from tasks.core.layout import TrainPaths
from tasks.core.model_spec import ModelSpec
from tasks.families.registry import resolve_family
from tasks.pipeline.featurize import build_train_features
from tasks.train.lean_step import FUSED_ADAMW, dataloader_settings
from tasks.train.trainer import run_trainer

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_TRAIN = REPO_ROOT / "data" / "sample" / "squad-v1.1-sample-train.json"
# Reading a tensor's value on the host: on a GPU each of these waits for the device to finish its queue.
HOST_READS = ("item", "tolist", "__bool__", "__float__", "__int__", "numpy", "cpu")


@pytest.fixture(scope="module")
def features(tiny_bert_dir: Path) -> Features:
    cfg = QAFlowConfig()
    cfg.features.max_seq_length, cfg.features.doc_stride = 128, 48
    examples = load_dataset_file(SAMPLE_TRAIN, max_samples=40).examples
    family = resolve_family("auto", tiny_bert_dir)
    return build_train_features(cfg, family, examples, load_tokenizer(str(tiny_bert_dir)))


class HostReads(TrainerCallback):
    """Host reads of tensor values between the start of step 2 and the end of the last step (their call stacks)."""

    def __init__(self) -> None:
        self.where: list[set[str]] = []
        self.armed = False

    def outside(self, module: str) -> int:
        """Reads whose call stack does not pass through a file named `module`."""
        return sum(not any(name.endswith(module) for name in files) for files in self.where)

    @contextlib.contextmanager
    def watching(self) -> Iterator[HostReads]:
        originals = {name: getattr(torch.Tensor, name) for name in HOST_READS}

        def counted(original):  # noqa: ANN001, ANN202
            def read(tensor, *args, **kwargs):  # noqa: ANN001, ANN202
                if self.armed:
                    self.where.append({frame.filename for frame in traceback.extract_stack(limit=12)})
                return original(tensor, *args, **kwargs)

            return read

        for name, original in originals.items():
            setattr(torch.Tensor, name, counted(original))
        try:
            yield self
        finally:
            for name, original in originals.items():
                setattr(torch.Tensor, name, original)

    def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        self.armed = state.global_step >= 1

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        self.armed = False  # logging and saving (every logging_steps) may read values: outside the step


def _train(model_dir: Path, features: Features, out: Path, callbacks=(), **train: object) -> dict[str, float]:  # noqa: ANN001
    cfg = QAFlowConfig()
    cfg.model.model_name_or_path = str(model_dir)
    for key, value in {"max_steps": 5, "per_device_train_batch_size": 8, "save_strategy": "no",
                       "logging_steps": 100, "learning_rate": 1e-3, **train}.items():  # fmt: skip
        setattr(cfg.train, key, value)
    validate(cfg)
    family = resolve_family("auto", model_dir)
    result = run_trainer(family, ModelSpec.from_config(cfg), cfg.train, features, backend="cpu",
                         paths=TrainPaths(out), dynamic_padding=True, callbacks=callbacks)  # fmt: skip
    return result.metrics


def test_a_packed_step_never_reads_a_tensor_back_to_the_host(
    tiny_bert_dir: Path, features: Features, tmp_path: Path
) -> None:
    reads = HostReads()
    with reads.watching():
        _train(tiny_bert_dir, features, tmp_path / "lean", callbacks=[reads], packing=True)
    assert reads.where == []


def test_a_padded_step_reads_back_only_in_the_models_own_mask_check(
    tiny_bert_dir: Path, features: Features, tmp_path: Path
) -> None:
    """Eager BERT asks `padding_mask.all()` on the host to skip an all-ones mask (transformers' masking_utils):
    one read per forward, the model's own; the step around it adds none (packing passes a 4D mask instead)."""
    reads = HostReads()
    with reads.watching():
        _train(tiny_bert_dir, features, tmp_path / "lean", callbacks=[reads])
    assert reads.where and reads.outside("masking_utils.py") == 0


def test_the_trainers_default_step_does_read_back(tiny_bert_dir: Path, features: Features, tmp_path: Path) -> None:
    """The check above can fail: a plain Trainer tests each step's loss for NaN/inf on the host."""
    from transformers import AutoModelForQuestionAnswering, default_data_collator

    rows = [{"input_ids": torch.from_numpy(features.input_ids[i].astype(np.int64)),
             "attention_mask": torch.from_numpy(features.attention_mask[i].astype(np.int64)),
             "start_positions": int(features.start_positions[i]), "end_positions": int(features.end_positions[i])}
            for i in range(40)]  # fmt: skip
    reads = HostReads()
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=8, use_cpu=True,
                             save_strategy="no", report_to="none", logging_steps=100, disable_tqdm=True)  # fmt: skip
    model = AutoModelForQuestionAnswering.from_pretrained(str(tiny_bert_dir))
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=default_data_collator,
                      callbacks=[reads])  # fmt: skip
    with reads.watching():
        trainer.train()
    assert reads.outside("masking_utils.py") >= 3  # the loss checked every step


def test_token_counts_survive_dataloader_workers(tiny_bert_dir: Path, features: Features, tmp_path: Path) -> None:
    alone = _train(tiny_bert_dir, features, tmp_path / "main", dataloader_num_workers=0, packing=True)
    workers = _train(tiny_bert_dir, features, tmp_path / "workers", dataloader_num_workers=2, packing=True)
    assert alone["train_real_tokens"] > 0
    # the same batches, counted in the workers; and only batches trained on (the DataLoader reads one ahead)
    assert workers["train_real_tokens"] == alone["train_real_tokens"] == trained_tokens(features, 5 * 8)
    assert workers["train_computed_positions"] == alone["train_computed_positions"]
    assert workers["train_loss"] == pytest.approx(alone["train_loss"], rel=1e-5)  # same order, same arithmetic


def trained_tokens(features: Features, n_windows: int) -> float:
    """Real tokens of the first `n_windows` windows the Trainer's seeded sampler draws (seed 42, one epoch)."""
    order = torch.randperm(len(features), generator=torch.Generator().manual_seed(42)).numpy()
    return float(features.attention_mask[order[:n_windows]].sum())


def test_dataloader_settings_by_backend() -> None:
    t = QAFlowConfig().train
    cuda, cpu = dataloader_settings(t, "cuda"), dataloader_settings(t, "cpu")
    assert cuda["dataloader_pin_memory"] and cuda["accelerator_config"] == {"non_blocking": True}  # async copies
    assert cuda["dataloader_num_workers"] == cpu["dataloader_num_workers"] == 0
    assert not cpu["dataloader_pin_memory"] and cpu["optim"] == cuda["optim"] == FUSED_ADAMW
    assert not cpu["logging_nan_inf_filter"] and not cuda["logging_nan_inf_filter"]
    t.dataloader_num_workers = 3
    workers = dataloader_settings(t, "cuda")
    assert workers["dataloader_num_workers"] == 3 and workers["dataloader_persistent_workers"]
    assert workers["dataloader_prefetch_factor"]
