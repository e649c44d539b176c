"""How training batches are shaped: the dataset of feature indices, the width multiple under dynamic padding,
packed training's row counts, and length-grouped sampling (`--group_by_length`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers.trainer_pt_utils import LengthGroupedSampler

from tasks.core.backend import Backend
from tasks.core.config import ConfigError, TrainConfig
from tasks.core.family import ModelFamily, PackedTraining
from tasks.core.packing import static_row_counts


class IndexDataset(torch.utils.data.Dataset):
    """Feature indices; the collator turns a list of indices into one (optionally trimmed) batch."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


STATIC_COMPILE_PAD_MULTIPLE = 64  # dynamic padding under static-shape compilation: at most width/64 graphs


def pad_multiple(t: TrainConfig, backend: Backend) -> int:
    """Batch widths under dynamic padding round up to this: the setting; else, compiled with static shapes, 64
    (each new width is a recompile: at 384 at most 6 graphs instead of one per batch); else, under fp16/bf16, the
    backend's (run_qa's 8 on CUDA: tensor-core sizes; 1 on the CPU)."""
    if t.pad_to_multiple_of is not None:
        return t.pad_to_multiple_of
    if (t.torch_compile or t.torch_compile_mode is not None) and not t.torch_compile_dynamic:
        return STATIC_COMPILE_PAD_MULTIPLE
    return backend.precision_pad_multiple if (t.bf16 or t.fp16) else 1


def packing_support(family: ModelFamily) -> PackedTraining:
    """The family's packed training (`train.packing`), or a ConfigError naming the family."""
    support = getattr(family, "packing", None)  # plug-in families written before packing have no attribute
    if support is None:
        raise ConfigError(f"train.packing: the {family.name} family cannot pack windows (extractive models only)")
    return support


def packed_row_counts(t: TrainConfig, backend: Backend, features: Any) -> tuple[int, ...]:
    """The row counts packed batches may have: exact under dynamic-shape compilation, or eager on a backend whose
    shapes cost nothing (the CPU); else (CUDA, or static compilation) two (`tasks.core.packing.static_row_counts`),
    so a compiled step or CUDA graph is built twice at most and eager CUDA chooses kernels for two shapes, not one
    per batch."""
    static = (t.torch_compile or t.torch_compile_mode is not None) and not t.torch_compile_dynamic
    if (not backend.shape_sensitive and not static) or t.torch_compile_dynamic:
        return ()
    width = int(features.input_ids.shape[1])
    return static_row_counts(row_lengths(features), t.per_device_train_batch_size, width, seed=t.seed)


def row_lengths(features: Any) -> np.ndarray:
    """Real (non-padding) tokens per training row; every family's features carry an `attention_mask`."""
    return np.asarray(features.attention_mask).sum(axis=1)


def length_grouped(trainer_class: type, lengths: np.ndarray) -> type:
    """`trainer_class` drawing its training batches with transformers' `LengthGroupedSampler` over `lengths`.

    Shuffled mega-batches (50 batches), each sorted by length, so a dynamically padded batch holds windows of
    similar length (run_qa's `--group_by_length`). The Trainer cannot find the lengths itself: its dataset is
    feature indices. Under DDP every rank builds the same order (seeded) and accelerate shards its batches.
    """
    as_list = [int(n) for n in lengths]

    def _get_train_sampler(self: Any, train_dataset: Any = None) -> LengthGroupedSampler:
        args = self.args
        return LengthGroupedSampler(args.train_batch_size * args.gradient_accumulation_steps, lengths=as_list)

    return type(f"LengthGrouped{trainer_class.__name__}", (trainer_class,), {"_get_train_sampler": _get_train_sampler})
